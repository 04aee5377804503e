"""Transfer regret and LR drift with bootstrap intervals over seeds, from per-seed LR sweeps.

What a user decides from a transfer study is whether to skip tuning the target, so the measure is the
**regret**: the loss lost by training the target at the transferred LR (the proxy's optimum) instead of at the
target's own optimum. Both optima come from a fit of the seed-mean loss against log2 lr
(:func:`~hf_fundamentals.moe.sweep.fit_optimum`: a quadratic over the points nearest the grid minimum), not a
grid minimum; the interval comes from resampling seeds with replacement (Efron & Tibshirani 1993, ch. 13,
percentile intervals), the same resample for proxy and target when they share their seeds (seed ``s`` sets the
init and the data order of both, so pairing cancels the shared part of the noise). A fit that is not convex,
or whose minimum sits on the edge of the sweep, is **degenerate**: its optimum is a grid point or a bound, and
the result says so.

Regret is read off the target's fitted quadratic when the transferred LR lies within the fitted points, else
by linear interpolation of the seed-mean losses (a transferred LR outside the whole sweep is clamped to the
edge: the regret is then a lower bound, ``extrapolated``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hf_fundamentals.moe.sweep import OptimumFit, fit_optimum

DRIFT_HALF_WIDTH_LOG2 = 0.25
"""The widest drift interval (half-width, log2) whose point a report states; wider is 'not resolved'."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap percentile interval [lo, hi]."""

    point: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0

    def to_dict(self) -> dict[str, float]:
        return {"point": self.point, "lo": self.lo, "hi": self.hi, "half_width": self.half_width}


@dataclass(frozen=True)
class TransferRegret:
    """The transfer from a proxy sweep to a target sweep.

    ``transferred_log2_lr``: the proxy's fitted optimum (the LR the target is trained at without tuning);
    ``target_log2_lr_star``: the target's own; ``drift_log2``: target optimum minus transferred (signed);
    ``regret_nats``: the target's loss at the transferred LR minus its fitted minimum. ``degenerate`` and
    ``reason``: whether a point fit is non-convex or at the sweep's edge; ``boot_degenerate_fraction``: the
    share of resamples where either fit was. ``drift_resolved``: the drift interval's half-width is within
    :data:`DRIFT_HALF_WIDTH_LOG2`."""

    transferred_log2_lr: float
    target_log2_lr_star: float
    drift_log2: Interval
    regret_nats: Interval
    proxy_fit: OptimumFit
    target_fit: OptimumFit
    degenerate: bool
    reason: str
    boot_degenerate_fraction: float
    extrapolated: bool
    drift_resolved: bool
    n_seeds: int
    n_boot: int
    level: float
    paired: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drift_log2"] = self.drift_log2.to_dict()
        d["regret_nats"] = self.regret_nats.to_dict()
        return d


