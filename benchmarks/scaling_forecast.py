"""Forecasting a run's final loss from its first 40%: the schedule-aware law (Tissue et al., arXiv 2408.11029)
against single-run power-law and Shannon forms, under cosine, WSD and constant LR, and across schedules.

    OMP_NUM_THREADS=1 python benchmarks/scaling_forecast.py            # 9 runs, about 30 min on one busy core
    OMP_NUM_THREADS=1 python benchmarks/scaling_forecast.py --quick    # 1 seed, 120 steps (smoke run)
    python benchmarks/scaling_forecast.py --analyze                    # refit the stored runs only (runs/ or,
                                                                       # without it, the curves in the results file)

Runs: a byte-level 2-layer Llama (hidden 96, 209k parameters, vocab 256) on the offline ``manpages`` domain (the
data of ``scaling_perturbation.py``: 600 documents to train, 40 held out, 64 held-out sequences of 128 bytes),
AdamW, peak LR 3e-3 with 30 warm-up steps, batch 8 × 128 bytes, 600 steps, evaluation every 24 steps (25 points),
under ``cosine`` (to 0), ``wsd`` (stable, then a cosine decay over the last 20% to 0) and ``constant`` (after the
warm-up), seeds 0, 1, 2 (the seed sets both the initialization and the data order). ``ScalingLawCallback`` records
the eval losses and the LR every update used, as read from the optimizer the Trainer's scheduler sets. Each run is
stored in ``runs/scaling_forecast/`` (a rerun reuses finished runs).

Forecast (Choshen et al., arXiv 2410.11840: score by absolute relative error on the target, account for seeds):
every law is fitted on the evaluations at steps <= 40% of the run (10 points) and predicts the last evaluation's
loss (step 600). Laws: ``annealing`` (L0 + A·S1^−α − C·S2 with the recorded LRs, extended to the end by the known
schedule, λ profiled over a grid by in-sample fit: ``decay="auto"``), ``annealing_0.999`` (the paper's fixed
λ), ``power`` (E + B/D^β in tokens, the Chinchilla form along one run) and ``shannon_run`` (the single-run
Shannon form). Intervals: 90% prediction intervals from 200 moving-block bootstrap refits of the log residuals
(50 for the token-axis laws, whose refits cost more), and whether they hold the measured final loss. Cross-schedule: the annealing law fitted
on one run predicts the final loss of the cosine run of the same seed: from the constant run's first 40% (the
brief's case; S2 = 0 there, so C is not identified and the forecast has no annealing term), from the whole
constant run, and from the WSD run's first 40% (S2 = 0 there too: WSD is constant until 80%) and whole run.
Results: ``benchmarks/results/scaling_forecast.json`` and ``scaling_forecast.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, table  # noqa: E402
from scaling_perturbation import byte_data, collate  # noqa: E402

from hf_fundamentals.scaling import block_resample, fit_annealing, fit_law  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "scaling_forecast"
SCHEDULES = {"cosine": "cosine", "wsd": "warmup_stable_decay", "constant": "constant_with_warmup"}
LAWS = ("annealing", "annealing_0.999", "power", "shannon_run")
FIT_FRACTION = 0.4
CI = 0.9
N_BOOT = 200
N_BOOT_TOKENS = 50
"""Bootstrap refits of the token-axis laws (fewer: a shannon_run refit costs ~10x an annealing one here)."""
STARTS = {"chinchilla": 64, "shannon_run": 16}


def train_run(schedule: str, seed: int, steps: int, eval_every: int, data) -> dict[str, Any]:
    """One Trainer run; returns its evaluations, per-update LRs and cost."""
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from hf_fundamentals.integrations.scaling.callback import ScalingLawCallback

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256, hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    train, held = data
    cb = ScalingLawCallback(min_points=10**9, output_file=None)  # records only; the fits are done afterwards
    extra = {"lr_scheduler_kwargs": {"num_decay_steps": steps // 5}} if schedule == "wsd" else {}
    args = TrainingArguments(
        output_dir=str(RUNS / "trainer"), max_steps=steps, per_device_train_batch_size=8,
        per_device_eval_batch_size=32, learning_rate=3e-3, lr_scheduler_type=SCHEDULES[schedule],
        warmup_steps=max(1, steps // 20), weight_decay=0.0, eval_strategy="steps", eval_steps=eval_every,
        logging_steps=eval_every, save_strategy="no", report_to=[], use_cpu=True, seed=seed,
        include_num_input_tokens_seen="non_padding", disable_tqdm=True, **extra,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=held, data_collator=collate, callbacks=[cb]
    )
    t0 = time.time()
    trainer.train()
    return {
        "schedule": schedule,
        "seed": seed,
        "steps": [p.step for p in cb.points],
        "tokens": [p.tokens for p in cb.points],
        "loss": [p.loss for p in cb.points],
        "lrs": cb.lrs,
        "n_params": sum(p.numel() for p in model.parameters()),
        "seconds": time.time() - t0,
    }


def rebuilt_lrs(schedule: str, steps: int, peak_lr: float, warmup_steps: int) -> np.ndarray:
    """The LR of every update of a run, from its schedule (transformers' formulas, WSD decaying over the last
    20%): what ``ScalingLawCallback`` recorded, for runs whose stored copy lacks the LRs."""
    from hf_fundamentals.scaling import lr_schedule

    return lr_schedule(schedule, steps, peak_lr, warmup_steps=warmup_steps,
                       decay_steps=steps // 5 if schedule == "wsd" else None)  # fmt: skip


def _bootstrap_tokens_law(law, n, tokens, loss, target_tokens, rng):
    """A fit_law single-run law on (tokens, loss), its forecast at ``target_tokens`` and a 90% prediction
    interval from moving-block bootstrap refits (started at the fit), times a resampled residual."""
    N = np.full_like(tokens, n)
    fit = fit_law(law, N, tokens, loss, n_starts=STARTS[law])
    pred = fit.predict(N, tokens)
    resid = np.log(loss) - np.log(pred)
    k = len(fit.theta)
    scaled = (resid - resid.mean()) * np.sqrt(resid.size / max(resid.size - k, 1))
    draws = []
    for r in block_resample(scaled, N_BOOT_TOKENS, rng):
        b = fit_law(law, N, tokens, pred * np.exp(r), starts=np.array([fit.theta]), n_starts=1)
        draws.append(float(b.predict(n, target_tokens)) * float(np.exp(rng.choice(resid))))
    q = (1 - CI) / 2
    return fit, float(np.quantile(draws, q)), float(np.quantile(draws, 1 - q))


def forecast(run: dict[str, Any]) -> dict[str, Any]:
    """Every law fitted on the first 40% of ``run``'s evaluations, scored on its last evaluation."""
    steps, tokens, loss = (np.asarray(run[k], dtype=float) for k in ("steps", "tokens", "loss"))
    first = steps <= FIT_FRACTION * steps[-1]
    truth = float(loss[-1])
    rng = np.random.default_rng(run["seed"])
    out: dict[str, Any] = {"truth": truth, "n_fit": int(first.sum()), "fit_steps": int(steps[first][-1])}
    for name, decay in (("annealing", "auto"), ("annealing_0.999", 0.999)):
        t0 = time.time()
        fit = fit_annealing(steps[first].astype(int), loss[first], run["lrs"], decay=decay, n_boot=N_BOOT, ci=CI,
                            seed=run["seed"])  # fmt: skip
        pred = float(fit.predict(run["lrs"], [int(steps[-1])])[0])
        lo, hi = (float(x[0]) for x in fit.predict_interval(run["lrs"], [int(steps[-1])]))
        out[name] = {"pred": pred, "lo": lo, "hi": hi, "params": fit.params, "decay": fit.decay,
                     "identifiability": fit.identifiability,
                     "curve": fit.predict(run["lrs"], steps.astype(int)).tolist(), "seconds": time.time() - t0}  # fmt: skip
    for law, name in (("chinchilla", "power"), ("shannon_run", "shannon_run")):
        t0 = time.time()
        curve_fit, lo, hi = _bootstrap_tokens_law(
            law, run["n_params"], tokens[first], loss[first], tokens[-1], rng
        )
        pred = float(curve_fit.predict(run["n_params"], tokens[-1]))
        out[name] = {"pred": pred, "lo": lo, "hi": hi, "params": curve_fit.params,
                     "curve": curve_fit.predict(run["n_params"], tokens).tolist(), "seconds": time.time() - t0}  # fmt: skip
    for name in LAWS:
        x = out[name]
        x["abs_rel_err"] = abs(x["pred"] / truth - 1)
        x["covers"] = bool(x["lo"] <= truth <= x["hi"])
    return out


