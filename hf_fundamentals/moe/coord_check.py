"""Coordinate check: the mean |x| of chosen module outputs over the first training steps, across models.

The standard µP test (microsoft/mup ``get_coord_data`` / ``plot_coord_data``, see the microsoft/mup README;
the MoE axes are our extension): train each model of a family (keyed by width, or at fixed width by active
experts a, experts N or granularity) for a few steps and record the mean |x| of every chosen module's output
at each step. Under a correct parameterization the curves lie on top of each other; a missing width factor
shows up as curves that fan out with the key (blow up or collapse). :meth:`CoordData.spread` puts a number on
it: max/min across the models per module per step (our pass threshold is 1.5x; the µP demo of transformers PR
#45848 reports about 1.02-1.05x per module, 1.5x for lm_head).

Step ``t`` records the forward pass of batch ``t`` *before* the ``t``-th optimizer step (t = 0 is the
initialization), as mup does. Outputs that are tuples (attention, routers) contribute their ``output_index``-th
tensor (the first tensor when that entry is not one). A module called several times in one forward is averaged
over its calls. Hooks are removed afterwards, also when training raises.

Core module: torch, numpy and matplotlib only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "SLOPE_TOLERANCE",
    "CoordData",
    "CoordVerdict",
    "Spread",
    "coord_check",
    "coord_verdict",
    "default_module_group",
]

LAYER_INDEX = re.compile(r"\.\d+(?=\.|$)")


def default_module_group(name: str) -> str:
    """A module's group: its name with layer indices replaced by ``*`` (``model.layers.3.mlp`` -> ``model.layers.*.mlp``)."""
    return LAYER_INDEX.sub(".*", name)


