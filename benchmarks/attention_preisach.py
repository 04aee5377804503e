"""Benchmark: Preisach attention (PAL, arXiv 2605.23603) — forward-time scaling against softmax sdpa, and
synthetic tasks where a 1-layer Preisach model meets 1-, 2- and 4-layer softmax models (trained at length L,
tested at 4L).

    python benchmarks/attention_preisach.py             # about 20 min on 1 CPU core
    python benchmarks/attention_preisach.py --quick     # smoke run (~2 min): short lengths, few steps -> preisach_quick.json
    python benchmarks/attention_preisach.py --report    # reprint the tables from the results file

Everything runs on CPU, one torch thread by default (``--threads`` for the timings: on a shared 2-core machine two
threads stalled on OpenMP barriers whenever another job held a core, adding ~0.2 s to every call; one thread gave
steady times).

**Scaling.** One forward of the reference layer ``PreisachAttention`` (batch 1, 4 heads, head dim 64, 32 relays per
head, ``relay_mode="hard"``, no grad; the drive projection and read-out included) against
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` on the same q/k/v, float32, n from 16 to 256k
(minimum of up to 7 repeats after a warm-up; the minimum because the machine is shared). sdpa stops once the next doubling would take > 60 s (4x the
last time). ``time_scaling_exponent`` is the least-squares slope of log time on log n for n >= 8k (density
variant; the value variant, which sorts the drive, is reported beside it). ``crossover_length_vs_sdpa``: the n
from which on Preisach stays faster than sdpa, log(t_preisach / t_sdpa) = 0 interpolated in log n between the
two measured lengths around the last sign change; null if there is none in the range.

**Tasks** (inputs drawn fresh each step from a seeded generator; evaluation on 512 held-out sequences of length L and
4L from another seed). All models: token embedding (no positional encoding at all: causal masking is the only
order signal, "NoPE", the setting in which softmax attention length-generalises best; a BOS token starts every
sequence), pre-LayerNorm residual blocks (attention + GELU MLP, width 64, 4 heads of 16), a linear head. The
Preisach block replaces softmax by ``PreisachAttention`` on the block's own q/k/v projections (32 relays per head,
straight-through relays with the temperature annealed geometrically 1 -> 0.02; the hard forward is exact); the
softmax blocks call ``scaled_dot_product_attention(is_causal=True)``. AdamW lr 3e-3, weight decay 0.01, cosine
decay with 30 warm-up steps, batch 32, ``--steps`` steps (default 600), gradient clip 1.

* ``range``: x_t in {0..31}, a random walk (steps -1/0/+1, start uniform, reflected at the ends); target at every
  token: max(x_<=t) - min(x_<=t), regressed (MSE on the value / 8); a token is correct when |prediction - target|
  < 0.5. Reported: accuracy over all tokens of the length-L and length-4L sequences. At 4L the ranges are larger
  than most seen in training: that is the length-generalisation test.
* ``excursion``: the same walk with a RESET token at each position with probability 0.05 (the walk restarts
  uniformly after it); target: max - min of the levels since the last RESET (0 at a RESET), same metric.
* ``dyck``: Dyck-1 prefixes with depth bounded by 8 ("(" forced at depth 0, ")" at depth 8, otherwise 50/50);
  target: the depth after the token, same metric. Depth is a count, not rate-independent: Preisach should lose.
* ``retrieval`` (random access): 32 (key, value) pairs (keys distinct out of 64, values out of 16; one token
  embeds a pair as E_key + E_value), then a query key; target: its value (16 classes, cross-entropy on the
  query only); accuracy at the query. Preisach cannot do content-addressed lookup (arXiv 2605.23603, claim
  (ii) of the abstract): expected near chance (1/16). Preisach runs with the value variant here (each +1 relay
  reads the value at its anchor).

Headline keys: ``range_task_acc_at_4x_length`` (Preisach), ``softmax_range_task_acc_at_4x_length`` (the best of the
softmax models at 4L), ``retrieval_task_acc`` {preisach, softmax: best softmax}.

**Hybrid on a real model** (``--hybrid``, on by default, skipped by ``--quick``): the embedded SmolLM2-135M with
Preisach (density variant, key-driven, 32 relays) in layers 10 and 20 of 30 via ``add_preisach`` (replacing softmax
there), its parameters alone trained 30 steps (AdamW 1e-3, batch 2 x 256 tokens of /usr/share/common-licenses,
the rest of the model frozen); perplexity on 8 held-out windows for the untouched model, right after the swap, and
after training. About 10 min on one core: a smoke-scale number, not a claim.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from report import machine, table  # noqa: E402

from hf_fundamentals.attention.preisach import (  # noqa: E402
    PreisachAttention,
    geometric_temperature,
    preisach_attention,
)

RESULTS = ROOT / "benchmarks" / "results" / "attention_preisach.json"
PLOT = ROOT / "benchmarks" / "results" / "attention_preisach.png"

LEVELS = 32
RESET = LEVELS  # token id of RESET in the excursion task
BOS_LEVEL = LEVELS + 1
DYCK_MAX = 8
N_KEYS, N_VALS, N_PAIRS = 64, 16, 32


# ------------------------------------------------------------------------------------------------- scaling
def _time(fn, args: tuple, reps: int) -> float:
    fn(*args)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
        if times[-1] > 1.0:
            break
    return float(min(times))


def _crossover(ns: list[int], tp: list[float], ts: list[float]) -> float | None:
    """The n from which on Preisach stays faster: with i the first index such that t_p < t_s at i and at every
    larger measured n, interpolate log(t_p/t_s) = 0 in log n between ns[i-1] and ns[i]. None if Preisach is not
    faster at the largest n, or already faster at the smallest (no crossover inside the range)."""
    lr = [math.log(p / s) for p, s in zip(tp, ts, strict=True)]
    i = len(lr)
    while i > 0 and lr[i - 1] < 0:
        i -= 1
    if i == len(lr) or i == 0:
        return None
    f = lr[i - 1] / (lr[i - 1] - lr[i])
    return float(math.exp(math.log(ns[i - 1]) + f * (math.log(ns[i]) - math.log(ns[i - 1]))))


def _slope(ns: list[int], ts: list[float], n_min: int) -> float | None:
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts, strict=True) if n >= n_min]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _sdpa_causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def section_scaling(quick: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    heads, d, relays = 4, 64, 32
    ns = [2**k for k in range(4, 15 if quick else 19)]  # 16 .. 16k (quick) or 256k
    layers = {
        v: PreisachAttention(heads, d, relays, variant=v, relay_mode="hard", seed=0).eval()
        for v in ("density", "value")
    }
    res: dict[str, list] = {"n": [], "preisach_density_s": [], "preisach_value_s": [], "sdpa_s": []}
    sdpa_on = True
    g = torch.Generator().manual_seed(0)
    for n in ns:
        q, k, v = (torch.randn(1, heads, n, d, generator=g) for _ in range(3))
        reps = 7
        with torch.no_grad():
            t_d = _time(layers["density"], (q, k, v), reps)
            t_v = _time(layers["value"], (q, k, v), reps)
            t_s = None
            if sdpa_on:
                t_s = _time(_sdpa_causal, (q, k, v), reps)
                if 4 * t_s > 60.0:
                    sdpa_on = False
        res["n"].append(n)
        res["preisach_density_s"].append(t_d)
        res["preisach_value_s"].append(t_v)
        res["sdpa_s"].append(t_s)
        print(
            f"  n={n:>7}  preisach density {t_d:.4g}s  value {t_v:.4g}s  sdpa {t_s if t_s is None else f'{t_s:.4g}s'}"
        )
    both = [i for i, s in enumerate(res["sdpa_s"]) if s is not None]
    n_min = 1024 if quick else 8192
    out = {
        "settings": {
            "batch": 1,
            "heads": heads,
            "head_dim": d,
            "relays": relays,
            "dtype": "float32",
            "threads": threads,
            "relay_mode": "hard",
            "fit_min_n": n_min,
            "note": "wall-clock on a shared 2-core machine (other jobs may run): expect a few % noise",
        },  # fmt: skip
        **res,
        "time_scaling_exponent": _slope(res["n"], res["preisach_density_s"], n_min),
        "time_scaling_exponent_value_variant": _slope(res["n"], res["preisach_value_s"], n_min),
        "sdpa_scaling_exponent": _slope([res["n"][i] for i in both], [res["sdpa_s"][i] for i in both], n_min),
        "crossover_length_vs_sdpa": _crossover(
            [res["n"][i] for i in both],
            [res["preisach_density_s"][i] for i in both],
            [res["sdpa_s"][i] for i in both],
        ),
        "crossover_length_vs_sdpa_value_variant": _crossover(
            [res["n"][i] for i in both],
            [res["preisach_value_s"][i] for i in both],
            [res["sdpa_s"][i] for i in both],
        ),
    }
    torch.set_num_threads(1)
    return out


# --------------------------------------------------------------------------------------------------- tasks
def walk(g: torch.Generator, b: int, n: int, reset_p: float = 0.0) -> Tensor:
    """Levels in {0..LEVELS-1}: steps -1/0/+1, reflected at the ends; RESET tokens (then a fresh start)."""
    x = torch.empty(b, n, dtype=torch.long)
    cur = torch.randint(0, LEVELS, (b,), generator=g)
    steps = torch.randint(-1, 2, (b, n), generator=g)
    resets = torch.rand(b, n, generator=g) < reset_p
    fresh = torch.randint(0, LEVELS, (b, n), generator=g)
    after_reset = torch.zeros(b, dtype=torch.bool)
    for t in range(n):
        nxt = cur + steps[:, t]
        nxt = torch.where(nxt < 0, 1, torch.where(nxt >= LEVELS, LEVELS - 2, nxt))
        nxt = torch.where(after_reset, fresh[:, t], nxt)
        x[:, t] = torch.where(resets[:, t], RESET, nxt)
        cur = torch.where(resets[:, t], cur, nxt)
        after_reset = resets[:, t]
    return x


def range_targets(x: Tensor) -> Tensor:
    """max - min of the levels since the last RESET (the whole prefix if none); 0 at a RESET."""
    b, n = x.shape
    y = torch.zeros(b, n)
    hi = torch.full((b,), -1, dtype=torch.long)
    lo = torch.full((b,), LEVELS, dtype=torch.long)
    for t in range(n):
        r = x[:, t] == RESET
        hi = torch.where(r, -1, torch.maximum(hi, x[:, t]))
        lo = torch.where(r, LEVELS, torch.minimum(lo, x[:, t]))
        y[:, t] = torch.where(r, 0, hi - lo).float()
    return y


def make_batch(task: str, g: torch.Generator, b: int, n: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """(tokens [b, 1+n], value ids [b, 1+n] or None, targets): BOS first. Regression targets [b, n] (per token
    after BOS) or class targets [b] (retrieval)."""
    if task in ("range", "excursion"):
        x = walk(g, b, n, reset_p=0.05 if task == "excursion" else 0.0)
        y = range_targets(x)
    elif task == "dyck":
        x = torch.empty(b, n, dtype=torch.long)
        depth = torch.zeros(b, dtype=torch.long)
        y = torch.empty(b, n)
        coin = torch.rand(b, n, generator=g) < 0.5
        for t in range(n):
            opn = torch.where(depth == 0, True, torch.where(depth == DYCK_MAX, False, coin[:, t]))
            depth = depth + torch.where(opn, 1, -1)
            x[:, t] = torch.where(opn, 0, 1)
            y[:, t] = depth.float()
    elif task == "retrieval":
        pairs = n - 1
        keys = torch.argsort(torch.rand(b, N_KEYS, generator=g), dim=-1)[:, :pairs]
        vals = torch.randint(0, N_VALS, (b, pairs), generator=g)
        pick = torch.randint(0, pairs, (b,), generator=g)
        qk = keys.gather(1, pick[:, None])
        x = torch.cat([keys, qk], 1)
        vid = torch.cat([vals, torch.full((b, 1), N_VALS)], 1)  # N_VALS = "no value" (the query)
        y = vals.gather(1, pick[:, None])[:, 0]
        bos = torch.full((b, 1), N_KEYS)
        return torch.cat([bos, x], 1), torch.cat([torch.full((b, 1), N_VALS), vid], 1), y
    else:
        raise ValueError(task)
    bos = torch.full((b, 1), BOS_LEVEL)
    return torch.cat([bos, x], 1), None, y


class Block(nn.Module):
    def __init__(self, d: int, heads: int, kind: str, variant: str, relays: int, seed: int) -> None:
        super().__init__()
        self.heads, self.kind = heads, kind
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.pal = (
            PreisachAttention(heads, d // heads, relays, variant=variant, relay_mode="ste", seed=seed)
            if kind == "preisach"
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.pal is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = self.pal(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


class Net(nn.Module):
    """Embedding -> blocks -> LayerNorm -> head; no positional encoding (NoPE)."""

    def __init__(
        self, task: str, kind: str, layers: int, d: int = 64, heads: int = 4, relays: int = 32, seed: int = 0
    ):
        super().__init__()
        torch.manual_seed(seed)
        self.task = task
        vocab = N_KEYS + 1 if task == "retrieval" else LEVELS + 2
        self.emb = nn.Embedding(vocab, d)
        self.val_emb = nn.Embedding(N_VALS + 1, d) if task == "retrieval" else None
        variant = "value" if task == "retrieval" else "density"
        self.blocks = nn.ModuleList(Block(d, heads, kind, variant, relays, seed + i) for i in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, N_VALS if task == "retrieval" else 1)

    def forward(self, x: Tensor, vid: Tensor | None) -> Tensor:
        h = self.emb(x)
        if self.val_emb is not None:
            h = h + self.val_emb(vid)
        for blk in self.blocks:
            h = blk(h)
        out = self.head(self.ln(h))
        if self.task == "retrieval":
            return out[:, -1]  # logits at the query
        return out[:, 1:, 0] * 8.0  # regression, per token after BOS (targets ~ 0..31)

    def set_temperature(self, t: float) -> None:
        for blk in self.blocks:
            if blk.pal is not None:
                blk.pal.temperature = t


def loss_and_correct(task: str, pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if task == "retrieval":
        return F.cross_entropy(pred, y), (pred.argmax(-1) == y).float()
    return F.mse_loss(pred / 8.0, y / 8.0), ((pred - y).abs() < 0.5).float()


def evaluate(model: Net, task: str, n: int, seed: int, count: int = 512, bs: int = 128) -> float:
    g = torch.Generator().manual_seed(10_000 + seed)
    correct = []
    model.eval()
    with torch.no_grad():
        for _ in range(count // bs):
            x, vid, y = make_batch(task, g, bs, n)
            correct.append(loss_and_correct(task, model(x, vid), y)[1].flatten())
    model.train()
    return float(torch.cat(correct).mean())


def train_one(task: str, kind: str, layers: int, length: int, steps: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = Net(task, kind, layers, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warm = 30
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    g = torch.Generator().manual_seed(seed)
    n_train = length if task != "retrieval" else N_PAIRS + 1
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        model.set_temperature(geometric_temperature(step, steps, start=1.0, end=0.02))
        x, vid, y = make_batch(task, g, 32, n_train)
        loss, _ = loss_and_correct(task, model(x, vid), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    out = {
        "final_train_loss": float(np.mean(losses[-20:])),
        "train_seconds": train_s,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if task == "retrieval":
        out["acc"] = evaluate(model, task, N_PAIRS + 1, seed)
    else:
        out["acc_at_L"] = evaluate(model, task, length, seed)
        out["acc_at_4L"] = evaluate(model, task, 4 * length, seed)
    return out


def section_tasks(quick: bool, steps: int, length: int, seeds: list[int]) -> dict[str, Any]:
    torch.set_num_threads(1)
    models = [("preisach", 1), ("softmax", 1), ("softmax", 2), ("softmax", 4)]
    tasks = ["range", "excursion", "dyck", "retrieval"]
    res: dict[str, Any] = {}
    for task in tasks:
        res[task] = {}
        for kind, layers in models:
            name = f"{kind}_{layers}L"
            runs = [train_one(task, kind, layers, length, steps, s) for s in seeds]
            keys = ["acc"] if task == "retrieval" else ["acc_at_L", "acc_at_4L"]
            summary = {k: float(np.mean([r[k] for r in runs])) for k in keys}
            res[task][name] = {**summary, "runs": runs}
            print(f"  {task:10s} {name:11s} " + "  ".join(f"{k} {v:.3f}" for k, v in summary.items())
                  + f"  ({sum(r['train_seconds'] for r in runs):.0f}s)")  # fmt: skip
    return res


# ------------------------------------------------------------------------------------------- constructed
def constructed_range(x: Tensor) -> Tensor:
    """A hand-set 1-layer Preisach attention (no training) that computes the range since the last RESET exactly,
    at any length: head 0 is driven by the level x, head 1 by 31 - x, a RESET drives both to -100; 31 relays per
    head with α_m = m + 0.5 and β = -50 (only a RESET switches a relay down), density μ = 1/2. Then head 0 outputs
    Σ_m s_m/2 = #{m: max >= m + 0.5} - 31/2 = max - 31/2, head 1 outputs 31 - min - 31/2, and the range is their
    sum (0 at a RESET, which the token itself tells the read-out)."""
    b, n = x.shape
    lv = x.float()
    is_reset = x == RESET
    sig = torch.stack(
        [torch.where(is_reset, -100.0, lv), torch.where(is_reset, -100.0, (LEVELS - 1) - lv)], 1
    )
    r = LEVELS - 1
    alpha = (torch.arange(r, dtype=torch.float32) + 0.5).expand(2, r)
    gap = torch.full((2, r), 50.0)  # softplus(50) = 50 to float precision: β = α - 50 <= -49.5 < every level
    density = torch.full((2, r, 1), 0.5)
    dummy = torch.zeros(b, 2, n, 1)
    out = preisach_attention(
        dummy,
        dummy,
        dummy,
        drive=None,
        alpha=alpha,
        gap=gap,
        density=density,
        relay_mode="hard",
        drive_signal=sig,
    )
    pred = out[..., 0].sum(1)
    return torch.where(is_reset, torch.zeros_like(pred), pred)


def section_constructed(length: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(10_000)
    res = {}
    for task, p in (("range", 0.0), ("excursion", 0.05)):
        res[task] = {}
        for mult in (1, 4, 64):
            x = walk(g, 64, mult * length, reset_p=p)
            res[task][f"acc_at_{mult}L"] = float(
                ((constructed_range(x) - range_targets(x)).abs() < 0.5).float().mean()
            )
    res["note"] = "hand-set parameters, no training: the expressivity the trained models are compared with"
    return res


# ------------------------------------------------------------------------------------------------- hybrid
def section_hybrid(
    steps: int = 30, seq: int = 256, batch: int = 2, held_out: int = 8, layers: tuple[int, ...] = (10, 20)
) -> dict[str, Any]:
    from hf_fundamentals.integrations.attention.preisach_model import add_preisach, preisach_layers
    from hf_fundamentals.integrations.hub import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, tok = load_model("embedded")
    model.eval()
    texts = sorted(Path("/usr/share/common-licenses").glob("*"))
    text = "\n\n".join(p.read_text(errors="ignore") for p in texts if p.is_file())
    ids = tok(text, return_tensors="pt").input_ids[0]
    n_win = ids.numel() // seq
    wins = ids[: n_win * seq].view(n_win, seq)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_win, generator=g)
    held, train = wins[perm[:held_out]], wins[perm[held_out:]]

    def ppl() -> float:
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(held), 4):
                x = held[i : i + 4]
                out = model(input_ids=x, labels=x)
                tot += float(out.loss) * x.numel()
                cnt += x.numel()
        return math.exp(tot / cnt)

    base = ppl()
    add_preisach(model, layers=list(layers), n_relays=32, variant="density")
    pal = preisach_layers(model)
    untrained = ppl()
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in pal.values() for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        for m in pal.values():
            m.temperature = geometric_temperature(step, steps, start=1.0, end=0.05)
        x = train[torch.randint(0, len(train), (batch,), generator=g)]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    trained = ppl()
    return {
        "settings": {
            "model": "embedded SmolLM2-135M",
            "preisach_layers": list(layers),
            "relays": 32,
            "variant": "density",
            "trained": "Preisach parameters only",
            "steps": steps,
            "batch": batch,
            "seq": seq,
            "lr": 1e-3,
            "text": "/usr/share/common-licenses/*",
            "held_out_windows": len(held),
            "note": "Preisach REPLACES softmax in those layers (their q/k/v/o projections stay, frozen)",
        },  # fmt: skip
        "ppl_untouched": base,
        "ppl_preisach_untrained": untrained,
        "ppl_preisach_trained": trained,
        "train_loss_first_last": [losses[0], float(np.mean(losses[-5:]))],
        "train_seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------------------------- report
def summarize(data: dict[str, Any]) -> str:
    lines = []
    sc = data.get("scaling")
    if sc:
        rows = [[n, p, v, s if s is not None else "-", (p / s) if s else "-"]
                for n, p, v, s in zip(sc["n"], sc["preisach_density_s"], sc["preisach_value_s"], sc["sdpa_s"], strict=True)]  # fmt: skip
        lines += [
            "Forward time (s), CPU",
            table(rows, ["n", "preisach density", "preisach value", "sdpa causal", "ratio"]),
        ]
        lines.append(
            f"exponent (n >= {sc['settings']['fit_min_n']}): preisach {sc['time_scaling_exponent']:.3f}  value variant "
            f"{sc['time_scaling_exponent_value_variant']:.3f}  sdpa {sc['sdpa_scaling_exponent']}; crossover "
            f"{sc['crossover_length_vs_sdpa']} (value variant {sc['crossover_length_vs_sdpa_value_variant']})"
        )
    tk = data.get("tasks")
    if tk:
        rows = []
        for task, by_model in tk.items():
            for name, r in by_model.items():
                rows.append([task, name, r.get("acc_at_L", r.get("acc")), r.get("acc_at_4L", "-")])
        lines += ["", "Task accuracy", table(rows, ["task", "model", "acc at L", "acc at 4L"])]
    hy = data.get("hybrid")
    if hy:
        lines += [
            "",
            "Hybrid SmolLM2-135M perplexity",
            json.dumps({k: v for k, v in hy.items() if k.startswith("ppl")}),
        ]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sc = data["scaling"]
    ax = axes[0]
    ax.loglog(
        sc["n"],
        sc["preisach_density_s"],
        "o-",
        label=f"Preisach density (slope {sc['time_scaling_exponent']:.2f})",
    )
    ax.loglog(sc["n"], sc["preisach_value_s"], "s-", label="Preisach value")
    ns = [n for n, s in zip(sc["n"], sc["sdpa_s"], strict=True) if s is not None]
    ax.loglog(ns, [s for s in sc["sdpa_s"] if s is not None], "^-", label="sdpa causal")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("forward time (s)")
    ax.set_title("CPU forward time, 1 x 4 heads x d 64")
    ax.legend()
    ax = axes[1]
    tk = data["tasks"]
    names = list(next(iter(tk.values())).keys())
    tasks = list(tk.keys())
    w = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [tk[t][name].get("acc_at_4L", tk[t][name].get("acc")) for t in tasks]
        ax.bar(np.arange(len(tasks)) + i * w, vals, w, label=name)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - w / 2)
    ax.set_xticklabels([f"{t}\n(4L)" if t != "retrieval" else "retrieval\n(L)" for t in tasks])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("synthetic tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--no-hybrid", action="store_true")
    ap.add_argument("--sections", default="scaling,tasks,constructed,hybrid")
    args = ap.parse_args(argv)
    path = RESULTS if not args.quick else RESULTS.with_name("preisach_quick.json")
    if args.report:
        print(summarize(json.loads(path.read_text())))
        return 0
    sections = set(args.sections.split(","))
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    secs = data.setdefault("section_seconds", {})
    t_start = time.perf_counter()
    if "scaling" in sections:
        print("scaling")
        data["scaling"] = section_scaling(args.quick, args.threads)
        secs["scaling"], t_start = time.perf_counter() - t_start, time.perf_counter()
    if "tasks" in sections:
        print("tasks")
        steps = 40 if args.quick else args.steps
        length = 16 if args.quick else args.length
        data["tasks"] = section_tasks(args.quick, steps, length, args.seeds)
        data["tasks_settings"] = {
            "train_length_L": length, "test_length": 4 * length, "steps": steps, "batch": 32, "seeds": args.seeds,
            "eval_sequences": 512, "eval_seed": "10000 + seed", "width": 64, "heads": 4, "relays": 32,
            "lr": 3e-3, "positional_encoding": "none (NoPE)", "tolerance": 0.5,
            "retrieval": {"pairs": N_PAIRS, "keys": N_KEYS, "values": N_VALS, "chance": 1 / N_VALS},
        }  # fmt: skip
        secs["tasks"], t_start = time.perf_counter() - t_start, time.perf_counter()
    if "constructed" in sections:
        data["constructed"] = section_constructed(16 if args.quick else args.length)
        print("constructed", data["constructed"])
        secs["constructed"], t_start = time.perf_counter() - t_start, time.perf_counter()
    if "hybrid" in sections and not args.quick and not args.no_hybrid:
        print("hybrid")
        try:
            data["hybrid"] = section_hybrid()
        except Exception as err:  # report whatever happens; the synthetic results stand on their own
            data["hybrid"] = {"error": f"{type(err).__name__}: {err}"}
        secs["hybrid"], t_start = time.perf_counter() - t_start, time.perf_counter()
    # headline keys
    sc, tk = data.get("scaling", {}), data.get("tasks", {})
    if sc:
        data["time_scaling_exponent"] = sc["time_scaling_exponent"]
        data["crossover_length_vs_sdpa"] = sc["crossover_length_vs_sdpa"]
    if tk:
        soft = [m for m in tk["range"] if m.startswith("softmax")]
        data["range_task_acc_at_4x_length"] = tk["range"]["preisach_1L"]["acc_at_4L"]
        data["softmax_range_task_acc_at_4x_length"] = max(tk["range"][m]["acc_at_4L"] for m in soft)
        data["softmax_range_task_acc_at_4x_length_by_layers"] = {m: tk["range"][m]["acc_at_4L"] for m in soft}
        data["retrieval_task_acc"] = {
            "preisach": tk["retrieval"]["preisach_1L"]["acc"],
            "softmax": max(tk["retrieval"][m]["acc"] for m in soft),
            "softmax_by_layers": {m: tk["retrieval"][m]["acc"] for m in soft},
            "chance": 1 / N_VALS,
        }
    data["machine"] = machine()
    data["seeds"] = {"scaling_inputs": 0, "tasks": args.seeds, "hybrid": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    if sc and tk:
        plot(data, path.with_suffix(".png"))
    print(summarize(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