def _as_sweep(name: str, log2_lrs: Sequence[float], losses: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(log2_lrs, dtype=float).ravel()
    y = np.asarray(losses, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[1] != x.size:
        raise ValueError(
            f"{name}: losses must be [seeds x lrs] with {x.size} lrs; got shape {tuple(np.shape(losses))}"
        )
    if x.size < 3:
        raise ValueError(f"{name}: a sweep needs at least 3 learning rates; got {x.size}")
    if np.isnan(y).any():
        raise ValueError(f"{name}: a loss is NaN (a missing run); diverged runs are inf")
    order = np.argsort(x)
    return x[order], y[:, order]


def _seed_mean(y: np.ndarray) -> np.ndarray:
    """Mean over seeds per LR; an LR where any seed diverged counts as diverged (inf)."""
    finite = np.isfinite(y).all(axis=0)
    out = np.full(y.shape[1], np.inf)
    out[finite] = y[:, finite].mean(axis=0)
    return out


def loss_at(fit: OptimumFit, log2_lrs: np.ndarray, mean_losses: np.ndarray, x: float) -> tuple[float, bool]:
    """The sweep's loss at log2 lr ``x``: the fitted quadratic inside the fitted points (when the fit is
    convex), else linear interpolation of the finite seed-mean losses; True when ``x`` is outside the sweep
    (clamped to its edge: a lower bound on the loss there)."""
    used = np.log2(np.asarray(fit.lrs_used))
    if not fit.degenerate and fit.coefficients and used.min() <= x <= used.max():
        return float(np.polyval(fit.coefficients, x)), False
    ok = np.isfinite(mean_losses)
    xs, ys = log2_lrs[ok], mean_losses[ok]
    outside = bool(x < xs.min() or x > xs.max())
    return float(np.interp(x, xs, ys)), outside


def _one(
    px: np.ndarray, py: np.ndarray, tx: np.ndarray, ty: np.ndarray, points: int
) -> tuple[float, float, float, bool, bool, OptimumFit, OptimumFit]:
    """(transferred x, target x*, regret, degenerate, extrapolated, fits) from seed-mean curves."""
    pf = fit_optimum(2.0**px, py, points=points)
    tf = fit_optimum(2.0**tx, ty, points=points)
    x_t = pf.log2_lr_star
    value, outside = loss_at(tf, tx, ty, x_t)
    regret = max(0.0, value - tf.loss_star)  # below 0 only where a poor fit's vertex misses the grid minimum
    bad = pf.degenerate or pf.at_edge or tf.degenerate or tf.at_edge
    return x_t, tf.log2_lr_star, regret, bad, outside, pf, tf


def transfer_regret(
    proxy_log2_lrs: Sequence[float],
    proxy_losses: Any,
    target_log2_lrs: Sequence[float],
    target_losses: Any,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    points: int = 5,
    paired: bool | None = None,
) -> TransferRegret:
    """Regret and drift of transferring the proxy's optimum LR to the target, with bootstrap intervals.

    ``*_losses`` are [seeds x lrs] held-out losses (inf for a diverged run) on the matching log2 lr grids.
    ``paired`` (default: when both have the same number of seeds) resamples the same seed rows for both.
    """
    px, py = _as_sweep("proxy", proxy_log2_lrs, proxy_losses)
    tx, ty = _as_sweep("target", target_log2_lrs, target_losses)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    if paired is None:
        paired = py.shape[0] == ty.shape[0]
    if paired and py.shape[0] != ty.shape[0]:
        raise ValueError(
            f"paired resampling needs as many proxy seeds as target seeds ({py.shape[0]} vs {ty.shape[0]})"
        )
    x_t, x_star, regret, bad, outside, pf, tf = _one(px, _seed_mean(py), tx, _seed_mean(ty), points)
    rng = np.random.default_rng(seed)
    drifts, regrets, n_bad = np.empty(n_boot), np.empty(n_boot), 0
    for b in range(n_boot):
        ip = rng.integers(0, py.shape[0], py.shape[0])
        it = ip if paired else rng.integers(0, ty.shape[0], ty.shape[0])
        try:
            bx, bs, br, bbad, _, _, _ = _one(px, _seed_mean(py[ip]), tx, _seed_mean(ty[it]), points)
        except ValueError:  # every LR diverged in this resample
            bx, bs, br, bbad = x_t, x_star, math.inf, True
        drifts[b], regrets[b] = bs - bx, br
        n_bad += bbad
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    d_lo, d_hi = (float(v) for v in np.percentile(drifts, q))
    r_lo, r_hi = (float(v) for v in np.percentile(regrets, q))
    drift = Interval(x_star - x_t, d_lo, d_hi)
    reasons = [f"{who}: {f.reason}" for who, f in (("proxy", pf), ("target", tf)) if f.reason]
    if outside:
        reasons.append("the transferred lr lies outside the target's sweep: the regret is a lower bound")
    return TransferRegret(
        transferred_log2_lr=x_t,
        target_log2_lr_star=x_star,
        drift_log2=drift,
        regret_nats=Interval(regret, r_lo, r_hi),
        proxy_fit=pf,
        target_fit=tf,
        degenerate=bool(bad),
        reason="; ".join(reasons),
        boot_degenerate_fraction=n_bad / n_boot,
        extrapolated=outside,
        drift_resolved=drift.half_width <= DRIFT_HALF_WIDTH_LOG2,
        n_seeds=int(ty.shape[0]),
        n_boot=n_boot,
        level=level,
        paired=bool(paired),
    )


def transfer_table(
    sweeps: Mapping[str, Mapping[str, Mapping[str, Any]]],
    proxy: str,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    points: int = 5,
) -> dict[str, Any]:
    """Regret and drift of every target against the proxy of the same parameterization.

    ``sweeps[param][shape]`` holds ``log2_lrs`` and ``losses`` ([seeds x lrs]); ``proxy`` names the proxy shape.
    Returns ``regret_nats[param][target]`` and ``drift_log2[param][target]`` (point, lo, hi, half_width),
    ``max_regret_<param>`` (the largest point regret, with the upper end of its interval), per-target details,
    ``flags`` (degenerate fits, extrapolations, unresolved drifts) and printable ``rows``/``header`` where a
    drift whose interval is wider than :data:`DRIFT_HALF_WIDTH_LOG2` is printed as not resolved.
    """
    out: dict[str, Any] = {"regret_nats": {}, "drift_log2": {}, "details": {}, "flags": [], "rows": []}
    for param, by_shape in sweeps.items():
        if proxy not in by_shape:
            raise ValueError(f"transfer_table: no {param!r} sweep of the proxy {proxy!r}")
        ps = by_shape[proxy]
        out["regret_nats"][param], out["drift_log2"][param], out["details"][param] = {}, {}, {}
        for target, ts in by_shape.items():
            if target == proxy:
                continue
            r = transfer_regret(
                ps["log2_lrs"], ps["losses"], ts["log2_lrs"], ts["losses"],
                n_boot=n_boot, level=level, seed=seed, points=points,
            )  # fmt: skip
            out["regret_nats"][param][target] = r.regret_nats.to_dict()
            out["drift_log2"][param][target] = r.drift_log2.to_dict() | {"resolved": r.drift_resolved}
            out["details"][param][target] = r.to_dict()
            if r.degenerate or r.extrapolated:
                out["flags"].append(f"{param}/{target}: {r.reason}")
            if not r.drift_resolved:
                out["flags"].append(
                    f"{param}/{target}: drift interval half-width {r.drift_log2.half_width:.2f} log2 > "
                    f"{DRIFT_HALF_WIDTH_LOG2}: drift not resolved"
                )
            d = r.drift_log2
            drift_txt = (
                f"{d.point:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}]"
                if r.drift_resolved
                else f"not resolved (±{d.half_width:.2f})"
            )
            g = r.regret_nats
            out["rows"].append(
                [
                    param,
                    target,
                    f"{g.point:.4f} [{g.lo:.4f}, {g.hi:.4f}]",
                    drift_txt,
                    f"{r.target_fit.curvature:.3f}",
                    f"{r.boot_degenerate_fraction:.0%}" + (" (point fit)" if r.degenerate else ""),
                ]
            )
        regrets = out["regret_nats"][param]
        if regrets:
            worst = max(regrets, key=lambda t: regrets[t]["point"])
            out[f"max_regret_{param}"] = {"target": worst, **regrets[worst]}
        else:
            out[f"max_regret_{param}"] = None
    out["header"] = [
        "param", "target", f"regret nats [{level:.0%}]", "drift log2 [interval]", "curvature", "degenerate"
    ]  # fmt: skip
    out["drift_half_width_limit_log2"] = DRIFT_HALF_WIDTH_LOG2
    return out
