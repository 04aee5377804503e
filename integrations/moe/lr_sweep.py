"""Per-seed LR sweeps of a dense proxy and MoE targets under SP and Complete-muE, one stored run at a time.

Each (shape, parameterization, lr, seed) run trains a model from its transformers config with AdamW on byte
sequences, evaluates a fixed held-out set every ``eval_every`` steps, and reports the mean of the last
``last_evals`` evaluations (one final evaluation is as noisy as a 2x LR change at this scale). Every finished
run is written as one JSON file under the store folder, named by a hash of everything that sets it, so a rerun
(or a run cut short) continues where it stopped. The swept value is the proxy's LR: SP uses it as the one
global LR of the target; µE feeds it to ``transfer_plan`` and trains with the plan's groups. The analysis
(optimum fit, regret and drift with bootstrap intervals) is :func:`hf_fundamentals.moe.transfer_table`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hf_fundamentals.moe.sweep import grid_extension, initial_grid

PARAMS = ("sp", "mue")
STORE_VERSION = 1


@dataclass(frozen=True)
class SweepSettings:
    """What every run of a sweep shares: the schedule (linear warmup then cosine to 0), AdamW settings tuned
    on the proxy (weight decay on matrices only under SP; the plan's groups under µE), the init std of the
    proxy's hidden matrices (SP uses the config's ``initializer_range``), and the evaluations: the loss of a
    run is the mean held-out loss at the last ``last_evals`` multiples of ``eval_every`` steps before the end
    (the last one at the final step)."""

    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 64
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    init_std: float = 0.02
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    eval_every: int = 100
    last_evals: int = 3

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "eval_every", "last_evals"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name}: must be a positive integer; got {v!r}")
        if self.last_evals * self.eval_every > self.steps:
            raise ValueError(
                f"--last_evals {self.last_evals} x --eval_every {self.eval_every} exceeds --steps {self.steps}"
            )
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"--warmup_frac: must be in [0, 1); got {self.warmup_frac!r}")


def byte_sequences(texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """UTF-8 bytes of the texts (a 0 byte after each) packed into rows of ``seq_len`` tokens (vocab 256)."""
    stream = bytearray()
    for t in texts:
        stream += t.encode("utf-8") + b"\x00"
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"the text holds {len(stream)} bytes, fewer than one sequence of {seq_len}")
    return torch.tensor(list(stream[: n * seq_len]), dtype=torch.long).view(n, seq_len)


def _config_key(config: Any) -> dict[str, Any]:
    d = config.to_diff_dict()
    d.pop("transformers_version", None)
    d.pop("_name_or_path", None)
    d["model_type"] = config.model_type
    return d


def build_run(
    proxy_config: Any, target_config: Any, param: str, lr: float, seed: int, settings: SweepSettings
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """A fresh target model and its AdamW groups: SP (the config's own init, one LR) or µE (the plan from the
    proxy tuned at ``lr``: routing, init, folded multipliers, per-group lr/wd/eps)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    if param == "sp":
        model = AutoModelForCausalLM.from_config(target_config)
        named = list(model.named_parameters())
        groups = [
            {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": settings.weight_decay},
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
        ]
        for g in groups:
            g.update(lr=lr, betas=settings.betas, eps=settings.adam_eps)
        return model, groups
    if param != "mue":
        raise ValueError(f"--params: {param!r} is not one of {', '.join(PARAMS)}")
    from hf_fundamentals.integrations.moe.config import (
        complete_mue_config,
        dense_proxy_from_config,
        moe_target_from_config,
    )
    from hf_fundamentals.integrations.moe.model import apply_mue
    from hf_fundamentals.integrations.moe.optimizer import mue_param_groups
    from hf_fundamentals.moe import transfer_plan

    tokens = settings.batch_size * settings.seq_len
    proxy = dense_proxy_from_config(
        proxy_config, lr=lr, weight_decay=settings.weight_decay, init_std=settings.init_std,
        adam_eps=settings.adam_eps, betas=settings.betas, batch_tokens=tokens, steps=settings.steps,
    )  # fmt: skip
    plan = transfer_plan(
        proxy, moe_target_from_config(target_config, batch_tokens=tokens, steps=settings.steps)
    )
    model = AutoModelForCausalLM.from_config(complete_mue_config(target_config, plan))
    apply_mue(model, plan, seed=seed)
    return model, mue_param_groups(model, plan)


@torch.no_grad()
def evaluate(model: torch.nn.Module, eval_ids: torch.Tensor, chunk: int = 64) -> float:
    """Mean next-token loss over the held-out rows (every row weighs the same)."""
    model.eval()
    total = 0.0
    for part in eval_ids.split(chunk):
        total += float(model(input_ids=part, labels=part).loss) * len(part)
    model.train()
    return total / len(eval_ids)


def _lr_lambda(steps: int, warmup_frac: float) -> Callable[[int], float]:
    warmup = max(1, round(warmup_frac * steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return f


def train_run(
    proxy_config: Any,
    target_config: Any,
    param: str,
    lr: float,
    seed: int,
    settings: SweepSettings,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train one run; ``loss`` is the mean of the last ``last_evals`` held-out evaluations (inf if the run
    diverged: a non-finite loss, or an evaluation above ln(vocab), worse than uniform). The model is built
    (and seeded) on the CPU, then moved to ``device``; the data order comes from a CPU generator, so a run
    sees the same batches on any device."""
    model, groups = build_run(proxy_config, target_config, param, lr, seed, settings)
    model.to(device)  # in place: the parameters the groups hold are the ones moved
    eval_ids = eval_ids.to(device)
    opt = torch.optim.AdamW(groups, lr=lr, betas=settings.betas, eps=settings.adam_eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(settings.steps, settings.warmup_frac))
    gen = torch.Generator().manual_seed(seed)
    n, b = len(train_ids), settings.batch_size
    if n < b:
        raise ValueError(f"--batch_size {b} exceeds the {n} training sequences")
    order, pos = torch.randperm(n, generator=gen), 0
    evals: list[tuple[int, float]] = []
    diverged = False
    started = time.perf_counter()
    uniform = math.log(target_config.vocab_size)
    for step in range(settings.steps):
        if pos + b > n:  # a new epoch, a new order
            order, pos = torch.randperm(n, generator=gen), 0
        batch = train_ids[order[pos : pos + b]].to(device)
        pos += b
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            diverged = True
            break
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        left = settings.steps - (step + 1)  # evaluate only where the loss is averaged: the last evaluations
        if left % settings.eval_every == 0 and left < settings.last_evals * settings.eval_every:
            ev = evaluate(model, eval_ids)
            evals.append((step + 1, ev))
            if not math.isfinite(ev) or ev > uniform:
                diverged = True
                break
    tail = [v for _, v in evals[-settings.last_evals :]]
    loss_value = math.inf if diverged or not tail else sum(tail) / len(tail)
    return {
        "loss": loss_value,
        "diverged": diverged,
        "evals": evals,
        "seconds": time.perf_counter() - started,
    }


class RunStore:
    """One JSON file per finished run under ``folder``, named by a hash of its full spec; a spec whose file
    holds a different spec (a hash collision, an edited file) counts as not run."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, spec: Mapping[str, Any]) -> Path:
        key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
        return self.folder / f"{key}.json"

    def get(self, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        p = self.path(spec)
        if not p.exists():
            return None
        stored = json.loads(p.read_text())
        return (
            stored["result"] if stored.get("spec") == json.loads(json.dumps(spec, sort_keys=True)) else None
        )

    def put(self, spec: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        p = self.path(spec)
        tmp = p.with_suffix(".tmp")
        clean = dict(result)
        if not math.isfinite(clean["loss"]):
            clean["loss"] = "inf"
        tmp.write_text(json.dumps({"spec": spec, "result": clean}, sort_keys=True))
        os.replace(tmp, p)  # atomic: a run killed mid-write leaves no half file


def data_fingerprint(train_ids: torch.Tensor, eval_ids: torch.Tensor) -> str:
    """A short hash of the training and held-out tokens (part of every run's key)."""
    h = hashlib.sha1()
    for t in (train_ids, eval_ids):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def run_sweeps(
    shapes: Mapping[str, Any],
    proxy: str,
    *,
    params: Sequence[str] = PARAMS,
    seeds: Sequence[int],
    settings: SweepSettings,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    store: RunStore,
    center_log2: float,
    spacing: float = 0.5,
    points: int = 7,
    max_points: int = 11,
    margin: int = 2,
    only_stored: bool = False,
    deadline: float | None = None,
    log: Callable[[str], None] = print,
    shard: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run (or read from ``store``) every seed at every LR of every shape, proxy first.

    ``shapes``: name -> transformers config (``proxy`` names the dense proxy among them). Each shape starts on
    ``points`` lattice points of log2 lr around ``center_log2`` and is extended a point at a time while the
    minimum of its seed-mean loss lacks ``margin`` points on a side (``grid_extension``, up to ``max_points``).
    ``only_stored`` runs nothing and returns what the store holds (missing runs as NaN; a grid with a missing
    run is not extended); past ``deadline`` (a ``time.time()`` value) the sweep continues as ``only_stored``.
    ``shard=(k, n)`` trains only the runs whose store key falls in shard k of n (the others count as missing,
    so a grid is not extended until a later call without ``shard`` sees them all): n processes with k = 0..n-1
    share one store without training a run twice. ``device``: where each run trains.
    Returns ``{param: {shape: {"log2_lrs": [...], "losses": [[seed x lr]], "seeds", "seconds"}}}``.
    """
    if proxy not in shapes:
        raise ValueError(f"--proxy: {proxy!r} is not among the shapes {list(shapes)}")
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"--shard: K/N needs 0 <= K < N; got {shard!r}")
    data_id = data_fingerprint(train_ids, eval_ids)
    proxy_cfg = shapes[proxy]
    order = [proxy] + [s for s in shapes if s != proxy]
    out: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in params}
    for name in order:
        cfg = shapes[name]
        for param in params:
            losses: dict[float, dict[int, float]] = {}
            seconds = 0.0
            pending = initial_grid(center_log2, spacing, points)
            while pending:
                for x in pending:
                    losses[x] = {}
                    for seed in seeds:
                        spec = {
                            "v": STORE_VERSION, "param": param, "log2_lr": x, "seed": seed,
                            "target": _config_key(cfg), "proxy": _config_key(proxy_cfg),
                            "settings": asdict(settings), "data": data_id,
                        }  # fmt: skip
                        hit = store.get(spec)
                        if deadline is not None and time.time() > deadline:
                            only_stored = True
                        mine = shard is None or int(store.path(spec).stem, 16) % shard[1] == shard[0]
                        if hit is None and not only_stored and mine:
                            t0 = time.perf_counter()
                            hit = train_run(
                                proxy_cfg, cfg, param, 2.0**x, seed, settings, train_ids, eval_ids, device
                            )
                            store.put(spec, hit)
                            log(
                                f"{param} {name} lr=2^{x:g} seed {seed}: loss {hit['loss']:.4f} "
                                f"({time.perf_counter() - t0:.0f} s)"
                            )
                        if hit is None:
                            losses[x][seed] = math.nan
                            continue
                        losses[x][seed] = float(hit["loss"])
                        seconds += float(hit["seconds"])
                if any(math.isnan(v) for row in losses.values() for v in row.values()):
                    break  # incomplete: the extension needs every seed of the grid so far
                means = {
                    x: (sum(v.values()) / len(v) if all(map(math.isfinite, v.values())) else math.inf)
                    for x, v in losses.items()
                }
                pending = grid_extension(means, spacing=spacing, margin=margin, max_points=max_points)
            xs = sorted(losses)
            out[param][name] = {
                "log2_lrs": xs,
                "losses": [[losses[x][s] for x in xs] for s in seeds],
                "seeds": list(seeds),
                "seconds": seconds,
            }
    return out
