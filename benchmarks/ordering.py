"""STR/SAW ordering benchmarks: ordering speed, and training from scratch under each order at equal tokens.

    python benchmarks/ordering.py                         # speed + train (3 seeds, ~30 min on 2 CPU cores)
    python benchmarks/ordering.py --sections speed
    python benchmarks/ordering.py --sections train --seeds 0 1 2 3 4
    python benchmarks/ordering.py --sections extras       # CL and SAW with window jitter (after train)

Training protocol (``train``): a Llama-shaped model (4 layers, width 192, 2048-token BPE trained on clean
text) trained from scratch for one epoch over the same 3,600 samples of 128 tokens (460,800 tokens) under each
order: random, sorting (CL), folding (FO-5), zigzag (ZIG-5), stair (STR, K=2 L=3 rho=0.225) and saw (SAW, K=3
L=2 rho=0.075), the repo defaults. The samples are GCIDE dictionary text (Debian dict-gcide, through
hf_fundamentals.corpora); a third are clean and the rest were degraded by replacing a share of their
characters (3%, 8%, 15%, 30%) with random printable characters. The grade is never shown to the model or
to the ordering: the score is each sample's zlib compression ratio (hf_fundamentals.ordering.scores), ordered
*descending* so that training moves from the noisiest-looking to the most regular text, as a quality
curriculum ends on the best data. The measure is the loss on held-out clean text after the epoch. AdamW lr
1.5e-3 (the tuned AdamW lr of benchmarks/optim.py on this model and corpus), 20 warmup steps, cosine to 10%,
batch 8. A seed changes the model init, which documents are drawn and which grade each gets; every method
sees the same samples for a seed, so differences are paired.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import machine, table

RESULTS = Path(__file__).resolve().parent / "results" / "ordering.json"
PLOT = Path(__file__).resolve().parent / "results" / "ordering_orders.png"
VOCAB = 2048
SEQ = 128
BATCH = 8
N_SAMPLES = 3600
EVAL_ROWS = 64
EVAL_EVERY = 50
LR = 1.5e-3
WARMUP = 20
MIN_LR_FRACTION = 0.1
WD = 0.1
GRADES = (0.0, 0.0, 0.03, 0.08, 0.15, 0.30)
METHODS = ("random", "sorting", "folding", "zigzag", "stair", "saw")


def save(section: str, payload: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = payload
    data["machine"] = machine()
    if "speed" in data:
        data["order_10M_seconds"] = data["speed"]["seconds"]["10000000"]["saw"]
    if "train" in data:
        train = data["train"]
        data["eval_loss"] = train["eval_loss"]
        for key in ("corpus", "model", "token_budget"):
            data[key] = train[key]
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


# ------------------------------------------------------------------------------------------------ train
def corrupt(text: str, rate: float, rng: np.random.Generator) -> str:
    """Replace a share ``rate`` of the characters with random printable ASCII characters."""
    if rate <= 0:
        return text
    chars = np.array(list(text))
    hit = rng.random(len(chars)) < rate
    chars[hit] = [chr(c) for c in rng.integers(33, 127, int(hit.sum()))]
    return "".join(chars.tolist())


_TOKENIZER_CACHE: dict[str, Any] = {}


def tokenizer(docs: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if "tok" not in _TOKENIZER_CACHE:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB,
            special_tokens=["<unk>", "<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(docs, trainer)
        _TOKENIZER_CACHE["tok"] = tok
    return _TOKENIZER_CACHE["tok"]


def build_data(seed: int) -> dict[str, Any]:
    """Samples of 128 tokens, each from documents of one hidden grade; held-out clean rows for evaluation."""
    from hf_fundamentals.corpora import iter_documents
    from hf_fundamentals.ordering.scores import compression_ratio

    docs = list(iter_documents("dictionary"))
    fixed = np.random.default_rng(1234).permutation(len(docs))
    held = [docs[i] for i in fixed[:600]]  # the same held-out documents for every seed
    pool = [docs[i] for i in fixed[600:]]
    tok = tokenizer([pool[i] for i in np.random.default_rng(99).permutation(len(pool))[:6000]])
    eos = tok.token_to_id("<eos>")
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(pool))
    rows, grades, texts = [], [], []
    cursor = 0
    per_grade = N_SAMPLES // len(GRADES)
    for g_index, rate in enumerate(GRADES):
        ids: list[int] = []
        pieces: list[str] = []
        while len(ids) < per_grade * SEQ:
            text = corrupt(pool[picked[cursor]], rate, rng)
            cursor += 1
            pieces.append(text)
            ids.extend(tok.encode(text).ids + [eos])
        block = torch.tensor(ids[: per_grade * SEQ]).view(per_grade, SEQ)
        rows.append(block)
        grades += [g_index] * per_grade
        texts += [tok.decode(r.tolist()) for r in block]
    train = torch.cat(rows)
    ids = []
    for text in held:
        ids.extend(tok.encode(text).ids + [eos])
    eval_rows = torch.tensor(ids[: EVAL_ROWS * SEQ]).view(EVAL_ROWS, SEQ)
    scores = np.array([compression_ratio(t) for t in texts])
    return {"train": train, "eval": eval_rows, "scores": scores, "grades": np.array(grades), "texts": texts}


def make_model(seed: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=SEQ, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


@torch.no_grad()
def evaluate(model, rows: torch.Tensor) -> float:
    model.eval()
    total = sum(float(model(input_ids=c, labels=c).loss) * len(c) for c in rows.split(16))
    model.train()
    return total / len(rows)


def train_run(method: str, seed: int, data: dict[str, Any], **spec: Any) -> dict[str, Any]:
    from hf_fundamentals.ordering import order_indices

    order = order_indices(data["scores"], method, ascending=False, seed=seed, **spec)
    model = make_model(seed)
    named = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": WD},
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=LR, betas=(0.9, 0.95), eps=1e-8,
    )  # fmt: skip
    steps = len(order) // BATCH

    def lr_factor(step: int) -> float:
        if step < WARMUP:
            return (step + 1) / WARMUP
        cos = 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (steps - WARMUP)))
        return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cos

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    curve = []
    started = time.time()
    for step in range(steps):
        batch = data["train"][torch.from_numpy(order[step * BATCH : (step + 1) * BATCH])]
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        sched.step()
        model.zero_grad(set_to_none=True)
        if (step + 1) % EVAL_EVERY == 0 or step + 1 == steps:
            curve.append((step + 1, evaluate(model, data["eval"])))
    return {"method": method, "seed": seed, "final_eval_loss": curve[-1][1], "curve": curve,
            "seconds": time.time() - started}  # fmt: skip


def section_train(seeds: list[int]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from hf_fundamentals.ordering import order_indices
    from hf_fundamentals.ordering.guidelines import guideline_metrics

    runs: list[dict[str, Any]] = []
    score_vs_grade = []
    guidance: dict[str, Any] = {}
    for seed in seeds:
        data = build_data(seed)
        rho = float(spearmanr(data["scores"], data["grades"]).statistic)
        score_vs_grade.append(rho)
        print(
            f"seed {seed}: {len(data['train'])} samples, Spearman(score, hidden grade) = {rho:.3f}",
            flush=True,
        )
        if seed == seeds[0]:
            for method in METHODS:
                order = order_indices(data["scores"], method, ascending=False, seed=seed)
                guidance[method] = guideline_metrics(order, -data["scores"], BATCH).to_dict()
            _plot_orders(data)
        for method in METHODS:
            run = train_run(method, seed, data)
            runs.append(run)
            print(f"  {method:8s} seed {seed}: held-out clean loss {run['final_eval_loss']:.4f} "
                  f"({run['seconds']:.0f} s)", flush=True)  # fmt: skip

    eval_loss: dict[str, Any] = {}
    by = {(r["method"], r["seed"]): r["final_eval_loss"] for r in runs}
    rows = []
    for method in METHODS:
        vals = [by[(method, s)] for s in seeds]
        diffs = [by[(method, s)] - by[("random", s)] for s in seeds]
        eval_loss[method] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)), "seeds": vals}
        spread = float(np.std([by[("random", s)] for s in seeds], ddof=1))
        entry = {
            "paired_diff_vs_random_mean": float(np.mean(diffs)),
            "paired_diff_vs_random_std": float(np.std(diffs, ddof=1)),
            "beats_random_by_more_than_seed_spread": bool(-np.mean(diffs) > spread),
        }
        eval_loss[method].update(entry)
        rows.append([method, eval_loss[method]["mean"], eval_loss[method]["std"], entry["paired_diff_vs_random_mean"],
                     entry["paired_diff_vs_random_std"], "yes" if entry["beats_random_by_more_than_seed_spread"]
                     else "no"])  # fmt: skip
    print(
        table(
            rows,
            ["method", "clean loss mean", "std", "minus random (paired)", "std", "beats random > spread"],
        )
    )
    return {
        "eval_loss": eval_loss,
        "corpus": f"GCIDE dictionary (dict-gcide); {N_SAMPLES} samples of {SEQ} tokens, grades {list(GRADES)} "
        "(share of characters replaced), score = zlib compression ratio, ordered descending",
        "model": "LlamaForCausalLM 4 layers, width 192, 4 heads, ffn 512, vocab 2048 (BPE), from scratch",
        "token_budget": N_SAMPLES * SEQ,
        "optimizer": {
            "name": "AdamW",
            "lr": LR,
            "warmup": WARMUP,
            "schedule": "cosine to 10%",
            "batch": BATCH,
            "weight_decay": WD,
        },  # fmt: skip
        "seeds": seeds,
        "spearman_score_vs_hidden_grade": score_vs_grade,
        "guidelines_seed0": guidance,
        "runs": runs,
    }


EXTRAS = {"sorting+jit400": ("sorting", {"window_size": 400}), "saw+jit400": ("saw", {"window_size": 400})}


def section_extras(seeds: list[int]) -> dict[str, Any]:
    """Window jitter (G4, local diversity) on top of CL and SAW: 400 samples = 50 steps, 11% of the run."""
    data_runs: dict[str, Any] = {}
    base = json.loads(RESULTS.read_text())["train"] if RESULTS.exists() else None
    rows = []
    for name, (method, spec) in EXTRAS.items():
        vals = []
        for seed in seeds:
            run = train_run(method, seed, build_data(seed), **spec)
            vals.append(run["final_eval_loss"])
            print(f"  {name:15s} seed {seed}: held-out clean loss {run['final_eval_loss']:.4f}", flush=True)
        entry: dict[str, Any] = {
            "mean": float(np.mean(vals)),
            "std": float(np.std(vals, ddof=1)),
            "seeds": vals,
        }
        if base and base["seeds"] == seeds:
            diffs = [v - r for v, r in zip(vals, base["eval_loss"]["random"]["seeds"], strict=True)]
            entry["paired_diff_vs_random_mean"] = float(np.mean(diffs))
            entry["paired_diff_vs_random_std"] = float(np.std(diffs, ddof=1))
        data_runs[name] = entry
        rows.append(
            [name, entry["mean"], entry["std"], entry.get("paired_diff_vs_random_mean", float("nan"))]
        )
    print(table(rows, ["order", "clean loss mean", "std", "minus random (paired)"]))
    return {"eval_loss": data_runs, "seeds": seeds, "window_size": 400}


def _plot_orders(data: dict[str, Any]) -> None:
    from hf_fundamentals.integrations.ordering.datasets import plot_orders
    from hf_fundamentals.ordering import order_indices

    orders = {m: order_indices(data["scores"], m, ascending=False) for m in METHODS}
    plot_orders(orders, -data["scores"], path=PLOT, domains=[f"grade {g}" for g in data["grades"]],
                title="Quality proxy (minus compression ratio) along each training order; colour: hidden "
                "corruption grade (0 = clean)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="speed,train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    sections = args.sections.split(",")
    if "speed" in sections:
        save("speed", section_speed())
    if "train" in sections:
        save("train", section_train(args.seeds))
    if "extras" in sections:
        save("extras", section_extras(args.seeds))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