def cross(source: dict[str, Any], target: dict[str, Any], fraction: float) -> dict[str, Any]:
    """The annealing law fitted on ``source`` (its first ``fraction``) predicts ``target``'s last evaluation."""
    steps, loss = np.asarray(source["steps"]), np.asarray(source["loss"])
    keep = steps <= fraction * steps[-1]
    fit = fit_annealing(steps[keep], loss[keep], source["lrs"], decay="auto", n_boot=N_BOOT, ci=CI,
                        seed=source["seed"])  # fmt: skip
    final = int(target["steps"][-1])
    pred = float(fit.predict(target["lrs"], [final])[0])
    lo, hi = (float(x[0]) for x in fit.predict_interval(target["lrs"], [final]))
    truth = float(target["loss"][-1])
    return {"pred": pred, "lo": lo, "hi": hi, "truth": truth, "abs_rel_err": abs(pred / truth - 1),
            "covers": bool(lo <= truth <= hi), "C_flags": fit.identifiability["C"]["flags"], "decay": fit.decay,
            "curve": fit.predict(target["lrs"], np.asarray(target["steps"])).tolist()}  # fmt: skip


def plot(runs, forecasts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    styles = {"annealing": "-", "annealing_0.999": "-.", "power": "--", "shannon_run": ":"}
    for ax, schedule in zip(axes, SCHEDULES, strict=True):
        key = f"{schedule}_s0"
        if key not in runs:
            continue
        run, fc = runs[key], forecasts[key]
        steps, loss = np.asarray(run["steps"]), np.asarray(run["loss"])
        first = steps <= FIT_FRACTION * steps[-1]
        ax.plot(steps[first], loss[first], "ko", ms=4, label="fitted (first 40%)")
        ax.plot(steps[~first], loss[~first], "o", mfc="none", mec="k", ms=4, label="held out")
        for law in LAWS:
            ax.plot(steps, fc[law]["curve"], styles[law], label=f"{law}: {fc[law]['abs_rel_err']:.1%} off")
        a = fc["annealing"]
        ax.errorbar([steps[-1] * 1.01], [a["pred"]], yerr=[[a["pred"] - a["lo"]], [a["hi"] - a["pred"]]],
                    fmt="s", color="C0", capsize=3, label="annealing 90% interval")  # fmt: skip
        lr_ax = ax.twinx()
        lr_ax.plot(np.arange(1, len(run["lrs"]) + 1), run["lrs"], color="0.8", lw=1)
        lr_ax.set_yticks([])
        ax.set_title(f"{schedule} (seed 0)")
        ax.set_xlabel("step")
        ax.set_ylim(float(loss.min()) - 0.1, float(loss[1]) + 0.1)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("held-out loss (nats/byte)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 120 steps")
    parser.add_argument("--analyze", action="store_true", help="only refit the runs already stored")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    steps, eval_every, seeds = (120, 8, [0]) if args.quick else (600, 24, list(range(args.seeds)))
    t_start = time.time()
    RUNS.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    data = None
    for seed in seeds:
        for schedule in SCHEDULES:
            key = f"{schedule}_s{seed}"
            path = RUNS / f"{key}{'_quick' if args.quick else ''}.json"
            if path.is_file():
                runs[key] = json.loads(path.read_text())
                continue
            if args.analyze:  # runs/ is not kept: the results file holds the curves, the LRs are rebuilt
                stored = OUT / f"scaling_forecast{'_quick' if args.quick else ''}.json"
                cached = json.loads(stored.read_text()).get("runs", {}) if stored.is_file() else {}
                if key in cached:
                    run = cached[key]
                    runs[key] = {
                        **run,
                        "lrs": rebuilt_lrs(schedule, steps, 3e-3, max(1, steps // 20)).tolist(),
                    }
                continue
            data = data or byte_data()
            print(f"training {key} ...", flush=True)
            runs[key] = train_run(schedule, seed, steps, eval_every, data)
            path.write_text(json.dumps(runs[key]))
            print(f"  {runs[key]['seconds']:.0f} s, final eval loss {runs[key]['loss'][-1]:.4f}", flush=True)
    forecasts = {key: forecast(run) for key, run in runs.items()}

    err: dict[str, dict[str, Any]] = {law: {} for law in LAWS}
    covers: dict[str, dict[str, Any]] = {law: {} for law in LAWS}
    rows = []
    for law in LAWS:
        for schedule in SCHEDULES:
            keys = [k for k in forecasts if k.startswith(schedule + "_")]
            if not keys:
                continue
            e = [forecasts[k][law]["abs_rel_err"] for k in keys]
            c = [forecasts[k][law]["covers"] for k in keys]
            err[law][schedule] = float(np.mean(e))
            covers[law][schedule] = float(np.mean(c))
            rows.append([law, schedule, len(keys), float(np.mean(e)), float(np.max(e)), f"{sum(c)}/{len(c)}"])
    print(
        f"\nForecast of the final eval loss (step {steps}) from the first {FIT_FRACTION:.0%} of evaluations"
    )
    print(table(rows, ["law", "schedule", "seeds", "mean |rel err|", "max |rel err|", "90% interval holds"]))

    crosses: dict[str, Any] = {}
    cross_rows = []
    for source, fraction, label in (("constant", FIT_FRACTION, "constant_first40"), ("constant", 1.0, "constant_full"),
                                    ("wsd", FIT_FRACTION, "wsd_first40"), ("wsd", 1.0, "wsd_full")):  # fmt: skip
        per_seed = []
        for seed in seeds:
            src, tgt = runs.get(f"{source}_s{seed}"), runs.get(f"cosine_s{seed}")
            if src is None or tgt is None:
                continue
            per_seed.append(cross(src, tgt, fraction))
        if per_seed:
            crosses[label] = {
                "abs_rel_err": float(np.mean([x["abs_rel_err"] for x in per_seed])),
                "covers": float(np.mean([x["covers"] for x in per_seed])),
                "per_seed": per_seed,
            }
            cross_rows.append([label, len(per_seed), crosses[label]["abs_rel_err"],
                               f"{sum(x['covers'] for x in per_seed)}/{len(per_seed)}",
                               ",".join(per_seed[0]["C_flags"]) or "identified"])  # fmt: skip
    print("\nCosine run's final loss predicted by the annealing law fitted on another schedule")
    print(table(cross_rows, ["fitted on", "seeds", "mean |rel err|", "90% interval holds", "C (seed 0)"]))
    seed_spread = {}
    for schedule in SCHEDULES:
        finals = [runs[k]["loss"][-1] for k in runs if k.startswith(schedule + "_")]
        if len(finals) > 1:
            seed_spread[schedule] = {"mean": float(np.mean(finals)), "std": float(np.std(finals, ddof=1)),
                                     "rel_std": float(np.std(finals, ddof=1) / np.mean(finals))}  # fmt: skip
    print("\nSeed spread of the final loss (the error floor a forecast of an unseen seed meets):")
    for schedule, s in seed_spread.items():
        print(f"  {schedule}: {s['mean']:.4f} ± {s['std']:.4f} ({s['rel_std']:.2%})")

    name = "scaling_forecast" + ("_quick" if args.quick else "")
    OUT.mkdir(parents=True, exist_ok=True)
    if runs:
        plot(runs, forecasts, OUT / f"{name}.png")
    result = {
        "benchmark": "scaling_forecast",
        "final_loss_abs_rel_err": err,
        "interval_covers": covers,
        "cross_schedule": crosses,
        "seed_spread_final_loss": seed_spread,
        "forecasts": forecasts,
        "runs": {k: {kk: v for kk, v in r.items() if kk != "lrs"} for k, r in runs.items()},
        "settings": {
            "model": "Llama 2x96, byte-level, 209k parameters",
            "data": "manpages 600 train / 40 held-out docs",
            "steps": steps,
            "eval_every": eval_every,
            "peak_lr": 3e-3,
            "warmup_steps": max(1, steps // 20),
            "batch": "8 x 128 bytes",
            "schedules": SCHEDULES,
            "seeds": seeds,
            "fit_fraction": FIT_FRACTION,
            "ci": CI,
            "n_boot": N_BOOT,
            "n_boot_token_laws": N_BOOT_TOKENS,
            "starts": STARTS,
            "annealing_decay": 0.999,
            "threads": torch.get_num_threads(),
        },  # fmt: skip
        "machine": machine(),
        "train_seconds": float(sum(r["seconds"] for r in runs.values())),
        "seconds": time.time() - t_start,
    }
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1, default=float))
    print(
        f"\nwrote {OUT / f'{name}.json'} ({result['seconds']:.0f} s, training {result['train_seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
