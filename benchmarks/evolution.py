"""ES fine-tuning with and without Anchored Weight Decay (arXiv 2605.30148), and GRPO with and without the AWD
callback.

Model: the embedded SmolLM2-135M-Instruct (fp32, CPU). Target task: two-digit addition with a 3-shot prefix
(``"3+4=7\\n12+25=37\\n40+18=58\\n{a}+{b}="``); reward = 1 for an exact greedy answer, else half the
fraction of digits right (``digit_credit``); target metric = greedy exact match on held-out problems. ES
perturbs the 30 ``mlp.down_proj`` matrices (26.5M of 135M parameters, ``--perturb``): perturbing all of them
costs 3 s per member on 2 cores, four times the generation, and ES(4N) would not fit the budget.
Prior-task probes on held-out real text the task never sees (``hf_fundamentals.corpora``: fortunes, WordNet
glosses, licences): next-token accuracy; KL to base = the DriftMonitorCallback's Monte Carlo KL on base
continuations of other documents (T = 1, cached once).

Runs (each is the real user path: ``ESTrainer`` / TRL ``GRPOTrainer`` + ``AnchoredWeightDecayCallback`` +
``DriftMonitorCallback``):

* ``es``: population N; ``es_awd``: N + AWD (l2, λ); ``es_large``: 4N; all at equal iterations T;
* ``grpo`` / ``grpo_awd``: TRL GRPO, short, same task, same monitor.

λ default: αλT = 2.5, the paper's regime (λ = 10, α = 5e-4, 500 iterations) scaled to our shorter run; the
random-walk picture (arXiv 2605.30148) predicts a drift ratio of about 1/sqrt(2αλT) ≈ 0.45 under it.

Each run merges its row into ``benchmarks/results/evolution.json`` (and ``evolution_<run>.json`` with its full drift
history) as soon as it ends, so runs can go one per process; ``--report`` prints the table, the ratios and the
plot from what is there.

    python benchmarks/evolution.py --runs es es_awd es_large          # about 1 h on 2 CPU cores (es_large: 40 min)
    python benchmarks/evolution.py --runs grpo grpo_awd
    python benchmarks/evolution.py --report
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHOTS = "3+4=7\n12+25=37\n40+18=58\n"
ES_RUNS = ("es", "es_awd", "es_large")
GRPO_RUNS = ("grpo", "grpo_awd")


# ---------------------------------------------------------------------------------------------- the task
def addition_problems(seed: int, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Disjoint train/test sets of two-digit additions ``{"prompt", "answer"}`` (seeded)."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(pairs)
    rows = [{"prompt": f"{SHOTS}{a}+{b}=", "answer": str(a + b)} for a, b in pairs[: n_train + n_test]]
    return rows[:n_train], rows[n_train:]


def greedy_exact_match(model: Any, tok: Any, rows: list[dict], batch: int = 64) -> float:
    """Fraction of ``rows`` whose greedy completion starts with the answer (the reward's rule)."""
    from hf_fundamentals.integrations.cli.es import _first_word

    hits = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        enc = tok([r["prompt"] for r in chunk], return_tensors="pt", padding=True, padding_side="left")
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        hits += sum(_first_word(t) == r["answer"] for t, r in zip(texts, chunk, strict=True))
    return hits / len(rows)


def prior_texts(seed: int, n_probe: int, n_kl: int) -> tuple[list[str], list[str]]:
    """Held-out real text: documents for next-token accuracy and (different ones) prompts for the KL."""
    from hf_fundamentals.corpora import available_domains, build_corpus

    domains = [d for d in ("fortunes", "wordnet", "licenses", "dictionary") if available_domains().get(d)]
    if not domains:
        raise SystemExit("no offline text domain available (hff corpora lists them); install e.g. fortunes")
    per = -(-(n_probe + n_kl) // len(domains))
    docs = [d["text"] for d in build_corpus(domains, docs_per_domain=per, seed=seed, min_chars=200)]
    random.Random(seed).shuffle(docs)
    return docs[:n_probe], docs[n_probe : n_probe + n_kl]


def digit_credit(prompts: list[str], completions: list[str], answer: list[str], **_: Any) -> list[float]:
    """TRL-signature reward: 1 for an exact answer, else 0.5 × the fraction of answer digits right in place
    (finer than exact match alone, so a small population's members tie less often)."""
    from hf_fundamentals.integrations.cli.es import _first_word

    out = []
    for completion, ans in zip(completions, answer, strict=True):
        got = _first_word(completion)
        if got == ans:
            out.append(1.0)
        else:
            out.append(0.5 * sum(a == b for a, b in zip(got, ans, strict=False)) / len(ans))
    return out


def answer_logprob_reward(model: Any, tok: Any):
    """TRL-signature reward scored by teacher forcing: the mean log-probability of the correct answer's tokens
    after the prompt, under the model as it is when called (ES calls it on each perturbed member). Dense, so
    members rarely tie; the completion is not used."""

    def answer_logprob(
        prompts: list[str], completions: list[str], answer: list[str], **_: Any
    ) -> list[float]:
        starts = [len(tok(p)["input_ids"]) for p in prompts]
        enc = tok([p + a for p, a in zip(prompts, answer, strict=True)], return_tensors="pt", padding=True,
                  padding_side="right")  # fmt: skip
        ids, mask = enc["input_ids"], enc["attention_mask"]
        logp = torch.log_softmax(
            model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float(), -1
        )
        token_lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        out = []
        for i, start in enumerate(starts):
            end = int(mask[i].sum())
            out.append(float(token_lp[i, start - 1 : end - 1].mean()))
        return out

    return answer_logprob


def next_token_accuracy_probe(tok: Any, docs: list[str], max_tokens: int = 64):
    """A probe ``(model, tok) -> float``: argmax next-token accuracy on the fixed documents."""
    enc = tok(docs, return_tensors="pt", padding=True, truncation=True, max_length=max_tokens)
    ids, mask = enc["input_ids"], enc["attention_mask"]

    def next_token_acc(model: Any, _tok: Any) -> float:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        valid = mask[:, 1:].bool()
        return float(((logits.argmax(-1) == ids[:, 1:]) & valid).sum() / valid.sum())

    return next_token_acc


def kl_prompts(tok: Any, docs: list[str], prefix_tokens: int = 24) -> list[str]:
    """The first ``prefix_tokens`` tokens of each document, as text (the base model continues them)."""
    return [tok.decode(tok(d)["input_ids"][:prefix_tokens]) for d in docs]


# ---------------------------------------------------------------------------------------------- one run
def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset

    from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback
    from hf_fundamentals.integrations.evolution.drift import DriftMonitorCallback
    from hf_fundamentals.integrations.hub import load_model

    torch.manual_seed(args.seed)
    model, tok = load_model("embedded")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    train, test = addition_problems(args.seed, args.n_train, args.n_test)
    probe_docs, kl_docs = prior_texts(args.seed, args.n_probe_docs, args.n_kl_prompts)
    out_dir = Path(args.work_dir) / name
    monitor = DriftMonitorCallback(
        every=args.check_every,
        kl_prompts=kl_prompts(tok, kl_docs),
        kl_max_new_tokens=32,
        probes={"next_token_acc": next_token_accuracy_probe(tok, probe_docs)},
        target=lambda m, t: greedy_exact_match(m, t, test),
        plot_path=str(out_dir / "drift.png"),
        kl_estimator="exact",
    )
    callbacks: list[Any] = [monitor]
    es = name.startswith("es")
    steps = args.es_steps if es else args.grpo_steps
    if name.endswith("_awd"):
        step_size = args.alpha if es else args.grpo_lr
        lam = args.awd_lambda if args.awd_lambda else 2.5 / (step_size * steps)
        include = args.perturb if es else None  # ES moves only the perturbed tensors
        callbacks.append(AnchoredWeightDecayCallback(lam=lam, kind="l2", include=include))
    else:
        lam = 0.0
    common = dict(output_dir=str(out_dir), max_steps=steps, logging_steps=1, save_strategy="no",
                  report_to=[], seed=args.seed, data_seed=args.seed, use_cpu=True, disable_tqdm=False)  # fmt: skip
    t0 = time.time()
    if es:
        from hf_fundamentals.integrations.evolution.es_config import ESTrainingConfig
        from hf_fundamentals.integrations.evolution.es_trainer import ESTrainer

        population = args.population * (4 if name == "es_large" else 1)
        config = ESTrainingConfig(
            population_size=population, sigma=args.sigma, alpha=args.alpha,
            per_device_train_batch_size=args.prompts_per_step, params_to_perturb=args.perturb,
            generation_kwargs={"max_new_tokens": 1 if args.es_reward == "answer_logprob" else 5, "do_sample": False},
            **common,
        )  # fmt: skip
        reward = answer_logprob_reward(model, tok) if args.es_reward == "answer_logprob" else digit_credit
        trainer = ESTrainer(model=model, args=config, reward_funcs=[reward], train_dataset=Dataset.from_list(train),
                            processing_class=tok, callbacks=callbacks)  # fmt: skip
        rollouts_per_step = population * args.prompts_per_step
        settings = {
            "population": population,
            "sigma": args.sigma,
            "alpha": args.alpha,
            "perturb": args.perturb,
            "reward": args.es_reward,
            "prompts_per_step": args.prompts_per_step,
        }
    else:
        from trl import GRPOConfig, GRPOTrainer

        config = GRPOConfig(
            learning_rate=args.grpo_lr, per_device_train_batch_size=args.grpo_generations * args.grpo_prompts,
            num_generations=args.grpo_generations, max_completion_length=5, temperature=1.0, beta=0.0,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, gradient_checkpointing=False, bf16=False, **common,
        )  # fmt: skip
        trainer = GRPOTrainer(model=model, args=config, reward_funcs=[digit_credit], train_dataset=Dataset.from_list(train),
                              processing_class=tok, callbacks=callbacks)  # fmt: skip
        rollouts_per_step = args.grpo_generations * args.grpo_prompts
        settings = {"learning_rate": args.grpo_lr, "num_generations": args.grpo_generations,
                    "prompts_per_step": args.grpo_prompts, "optimizer": "adamw_torch", "beta": 0.0}  # fmt: skip
    trainer.train()
    seconds = time.time() - t0
    hist = monitor.history
    last = hist[-1]
    signals = monitor.summary()
    train_reward = [(r["step"], r.get("reward", r.get("reward/mean"))) for r in trainer.state.log_history
                    if ("reward" in r or "reward/mean" in r) and "step" in r]  # fmt: skip
    row = {
        "method": "ES" if es else "GRPO (TRL)",
        "awd_lambda": lam,
        "awd_shrink_per_step": lam * (args.alpha if es else args.grpo_lr),
        "steps": steps,
        "rollouts": rollouts_per_step * steps,
        "target_reward": last["target"],
        "target_reward_start": hist[0]["target"],
        "best_target": signals["best_target"],
        "kl_to_base": last["kl_to_base"],
        "weight_drift": last["drift_global"],
        "weight_drift_relative": last["drift_relative"],
        "prior_next_token_acc": last["probe/next_token_acc"],
        "prior_next_token_acc_start": hist[0]["probe/next_token_acc"],
        "monitor": {
            k: signals[k]
            for k in ("t_val", "t_forget", "max_forgetting", "warning", "recovery", "recovery_step")
        },  # fmt: skip
        "seconds": round(seconds, 1),
        "settings": settings,
    }
    curves = {"history": [{k: v for k, v in r.items() if k != "drift_per_layer"} for r in hist],
              "train_reward": train_reward}  # fmt: skip
    (Path(args.results).with_name(f"evolution_{name}.json")).write_text(
        json.dumps({"run": name, **row, **curves}, indent=1, default=float)
    )
    return row


# ---------------------------------------------------------------------------------------------- report
def _ratio(runs: dict, key: str, a: str, b: str) -> float | None:
    if a in runs and b in runs and runs[b][key]:
        return runs[a][key] / runs[b][key]
    return None


def at_target(history: list[dict], target: float, key: str) -> float | None:
    """``key`` interpolated linearly at the first check where the run's target metric reaches ``target``
    (None if it never does): the other run's cost measured at equal target reward."""
    prev = None
    for row in history:
        if row.get("target") is None or row.get(key) is None:
            continue
        if row["target"] >= target:
            if prev is None or row["target"] == prev["target"]:
                return float(row[key])
            w = (target - prev["target"]) / (row["target"] - prev["target"])
            return float(prev[key] + w * (row[key] - prev[key]))
        prev = row
    return None


def equal_target_ratios(results: dict[str, Any], path: Path, run: str, ref: str) -> None:
    """KL and drift of ``run`` at its final target over ``ref``'s KL and drift where ``ref`` first reached it."""
    files = {n: path.with_name(f"evolution_{n}.json") for n in (run, ref)}
    if (
        run not in results["runs"]
        or ref not in results["runs"]
        or not all(f.exists() for f in files.values())
    ):
        return
    target = results["runs"][run]["target_reward"]
    ref_hist = json.loads(files[ref].read_text())["history"]
    for key, name in (("kl_to_base", "kl"), ("drift_global", "drift")):
        there = at_target(ref_hist, target, key)
        ours = results["runs"][run]["kl_to_base" if key == "kl_to_base" else "weight_drift"]
        results[f"{name}_ratio_{run}_vs_{ref}_at_equal_target"] = ours / there if there else None


def import_partial(name: str, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """The row of an ES run stopped before ``--es_steps`` (to fit a time budget), rebuilt from the drift history
    its monitor wrote at every check; marked ``partial`` with the step it reached."""
    from hf_fundamentals.evolution import drift_signals

    data = json.loads((Path(args.work_dir) / name / "drift_history.json").read_text())
    hist, every = data["history"], data["every"]
    signals = drift_signals(hist, every)
    population = args.population * (4 if name == "es_large" else 1)
    last, steps = hist[-1], hist[-1]["step"]
    row = {
        "method": "ES", "awd_lambda": 0.0, "awd_shrink_per_step": 0.0, "steps": steps, "partial": True,
        "planned_steps": args.es_steps, "rollouts": population * args.prompts_per_step * steps,
        "target_reward": last["target"], "target_reward_start": hist[0]["target"],
        "best_target": signals["best_target"], "kl_to_base": last["kl_to_base"], "weight_drift": last["drift_global"],
        "weight_drift_relative": last["drift_relative"], "prior_next_token_acc": last["probe/next_token_acc"],
        "prior_next_token_acc_start": hist[0]["probe/next_token_acc"],
        "monitor": {k: signals[k] for k in ("t_val", "t_forget", "max_forgetting", "warning", "recovery",
                                             "recovery_step")},
        "seconds": None,
        "settings": {"population": population, "sigma": args.sigma, "alpha": args.alpha, "perturb": args.perturb,
                     "reward": args.es_reward, "prompts_per_step": args.prompts_per_step},
    }  # fmt: skip
    curves = {
        "history": [{k: v for k, v in r.items() if k != "drift_per_layer"} for r in hist],
        "train_reward": [],
    }
    path.with_name(f"evolution_{name}.json").write_text(
        json.dumps({"run": name, **row, **curves}, indent=1, default=float)
    )
    return row


def equal_step_comparison(results: dict[str, Any], path: Path) -> None:
    """KL, drift and target of the three ES runs at the last check step all of them reached (equal iterations)."""
    files = {n: path.with_name(f"evolution_{n}.json") for n in ES_RUNS}
    if not all(n in results["runs"] and f.exists() for n, f in files.items()):
        return
    hists = {n: {r["step"]: r for r in json.loads(f.read_text())["history"]} for n, f in files.items()}
    step = max(set.intersection(*(set(h) for h in hists.values())))
    at = {n: {"target": h[step]["target"], "kl_to_base": h[step]["kl_to_base"], "weight_drift": h[step]["drift_global"],
              "prior_next_token_acc": h[step]["probe/next_token_acc"],
              "rollouts": results["runs"][n]["rollouts"] // results["runs"][n]["steps"] * step}
          for n, h in hists.items()}  # fmt: skip
    out = {"step": step, "runs": at}
    for other in ("es", "es_large"):
        for key, name in (("kl_to_base", "kl"), ("weight_drift", "drift"), ("rollouts", "rollout")):
            out[f"{name}_ratio_awd_vs_{other}"] = (
                at["es_awd"][key] / at[other][key] if at[other][key] else None
            )
    results["at_equal_step"] = out


def write_report(results: dict[str, Any], path: Path) -> None:
    runs = results["runs"]
    equal_step_comparison(results, path)
    equal_target_ratios(results, path, "es_awd", "es")
    equal_target_ratios(results, path, "es_awd", "es_large")
    results["kl_ratio_awd_vs_es"] = _ratio(runs, "kl_to_base", "es_awd", "es")
    results["drift_ratio_awd_vs_es"] = _ratio(runs, "weight_drift", "es_awd", "es")
    results["drift_ratio_awd_vs_es_large"] = _ratio(runs, "weight_drift", "es_awd", "es_large")
    results["kl_ratio_awd_vs_es_large"] = _ratio(runs, "kl_to_base", "es_awd", "es_large")
    results["rollout_ratio_awd_vs_es_large"] = _ratio(runs, "rollouts", "es_awd", "es_large")
    if runs.get("es_large", {}).get("partial"):  # final rows at different steps: see at_equal_step instead
        for key in ("drift_ratio_awd_vs_es_large", "kl_ratio_awd_vs_es_large", "rollout_ratio_awd_vs_es_large",
                    "kl_ratio_es_awd_vs_es_large_at_equal_target", "drift_ratio_es_awd_vs_es_large_at_equal_target"):  # fmt: skip
            results[key] = None
    results["kl_ratio_grpo_awd_vs_grpo"] = _ratio(runs, "kl_to_base", "grpo_awd", "grpo")
    results["drift_ratio_grpo_awd_vs_grpo"] = _ratio(runs, "weight_drift", "grpo_awd", "grpo")
    path.write_text(json.dumps(results, indent=1, default=float))
    header = ["run", "steps", "rollouts", "target EM (start→end)", "best", "KL to base", "‖θ−θ0‖",
              "next-tok acc (start→end)", "t*_val", "t*_forget", "recovery", "s"]  # fmt: skip
    rows = []
    for name, r in runs.items():
        m = r["monitor"]
        rows.append([name, r["steps"], r["rollouts"], f"{r['target_reward_start']:.3f}→{r['target_reward']:.3f}",
                     r["best_target"], r["kl_to_base"], r["weight_drift"],
                     f"{r['prior_next_token_acc_start']:.4f}→{r['prior_next_token_acc']:.4f}", m["t_val"],
                     m["t_forget"], "-" if m["recovery"] is None else f"{m['recovery']:.2f}", r["seconds"]])  # fmt: skip
    print(table(rows, header))
    if "at_equal_step" in results:
        eq = results["at_equal_step"]
        print(
            f"at step {eq['step']} (all ES runs): "
            + ", ".join(
                f"{n}: EM {r['target']:.3f} KL {r['kl_to_base']:.4g} drift {r['weight_drift']:.4g}"
                for n, r in eq["runs"].items()
            )
        )
        print("  " + ", ".join(f"{k} {v:.3f}" for k, v in eq.items() if k.endswith(("_es", "_es_large")) and v))  # fmt: skip
    for key in ("kl_ratio_awd_vs_es", "drift_ratio_awd_vs_es", "drift_ratio_awd_vs_es_large",
                "kl_ratio_awd_vs_es_large", "rollout_ratio_awd_vs_es_large", "kl_ratio_grpo_awd_vs_grpo",
                "drift_ratio_grpo_awd_vs_grpo", "kl_ratio_es_awd_vs_es_at_equal_target",
                "drift_ratio_es_awd_vs_es_at_equal_target", "kl_ratio_es_awd_vs_es_large_at_equal_target",
                "drift_ratio_es_awd_vs_es_large_at_equal_target"):  # fmt: skip
        if results.get(key) is not None:
            print(f"{key}: {results[key]:.3f}")
    plot(runs, path.parent)


def plot(runs: dict[str, Any], where: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    keys = [("target", "target EM (held-out)"), ("kl_to_base", "KL to base (exact, full vocabulary)"),
            ("drift_global", "‖θ − θ0‖_F"), ("probe/next_token_acc", "prior: next-token accuracy")]  # fmt: skip
    for name in runs:
        path = where / f"evolution_{name}.json"
        if not path.exists():
            continue
        hist = json.loads(path.read_text())["history"]
        style = "-" if name.startswith("es") else "--"
        for ax, (key, label) in zip(axes.flat, keys, strict=True):
            pts = [(r["step"], r[key]) for r in hist if r.get(key) is not None]
            ax.plot([s for s, _ in pts], [v for _, v in pts], style, marker="o", ms=3, label=name)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(where / "evolution.png", dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="*", default=[], choices=ES_RUNS + GRPO_RUNS)
    p.add_argument("--import_partial", nargs="*", default=[], choices=ES_RUNS,
                   help="add ES runs stopped early from their drift_history.json (see import_partial)")  # fmt: skip
    p.add_argument(
        "--report", action="store_true", help="only print the table and plot from the results file"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=int, default=4, help="N; es_large uses 4N")
    p.add_argument("--sigma", type=float, default=2e-3)
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--es_steps", type=int, default=100)
    p.add_argument(
        "--perturb", default=r"mlp\.down_proj", help="regex of the tensors ES perturbs (26.5M params)"
    )
    p.add_argument(
        "--es_reward",
        default="answer_logprob",
        choices=["answer_logprob", "digit_credit"],
        help="ES reward: teacher-forced answer log-prob (dense) or digit_credit on greedy answers",
    )
    p.add_argument("--prompts_per_step", type=int, default=8)
    p.add_argument("--awd_lambda", type=float, default=None, help="default 2.5/(step size · steps)")
    p.add_argument("--grpo_steps", type=int, default=40)
    p.add_argument("--grpo_lr", type=float, default=1e-5)
    p.add_argument("--grpo_generations", type=int, default=4)
    p.add_argument("--grpo_prompts", type=int, default=4)
    p.add_argument("--check_every", type=int, default=10)
    p.add_argument("--n_train", type=int, default=200)
    p.add_argument("--n_test", type=int, default=128)
    p.add_argument("--n_probe_docs", type=int, default=32)
    p.add_argument("--n_kl_prompts", type=int, default=16)
    p.add_argument("--work_dir", default="runs/evolution")
    p.add_argument("--results", default=str(RESULTS / "evolution.json"))
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "report", "results", "work_dir")}
    for name in args.runs:
        print(f"=== {name}", flush=True)
        row = run_one(name, args)
        results = (
            json.loads(path.read_text()) if path.exists() else {"runs": {}}
        )  # another process may have written
        results["runs"][name] = row
        results.update(
            model="embedded SmolLM2-135M-Instruct (fp32, CPU)",
            task="two-digit addition, 3-shot prefix; reward = exact match of the greedy answer; target = greedy "
            f"EM on {args.n_test} held-out problems",
            prior="next-token accuracy on held-out real text (fortunes, WordNet, licences, GCIDE); KL to base on "
            "T=1 base continuations of 16 other documents (32 tokens)",
            settings=settings, machine=machine(), seed=args.seed,
        )  # fmt: skip
        write_report(results, path)
    for name in args.import_partial:
        results["runs"][name] = import_partial(name, args, path)
    if args.report or not args.runs:
        write_report(results, path)


if __name__ == "__main__":
    main()
