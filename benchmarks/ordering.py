"""Data-ordering benchmarks: ordering speed, the cost of weight averaging, and training from scratch on a natural
text mixture under each order x learning-rate schedule x (no) last-k averaging, paired over seeds.

    OMP_NUM_THREADS=1 python benchmarks/ordering.py                    # train + averaging cost (~30 min, 1 busy core)
    python benchmarks/ordering.py --sections speed                     # order 1M / 10M scores
    python benchmarks/ordering.py --sections train --seeds 0 1 2 3 4   # more seeds (runs already done are kept)
    python benchmarks/ordering.py --sections train --quick             # a smoke run (minutes), results not saved
    python benchmarks/ordering.py --stop_at 10:40                      # start no run that would end after 10:40 UTC

Training protocol (``train``). Text: a natural mixture of the offline corpora (hf_fundamentals.corpora: every
domain on the machine, the same number of documents from each, no synthetic noise). Documents are split three
ways, disjoint: a reference pool, the train pool, and a held-out pool drawn from the same mixture. A 2,048-token
BPE is trained on the reference pool; each domain's documents are joined (``<eos>`` between them) and cut into
rows of 128 tokens, so a row is one domain's text.

Score: the reference model's mean token loss (``model_nll``, hf_fundamentals.ordering.scores.model_nll_scores,
batched and cached) of each train row, the reference model being a small Llama trained on the reference pool.
(The embedded SmolLM2-135M was the intended reference; on this shared 2-core machine it scored one 128-token
text in about 4.5 s, so 960 rows would take over an hour.) Quality = minus that loss, ordered ascending as the
paper orders quality: the run starts on the text the reference finds hardest and ends on the text it finds
easiest.

Arms: orders random, sorting (CL), stair (STR, K=2 L=3 rho=0.225), saw (SAW, K=3 L=2 rho=0.075), the repo
defaults; schedules cosine (transformers' ``cosine_with_min_lr``: warmup, cosine to 10% of the peak) and WSD
(transformers' ``warmup_stable_decay``: warmup, constant, linear decay to 10% over the last 20% of the steps);
each evaluated on its last weights and on the uniform average of 5 snapshots spread over the last 20% of the
steps (hf_fundamentals.ordering.averaging.WeightAverage, the math of ``--hff_average last_k``). Averaging
needs no extra run: the same run is evaluated both ways. A seed sets the model init and the random order;
every arm of a seed sees the same rows, so differences to random are paired. Each run is stored under
benchmarks/runs/ordering/ and a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import machine, table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ordering.json"
PLOT_ORDERS = HERE / "results" / "ordering_orders_mixture.png"
PLOT_CURVES = HERE / "results" / "ordering_curves.png"
RUNS = HERE / "runs" / "ordering"

VOCAB = 2048
SEQ = 128
BATCH = 8
DOCS_PER_DOMAIN = 300
N_TRAIN = 960  # rows of 128 tokens per run: 122,880 tokens, 120 steps
EVAL_ROWS = 96
EVAL_EVERY = 20
LR = 2e-3
WARMUP = 10
MIN_LR_FRACTION = 0.1
WSD_DECAY_FRACTION = 0.2
AVERAGE_K = 5
AVERAGE_WINDOW = 0.2  # the last 20% of the steps
WD = 0.1
REF_STEPS = 150
MODEL = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4)
ORDERS = ("random", "sorting", "stair", "saw")
SCHEDULES = ("cosine", "wsd")
AVERAGING = ("none", "last_k")


def save(sections: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(sections)
    data["machine"] = machine()
    if "speed" in data:
        data["order_10M_seconds"] = data["speed"]["seconds"]["10000000"]["saw"]
    for stale in ("extras", "eval_loss", "corpus", "model", "token_budget"):  # the earlier noisy-GCIDE study
        data.pop(stale, None)
    if "train" in data and "heldout_loss" in data["train"]:
        for key in ("heldout_loss", "best_ordered_minus_random", "tokens_per_run", "seeds"):
            data[key] = data["train"][key]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))


# ------------------------------------------------------------------------------------------------ speed
def section_speed(sizes: tuple[int, ...] = (1_000_000, 10_000_000), repeats: int = 3) -> dict[str, Any]:
    from hf_fundamentals.ordering import METHODS as ALL
    from hf_fundamentals.ordering import order_indices

    rng = np.random.default_rng(0)
    seconds: dict[str, dict[str, float]] = {}
    rows = []
    for n in sizes:
        scores = rng.random(n)
        seconds[str(n)] = {}
        variants = [(m, {}) for m in ALL] + [("saw+jit1000", {"window_size": 1000})]
        for name, kw in variants:
            method = name.split("+")[0]
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                order = order_indices(scores, method, **kw)
                best = min(best, time.perf_counter() - t0)
            assert order.shape == (n,)
            seconds[str(n)][name] = best
            rows.append([f"{n:,}", name, best])
    print(table(rows, ["samples", "method", "seconds (best of 3)"]))
    return {"seconds": seconds, "scores": "uniform float64, seed 0", "repeats": repeats}


# ------------------------------------------------------------------------------------ averaging cost
def section_averaging_cost(params: int = 135_000_000, repeats: int = 3) -> dict[str, Any]:
    """Seconds per update and bytes held by WeightAverage, for tensors shaped like a 135M-parameter model
    (SmolLM2-135M's count), on CPU."""
    from hf_fundamentals.ordering.averaging import WeightAverage

    width = 576
    named = [(f"w{i}", torch.randn(width, width)) for i in range(params // (width * width))]
    count = sum(t.numel() for _, t in named)
    out: dict[str, Any] = {"parameters": count, "threads": torch.get_num_threads()}
    rows = []
    for mode in ("last_k", "ema"):
        avg = WeightAverage(mode, k=repeats + 1, device="cpu")
        avg.update(named, 1)  # the first update allocates the buffer
        best = math.inf
        for step in range(2, repeats + 2):
            t0 = time.perf_counter()
            avg.update(named, step)
            best = min(best, time.perf_counter() - t0)
        out[mode] = {"seconds_per_update": best, "bytes": avg.nbytes()}
        rows.append([mode, best, avg.nbytes() / 2**20])
    print(table(rows, ["mode", f"s / update ({count / 1e6:.0f}M params, CPU)", "MiB held"]))
    return out


# ------------------------------------------------------------------------------------------------ data
def _hf_tokenizer(docs: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>"
    )


def _rows(docs: list[dict[str, str]], tok, limit: int | None, rng: np.random.Generator):
    """Each domain's documents joined by <eos> and cut into SEQ-token rows; ``limit`` rows drawn evenly over the
    mixture (every row equally likely), in a random dataset order."""
    eos = tok.eos_token_id
    rows, domains = [], []
    for domain in sorted({d["domain"] for d in docs}):
        ids: list[int] = []
        for d in docs:
            if d["domain"] == domain:
                ids.extend(tok(d["text"])["input_ids"] + [eos])
        n = len(ids) // SEQ
        rows.append(torch.tensor(ids[: n * SEQ]).view(n, SEQ))
        domains += [domain] * n
    all_rows = torch.cat(rows)
    pick = rng.permutation(len(all_rows))[:limit]
    return all_rows[torch.from_numpy(pick)], [domains[i] for i in pick]


def build_data() -> dict[str, Any]:
    """Reference rows, train rows with their model_nll scores, and held-out rows: the same for every seed."""
    from hf_fundamentals.cache import cache_root
    from hf_fundamentals.corpora import build_corpus
    from hf_fundamentals.ordering.scores import model_nll_scores

    t0 = time.time()
    docs = build_corpus(None, docs_per_domain=DOCS_PER_DOMAIN, seed=0)
    perm = np.random.default_rng(1234).permutation(len(docs))
    n_ref, n_held = int(0.3 * len(docs)), int(0.1 * len(docs))
    ref_docs = [docs[i] for i in perm[:n_ref]]
    held_docs = [docs[i] for i in perm[n_ref : n_ref + n_held]]
    train_docs = [docs[i] for i in perm[n_ref + n_held :]]
    tok = _hf_tokenizer([d["text"] for d in ref_docs])
    rng = np.random.default_rng(7)
    ref, _ = _rows(ref_docs, tok, None, rng)
    train, train_domains = _rows(train_docs, tok, N_TRAIN, rng)
    held, held_domains = _rows(held_docs, tok, EVAL_ROWS, rng)
    if len(train) < N_TRAIN:
        raise RuntimeError(f"only {len(train)} train rows; raise DOCS_PER_DOMAIN")
    print(f"corpus: {len(docs)} documents over {len({d['domain'] for d in docs})} domains; {len(ref)} reference, "
          f"{len(train)} train, {len(held)} held-out rows of {SEQ} tokens ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip

    t0 = time.time()
    reference = make_model(10_000)
    curve = train_plain(reference, ref, REF_STEPS, schedule="cosine")
    texts = [tok.decode(r.tolist()) for r in train]
    nll = model_nll_scores(texts, reference, tok, batch_size=32, max_length=SEQ,
                           cache_dir=cache_root() / "scores")  # fmt: skip
    print(f"reference model: {REF_STEPS} steps on the reference rows (train loss {curve[-1]:.3f}); model_nll of "
          f"{len(texts)} rows in {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    return {"train": train, "eval": held, "nll": nll, "quality": -nll, "domains": train_domains,
            "eval_domains": held_domains, "tokenizer": tok, "n_ref_rows": len(ref)}  # fmt: skip


# ------------------------------------------------------------------------------------------------ train
def make_model(seed: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, num_key_value_heads=MODEL["num_attention_heads"],
                      max_position_embeddings=SEQ, tie_word_embeddings=False, **MODEL)  # fmt: skip
    return LlamaForCausalLM(cfg)


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    named = list(model.named_parameters())
    return torch.optim.AdamW(
        [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": WD},
         {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}],
        lr=LR, betas=(0.9, 0.95), eps=1e-8,
    )  # fmt: skip


def scheduler(opt: torch.optim.Optimizer, name: str, steps: int):
    """transformers' own schedules, as the Trainer builds them from ``lr_scheduler_type`` + kwargs."""
    from transformers import get_scheduler

    if name == "cosine":
        return get_scheduler("cosine_with_min_lr", opt, num_warmup_steps=WARMUP, num_training_steps=steps,
                             scheduler_specific_kwargs={"min_lr_rate": MIN_LR_FRACTION})  # fmt: skip
    if name == "wsd":
        kwargs = {"num_decay_steps": int(WSD_DECAY_FRACTION * steps), "decay_type": "linear",
                  "min_lr_ratio": MIN_LR_FRACTION}  # fmt: skip
        return get_scheduler("warmup_stable_decay", opt, num_warmup_steps=WARMUP, num_training_steps=steps,
                             scheduler_specific_kwargs=kwargs)  # fmt: skip
    raise ValueError(name)


def train_plain(model: torch.nn.Module, rows: torch.Tensor, steps: int, schedule: str) -> list[float]:
    """Train on shuffled batches of ``rows`` (the reference model); returns the train losses."""
    opt, gen = _optimizer(model), torch.Generator().manual_seed(0)
    sched = scheduler(opt, schedule, steps)
    losses = []
    for _ in range(steps):
        batch = rows[torch.randint(len(rows), (BATCH,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        sched.step()
        model.zero_grad(set_to_none=True)
        losses.append(float(loss))
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model, rows: torch.Tensor) -> float:
    model.eval()
    total = sum(float(model(input_ids=c, labels=c).loss) * len(c) for c in rows.split(32))
    model.train()
    return total / len(rows)


def train_run(order_name: str, schedule: str, seed: int, data: dict[str, Any]) -> dict[str, Any]:
    from hf_fundamentals.ordering import order_indices
    from hf_fundamentals.ordering.averaging import WeightAverage

    order = order_indices(data["quality"], order_name, ascending=True, seed=seed)
    model = make_model(seed)
    opt = _optimizer(model)
    steps = len(order) // BATCH
    sched = scheduler(opt, schedule, steps)
    avg = WeightAverage("last_k", k=AVERAGE_K, every=max(1, int(AVERAGE_WINDOW * steps) // AVERAGE_K))
    curve, lrs = [(0, evaluate(model, data["eval"]))], []
    started = time.time()
    for step in range(1, steps + 1):
        batch = data["train"][torch.from_numpy(order[(step - 1) * BATCH : step * BATCH])]
        model(input_ids=batch, labels=batch).loss.backward()
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        model.zero_grad(set_to_none=True)
        if avg.wants(step, steps):
            avg.update(model.named_parameters(), step)
        if step % EVAL_EVERY == 0 or step == steps:
            curve.append((step, evaluate(model, data["eval"])))
    averaged = copy.deepcopy(model)
    avg.copy_to(averaged.named_parameters())
    return {"order": order_name, "schedule": schedule, "seed": seed, "steps": steps,
            "loss": {"none": curve[-1][1], "last_k": evaluate(averaged, data["eval"])},
            "averaged_steps": avg.steps, "curve": curve, "lr_first_last": [lrs[0], max(lrs), lrs[-1]],
            "seconds": time.time() - started}  # fmt: skip


def _paired(values: dict[int, float], base: dict[int, float], seeds: list[int]) -> dict[str, Any]:
    vals = np.array([values[s] for s in seeds])
    diffs = vals - np.array([base[s] for s in seeds])
    n = len(seeds)
    se = float(np.std(diffs, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(vals.mean()), "std": float(np.std(vals, ddof=1)) if n > 1 else float("nan"),
            "minus_random_mean": float(diffs.mean()), "minus_random_se": se,
            "seeds": vals.tolist()}  # fmt: skip


def section_train(seeds: list[int], quick: bool = False, stop_at: float = math.inf) -> dict[str, Any] | None:
    from hf_fundamentals.ordering import order_indices
    from hf_fundamentals.ordering.guidelines import guideline_metrics

    data = build_data()
    by_domain = {
        d: float(np.mean(data["nll"][[x == d for x in data["domains"]]]))
        for d in sorted(set(data["domains"]))
    }
    print("reference loss by domain (train rows): " + ", ".join(f"{d} {v:.2f}" for d, v in by_domain.items()))
    share = {d: data["domains"].count(d) / len(data["domains"]) for d in by_domain}
    guidance = {o: guideline_metrics(order_indices(data["quality"], o, seed=seeds[0]), data["quality"], BATCH).to_dict()
                for o in ORDERS}  # fmt: skip
    if not quick:
        _plot_orders(data, seeds[0])
    RUNS.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    done_seeds = []
    last_seconds = 0.0
    for seed in seeds:
        complete = True
        for schedule in SCHEDULES:
            for order_name in ORDERS:
                path = RUNS / f"{order_name}-{schedule}-seed{seed}.json"
                if path.is_file() and not quick:
                    run = json.loads(path.read_text())
                elif time.time() + last_seconds > stop_at:  # it would not end in time
                    complete = False
                    continue
                else:
                    run = train_run(order_name, schedule, seed, data)
                    last_seconds = run["seconds"]
                    if not quick:
                        path.write_text(json.dumps(run))
                runs.append(run)
                print(f"  seed {seed} {schedule:6s} {order_name:8s} held-out {run['loss']['none']:.4f}, "
                      f"last-{AVERAGE_K} average {run['loss']['last_k']:.4f} ({run['seconds']:.0f} s)", flush=True)  # fmt: skip
        if complete:
            done_seeds.append(seed)
    if len(done_seeds) < len(seeds):
        print(f"--stop_at reached: seeds {done_seeds} are complete; a rerun continues with the stored runs")
        seeds = done_seeds
        runs = [r for r in runs if r["seed"] in seeds]
    if len(seeds) < 2:
        print("fewer than 2 complete seeds: no paired table")
        return None

    loss = {(r["order"], r["schedule"], a, r["seed"]): r["loss"][a] for r in runs for a in AVERAGING}
    heldout: dict[str, Any] = {}
    rows = []
    best = (math.inf, None)
    for o in ORDERS:
        heldout[o] = {}
        for sch in SCHEDULES:
            heldout[o][sch] = {}
            for a in AVERAGING:
                # paired against random under the same schedule and averaging
                entry = _paired({s: loss[(o, sch, a, s)] for s in seeds},
                                {s: loss[("random", sch, a, s)] for s in seeds}, seeds)  # fmt: skip
                heldout[o][sch][a] = entry
                if o != "random" and entry["minus_random_mean"] < best[0]:
                    best = (entry["minus_random_mean"], f"{o}/{sch}/{a}", entry["minus_random_se"])
                rows.append([o, sch, a, entry["mean"], entry["minus_random_mean"], entry["minus_random_se"]])
    print(table(rows, ["order", "schedule", "averaging", "held-out loss", "minus random (paired)", "SE"]))
    bar = max(0.01, 2 * best[2]) if best[1] else float("nan")
    verdict = bool(best[1] and -best[0] > bar)
    print(
        f"best ordered arm: {best[1]} minus random {best[0]:+.4f} (SE {best[2]:.4f}); beats random by more "
        f"than max(0.01, 2 SE) = {bar:.4f}: {'yes' if verdict else 'no'}"
    )
    base = {
        (sch, a): np.mean([loss[("random", sch, a, s)] for s in seeds])
        for sch in SCHEDULES
        for a in AVERAGING
    }
    effect = {f"{sch}": float(np.mean([loss[("random", sch, "last_k", s)] - loss[("random", sch, "none", s)]
                                       for s in seeds])) for sch in SCHEDULES}  # fmt: skip
    if not quick:
        _plot_curves(runs, seeds)
    steps = N_TRAIN // BATCH
    return {
        "heldout_loss": heldout,
        "best_ordered_minus_random": {
            "arm": best[1],
            "mean": best[0],
            "se": best[2],
            "bar": bar,
            "beats_random": verdict,
        },  # fmt: skip
        "averaging_minus_last_weights_random": effect,
        "random_mean": {f"{sch}/{a}": float(v) for (sch, a), v in base.items()},
        "tokens_per_run": N_TRAIN * SEQ,
        "seeds": seeds,
        "corpus": f"hf_fundamentals.corpora, every domain, {DOCS_PER_DOMAIN} documents each (seed 0); documents "
        f"split 30% reference / 60% train / 10% held-out; rows of {SEQ} tokens, one domain each; {N_TRAIN} train "
        f"rows, {EVAL_ROWS} held-out rows",
        "train_domain_share": share,
        "score": f"model_nll under a reference Llama ({MODEL}) trained {REF_STEPS} steps on {data['n_ref_rows']} "
        "reference rows; quality = -model_nll, ordered ascending (hardest first, easiest last)",
        "reference_nll_by_domain": by_domain,
        "model": f"LlamaForCausalLM {MODEL}, vocab {VOCAB} (BPE), from scratch",
        "optimizer": {
            "name": "AdamW",
            "lr": LR,
            "betas": [0.9, 0.95],
            "weight_decay": WD,
            "batch": BATCH,
            "steps": steps,
            "warmup": WARMUP,
        },  # fmt: skip
        "schedules": {
            "cosine": f"cosine_with_min_lr, min_lr_rate {MIN_LR_FRACTION}",
            "wsd": f"warmup_stable_decay, linear decay over the last {WSD_DECAY_FRACTION:.0%} of the "
            f"steps to {MIN_LR_FRACTION} of the peak",
        },  # fmt: skip
        "averaging": f"last_k: uniform average of {AVERAGE_K} snapshots over the last {AVERAGE_WINDOW:.0%} of the steps",
        "guidelines_seed0": guidance,
        "seconds_total": float(sum(r["seconds"] for r in runs)),
        "runs": runs,
    }


def _plot_orders(data: dict[str, Any], seed: int) -> None:
    from hf_fundamentals.integrations.ordering.datasets import plot_orders
    from hf_fundamentals.ordering import order_indices

    orders = {o: order_indices(data["quality"], o, seed=seed) for o in ORDERS}
    plot_orders(orders, data["quality"], path=PLOT_ORDERS, domains=data["domains"],
                title="Quality (minus the reference model's loss) along each training order; colour: corpus")  # fmt: skip


def _plot_curves(runs: list[dict[str, Any]], seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCHEDULES), figsize=(12, 4.2), sharey=True)
    colors = dict(zip(ORDERS, ("black", "tab:blue", "tab:orange", "tab:green"), strict=True))
    for ax, sch in zip(axes, SCHEDULES, strict=True):
        for o in ORDERS:
            mine = [r for r in runs if r["order"] == o and r["schedule"] == sch and r["seed"] in seeds]
            if not mine:
                continue
            steps = [s for s, _ in mine[0]["curve"]]
            mean = np.mean([[v for _, v in r["curve"]] for r in mine], axis=0)
            ax.plot(steps[1:], mean[1:], color=colors[o], label=o)
            ax.scatter([steps[-1] + 4], [np.mean([r["loss"]["last_k"] for r in mine])], color=colors[o], marker="*",
                       s=60, zorder=3)  # fmt: skip
        ax.set_title(f"{sch} (star: last-{AVERAGE_K} average)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"held-out loss (mean of {len(seeds)} seeds)")
    axes[0].legend()
    lo = min(min(v for _, v in r["curve"][2:]) for r in runs) - 0.05
    hi = max(r["curve"][2][1] for r in runs) + 0.05
    axes[0].set_ylim(lo, hi)
    fig.tight_layout()
    fig.savefig(PLOT_CURVES, dpi=110)
    plt.close(fig)


def main() -> None:
    global N_TRAIN, DOCS_PER_DOMAIN, REF_STEPS, EVAL_EVERY
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="train,averaging_cost")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed pair, nothing saved")
    parser.add_argument("--stop_at", default=None,
                        help="UTC HH:MM: start no training run that would end later; the table uses complete seeds")  # fmt: skip
    args = parser.parse_args()
    sections = args.sections.split(",")
    out: dict[str, Any] = {}
    if args.quick:
        N_TRAIN, DOCS_PER_DOMAIN, REF_STEPS, EVAL_EVERY = 160, 40, 10, 5
    if "speed" in sections:
        out["speed"] = section_speed()
    if "train" in sections:
        seeds = args.seeds[:2] if args.quick else args.seeds
        stop_at = math.inf
        if args.stop_at:
            import datetime as dt

            hh, mm = (int(x) for x in args.stop_at.split(":"))
            now = dt.datetime.now(dt.UTC)
            stop_at = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        train = section_train(seeds, quick=args.quick, stop_at=stop_at)
        if train is not None:
            out["train"] = train
    if "averaging_cost" in sections:
        out["averaging_cost"] = section_averaging_cost(params=5_000_000 if args.quick else 135_000_000)
    if args.quick:
        print("quick run: nothing saved")
        return
    save(out)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