@dataclass(frozen=True)
class Spread:
    """max/min of mean |x| across models, per module per step (``per_module``), and where it is worst.

    A spread is ``inf`` when some model's value is zero or not finite (a collapsed or diverged coordinate);
    a module seen by fewer than two models has spread 1."""

    per_module: dict[str, list[float]]
    worst: float
    worst_module: str | None
    worst_step: int | None

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict (``inf`` is written as the string ``"inf"``)."""
        return _json_floats(asdict(self))


@dataclass
class CoordData:
    """Mean |x| of module outputs per model (``keys``, in the order given) per module per step.

    ``values[key][module]`` is the list over steps (absent when that model has no such module), ``losses[key]``
    the training loss at each step, ``meta`` free-form notes (what the keys mean, the LR, ...); with several
    seeds ``values`` is their mean and ``per_seed[seed]`` holds each seed's own values.
    """

    keys: list[str]
    modules: list[str]
    steps: int
    values: dict[str, dict[str, list[float]]]
    losses: dict[str, list[float]]
    meta: dict[str, Any] = field(default_factory=dict)
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ numbers
    def spread(self, modules: Sequence[str] | None = None, steps: Sequence[int] | None = None) -> Spread:
        """max/min across the models per module per step, and the worst over ``modules`` x ``steps``
        (all by default; ``steps`` may be negative, counted from the end)."""
        chosen = list(self.modules if modules is None else modules)
        unknown = [m for m in chosen if m not in self.modules]
        if unknown:
            raise ValueError(f"CoordData.spread: unknown modules {unknown}; known: {self.modules}")
        step_ids = range(self.steps) if steps is None else [s % self.steps for s in steps]
        per_module: dict[str, list[float]] = {}
        worst, worst_module, worst_step = 1.0, None, None
        for module in self.modules:
            rows = [self.values[k][module] for k in self.keys if module in self.values[k]]
            out = []
            for t in range(self.steps):
                vals = [r[t] for r in rows]
                out.append(_ratio(vals))
            per_module[module] = out
            if module in chosen:
                for t in step_ids:
                    if out[t] > worst or (worst_module is None and out[t] >= worst):
                        worst, worst_module, worst_step = out[t], module, t
        return Spread(per_module=per_module, worst=worst, worst_module=worst_module, worst_step=worst_step)

    def grouped(self, group: Callable[[str], str] = default_module_group) -> CoordData:
        """The same data with modules merged into groups (mean over the members a model has), e.g. one row per
        kind of module across layers."""
        names: dict[str, list[str]] = {}
        for m in self.modules:
            names.setdefault(group(m), []).append(m)
        values: dict[str, dict[str, list[float]]] = {}
        for k in self.keys:
            values[k] = {}
            for g, members in names.items():
                rows = [self.values[k][m] for m in members if m in self.values[k]]
                if rows:
                    values[k][g] = [float(np.mean([r[t] for r in rows])) for t in range(self.steps)]
        meta = {**self.meta, "grouped": True}
        out = CoordData(list(self.keys), list(names), self.steps, values, dict(self.losses), meta)
        for seed, vals in self.per_seed.items():
            one = CoordData(list(self.keys), list(self.modules), self.steps, vals, {}, {})
            out.per_seed[seed] = one.grouped(group).values
        return out

    def ratio_to(self, reference: str, module: str, step: int = -1) -> dict[str, float]:
        """``{key: value / value of reference}`` for one module at one step (keys lacking the module skipped)."""
        if reference not in self.keys:
            raise ValueError(f"CoordData.ratio_to: unknown reference key {reference!r}; keys: {self.keys}")
        if module not in self.values[reference]:
            raise ValueError(f"CoordData.ratio_to: the reference {reference!r} has no module {module!r}")
        ref = self.values[reference][module][step]
        return {k: self.values[k][module][step] / ref for k in self.keys if module in self.values[k]}

    # --------------------------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats as strings ``"inf"``/``"-inf"``/``"nan"``)."""
        return _json_floats(
            {
                "keys": list(self.keys),
                "modules": list(self.modules),
                "steps": self.steps,
                "values": self.values,
                "losses": self.losses,
                "meta": self.meta,
                "per_seed": self.per_seed,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoordData:
        """Inverse of :meth:`to_dict`."""
        missing = {"keys", "modules", "steps", "values", "losses"} - set(data)
        if missing:
            raise ValueError(f"CoordData.from_dict: missing keys {sorted(missing)}")
        return cls(
            keys=list(data["keys"]),
            modules=list(data["modules"]),
            steps=int(data["steps"]),
            values={
                k: {m: [_from_json(v) for v in vs] for m, vs in d.items()} for k, d in data["values"].items()
            },
            losses={k: [_from_json(v) for v in vs] for k, vs in data["losses"].items()},
            meta=dict(data.get("meta", {})),
            per_seed={
                s: {k: {m: [_from_json(v) for v in vs] for m, vs in d.items()} for k, d in by_key.items()}
                for s, by_key in data.get("per_seed", {}).items()
            },
        )

    def plot(
        self,
        path: str | Path,
        *,
        group: Callable[[str], str] | None = default_module_group,
        title: str | None = None,
        panel_width: float = 3.2,
    ) -> Path:
        """One panel per module group (log-y mean |x| against step), one curve per key, like mup's
        ``plot_coord_data``; saved as an image at ``path`` (matplotlib's Agg backend). ``group=None`` plots every
        module in its own panel."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = self if group is None else self.grouped(group)
        n = len(data.modules)
        cols = min(n, 4)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(
            rows, cols, figsize=(panel_width * cols, 2.6 * rows + 0.6), squeeze=False, sharex=True
        )
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(data.keys), 1)))
        spread = data.spread()
        steps = np.arange(data.steps)
        for i, module in enumerate(data.modules):
            ax = axes[i // cols][i % cols]
            for color, key in zip(colors, data.keys, strict=False):
                if module in data.values[key]:
                    ys = np.asarray(data.values[key][module], dtype=float)
                    ok = np.isfinite(ys) & (ys > 0)
                    ax.plot(steps[ok], ys[ok], marker="o", ms=3, color=color, label=str(key))
            ax.set_yscale("log")
            worst = max(spread.per_module[module])
            ax.set_title(f"{module}\nspread {worst:.3g}x", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both")
            if i // cols == rows - 1:
                ax.set_xlabel("step", fontsize=8)
            if i % cols == 0:
                ax.set_ylabel("mean |x|", fontsize=8)
        for j in range(n, rows * cols):
            axes[j // cols][j % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=7, title=str(self.meta.get("key_name", "")))
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout(rect=(0, 0, 0.9, 0.95 if title else 1.0))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


# ------------------------------------------------------------------------------------------------ helpers
def _ratio(vals: Sequence[float]) -> float:
    """max/min of positive finite values (inf if any is zero or not finite; 1 for fewer than two)."""
    if len(vals) < 2:
        return 1.0
    arr = np.asarray(vals, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        return math.inf
    return float(arr.max() / arr.min())


def _json_floats(obj: Any) -> Any:
    """Replace non-finite floats by strings so ``json.dumps`` writes strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Mapping):
        return {k: _json_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_floats(v) for v in obj]
    return obj


def _from_json(v: Any) -> float:
    return float(v)  # float("inf") / float("nan") parse the strings back


def _first_tensor(output: Any, index: int) -> torch.Tensor | None:
    """The tensor a hook records: the output itself, or entry ``index`` of a tuple (else its first tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple):
        if 0 <= index < len(output) and isinstance(output[index], torch.Tensor):
            return output[index]
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    return None


def _default_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Causal-LM style loss: ``model(**batch).loss`` for a mapping, ``model(input_ids=b, labels=b).loss`` for
    a tensor of token ids."""
    out = model(**batch) if isinstance(batch, Mapping) else model(input_ids=batch, labels=batch)
    loss = getattr(out, "loss", None)
    if loss is None:
        raise ValueError(
            "coord_check: the model's output has no .loss; pass loss_fn=(model, batch) -> scalar tensor"
        )
    return loss


def _select(
    model: nn.Module, modules: str | re.Pattern[str] | Sequence[str], key: str
) -> dict[str, nn.Module]:
    """The named modules to hook: a regex (``re.search`` on the module name) or a list of exact names."""
    named = dict(model.named_modules())
    if isinstance(modules, str | re.Pattern):
        pattern = re.compile(modules) if isinstance(modules, str) else modules
        chosen = {n: m for n, m in named.items() if n and pattern.search(n)}
        if not chosen:
            raise ValueError(
                f"coord_check: the pattern {pattern.pattern!r} matches no module of model {key!r} "
                f"(first names: {list(named)[1:8]})"
            )
        return chosen
    names = list(modules)
    if not names:
        raise ValueError("coord_check: modules is an empty list; give module names or a regex")
    missing = [n for n in names if n not in named]
    if missing:
        raise ValueError(f"coord_check: model {key!r} has no modules {missing}")
    return {n: named[n] for n in names}


class _Recorder:
    """A forward hook accumulating mean |x| of one module's output in the current forward pass."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.total = 0.0
        self.calls = 0

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        x = _first_tensor(output, self.index)
        if x is None or x.numel() == 0:
            return
        self.total += float(x.detach().float().abs().mean())
        self.calls += 1

    def pop(self) -> float:
        value = self.total / self.calls if self.calls else math.nan
        self.total, self.calls = 0.0, 0
        return value


# ------------------------------------------------------------------------------------------------- driver
def coord_check(
    model_factories: Mapping[str | float, Callable[[], nn.Module]],
    batches: Sequence[Any] | Callable[[int], Any],
    steps: int,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    | Mapping[str | float, Callable[[nn.Module], torch.optim.Optimizer]],
    modules: str | re.Pattern[str] | Sequence[str] = r".",
    *,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    output_index: int = 0,
    seed: int | None = 0,
    meta: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
    fix_data: bool = False,
) -> CoordData:
    """Train each model ``steps`` steps and record mean |x| of the chosen module outputs at every step.

    ``model_factories``: ``{key: () -> model}`` (keys such as widths or ``"a=4"``; stored as strings in the given
    order). ``batches``: a sequence (batch ``t`` is ``batches[t % len]``) or ``t -> batch``; every model sees the
    same batches. ``make_optimizer``: ``model -> optimizer``, or a mapping with one per key (per-model LR rules).
    ``modules``: a regex searched in module names, or exact names. ``loss_fn(model, batch)`` defaults to the
    causal-LM ``.loss``. ``seed`` seeds torch before each factory call (None leaves the RNG alone).
    ``seeds``: repeat for each seed and average mean |x| (and the loss) over them, as mup's
    ``get_coord_data(nseeds=...)`` does; ``fix_data``: every step sees batch 0 (mup's ``fix_data=True``), so the
    curves show the parameterization, not the data order.
    """
    if seeds is not None:
        seeds = list(seeds)
        if not seeds:
            raise ValueError("coord_check: seeds is empty; give at least one seed or None")
        runs = [
            coord_check(model_factories, batches, steps, make_optimizer, modules, loss_fn=loss_fn,
                        output_index=output_index, seed=s, meta=meta, fix_data=fix_data)
            for s in seeds
        ]  # fmt: skip
        first = runs[0]
        values = {
            k: {m: np.mean([r.values[k][m] for r in runs], axis=0).tolist() for m in first.values[k]}
            for k in first.keys
        }
        losses = {k: np.mean([r.losses[k] for r in runs], axis=0).tolist() for k in first.keys}
        out = CoordData(first.keys, first.modules, steps, values, losses, dict(meta or {}))
        out.meta.update(seeds=seeds, fix_data=fix_data)
        out.per_seed = {str(s): r.values for s, r in zip(seeds, runs, strict=True)}
        return out
    if not isinstance(model_factories, Mapping) or not model_factories:
        raise ValueError("coord_check: model_factories must be a non-empty mapping {key: () -> model}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"coord_check: steps must be an integer >= 1; got {steps!r}")
    if not callable(batches):
        if isinstance(batches, str | bytes) or not isinstance(batches, Sequence) or len(batches) == 0:
            raise ValueError("coord_check: batches must be a non-empty sequence or a function step -> batch")
    if isinstance(make_optimizer, Mapping):
        missing = [k for k in model_factories if k not in make_optimizer]
        if missing:
            raise ValueError(f"coord_check: make_optimizer has no entry for keys {missing}")
    elif not callable(make_optimizer):
        raise ValueError(
            "coord_check: make_optimizer must be model -> optimizer, or a mapping of those per key"
        )
    loss_fn = _default_loss if loss_fn is None else loss_fn
    keys = [str(k) for k in model_factories]
    if len(set(keys)) != len(keys):
        raise ValueError(f"coord_check: keys collide as strings: {keys}")

    def batch_at(t: int) -> Any:
        t = 0 if fix_data else t
        return batches(t) if callable(batches) else batches[t % len(batches)]

    values: dict[str, dict[str, list[float]]] = {}
    losses: dict[str, list[float]] = {}
    all_modules: list[str] = []
    for raw_key, key in zip(model_factories, keys, strict=True):
        if seed is not None:
            torch.manual_seed(seed)
        model = model_factories[raw_key]()
        opt_factory = make_optimizer[raw_key] if isinstance(make_optimizer, Mapping) else make_optimizer
        optimizer = opt_factory(model)
        chosen = _select(model, modules, key)
        recorders = {name: _Recorder(output_index) for name in chosen}
        handles = [m.register_forward_hook(recorders[n]) for n, m in chosen.items()]
        series: dict[str, list[float]] = {n: [] for n in chosen}
        loss_series: list[float] = []
        try:
            model.train()
            for t in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model, batch_at(t))
                for n, rec in recorders.items():
                    series[n].append(rec.pop())
                loss_series.append(float(loss.detach()))
                loss.backward()
                optimizer.step()
        finally:
            for h in handles:
                h.remove()
        values[key] = series
        losses[key] = loss_series
        all_modules += [n for n in series if n not in all_modules]
    return CoordData(keys, all_modules, steps, values, losses, dict(meta or {}))


GROUP_LABELS: dict[str, str] = {
    "model.embed_tokens": "embedding",
    "model.layers.*": "residual (layer out)",
    "model.layers.*.self_attn": "attention out",
    "model.layers.*.mlp": "FFN/MoE block out",
    "model.layers.*.mlp.experts": "routed sum",
    "model.layers.*.mlp.gate": "router logits",
    "lm_head": "logits",
}
"""Readable names of the grouped module outputs of a Llama/Qwen-style model (``CoordData.grouped`` keys)."""


def spread_summary(data: CoordData, *, skip_logits_at_init: bool = True) -> dict[str, Any]:
    """Worst max/min across models over the grouped modules (layers averaged) and steps, per group, and the same at
    the last step (where updates, not the init, set the scale). The logits at step 0 are left out by default (a
    µP readout shrinks them at init by design, mup README)."""
    g = data.grouped()
    s = g.spread()
    per_group, last = {}, {}
    for module, per_step in s.per_module.items():
        skip0 = skip_logits_at_init and module == "lm_head" and g.steps > 1
        per_group[GROUP_LABELS.get(module, module)] = max(per_step[1:] if skip0 else per_step)
        last[GROUP_LABELS.get(module, module)] = per_step[-1]
    where = max(per_group, key=per_group.get)
    where_last = max(last, key=last.get)
    return {
        "worst": per_group[where],
        "worst_group": where,
        "per_group": per_group,
        "last_step_worst": last[where_last],
        "last_step_worst_group": where_last,
        "last_step_per_group": last,
    }


def readout_lr_comparison(mup: CoordData, blog: CoordData) -> dict[str, Any]:
    """The µE width check under ``readout_lr`` "mup" (the plan default) vs "blog": spread summaries, and the
    logits (lm_head mean |x|) and block output per width at the last step."""
    out: dict[str, Any] = {}
    for rule, cd in (("mup", mup), ("blog", blog)):
        g = cd.grouped()
        out[rule] = {
            "spread": spread_summary(cd),
            "logits_last_step": {k: g.values[k]["lm_head"][-1] for k in g.keys},
            "block_out_last_step": {k: g.values[k]["model.layers.*.mlp"][-1] for k in g.keys},
        }
    return out


# ------------------------------------------------------------------------------------------- the statement
SLOPE_TOLERANCE = 0.25
"""Pass when |d log(mean |x|) / d log(key)| <= 0.25 for every module at every judged step. A correct
parameterization has slope 0; the mildest error the check is for, a missing 1/sqrt(fan-in) (a fixed init std,
or an Adam LR off by sqrt(width)), gives 0.5, and a missing 1/fan-in on an Adam LR gives 1 (µP's scaling rules: Yang & Hu,
arXiv 2011.14522; Yang et al., arXiv 2203.03466). 0.25 is halfway to the mildest error; over
an 8x range of widths it allows a 1.7x spread."""


@dataclass(frozen=True)
class CoordVerdict:
    """Pass/fail of a coordinate check: per module the least-squares slope of log mean |x| against log key
    value at each step (seed-averaged values), the worst one, and per seed the slope at that worst point."""

    passed: bool
    tolerance: float
    slopes: dict[str, list[float]]
    worst_module: str | None
    worst_step: int | None
    worst_slope: float
    seed_slopes_at_worst: dict[str, float]
    statement: str

    def to_dict(self) -> dict[str, Any]:
        return _json_floats(asdict(self))


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y on log x; 0 when every value is exactly 0 (a zero-initialized output:
    flat), inf if only some are zero or a value is not finite."""
    y = np.asarray(ys, dtype=float)
    if np.all(y == 0):
        return 0.0
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        return math.inf
    return float(np.polyfit(np.log(np.asarray(xs, dtype=float)), np.log(y), 1)[0])


def coord_verdict(
    data: CoordData,
    key_values: Mapping[str, float],
    *,
    tolerance: float = SLOPE_TOLERANCE,
    group: Callable[[str], str] | None = default_module_group,
    skip_logits_at_init: bool = True,
    name: str = "",
) -> CoordVerdict:
    """Does the parameterization keep every coordinate flat along the axis? ``key_values`` maps the keys to
    judge to their size on the axis (width d, experts N, ...; keys left out are not judged, e.g. a dense
    reference). A slope is fitted per module (grouped across layers by default) and step over those keys;
    the logits at step 0 are skipped by default (a µP readout shrinks them at init by design, mup README)."""
    keys = [k for k in data.keys if k in key_values]
    if len(keys) < 2:
        raise ValueError(f"coord_verdict: key_values must name at least two of the keys {data.keys}")
    if not tolerance > 0:
        raise ValueError(f"coord_verdict: tolerance must be > 0; got {tolerance!r}")
    g = data.grouped(group) if group is not None else data
    xs = [float(key_values[k]) for k in keys]
    slopes: dict[str, list[float]] = {}
    worst, worst_module, worst_step = 0.0, None, None
    for module in g.modules:
        if not all(module in g.values[k] for k in keys):
            continue
        per_step = [_slope(xs, [g.values[k][module][t] for k in keys]) for t in range(g.steps)]
        slopes[module] = per_step
        for t, s in enumerate(per_step):
            if skip_logits_at_init and t == 0 and module.endswith("lm_head") and g.steps > 1:
                continue
            if worst_module is None or abs(s) > abs(worst):
                worst, worst_module, worst_step = s, module, t
    seed_slopes = {}
    if worst_module is not None:
        for seed, vals in g.per_seed.items():
            seed_slopes[seed] = _slope(xs, [vals[k][worst_module][worst_step] for k in keys])
    passed = worst_module is not None and abs(worst) <= tolerance
    label = GROUP_LABELS.get(worst_module or "", worst_module)
    spread = (
        f" (per seed {min(seed_slopes.values()):+.2f}..{max(seed_slopes.values()):+.2f})"
        if seed_slopes
        else ""
    )
    statement = (
        f"{name + ': ' if name else ''}{'PASS' if passed else 'FAIL'}: worst slope {worst:+.2f}{spread} of log "
        f"mean|x| vs log key at {label}, step {worst_step} (tolerance ±{tolerance}; keys {keys})"
    )
    return CoordVerdict(
        passed=bool(passed), tolerance=tolerance, slopes=slopes, worst_module=worst_module,
        worst_step=worst_step, worst_slope=worst, seed_slopes_at_worst=seed_slopes, statement=statement,
    )  # fmt: skip
