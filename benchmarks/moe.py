"""Complete-muE (arXiv 2605.23893): does the LR tuned on a small dense model transfer to MoE targets?

    python benchmarks/moe.py            # the full benchmark (about 35-45 min on 2 CPU cores)
    python benchmarks/moe.py --quick    # 4 targets, 50-step runs (about 4-5 min)
    python benchmarks/moe.py --smoke    # a < 1 min check of the whole pipeline (writes to /tmp)
    python benchmarks/moe.py --transfer # transfer regret: 5 seeds x 7 lrs x 1000 steps per shape, SP and µE
                                        # (resumable; --only_stored analyses what is stored) -> complete_mue.json

Family: Qwen3-MoE targets with the dense Qwen3 as proxy (transformers ``Qwen3MoeForCausalLM`` /
``Qwen3ForCausalLM``). The two share every module but the FFN (same attention with q/k-norm, RMSNorm, RoPE), so a
difference between proxy and target is the MoE block alone; the experts are fused 3-D tensors (the layout
``apply_mue`` re-initializes); and Qwen3-MoE's default routing (softmax top-k *without* renormalization,
``norm_topk_prob=False``) is the standard parameterization Complete-muE changes. No router aux loss (the HF
default ``output_router_logits=False``), no shared experts.

Data and tokens: GCIDE dictionary entries (Debian dict-gcide, via ``hf_fundamentals.corpora.build_corpus``,
seed 0), byte-level (UTF-8 bytes are the tokens, vocab 256, a 0 byte between documents). Bytes keep the models
tiny (the 256 x d embedding and LM head do not dominate at d = 64) and need no tokenizer training, so nothing
but the model changes between runs. Held-out loss is on documents not trained on.

Protocol (defaults; ``--quick`` / ``--smoke`` shrink them, see PROFILES):

* models: 2 layers, head_dim 16 (heads = d/16), untied embeddings. Dense proxy d* = 64, FFN 128. MoE targets
  (N experts, a active, expert width h): base N8a2h64 at d = 64 (active width a·h = 128 = the proxy's FFN);
  axes N in {4, 8, 16, 32}; a in {1, 2, 4}; granularity (N, a) x g with h / g at fixed active width and
  density: N8a2h64, N16a4h32, N32a8h16; width d in {128, 256} with N8a2 and h = d.
* training: AdamW betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices (none on norms), 10% linear
  warmup then cosine to 0, batch 16 x 64 bytes, 200 steps, the same data order for every run (seed 0).
  Loss = held-out loss after the last step; a run whose loss goes non-finite or ends above ln 256 (worse than
  uniform) counts as diverged.
* SP (standard parameterization): HF default init (initializer_range 0.02), one global LR for every parameter,
  default routing. µE (Complete-muE): the plan from the µE proxy (``transfer_plan``; proxy tuned in the same
  multiplier form, init_std 0.02 = sigma^(1)), the config from ``complete_mue_config`` (normalized top-k),
  ``apply_mue`` (plan init, folded multipliers) and ``mue_param_groups`` for AdamW; the swept LR is the
  proxy's LR that the plan transfers.
* sweeps: log2(lr) on a lattice of sqrt(2) steps; 5 points centred on a guess (proxies) or on the matching
  proxy's fitted optimum (targets), extended one point at a time until the grid minimum has 2 finite
  neighbours on each side (a diverged neighbour also brackets it), at most 11 points (else ``at_edge``). eta*
  from ``fit_optimum`` (a quadratic in log2 lr over the 5 points nearest the minimum). Drift =
  |log2 eta*_target - log2 eta*_proxy|, SP targets against the SP proxy, µE targets against the µE proxy.
* coordinate checks (``hf_fundamentals.moe.coord_check``, 6 steps at the proxies' eta*): across widths
  64..512 (N8a2, h = d) before (SP) and after (µE) the transform; at d = 64 across a, N and granularity with
  the dense proxy as a key; the H_act convention ("ah" vs "gate_up") against the unit-expansion dense
  companion (FFN width d*, every matrix at sigma^(1), no multipliers: what sigma^(1) is defined by). The plan
  uses its default ``readout_lr="mup"`` (lm_head LR not width-scaled; the 1/rho_d output multiplier alone scales
  the readout update, mup's MuReadout). A diagnostic repeats the µE width check with ``readout_lr="blog"`` (the
  worked example's lm_head LR x1/rho_d on top of the multiplier) and compares the logits per width.
* overlay: 100 steps of the proxy and every target at the transferred LR, per parameterization.

Seeds: model init and data order seeds 0 and 1 (default profile; ``--quick``/``--smoke``: 0), whose held-out losses
are averaged per LR before the fit; each seed's own eta* is fitted too, and their range is the noise floor a drift
is read against (one seed at this scale moves the final loss by about 0.04 nats, as much as a 2x LR change);
corpus sample seed 0. Every finished run is cached as JSON under ``runs/moe/`` (``--smoke``: under its
output folder), so a rerun skips it. Results: ``benchmarks/results/moe.json`` and PNGs beside it
(``--quick``: ``moe_quick*``; ``--smoke``: ``/tmp/hff_moe_smoke/``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import machine, table

from hf_fundamentals.moe import (
    TEN_PERCENT_LOG2,
    CoordData,
    OptimumFit,
    coord_check,
    drift_table,
    fit_optimum,
    grid_extension,
    initial_grid,
    readout_lr_comparison,
    seed_noise,
    spread_summary,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE_VERSION = 1
VOCAB = 256
PARAMS = ("sp", "mue")
PARAM_LABEL = {"sp": "SP (HF init, one LR)", "mue": "Complete-muE"}
INIT_STD = 0.02
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.95)
EPS = 1e-8
COORD_MODULES = (
    r"(embed_tokens|layers\.\d+|layers\.\d+\.self_attn|layers\.\d+\.mlp|layers\.\d+\.mlp\.experts"
    r"|layers\.\d+\.mlp\.gate|lm_head)$"
)


# ------------------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Shape:
    """One model: width ``d``; dense when ``n_experts`` is 0 (FFN width ``width``), else N experts of width h =
    ``width`` with ``n_active`` per token. ``axes`` names the sweep axes it belongs to."""

    name: str
    d: int
    n_experts: int
    n_active: int
    width: int
    axes: tuple[str, ...] = ()

    @property
    def dense(self) -> bool:
        return self.n_experts == 0

    def describe(self) -> str:
        if self.dense:
            return f"dense d={self.d} FFN={self.width}"
        return f"MoE d={self.d} N={self.n_experts} a={self.n_active} h={self.width} (a*h={self.n_active * self.width})"


def moe(d: int, n: int, a: int, h: int, axes: tuple[str, ...] = ()) -> Shape:
    name = f"N{n}a{a}h{h}" if d == 64 else f"d{d}_N{n}a{a}h{h}"
    return Shape(name, d, n, a, h, axes)


PROXY = Shape("dense_proxy", 64, 0, 0, 128)
UNIT_COMPANION = Shape("unit_dense_H=d", 64, 0, 0, 64)
ALL_TARGETS = (
    moe(64, 8, 2, 64, ("N", "a", "granularity")),
    moe(64, 4, 2, 64, ("N",)),
    moe(64, 16, 2, 64, ("N",)),
    moe(64, 32, 2, 64, ("N",)),
    moe(64, 8, 1, 64, ("a",)),
    moe(64, 8, 4, 64, ("a",)),
    moe(64, 16, 4, 32, ("granularity",)),
    moe(64, 32, 8, 16, ("granularity",)),
    moe(128, 8, 2, 128, ("width",)),
    moe(256, 8, 2, 256, ("width",)),
)
AXES = ("N", "a", "granularity", "width")


def _targets(*names: str) -> tuple[Shape, ...]:
    by_name = {t.name: t for t in ALL_TARGETS}
    return tuple(by_name[n] for n in names)


@dataclass(frozen=True)
class Profile:
    """Everything that sets the cost of a run of the benchmark."""

    name: str
    steps: int
    batch: int
    seq: int
    eval_seqs: int
    layers: int
    train_docs: int
    eval_docs: int
    spacing: float
    initial_points: int
    max_points: int
    margin: int
    center_log2: float
    targets: tuple[Shape, ...]
    coord_widths: tuple[int, ...]
    coord_steps: int
    coord_axes: dict[str, tuple[Shape, ...]]
    convention_keys: tuple[Shape, ...]
    overlay_steps: int
    seeds: tuple[int, ...] = (0,)  # averaged per LR before the fit
    warmup_frac: float = 0.1
    head_dim: int = 16
    domain: str = "dictionary"

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = [t.name for t in self.targets]
        d["coord_axes"] = {k: [s.name for s in v] for k, v in self.coord_axes.items()}
        d["convention_keys"] = [s.name for s in self.convention_keys]
        return d


COORD_AXES = {
    "a": _targets("N8a1h64", "N8a2h64", "N8a4h64"),
    "N": _targets("N4a2h64", "N8a2h64", "N16a2h64", "N32a2h64"),
    "granularity": _targets("N8a2h64", "N16a4h32", "N32a8h16"),
}
CONVENTION_KEYS = _targets("N8a1h64", "N8a2h64", "N8a4h64", "N16a4h32", "N32a8h16")
PROFILES = {
    "default": Profile(
        name="default", steps=200, batch=16, seq=64, eval_seqs=64, layers=2, train_docs=2500, eval_docs=150,
        spacing=0.5, initial_points=5, max_points=11, margin=2, center_log2=-7.5, targets=ALL_TARGETS,
        coord_widths=(64, 128, 256, 512), coord_steps=6, coord_axes=COORD_AXES,
        convention_keys=CONVENTION_KEYS, overlay_steps=100, seeds=(0, 1),
    ),
    "quick": Profile(
        name="quick", steps=50, batch=16, seq=64, eval_seqs=32, layers=2, train_docs=800, eval_docs=80,
        spacing=0.5, initial_points=5, max_points=9, margin=2, center_log2=-7.0,
        targets=_targets("N32a2h64", "N8a4h64", "N32a8h16", "d128_N8a2h128"),
        coord_widths=(64, 128, 256), coord_steps=5, coord_axes=COORD_AXES,
        convention_keys=_targets("N8a1h64", "N8a4h64", "N32a8h16"), overlay_steps=50,
    ),
    "smoke": Profile(
        name="smoke", steps=6, batch=4, seq=32, eval_seqs=4, layers=1, train_docs=60, eval_docs=10,
        spacing=1.0, initial_points=3, max_points=4, margin=1, center_log2=-7.0,
        targets=_targets("N32a8h16", "d128_N8a2h128"),
        coord_widths=(64, 128), coord_steps=3,
        coord_axes={"granularity": _targets("N8a2h64", "N32a8h16")},
        convention_keys=_targets("N8a4h64"), overlay_steps=8,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------- data
def build_data(profile: Profile, seed: int = 0) -> dict[str, Any]:
    """Byte-level train / held-out sequences from one corpus domain (documents split before packing)."""
    from hf_fundamentals.corpora import build_corpus

    docs = build_corpus([profile.domain], docs_per_domain=profile.train_docs + profile.eval_docs, seed=seed)
    texts = [r["text"] for r in docs]
    held, train = texts[: profile.eval_docs], texts[profile.eval_docs :]

    def pack(items: list[str]) -> torch.Tensor:
        stream = bytearray()
        for t in items:
            stream += t.encode("utf-8") + b"\x00"
        n = len(stream) // profile.seq
        return torch.tensor(list(stream[: n * profile.seq]), dtype=torch.long).view(n, profile.seq)

    train_ids, eval_ids = pack(train), pack(held)
    if len(eval_ids) < profile.eval_seqs:
        raise ValueError(f"only {len(eval_ids)} held-out sequences; raise eval_docs")
    return {
        "train": train_ids,
        "eval": eval_ids[: profile.eval_seqs],
        "id": f"{profile.domain}:{profile.train_docs}+{profile.eval_docs}:seed{seed}:seq{profile.seq}",
        "train_tokens": int(train_ids.numel()),
    }


# ----------------------------------------------------------------------------------------------- models
def hf_config(shape: Shape, profile: Profile):
    """The transformers config of a shape (Qwen3 dense / Qwen3-MoE, HF defaults otherwise)."""
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = dict(
        vocab_size=VOCAB, hidden_size=shape.d, num_hidden_layers=profile.layers,
        num_attention_heads=shape.d // profile.head_dim, num_key_value_heads=shape.d // profile.head_dim,
        head_dim=profile.head_dim, max_position_embeddings=profile.seq, tie_word_embeddings=False,
        initializer_range=INIT_STD, use_cache=False,
    )  # fmt: skip
    if shape.dense:
        return Qwen3Config(intermediate_size=shape.width, **common)
    return Qwen3MoeConfig(
        intermediate_size=shape.n_active * shape.width, moe_intermediate_size=shape.width,
        num_experts=shape.n_experts, num_experts_per_tok=shape.n_active, decoder_sparse_step=1,
        mlp_only_layers=[], output_router_logits=False, **common,
    )  # fmt: skip


def mue_plan(
    shape: Shape, profile: Profile, lr: float, steps: int, convention: str = "ah", readout_lr: str = "mup"
):
    """The Complete-muE plan from the µE proxy tuned at ``lr`` to ``shape`` (``readout_lr``: the plan option)."""
    from hf_fundamentals.integrations.moe.config import dense_proxy_from_config, moe_target_from_config
    from hf_fundamentals.moe import TransferOptions, transfer_plan

    tokens = profile.batch * profile.seq
    proxy = dense_proxy_from_config(
        hf_config(PROXY, profile), lr=lr, weight_decay=WEIGHT_DECAY, init_std=INIT_STD, adam_eps=EPS,
        betas=BETAS, batch_tokens=tokens, steps=steps,
    )  # fmt: skip
    target = moe_target_from_config(hf_config(shape, profile), batch_tokens=tokens, steps=steps)
    return transfer_plan(proxy, target, TransferOptions(h_act_convention=convention, readout_lr=readout_lr))


def build_model(
    shape: Shape,
    param: str,
    lr: float,
    profile: Profile,
    seed: int,
    steps: int,
    convention: str = "ah",
    readout_lr: str = "mup",
) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """A fresh model and its AdamW param groups under SP or Complete-muE (``param``). ``readout_lr`` is the plan's
    lm_head LR rule for µE ("mup": LR not width-scaled; "blog": LR x1/rho_d on top of the readout 1/rho_d)."""
    from transformers import AutoModelForCausalLM

    cfg = hf_config(shape, profile)
    torch.manual_seed(seed)
    if param == "sp":
        model = AutoModelForCausalLM.from_config(cfg)
        named = list(model.named_parameters())
        groups = [
            {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
        ]
        for g in groups:
            g.update(lr=lr, betas=BETAS, eps=EPS)
        return model, groups
    if param != "mue":
        raise ValueError(f"param must be one of {PARAMS}; got {param!r}")
    from hf_fundamentals.integrations.moe.config import complete_mue_config
    from hf_fundamentals.integrations.moe.model import apply_mue
    from hf_fundamentals.integrations.moe.optimizer import mue_param_groups

    plan = mue_plan(shape, profile, lr, steps, convention, readout_lr)
    model = AutoModelForCausalLM.from_config(complete_mue_config(cfg, plan))
    apply_mue(model, plan, seed=seed)
    return model, mue_param_groups(model, plan)


def schedule(steps: int, warmup_frac: float):
    warmup = max(1, round(warmup_frac * steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return f


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: dict[str, Any]) -> float:
    model.eval()
    total = 0.0
    for chunk in data["eval"].split(16):
        total += float(model(input_ids=chunk, labels=chunk).loss) * len(chunk)
    model.train()
    return total / len(data["eval"])


def train_run(spec: dict[str, Any], profile: Profile, data: dict[str, Any]) -> dict[str, Any]:
    """Train one (shape, param, lr, seed) run; held-out loss at the end (inf if it diverged)."""
    shape = Shape(**{**spec["shape"], "axes": tuple(spec["shape"]["axes"])})
    steps = spec["steps"]
    model, groups = build_model(
        shape,
        spec["param"],
        spec["lr"],
        profile,
        spec["seed"],
        steps,
        spec.get("convention", "ah"),
        spec.get("readout_lr", "mup"),
    )
    opt = torch.optim.AdamW(groups, lr=spec["lr"], betas=BETAS, eps=EPS)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(steps, profile.warmup_frac))
    order = torch.randperm(len(data["train"]), generator=torch.Generator().manual_seed(spec["seed"]))
    eval_every = spec.get("eval_every", 0)
    train_curve: list[float] = []
    eval_curve: list[tuple[int, float]] = []
    diverged = False
    started = time.perf_counter()
    for step in range(steps):
        start = (step * profile.batch) % (len(order) - profile.batch + 1)
        batch = data["train"][order[start : start + profile.batch]]
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            diverged = True
            break
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        train_curve.append(float(loss.detach()))
        if eval_every and (step + 1) % eval_every == 0:
            eval_curve.append((step + 1, evaluate(model, data)))
    train_seconds = time.perf_counter() - started
    final = math.inf if diverged else evaluate(model, data)
    if not math.isfinite(final) or final > math.log(VOCAB):
        diverged, final = True, math.inf
    return {
        "final_eval_loss": final,
        "diverged": diverged,
        "train_curve": train_curve,
        "eval_curve": eval_curve,
        "seconds": time.perf_counter() - started,
        "seconds_per_step": train_seconds / max(1, len(train_curve)),
    }


class RunCache:
    """One JSON file per finished run, named by a hash of its full spec (so a rerun skips it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, spec: Mapping[str, Any]) -> Path:
        key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
        return self.folder / f"{key}.json"

    def get(self, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        path = self._path(spec)
        if not path.exists():
            return None
        stored = json.loads(path.read_text())
        return stored["result"] if stored.get("spec") == json.loads(json.dumps(spec)) else None

    def put(self, spec: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        path = self._path(spec)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": spec, "result": _jsonable(result)}))
        os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _float(v: Any) -> float:
    return float(v)


# ---------------------------------------------------------------------------------------------- runner
@dataclass
class Runner:
    """Runs (or reads from the cache) the training runs of one profile, with one progress bar."""

    profile: Profile
    data: dict[str, Any]
    cache: RunCache
    bar: Any = None
    timings: dict[str, list[float]] = field(default_factory=dict)

    def spec(self, shape: Shape, param: str, lr: float, seed: int, *, steps: int, eval_every: int = 0,
             convention: str = "ah", readout_lr: str = "mup") -> dict[str, Any]:  # fmt: skip
        """The run's full description (its cache key). µE runs carry the plan's ``readout_lr`` (runs cached
        before the option, all under the blog rule, do not match); SP runs do not depend on it."""
        p = self.profile
        extra = {"readout_lr": readout_lr} if param == "mue" else {}
        return extra | {
            "v": CACHE_VERSION, "shape": asdict(shape) | {"axes": []}, "param": param, "lr": lr, "seed": seed,
            "steps": steps, "batch": p.batch, "seq": p.seq, "layers": p.layers, "head_dim": p.head_dim,
            "eval_seqs": p.eval_seqs, "data": self.data["id"], "warmup_frac": p.warmup_frac,
            "eval_every": eval_every, "convention": convention, "proxy": asdict(PROXY) | {"axes": []},
            "hp": {"init_std": INIT_STD, "wd": WEIGHT_DECAY, "betas": list(BETAS), "eps": EPS},
        }  # fmt: skip

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        hit = self.cache.get(spec)
        if hit is None:
            hit = _jsonable(train_run(spec, self.profile, self.data))
            self.cache.put(spec, hit)
        self.timings.setdefault(spec["shape"]["name"], []).append(hit["seconds_per_step"])
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(
                f"{spec['param']} {spec['shape']['name']} lr=2^{math.log2(spec['lr']):.1f}"
            )
        return hit

    def sweep(self, shape: Shape, param: str, center_log2: float) -> dict[str, Any]:
        """Sweep log2(lr) on the lattice from ``center_log2`` until bracketed; fit η*."""
        p = self.profile
        losses: dict[float, float] = {}
        per_seed: dict[int, dict[float, float]] = {s: {} for s in p.seeds}
        pending = initial_grid(center_log2, p.spacing, p.initial_points)
        if self.bar is not None:
            self.bar.total += len(pending) * len(p.seeds)
            self.bar.refresh()
        while pending:
            for x in pending:
                finals = [
                    _float(self.run(self.spec(shape, param, 2.0**x, s, steps=p.steps))["final_eval_loss"])
                    for s in p.seeds
                ]
                for seed, loss in zip(p.seeds, finals, strict=True):
                    per_seed[seed][x] = loss
                losses[x] = math.inf if not all(map(math.isfinite, finals)) else float(np.mean(finals))
            pending = grid_extension(losses, spacing=p.spacing, margin=p.margin, max_points=p.max_points)
            if self.bar is not None:
                self.bar.total += len(pending) * len(p.seeds)
                self.bar.refresh()
        xs = sorted(losses)
        fit = fit_optimum([2.0**x for x in xs], [losses[x] for x in xs])
        seed_fits = {}
        if len(p.seeds) > 1:  # each seed's own η*: their spread is the sweep's noise floor
            seed_fits = {s: fit_optimum([2.0**x for x in xs], [per_seed[s][x] for x in xs]) for s in p.seeds}
        return {
            "log2_lrs": xs,
            "losses": [losses[x] for x in xs],
            "fit": fit,
            "per_seed_losses": {s: [per_seed[s][x] for x in xs] for s in p.seeds},
            "seed_fits": seed_fits,
        }


# ---------------------------------------------------------------------------------------------- sections
def section_sweeps(runner: Runner) -> dict[str, Any]:
    p = runner.profile
    sweeps: dict[str, dict[str, Any]] = {param: {} for param in PARAMS}
    for param in PARAMS:
        sweeps[param][PROXY.name] = runner.sweep(PROXY, param, p.center_log2)
    proxy_fits = {param: sweeps[param][PROXY.name]["fit"] for param in PARAMS}
    for target in p.targets:
        for param in PARAMS:
            sweeps[param][target.name] = runner.sweep(target, param, proxy_fits[param].log2_lr_star)
    fits = {t.name: {param: sweeps[param][t.name]["fit"] for param in PARAMS} for t in p.targets}
    axes = {t.name: t.axes for t in p.targets}
    drift = drift_table(fits, proxy_fits, axes)
    # Bridge II alone: the MoE axes against the base MoE target (p.targets[0]) instead of the dense proxy
    base = p.targets[0].name
    vs_base = drift_table({t: f for t, f in fits.items() if t != base}, fits[base], axes)
    return {
        "sweeps": sweeps,
        "proxy_fits": proxy_fits,
        "drift": drift,
        "drift_vs_moe_base": vs_base | {"base": base},
        "seed_noise": seed_noise(sweeps),
    }


def _coord_batches(data: dict[str, Any], profile: Profile, steps: int) -> list[torch.Tensor]:
    order = torch.randperm(len(data["train"]), generator=torch.Generator().manual_seed(1))
    return [data["train"][order[i * profile.batch : (i + 1) * profile.batch]] for i in range(steps)]


def _coord(
    shapes: Mapping[str, Shape], param: str, lr: float, profile: Profile, batches, key_name: str,
    convention: str = "ah", plain: Sequence[str] = (), readout_lr: str = "mup",
) -> CoordData:  # fmt: skip
    """Coordinate check of ``shapes`` (keys -> shapes) under ``param`` at proxy LR ``lr``; keys in ``plain`` are
    built SP-style at the same LR whatever ``param`` is (the unit-expansion companion); ``readout_lr`` is the µE
    plan's lm_head LR rule."""
    factories, optimizers = {}, {}
    for key, shape in shapes.items():
        kind = "sp" if key in plain else param
        holder: dict[str, Any] = {}

        def factory(shape=shape, kind=kind, holder=holder):
            model, holder["groups"] = build_model(
                shape, kind, lr, profile, 0, profile.steps, convention, readout_lr
            )
            return model

        factories[key] = factory
        optimizers[key] = lambda model, holder=holder: torch.optim.AdamW(
            holder["groups"], lr=lr, betas=BETAS, eps=EPS
        )
    return coord_check(
        factories, batches, profile.coord_steps, optimizers, COORD_MODULES,
        meta={"key_name": key_name, "param": param, "lr": lr, "convention": convention,
              "readout_lr": readout_lr if param == "mue" else None},
    )  # fmt: skip


def section_coord(profile: Profile, data: dict[str, Any], proxy_lr: Mapping[str, float]) -> dict[str, Any]:
    batches = _coord_batches(data, profile, profile.coord_steps)
    out: dict[str, Any] = {"data": {}, "spread": {}}
    # across widths: N8a2, h = d
    widths = {str(d): moe(d, 8, 2, d) for d in profile.coord_widths}
    for param in PARAMS:
        cd = _coord(widths, param, proxy_lr[param], profile, batches, "width d")
        out["data"][f"width/{param}"] = cd
    out["spread"]["width"] = {
        "before": spread_summary(out["data"]["width/sp"]),
        "after": spread_summary(out["data"]["width/mue"]),
    }
    # diagnostic: the same µE width check under readout_lr="blog" (the worked example's lm_head LR x1/rho_d on top
    # of the 1/rho_d output multiplier: effective readout update ∝ 1/rho_d^2) against the plan's default "mup"
    cd = _coord(widths, "mue", proxy_lr["mue"], profile, batches, "width d", readout_lr="blog")
    out["data"]["width/mue_readout_lr_blog"] = cd
    out["diagnostics"] = {"width_mue_readout_lr": readout_lr_comparison(out["data"]["width/mue"], cd)}
    # at fixed width across a, N, granularity; the dense proxy is a key
    for axis, shapes in profile.coord_axes.items():
        keyed = {"dense": PROXY} | {s.name: s for s in shapes}
        for param in PARAMS:
            out["data"][f"{axis}/{param}"] = _coord(keyed, param, proxy_lr[param], profile, batches, axis)
        out["spread"][axis] = {
            "before": spread_summary(out["data"][f"{axis}/sp"]),
            "after": spread_summary(out["data"][f"{axis}/mue"]),
        }
    # the H_act convention: block output against the unit-expansion companion (sigma^(1) by definition)
    conv: dict[str, Any] = {}
    keyed = {UNIT_COMPANION.name: UNIT_COMPANION, "dense": PROXY} | {
        s.name: s for s in profile.convention_keys
    }
    for convention in ("ah", "gate_up"):
        cd = _coord(
            keyed, "mue", proxy_lr["mue"], profile, batches, "shape", convention, (UNIT_COMPANION.name,)
        )
        out["data"][f"convention/{convention}"] = cd
        g = cd.grouped()
        block = "model.layers.*.mlp"
        r0 = g.ratio_to(UNIT_COMPANION.name, block, step=0)
        r1 = g.ratio_to(UNIT_COMPANION.name, block, step=-1)
        others = [k for k in g.keys if k != UNIT_COMPANION.name]
        conv[convention] = {
            "block_out_ratio_to_unit_companion_step0": r0,
            "block_out_ratio_to_unit_companion_last": r1,
            "worst_abs_log2_ratio": max(abs(math.log2(r)) for r in list(r0.values()) + list(r1.values())),
            "block_out_spread_without_companion": max(
                _spread_of([g.values[k][block][t] for k in others]) for t in range(g.steps)
            ),
        }
    best = min(conv, key=lambda c: conv[c]["worst_abs_log2_ratio"])
    out["convention"] = {
        "measured": conv,
        "flat_vs_unit_companion": best,
        "code_default": "ah",
        "note": "A and sigma_down enter as ratios to the proxy's own (both SwiGLU), so the factor 2 of gate_up "
        "cancels between MoE targets and the dense proxy (same spread without the companion); it shows only "
        "against the unit-expansion companion that defines sigma^(1).",
    }
    return out


def _spread_of(vals: Sequence[float]) -> float:
    arr = np.asarray(vals, dtype=float)
    return float(arr.max() / arr.min()) if len(arr) > 1 and np.all(arr > 0) else 1.0


def section_overlay(runner: Runner, proxy_lr: Mapping[str, float]) -> dict[str, Any]:
    p = runner.profile
    steps = p.overlay_steps
    every = max(1, steps // 4)
    shapes = (PROXY,) + tuple(p.targets)
    if runner.bar is not None:
        runner.bar.total += len(shapes) * len(PARAMS)
        runner.bar.refresh()
    out: dict[str, Any] = {"steps": steps, "eval_every": every, "lr": dict(proxy_lr), "runs": {}}
    for param in PARAMS:
        out["runs"][param] = {}
        for shape in shapes:
            spec = runner.spec(shape, param, proxy_lr[param], p.seeds[0], steps=steps, eval_every=every)
            res = runner.run(spec)
            out["runs"][param][shape.name] = {
                "train_curve": res["train_curve"],
                "eval_curve": res["eval_curve"],
                "final_eval_loss": _float(res["final_eval_loss"]),
            }
    # gap to the dense proxy at mid-run and at the end (a gap that keeps widening means a missing factor)
    gaps: dict[str, dict[str, Any]] = {}
    for param in PARAMS:
        runs = out["runs"][param]
        dense = dict(runs[PROXY.name]["eval_curve"])
        gaps[param] = {}
        for name, r in runs.items():
            if name == PROXY.name or not r["eval_curve"] or len(r["eval_curve"]) < len(dense):
                continue
            ev = dict(r["eval_curve"])
            s_mid, s_end = sorted(ev)[len(ev) // 2 - 1], sorted(ev)[-1]
            gaps[param][name] = {
                "gap_mid": ev[s_mid] - dense[s_mid],
                "gap_end": ev[s_end] - dense[s_end],
                "widening": (ev[s_end] - dense[s_end]) - (ev[s_mid] - dense[s_mid]),
            }
    out["gaps_vs_dense"] = gaps
    return out


# ------------------------------------------------------------------------- transfer regret (controlled noise)
TRANSFER_TARGETS = _targets(
    "d128_N8a2h128", "N32a8h16", "N8a2h64", "N32a2h64", "N8a4h64", "d256_N8a2h256"
)  # run order: the width target where SP is known to drift first, the costliest (d = 256) last
TRANSFER_PROFILE = replace(PROFILES["default"], name="transfer", seq=64, layers=2)
TRANSFER_RESULTS = "complete_mue.json"
COORD_STATEMENT_MODULES = (
    r"(embed_tokens|layers\.\d+|layers\.\d+\.self_attn|layers\.\d+\.mlp|layers\.\d+\.mlp\.gate|lm_head)$"
)
MUE_REGRET_TARGET, SP_REGRET_TARGET = 0.01, 0.03  # nats: µE must stay below on every target, SP exceed on one


def transfer_data(
    eval_tokens: int, seq: int = 64, train_docs: int = 6000
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Training rows and a fixed held-out set of ``eval_tokens`` byte tokens (GCIDE entries not trained on)."""
    from hf_fundamentals.corpora import build_corpus
    from hf_fundamentals.integrations.moe.lr_sweep import byte_sequences

    eval_rows = -(-eval_tokens // seq)
    eval_docs = max(50, int(1.3 * eval_tokens / 400))  # GCIDE entries average about 450 bytes
    docs = [r["text"] for r in build_corpus(["dictionary"], docs_per_domain=train_docs + eval_docs, seed=0)]
    held = byte_sequences(docs[:eval_docs], seq)
    if len(held) < eval_rows:
        raise ValueError(f"--eval_tokens {eval_tokens}: only {len(held) * seq} held-out tokens")
    return (
        byte_sequences(docs[eval_docs:], seq),
        held[:eval_rows],
        f"dictionary:{train_docs}+{eval_docs}:seed0",
    )


def _stored_part(
    sweep: Mapping[str, Any], initial: Sequence[float] = ()
) -> tuple[dict[str, Any] | None, int, int]:
    """The sweep restricted to the lrs that have a stored run (an lr that no seed has run yet is dropped: a
    grid extension not run yet); ``None`` while an lr has some seeds stored and others not, or fewer than 3
    lrs are complete. Also returns the number of stored runs and the number of runs of the grid so far."""
    y = np.asarray(sweep["losses"], dtype=float)
    have = ~np.isnan(y)
    stored, total = int(have.sum()), int(y.size)
    cols = have.any(axis=0)
    if any(not cols[i] for i, x in enumerate(sweep["log2_lrs"]) if x in set(initial)):
        return None, stored, total  # a point of the initial grid not run yet: incomplete, not an extension
    if not cols.any() or not have[:, cols].all() or cols.sum() < 3:
        return None, stored, total
    keep = np.flatnonzero(cols)
    part = dict(sweep)
    part["log2_lrs"] = [sweep["log2_lrs"][i] for i in keep]
    part["losses"] = y[:, keep].tolist()
    part["extension_pending"] = bool((~cols).any())
    return part, stored, total


def transfer_coord(
    param: str, lr: float, settings: Any, batch: torch.Tensor, widths: Sequence[int], experts: Sequence[int],
    steps: int, seeds: Sequence[int],
) -> dict[str, Any]:  # fmt: skip
    """The seeded coordinate check on a fixed batch (mup's ``get_coord_data(nseeds=..., fix_data=True)``)
    across width d (N8a2, h = d) and across expert count N (d = 64, a = 2, h = 64), each model built exactly as
    the sweep builds it (``build_run``) at the proxy lr ``lr``, the readout zero-initialized as the mup README
    advises for a coordinate check; a pass/fail statement per axis (``coord_verdict``: slope of log mean|x|
    against log d or log N within ±SLOPE_TOLERANCE)."""
    from hf_fundamentals.integrations.moe.lr_sweep import build_run
    from hf_fundamentals.moe import coord_check, coord_verdict

    proxy_cfg = hf_config(PROXY, TRANSFER_PROFILE)
    axes = {
        "width": {str(d): (d, moe(d, 8, 2, d)) for d in widths},
        "experts": {str(n): (n, moe(64, n, 2, 64)) for n in experts},
    }
    out: dict[str, Any] = {}
    for axis, keyed in axes.items():
        if len(keyed) < 2:
            continue
        factories, optimizers = {}, {}
        for key, (_, shape) in keyed.items():
            holder: dict[str, Any] = {}

            def make(shape=shape, holder=holder) -> torch.nn.Module:
                model, holder["groups"] = build_run(
                    proxy_cfg,
                    hf_config(shape, TRANSFER_PROFILE),
                    param,
                    lr,
                    int(torch.initial_seed()),
                    settings,
                )
                with torch.no_grad():  # mup README: zero readout for a coord check (µP logits vanish at init)
                    model.lm_head.weight.zero_()
                return model

            factories[key] = make
            optimizers[key] = lambda model, holder=holder: torch.optim.AdamW(
                holder["groups"], lr=lr, betas=BETAS, eps=EPS
            )
        cd = coord_check(
            factories, [batch], steps, optimizers, COORD_STATEMENT_MODULES, seeds=list(seeds), fix_data=True,
            meta={"param": param, "axis": axis, "lr": lr},
        )  # fmt: skip
        verdict = coord_verdict(cd, {k: v[0] for k, v in keyed.items()}, name=f"{param} across {axis}")
        out[axis] = {
            "passed": verdict.passed,
            "statement": verdict.statement,
            "worst_slope": verdict.worst_slope,
            "worst_module": verdict.worst_module,
            "worst_step": verdict.worst_step,
            "seed_slopes_at_worst": verdict.seed_slopes_at_worst,
            "keys": list(keyed),
        }
    return out


def _coord_cache(
    args: argparse.Namespace, param: str, log2_lr: float, settings: Any, batch: torch.Tensor
) -> Path:
    """Where the coordinate check of ``param`` at ``log2_lr`` is kept (under the run store, keyed by all
    that sets it), so that analysing a sweep in progress does not redo it."""
    key = {
        "param": param, "log2_lr": float(log2_lr), "settings": asdict(settings), "widths": args.coord_widths,
        "experts": args.coord_experts, "steps": args.coord_steps, "seeds": args.coord_seeds,
        "batch": batch.tolist(), "modules": COORD_STATEMENT_MODULES,
    }  # fmt: skip
    name = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(args.store) / "coord" / f"{name}.json"


def transfer_report(
    args: argparse.Namespace,
    sweeps: Mapping[str, Mapping[str, Mapping[str, Any]]],
    settings: Any,
    seeds: Sequence[int],
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    data_id: str,
    wall_seconds: float,
) -> dict[str, Any]:
    """Regret and drift with bootstrap intervals (``transfer_table``) on every shape whose runs are all stored,
    the seeded coordinate check per parameterization, a printed table, and ``complete_mue.json``.

    A shape with runs missing is listed under ``incomplete`` with its count and left out of the table (its
    fit would rest on fewer seeds than the others'); a parameterization whose proxy is incomplete has no table.
    """
    import transformers

    from hf_fundamentals.moe import SLOPE_TOLERANCE, transfer_table

    report_started = time.time()
    status: dict[str, dict[str, Any]] = {}
    usable: dict[str, dict[str, Any]] = {}
    for param, by_shape in sweeps.items():
        status[param], usable[param] = {}, {}
        for name, sweep in by_shape.items():
            initial = initial_grid(args.center_log2, args.lr_spacing, args.lr_points)
            part, stored, total = _stored_part(sweep, initial)
            status[param][name] = {
                "complete": part is not None, "runs_stored": stored, "runs_in_grid": total,
                "log2_lrs": list(sweep["log2_lrs"]), "run_seconds": float(sweep["seconds"]),
            }  # fmt: skip
            if part is not None:
                usable[param][name] = part
                status[param][name]["extension_pending"] = part["extension_pending"]
    analysable = {p: s for p, s in usable.items() if PROXY.name in s and len(s) > 1}
    tab = transfer_table(analysable, PROXY.name, n_boot=args.n_boot) if analysable else None

    coord: dict[str, Any] = {}
    coord_seconds = 0.0  # what the checks cost when they ran (a kept check costs nothing again)
    batch = train_ids[: settings.batch_size]
    for param in args.params:
        # the transferred lr: the proxy's fitted optimum (as in transfer_regret), once its sweep is complete
        log2_lr = args.center_log2
        if PROXY.name in usable.get(param, {}):
            ps = usable[param][PROXY.name]
            y = np.asarray(ps["losses"], dtype=float)
            mean = np.where(np.isfinite(y).all(axis=0), y.mean(axis=0), np.inf)
            with contextlib.suppress(ValueError):  # every lr diverged: no optimum, the grid centre stays
                log2_lr = float(fit_optimum(2.0 ** np.asarray(ps["log2_lrs"]), mean, points=5).log2_lr_star)
        cache = _coord_cache(args, param, log2_lr, settings, batch)
        if cache.exists():  # the same check as before (same lr, shapes, seeds, batch): its stored verdicts
            kept = json.loads(cache.read_text())
        else:
            t1 = time.time()
            axes = transfer_coord(
                param, 2.0**log2_lr, settings, batch, args.coord_widths, args.coord_experts,
                args.coord_steps, args.coord_seeds,
            )  # fmt: skip
            kept = {"axes": _jsonable(axes), "seconds": time.time() - t1}
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(kept))
        coord[param] = {"lr_log2": log2_lr, "axes": kept["axes"]}
        coord_seconds += kept["seconds"]

    regret = {p: (tab["regret_nats"].get(p, {}) if tab else {}) for p in args.params}
    drift = {p: (tab["drift_log2"].get(p, {}) if tab else {}) for p in args.params}
    run_seconds = sum(v["run_seconds"] for by in status.values() for v in by.values())
    runs_stored = sum(v["runs_stored"] for by in status.values() for v in by.values())
    measured = {p: sorted(regret.get(p, {})) for p in args.params}
    both = sorted(set(measured.get("sp", [])) & set(measured.get("mue", [])))
    mue_reg = regret.get("mue", {})
    sp_reg = regret.get("sp", {})
    result: dict[str, Any] = {
        "benchmark": "complete_mue transfer regret (arXiv 2605.23893), benchmarks/moe.py --transfer",
        "regret_nats": regret,
        "drift_log2": drift,
        "max_regret_mue": tab.get("max_regret_mue") if tab else None,  # None: no mue target measured
        "max_regret_sp": tab.get("max_regret_sp") if tab else None,
        "coord_check_pass": {
            p: all(a["passed"] for a in c["axes"].values()) if c["axes"] else None for p, c in coord.items()
        },
        "coord_check": coord,
        "coord_check_tolerance_slope": SLOPE_TOLERANCE,
        "seeds": list(seeds),
        "steps": settings.steps,
        "eval_tokens": int(eval_ids.numel()),
        "targets_measured": measured,
        "issue_targets": {
            "mue_regret_le_0.01_every_target_point": (
                all(v["point"] <= MUE_REGRET_TARGET for v in mue_reg.values()) if mue_reg else None
            ),
            "mue_regret_le_0.01_every_target_upper": (
                all(v["hi"] <= MUE_REGRET_TARGET for v in mue_reg.values()) if mue_reg else None
            ),
            "sp_regret_ge_0.03_some_target_point": (
                any(v["point"] >= SP_REGRET_TARGET for v in sp_reg.values()) if sp_reg else None
            ),
            "sp_regret_ge_0.03_some_target_lower": (
                any(v["lo"] >= SP_REGRET_TARGET for v in sp_reg.values()) if sp_reg else None
            ),
            "on_targets": both,
            "targets_not_measured": [t.name for t in TRANSFER_TARGETS if t.name not in both],
        },
        "drift_half_width_limit_log2": tab["drift_half_width_limit_log2"] if tab else None,
        "flags": tab["flags"] if tab else [],
        "status": status,
        "details": tab["details"] if tab else {},
        "sweeps": {
            p: {n: {"log2_lrs": s["log2_lrs"], "losses": s["losses"]} for n, s in by.items()}
            for p, by in usable.items()
        },
        "settings": asdict(settings),
        "grid": {
            "center_log2": args.center_log2,
            "spacing_log2": args.lr_spacing,
            "points": args.lr_points,
            "max_points": args.max_lr_points,
            "margin": 2,
        },
        "data": f"GCIDE dictionary via hf_fundamentals.corpora.build_corpus: {data_id}; UTF-8 bytes, vocab 256",
        "shapes": {PROXY.name: PROXY.describe()} | {t.name: t.describe() for t in ALL_TARGETS},
        "family": "qwen3 (dense proxy) / qwen3_moe (targets), transformers " + transformers.__version__,
        "n_boot": args.n_boot,
        "machine": machine() | {"load_average_at_analysis": list(os.getloadavg())},
        "cost": {
            "train_seconds_of_stored_runs": run_seconds,
            "runs_stored": runs_stored,
            "coord_check_seconds": coord_seconds,
            "wall_seconds_this_invocation": wall_seconds + time.time() - report_started,
            "note": "train seconds are summed over runs (one thread each, shared 2-core machine, nice 10)",
        },
    }
    print(f"\nTransfer regret ({settings.steps} steps, seeds {list(seeds)}, held-out {eval_ids.numel():,} "
          f"tokens; {args.n_boot} bootstrap resamples over seeds, 95% percentile intervals)")  # fmt: skip
    if tab and tab["rows"]:
        print(table(tab["rows"], tab["header"]))
        for f in tab["flags"]:
            print(f"  flag: {f}")
    else:
        print("  no target is complete with its proxy yet: nothing to compare")
    for param, by in status.items():
        for name, v in by.items():
            if not v["complete"]:
                print(f"  incomplete: {param} {name}: {v['runs_stored']} of {v['runs_in_grid']} runs stored")
    for c in coord.values():
        for a in c["axes"].values():
            print(f"  coordinate check at lr 2^{c['lr_log2']:.2f}: {a['statement']}")
    print(
        f"cost: {run_seconds / 3600:.2f} h of training in {runs_stored} stored runs; coordinate check "
        f"{coord_seconds:.0f} s"
    )
    out_dir = args.out or HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TRANSFER_RESULTS
    path.write_text(json.dumps(_jsonable(result), indent=1))
    print(f"results in {path}")
    return result


def transfer_main(args: argparse.Namespace) -> dict[str, Any]:
    """Per-seed LR sweeps of the proxy and the targets under SP and µE, then ``transfer_report``: regret and
    drift with bootstrap intervals and the seeded coordinate check, written to ``complete_mue.json``. Each run
    is stored under ``--store`` (default ``benchmarks/results/complete_mue_runs/``, committed, so a later
    checkout continues the sweep)."""
    import transformers

    from hf_fundamentals.integrations.moe.lr_sweep import RunStore, SweepSettings, run_sweeps

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    started = time.time()
    by_name = {t.name: t for t in ALL_TARGETS}
    names = args.targets or [t.name for t in TRANSFER_TARGETS]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"--targets: unknown {unknown}; known: {sorted(by_name)}")
    settings = SweepSettings(
        steps=args.steps, batch_size=16, seq_len=64, warmup_frac=0.1, weight_decay=WEIGHT_DECAY,
        init_std=INIT_STD, betas=BETAS, adam_eps=EPS, eval_every=args.eval_every, last_evals=args.last_evals,
    )  # fmt: skip
    seeds = tuple(args.seeds or (0, 1, 2, 3, 4))
    if args.data_file and Path(args.data_file).exists():  # e.g. on a machine without the GCIDE package
        saved = torch.load(args.data_file)
        train_ids, eval_ids, data_id = saved["train"].long(), saved["eval"].long(), saved["id"]
        if eval_ids.numel() != args.eval_tokens:
            raise SystemExit(
                f"--data_file {args.data_file}: {eval_ids.numel()} held-out tokens, not {args.eval_tokens}"
            )
    else:
        train_ids, eval_ids, data_id = transfer_data(args.eval_tokens, train_docs=args.train_docs)
        if args.data_file:
            torch.save(
                {"train": train_ids.to(torch.uint8), "eval": eval_ids.to(torch.uint8), "id": data_id},
                args.data_file,
            )
    shard = None
    if args.shard:
        k, _, n = args.shard.partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            raise SystemExit(f"--shard: {args.shard!r} is not K/N with 0 <= K < N")
        shard = (int(k), int(n))
    shapes = {PROXY.name: hf_config(PROXY, TRANSFER_PROFILE)} | {
        n: hf_config(by_name[n], TRANSFER_PROFILE) for n in names
    }
    store = RunStore(args.store)
    deadline = started + 60 * args.max_minutes if args.max_minutes else None
    print(f"[transfer] {len(train_ids)} training rows, held-out {eval_ids.numel():,} tokens; seeds {list(seeds)}; "
          f"{settings.steps} steps; shapes {list(shapes)}; runs stored in {store.folder}", flush=True)  # fmt: skip
    sweeps = run_sweeps(
        shapes, PROXY.name, params=args.params, seeds=seeds, settings=settings, train_ids=train_ids,
        eval_ids=eval_ids, store=store, center_log2=args.center_log2, spacing=args.lr_spacing,
        points=args.lr_points, max_points=args.max_lr_points, margin=2,
        deadline=deadline, log=lambda m: print(m, flush=True), shard=shard, device=args.device,
        only_stored=args.only_stored or args.size_only,
    )  # fmt: skip
    run_seconds = time.time() - started
    if args.size_only:
        return transfer_size(args, sweeps, shapes, settings, train_ids, eval_ids)
    if args.runs_only:
        print(f"runs done or stored in {run_seconds:.0f} s")
        return {}
    return transfer_report(args, sweeps, settings, seeds, train_ids, eval_ids, data_id, run_seconds)


def transfer_size(
    args: argparse.Namespace,
    sweeps: Mapping[str, Mapping[str, Mapping[str, Any]]],
    shapes: Mapping[str, Any],
    settings: Any,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
) -> dict[str, Any]:
    """Time ``--size_steps`` training steps and one held-out evaluation of every shape under each
    parameterization on this machine (one thread), and estimate the CPU time of the runs not stored yet
    (the initial grid; a grid extension adds runs). Trains nothing that is stored."""
    from hf_fundamentals.integrations.moe.lr_sweep import build_run, evaluate

    proxy_cfg = shapes[PROXY.name]
    rows, out, total = [], {}, 0.0
    batch = train_ids[: settings.batch_size]
    for name, cfg in shapes.items():
        for param in args.params:
            model, groups = build_run(proxy_cfg, cfg, param, 2.0**args.center_log2, 0, settings)
            opt = torch.optim.AdamW(groups)
            for i in range(3 + args.size_steps):  # 3 warm-up steps
                if i == 3:
                    t0 = time.perf_counter()
                model(input_ids=batch, labels=batch).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            step = (time.perf_counter() - t0) / args.size_steps
            t0 = time.perf_counter()
            evaluate(model, eval_ids)
            ev = time.perf_counter() - t0
            run = settings.steps * step + settings.last_evals * ev
            missing = int(np.isnan(np.asarray(sweeps[param][name]["losses"], dtype=float)).sum())
            total += missing * run
            out[f"{param}/{name}"] = {
                "step_ms": 1e3 * step,
                "eval_s": ev,
                "run_s": run,
                "missing_runs": missing,
            }
            rows.append(
                [
                    param,
                    name,
                    f"{1e3 * step:.1f}",
                    f"{ev:.2f}",
                    f"{run:.0f}",
                    missing,
                    f"{missing * run / 3600:.2f}",
                ]
            )
            print(f"  timed {param} {name}: {1e3 * step:.1f} ms/step", flush=True)
    print(table(rows, ["param", "shape", "ms/step", "eval s", "run s", "runs missing", "CPU-h"]))
    print(f"runs missing from the initial grid: {sum(v['missing_runs'] for v in out.values())}, about "
          f"{total / 3600:.1f} CPU-hours on this machine now (load {os.getloadavg()[0]:.2f}); --shard K/N splits "
          "them between cores")  # fmt: skip
    return {"shapes": out, "remaining_cpu_hours": total / 3600, "load_average": list(os.getloadavg())}


# ------------------------------------------------------------------------------------------------ plots
def plot_sweeps(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps, drift = result["sweeps"], result["drift"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    names = list(sweeps["sp"])
    colors = dict(zip(names, plt.get_cmap("tab10")(np.linspace(0, 1, max(len(names), 2))), strict=False))
    for ax, param in zip(axes[:2], PARAMS, strict=True):
        for name in names:
            s = sweeps[param][name]
            ys = np.asarray(s["losses"], dtype=float)
            xs = np.asarray(s["log2_lrs"])
            ok = np.isfinite(ys)
            bold = name == PROXY.name
            ax.plot(xs[ok], ys[ok], marker="o", ms=3, lw=2.5 if bold else 1.2, color="k" if bold else colors[name],
                    label=name)  # fmt: skip
            fit = s["fit"]
            ax.axvline(fit.log2_lr_star, color="k" if bold else colors[name], lw=0.8, ls=":")
        ax.set_title(f"{PARAM_LABEL[param]}: held-out loss vs LR (dotted: fitted eta*)", fontsize=9)
        ax.set_xlabel("log2 lr" + (" (proxy LR the plan transfers)" if param == "mue" else " (global)"))
        ax.set_ylabel("held-out loss (nats/byte)")
        finite = [v for n in names for v in sweeps[param][n]["losses"] if math.isfinite(v)]
        if finite:
            lo = min(finite)
            ax.set_ylim(lo - 0.05, lo + max(0.6, 0.25 * (np.median(finite) - lo) + 0.3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    targets = list(drift["lr_drift_log2"])
    pos = np.arange(len(targets))
    for i, param in enumerate(PARAMS):
        vals = [drift["lr_drift_log2"][t][param] for t in targets]
        ax.bar(pos + (i - 0.5) * 0.4, vals, width=0.4, label=PARAM_LABEL[param])
    ax.axhline(TEN_PERCENT_LOG2, color="r", ls="--", lw=1, label="log2(1.1)")
    ax.set_xticks(pos, targets, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("|log2 eta*_target - log2 eta*_proxy|")
    ax.set_title("eta* drift vs the proxy of the same parameterization", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_overlay(overlay: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, param in zip(axes, PARAMS, strict=True):
        runs = overlay["runs"][param]
        colors = plt.get_cmap("tab10")(np.linspace(0, 1, max(len(runs), 2)))
        for color, (name, r) in zip(colors, runs.items(), strict=False):
            ys = np.asarray(r["train_curve"], dtype=float)
            if ys.size == 0:
                continue
            k = max(1, min(10, ys.size // 10))
            smooth = np.convolve(ys, np.ones(k) / k, mode="valid")
            bold = name == PROXY.name
            c = "k" if bold else color
            ax.plot(np.arange(k, ys.size + 1), smooth, color=c, lw=2.2 if bold else 1.0, label=name)
            if r["eval_curve"]:
                ex, ey = zip(*r["eval_curve"], strict=True)
                ax.plot(ex, ey, ls="none", marker="o", ms=4, color=c)
        ax.set_title(f"{PARAM_LABEL[param]} at the proxy's eta* = {overlay['lr'][param]:.3g}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss (running mean); dots: held-out")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- main
def _fit_dict(fit: OptimumFit) -> dict[str, Any]:
    return _jsonable(fit.to_dict())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer targets, 50-step runs (about 5 min)")
    size.add_argument("--smoke", action="store_true", help="a < 1 min pipeline check; writes under /tmp")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds (default: the profile's; --transfer: 0-4)"
    )
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: by profile)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    t = parser.add_argument_group("transfer regret (--transfer)")
    size.add_argument(  # in the exclusive group: --transfer has its own protocol, no --quick/--smoke profile
        "--transfer", action="store_true", help="per-seed LR sweeps -> regret and drift with intervals"
    )
    t.add_argument("--targets", nargs="+", default=None, help="target names (default: the six, in run order)")
    t.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    t.add_argument("--eval_tokens", type=int, default=64_000, help="fixed held-out tokens")
    t.add_argument("--eval_every", type=int, default=50, help="steps between the averaged last evaluations")
    t.add_argument("--last_evals", type=int, default=3, help="evaluations averaged into a run's loss")
    t.add_argument("--center_log2", type=float, default=-7.0, help="centre of the 7-point log2 lr grid")
    t.add_argument("--max_minutes", type=float, default=0.0, help="start no run after this (0: no limit)")
    t.add_argument("--runs_only", action="store_true", help="train and store runs; no analysis")
    t.add_argument("--n_boot", type=int, default=2000, help="bootstrap resamples over seeds")
    t.add_argument("--params", nargs="+", choices=PARAMS, default=list(PARAMS), help="parameterizations")
    t.add_argument(
        "--store", type=Path, default=HERE / "results" / "complete_mue_runs", help="stored runs (committed)"
    )
    t.add_argument("--only_stored", action="store_true", help="train nothing: analyse the runs stored so far")
    t.add_argument(
        "--size_only", action="store_true",
        help="train nothing: time each shape's step here and estimate the CPU-hours of the runs not stored",
    )  # fmt: skip
    t.add_argument("--size_steps", type=int, default=10, help="timed steps per shape with --size_only")
    t.add_argument("--lr_points", type=int, default=7, help="initial points of the log2 lr grid")
    t.add_argument("--lr_spacing", type=float, default=0.5, help="log2 lr between grid points")
    t.add_argument("--max_lr_points", type=int, default=11, help="grid points at most, after extension")
    t.add_argument("--train_docs", type=int, default=6000, help="GCIDE entries to train on")
    t.add_argument(
        "--data_file", default=None, help="load the tokens from here (if absent: build, save here)"
    )
    t.add_argument("--device", default="cpu", help="where runs train (cuda on a GPU machine)")
    t.add_argument("--shard", default=None, help="K/N: train only shard K of N of the runs (N processes)")
    t.add_argument("--coord_widths", type=int, nargs="+", default=[64, 128, 256, 512], help="coord check d")
    t.add_argument("--coord_experts", type=int, nargs="+", default=[4, 8, 16, 32], help="coord check N")
    t.add_argument("--coord_steps", type=int, default=4, help="coordinate-check steps on the fixed batch")
    t.add_argument("--coord_seeds", type=int, nargs="+", default=[0, 1, 2], help="coordinate-check seeds")
    args = parser.parse_args(argv)
    if args.transfer:
        return transfer_main(args)

    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "default"]
    if args.seeds:
        profile = replace(profile, seeds=tuple(args.seeds))
    if args.smoke:
        out_dir = args.out or Path("/tmp/hff_moe_smoke")
        cache_dir, stem = out_dir / "runs", "moe"
    else:
        out_dir = args.out or HERE / "results"
        cache_dir = REPO / "runs" / "moe"
        stem = "moe" if profile.name == "default" else f"moe_{profile.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / f"{stem}.json"
    torch.set_num_threads(min(os.cpu_count() or 1, torch.get_num_threads()))
    import transformers
    from tqdm import tqdm

    transformers.logging.set_verbosity_error()
    started = time.time()
    data = build_data(profile)
    print(
        f"[{profile.name}] {len(data['train'])} training sequences of {profile.seq} bytes "
        f"({data['train_tokens']:,} tokens), held-out {len(data['eval'])}; seeds {list(profile.seeds)}; "
        f"results -> {results_path}"
    )
    bar = tqdm(total=0, desc="runs", unit="run", disable=args.no_progress, dynamic_ncols=True)
    runner = Runner(profile, data, RunCache(cache_dir), bar)

    t0 = time.time()
    sw = section_sweeps(runner)
    t_sweeps = time.time() - t0
    proxy_lr = {param: sw["proxy_fits"][param].lr_star for param in PARAMS}
    t0 = time.time()
    ov = section_overlay(runner, proxy_lr)
    bar.close()
    t_overlay = time.time() - t0
    t0 = time.time()
    co = section_coord(profile, data, proxy_lr)
    t_coord = time.time() - t0

    drift = sw["drift"]
    print(f"\nLR sweeps ({profile.steps} steps, {profile.batch}x{profile.seq} bytes): proxy eta* "
          + ", ".join(f"{p} {proxy_lr[p]:.4g}" for p in PARAMS))  # fmt: skip
    print(table(drift["rows"], drift["header"]))
    print(
        f"max drift (log2): SP {drift['max_lr_drift_log2_sp']:.3f}, Complete-muE {drift['max_lr_drift_log2_mue']:.3f}"
        f" (target <= {TEN_PERCENT_LOG2:.4f} = log2 1.1)"
    )
    axis_rows = [[a, v["sp"], v["mue"]] for a, v in drift["max_lr_drift_log2_by_axis"].items()]
    print(table(axis_rows, ["axis", "max drift SP", "max drift muE"]))
    for f in drift["flags"]:
        print(f"  flag: {f}")
    vb = sw["drift_vs_moe_base"]
    print(f"\nthe same eta* against the base MoE target {vb['base']} (dense MoE -> sparse axes, and width)")
    print(
        table(
            [[r[0], r[1], r[-3], r[-2]] for r in vb["rows"]], ["target", "axes", "|drift| sp", "|drift| mue"]
        )
    )
    print(table([[a, v["sp"], v["mue"]] for a, v in vb["max_lr_drift_log2_by_axis"].items()],
                ["axis", "max drift SP", "max drift muE"]))  # fmt: skip
    noise = sw["seed_noise"]
    if noise["median"]:
        print(
            "seed noise floor (range of per-seed log2 eta* per configuration): "
            + ", ".join(
                f"{p} median {noise['median'][p]:.3f}, max {noise['max'][p]:.3f}" for p in noise["median"]
            )
        )

    rows = [
        [axis]
        + [v[w]["worst"] for w in ("before", "after")]
        + [v[w]["last_step_worst"] for w in ("before", "after")]
        + [v[w]["worst_group"] for w in ("before", "after")]
        for axis, v in co["spread"].items()
    ]
    print(
        f"\nCoordinate checks ({profile.coord_steps} steps; worst max/min across models, logits at init excluded)"
    )
    print(
        table(rows, ["across", "SP", "muE", "SP last step", "muE last step", "SP worst at", "muE worst at"])
    )
    diag = co["diagnostics"]["width_mue_readout_lr"]
    print(
        "diagnostic, muE across widths by readout_lr (lm_head LR: mup unchanged = plan default, blog x1/rho_d)"
    )
    for rule in ("mup", "blog"):
        r = diag[rule]
        logits = "/".join(f"{v:.3g}" for v in r["logits_last_step"].values())
        print(
            f"  readout_lr={rule}: worst {r['spread']['worst']:.3g} at {r['spread']['worst_group']}, last step "
            f"{r['spread']['last_step_worst']:.3g} at {r['spread']['last_step_worst_group']}; logits at the last "
            f"step {logits} (d={'/'.join(r['logits_last_step'])})"
        )
    crow = [
        [c, v["worst_abs_log2_ratio"], v["block_out_spread_without_companion"]]
        for c, v in co["convention"]["measured"].items()
    ]
    print("\nH_act convention (muE block output vs the unit-expansion dense companion)")
    print(table(crow, ["convention", "worst |log2 ratio|", "block spread w/o companion"]))
    print(f"flat vs the companion: {co['convention']['flat_vs_unit_companion']}; the code uses "
          f"{co['convention']['code_default']!r}")  # fmt: skip

    orows = []
    for param in PARAMS:
        for name, g in ov["gaps_vs_dense"][param].items():
            orows.append(
                [
                    param,
                    name,
                    ov["runs"][param][name]["final_eval_loss"],
                    g["gap_mid"],
                    g["gap_end"],
                    g["widening"],
                ]
            )
    print(f"\n{ov['steps']}-step overlay at the proxies' eta* (held-out loss gap to the dense proxy)")
    print(table(orows, ["param", "variant", "final loss", "gap mid", "gap end", "widening"]))

    stem_path = out_dir / stem
    plot_sweeps(sw, Path(f"{stem_path}_sweeps.png"))
    plot_overlay(ov, Path(f"{stem_path}_overlay.png"))
    pngs = [f"{stem}_sweeps.png", f"{stem}_overlay.png"]
    for key, cd in co["data"].items():
        name = f"{stem}_coord_{key.replace('/', '_')}.png"
        extra = f", readout_lr {cd.meta['readout_lr']}" if cd.meta.get("readout_lr") else ""
        title = (
            f"coord check {key}: {PARAM_LABEL.get(cd.meta['param'], cd.meta['param'])}, proxy lr "
            f"{cd.meta['lr']:.3g}, H_act convention {cd.meta['convention']}{extra}"
        )
        cd.plot(out_dir / name, title=title)
        pngs.append(name)

    timings = {k: float(np.median(v)) for k, v in runner.timings.items()}
    result = {
        "benchmark": "complete_mue (arXiv 2605.23893)",
        "profile": profile.summary(),
        "family": "qwen3 (dense proxy) / qwen3_moe (targets), transformers " + transformers.__version__,
        "tokens": "UTF-8 bytes (vocab 256), 0 byte between documents",
        "data": f"GCIDE dictionary (Debian dict-gcide) via hf_fundamentals.corpora.build_corpus: {data['id']}",
        "seeds": {
            "model_init_and_data_order": list(profile.seeds),
            "corpus_sample": 0,
            "coord_check_batches": 1,
        },
        "hyperparameters": {
            "mue_readout_lr": "mup",
            "init_std": INIT_STD,
            "weight_decay": WEIGHT_DECAY,
            "betas": list(BETAS),
            "eps": EPS,
            "schedule": f"{profile.warmup_frac:.0%} linear warmup, cosine to 0",
        },  # fmt: skip
        "grid": {
            "lattice": f"log2 lr in multiples of {profile.spacing}",
            "spacing_log2": profile.spacing,
            "initial_points": profile.initial_points,
            "max_points": profile.max_points,
            "margin": profile.margin,
            "proxy_center_log2": profile.center_log2,
            "target_center": "the matching proxy's fitted log2 eta*, snapped to the lattice",
            "fit": "fit_optimum: quadratic in log2 lr over the 5 finite points nearest the grid minimum",
        },
        "proxy": {
            "shape": PROXY.describe(),
            "lr_star": proxy_lr,
            "fit": {p: _fit_dict(sw["proxy_fits"][p]) for p in PARAMS},
        },  # fmt: skip
        "targets": {t.name: {"shape": t.describe(), "axes": list(t.axes)} for t in profile.targets},
        "lr_drift_log2": drift["lr_drift_log2"],
        "max_lr_drift_log2_mue": drift["max_lr_drift_log2_mue"],
        "max_lr_drift_log2_sp": drift["max_lr_drift_log2_sp"],
        "max_lr_drift_log2_by_axis": drift["max_lr_drift_log2_by_axis"],
        "ten_percent_log2": TEN_PERCENT_LOG2,
        "signed_log2_shift": drift["signed_log2_shift"],
        "within_ten_percent": drift["within_threshold"],
        "fit_flags": drift["flags"],
        "seed_noise_log2": sw["seed_noise"],
        "lr_drift_log2_vs_moe_base": {
            "base": sw["drift_vs_moe_base"]["base"],
            "lr_drift_log2": sw["drift_vs_moe_base"]["lr_drift_log2"],
            "max_by_axis": sw["drift_vs_moe_base"]["max_lr_drift_log2_by_axis"],
            "max_lr_drift_log2_mue": sw["drift_vs_moe_base"]["max_lr_drift_log2_mue"],
            "max_lr_drift_log2_sp": sw["drift_vs_moe_base"]["max_lr_drift_log2_sp"],
        },
        "sweeps": {
            param: {
                name: {
                    "lrs": [2.0**x for x in s["log2_lrs"]],
                    "log2_lrs": s["log2_lrs"],
                    "losses": s["losses"],
                    "fit": _fit_dict(s["fit"]),
                    "per_seed_losses": {str(k): v for k, v in s["per_seed_losses"].items()},
                    "seed_fits": {str(k): _fit_dict(f) for k, f in s["seed_fits"].items()},
                }  # fmt: skip
                for name, s in sw["sweeps"][param].items()
            }
            for param in PARAMS
        },
        "coord_check_spread": {
            axis: {
                "before": v["before"]["worst"],
                "after": v["after"]["worst"],
                "before_last_step": v["before"]["last_step_worst"],
                "after_last_step": v["after"]["last_step_worst"],
            }
            for axis, v in co["spread"].items()
        },
        "coord_check_spread_detail": co["spread"],
        "coord_check_diagnostics": co["diagnostics"],
        "coord_check_pass_threshold": 1.5,
        "h_act_convention": co["convention"],
        "coord_check": {k: cd.to_dict() for k, cd in co["data"].items()},
        "overlay": ov,
        "plots": pngs,
        "seconds": {
            "total": time.time() - started,
            "sweeps": t_sweeps,
            "overlay": t_overlay,
            "coord": t_coord,
        },
        "seconds_per_step": timings,
        "machine": machine(),
    }
    results_path.write_text(json.dumps(_jsonable(result), indent=1))
    print(f"\n{time.time() - started:.0f} s; results in {results_path}; plots: {', '.join(pngs)}")
    return result


if __name__ == "__main__":
    main()
