"""The LR optimum of a sweep, finer than its grid: a quadratic in log2(lr) around the grid minimum.

Our transfer metric (Proposed; the Complete-muE blog gives no drift number) is
``|log2(η*_target/η*_ref)| <= log2(1.1)``, finer than a √2 grid (0.5 in log2), so η* is read from a fit, not
from the grid. Diverged runs (NaN/inf loss) are dropped. A minimum at the edge of the finite grid means the
optimum lies outside the sweep: the fit would extrapolate, so η* is clamped to the edge point and flagged. A
fit that is not convex falls back to the grid minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TEN_PERCENT_LOG2 = math.log2(1.1)


@dataclass(frozen=True)
class OptimumFit:
    """Where a sweep's loss is lowest: ``lr_star`` (and its log2), the fitted curvature
    ``d²loss/d(log2 lr)²``, the fitted loss there, the points used, the fit coefficients (``np.polyval`` on
    log2 lr; empty if no fit), flags and why they were raised (``reason`` is empty for a clean interior fit)."""

    lr_star: float
    log2_lr_star: float
    curvature: float
    loss_star: float
    lrs_used: tuple[float, ...]
    losses_used: tuple[float, ...]
    coefficients: tuple[float, ...]
    at_edge: bool
    degenerate: bool
    reason: str
    n_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for logging."""
        return asdict(self)


def fit_optimum(lrs: Sequence[float], losses: Sequence[float], *, points: int = 5) -> OptimumFit:
    """Fit ``loss ≈ c2·x² + c1·x + c0`` (x = log2 lr, ``numpy.polyfit``) to the grid minimum and up to
    ``points`` finite points nearest to it in log-LR; η* is the vertex (clamped to the used span)."""
    lr_arr = np.asarray(lrs, dtype=float).ravel()
    loss_arr = np.asarray(losses, dtype=float).ravel()
    if lr_arr.shape != loss_arr.shape:
        raise ValueError(f"lrs and losses must have the same length; got {lr_arr.size} and {loss_arr.size}")
    if lr_arr.size == 0:
        raise ValueError("fit_optimum needs at least one (lr, loss) pair; got none")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an integer >= 3 (a quadratic needs three); got {points!r}")
    if not np.all(np.isfinite(lr_arr)) or np.any(lr_arr <= 0):
        raise ValueError(f"every learning rate must be finite and > 0; got {lr_arr.tolist()}")
    if np.unique(lr_arr).size != lr_arr.size:
        raise ValueError(
            f"learning rates must be distinct (average repeated seeds first); got {lr_arr.tolist()}"
        )

    order = np.argsort(lr_arr)
    lr_arr, loss_arr = lr_arr[order], loss_arr[order]
    finite = np.isfinite(loss_arr)
    n_dropped = int((~finite).sum())
    if not finite.any():
        raise ValueError("every loss is NaN or infinite (all runs diverged); nothing to fit")
    x_all = np.log2(lr_arr)
    x, y, lr_fin = x_all[finite], loss_arr[finite], lr_arr[finite]
    i_min = int(np.argmin(y))
    x_min = x[i_min]

    reasons: list[str] = []
    at_edge = x.size == 1 or i_min in (0, x.size - 1)
    if at_edge:
        side = "smallest" if i_min == 0 and x.size > 1 else "largest"
        if x.size == 1:
            side = "only"
        beyond = ""
        if side == "largest" and np.any(~finite & (x_all > x_min)):
            beyond = "; the next larger learning rates diverged"
        if side == "smallest" and np.any(~finite & (x_all < x_min)):
            beyond = "; the next smaller learning rates diverged"
        reasons.append(
            f"grid minimum at the {side} finite learning rate {2.0**x_min:.6g}{beyond}: the optimum may lie "
            f"outside the sweep and a fit would extrapolate, so lr_star is clamped to the edge point; extend the grid"
        )

    nearest = np.lexsort((x, np.abs(x - x_min)))[: min(points, x.size)]
    used = np.sort(nearest)
    xu, yu = x[used], y[used]
    coefficients: tuple[float, ...] = ()
    curvature = math.nan
    if xu.size >= 3:
        c2, c1, c0 = np.polyfit(xu - x_min, yu, 2)  # centred for conditioning
        curvature = float(2.0 * c2)
        coefficients = (float(c2), float(c1 - 2.0 * c2 * x_min), float(c2 * x_min**2 - c1 * x_min + c0))
    degenerate = not (curvature > 0)  # NaN (too few points) counts as degenerate
    if degenerate:
        why = (
            f"fewer than 3 finite losses ({xu.size})"
            if xu.size < 3
            else f"fitted curvature {curvature:.6g} <= 0 (no convex minimum)"
        )
        reasons.append(f"{why}: lr_star falls back to the grid minimum")

    lr_star = None
    if at_edge or degenerate:
        x_star, loss_star, lr_star = float(x_min), float(y[i_min]), float(lr_fin[i_min])
    else:
        x_star = float(x_min - c1 / (2.0 * c2))
        lo, hi = float(xu.min()), float(xu.max())
        if not lo <= x_star <= hi:
            reasons.append(
                f"fitted vertex 2^{x_star:.4f} lies outside the fitted points [2^{lo:.4f}, 2^{hi:.4f}]; clamped"
            )
            x_star = min(max(x_star, lo), hi)
        u = x_star - x_min
        loss_star = float(c2 * u * u + c1 * u + c0)

    return OptimumFit(
        lr_star=float(2.0**x_star) if lr_star is None else lr_star,
        log2_lr_star=x_star,
        curvature=curvature,
        loss_star=loss_star,
        lrs_used=tuple(float(v) for v in lr_fin[used]),
        losses_used=tuple(float(v) for v in yu),
        coefficients=coefficients,
        at_edge=bool(at_edge),
        degenerate=bool(degenerate),
        reason="; ".join(reasons),
        n_dropped=n_dropped,
    )


def _log2_lr(name: str, value: OptimumFit | float) -> float:
    """log2 of an optimum given as a fit or a positive learning rate."""
    if isinstance(value, OptimumFit):
        return value.log2_lr_star
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be an OptimumFit or a finite learning rate > 0; got {value!r}")
    return math.log2(value)


def lr_drift_log2(ref: OptimumFit | float, target: OptimumFit | float) -> float:
    """|log2 η*_target − log2 η*_ref|: our transfer metric; pass if <= TEN_PERCENT_LOG2 (1.1×)."""
    return abs(_log2_lr("target", target) - _log2_lr("ref", ref))


# ----------------------------------------------------------------------- running a sweep until it brackets
def snap(x: float, spacing: float) -> float:
    """``x`` rounded to the log2 lattice ``k * spacing`` (rounded to 6 decimals so lattice points are exact keys)."""
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0; got {spacing!r}")
    return round(round(x / spacing) * spacing, 6)


def initial_grid(center_log2: float, spacing: float, points: int) -> list[float]:
    """``points`` lattice points of log2(lr) around ``center_log2`` (snapped), ascending (the extra point of an
    even count goes above)."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"points must be a positive integer; got {points!r}")
    c = snap(center_log2, spacing)
    return [round(c + k * spacing, 6) for k in range(-((points - 1) // 2), points // 2 + 1)]


def grid_extension(
    results: Mapping[float, float], *, spacing: float, margin: int = 2, max_points: int = 11
) -> list[float]:
    """The log2(lr) points to run next so the sweep brackets its optimum (empty when it does, or at the budget).

    ``results`` maps lattice log2(lr) to loss (inf/NaN = diverged). The grid minimum needs ``margin`` finite
    points on each side; a side whose nearest evaluated larger (smaller) point diverged counts as bracketed
    (there is nothing to fit beyond a divergence). If every run diverged, go one point lower. At most
    ``max_points`` points in all; a sweep stopped by that budget leaves its minimum at the edge, which
    ``fit_optimum`` flags (``at_edge``).
    """
    if not results:
        raise ValueError("grid_extension needs at least one result; run the initial grid first")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
        raise ValueError(f"margin must be an integer >= 1; got {margin!r}")
    xs = sorted(results)
    room = max_points - len(xs)
    if room <= 0:
        return []
    finite = [x for x in xs if math.isfinite(results[x])]
    if not finite:
        return [snap(xs[0] - spacing, spacing)]
    x_min = min(finite, key=lambda x: (results[x], x))
    below = [x for x in xs if x < x_min]
    above = [x for x in xs if x > x_min]
    new: list[float] = []
    below_ok = sum(math.isfinite(results[x]) for x in below) >= margin or any(
        not math.isfinite(results[x]) for x in below
    )
    above_ok = sum(math.isfinite(results[x]) for x in above) >= margin or any(
        not math.isfinite(results[x]) for x in above
    )
    if not below_ok:
        new.append(snap(xs[0] - spacing, spacing))
    if not above_ok:
        new.append(snap(xs[-1] + spacing, spacing))
    return new[:room]


def drift_table(
    fits: Mapping[str, Mapping[str, OptimumFit]],
    proxy: Mapping[str, OptimumFit],
    axes: Mapping[str, Sequence[str]] | None = None,
    threshold: float = TEN_PERCENT_LOG2,
) -> dict[str, Any]:
    """η* drift of every target against the proxy of the same parameterization.

    ``fits[target][param]`` and ``proxy[param]`` are sweep fits (params such as "sp", "mue"). Returns
    ``lr_drift_log2`` ({target: {param: |log2 η*_t − log2 η*_proxy|}}), the signed shifts, ``max_lr_drift_log2_<param>``,
    the maximum per axis (``axes``: target -> axis names), whether each drift is within ``threshold`` (10%),
    ``flags`` naming every fit at the grid edge or degenerate (its drift is then a bound, not a measurement), and
    printable ``rows``.
    """
    params = list(proxy)
    if not params:
        raise ValueError("drift_table: no proxy fits given")
    drift: dict[str, dict[str, float]] = {}
    signed: dict[str, dict[str, float]] = {}
    within: dict[str, dict[str, bool]] = {}
    flags: list[str] = []
    for p in params:
        if proxy[p].at_edge or proxy[p].degenerate:
            flags.append(f"proxy/{p}: {proxy[p].reason}")
    rows = []
    for target, by_param in fits.items():
        missing = [p for p in params if p not in by_param]
        if missing:
            raise ValueError(f"drift_table: target {target!r} has no fit for {missing}")
        drift[target], signed[target], within[target] = {}, {}, {}
        marks = []
        for p in params:
            fit = by_param[p]
            s = fit.log2_lr_star - proxy[p].log2_lr_star
            signed[target][p] = s
            drift[target][p] = abs(s)
            within[target][p] = abs(s) <= threshold
            if fit.at_edge or fit.degenerate:
                flags.append(f"{target}/{p}: {fit.reason}")
                marks.append(p)
        rows.append(
            [target, ",".join((axes or {}).get(target, ()))]
            + [by_param[p].lr_star for p in params]
            + [signed[target][p] for p in params]
            + [drift[target][p] for p in params]
            + [",".join(marks) or "-"]
        )
    out: dict[str, Any] = {
        "lr_drift_log2": drift,
        "signed_log2_shift": signed,
        "within_threshold": within,
        "threshold_log2": threshold,
        "proxy_lr_star": {p: proxy[p].lr_star for p in params},
        "flags": flags,
        "rows": rows,
        "header": ["target", "axes"]
        + [f"eta* {p}" for p in params]
        + [f"log2 shift {p}" for p in params]
        + [f"|drift| {p}" for p in params]
        + ["edge/degenerate"],
    }
    for p in params:
        values = [drift[t][p] for t in drift]
        out[f"max_lr_drift_log2_{p}"] = max(values) if values else None
    by_axis: dict[str, dict[str, float]] = {}
    for target, names in (axes or {}).items():
        if target not in drift:
            continue
        for axis in names:
            slot = by_axis.setdefault(axis, {p: 0.0 for p in params})
            for p in params:
                slot[p] = max(slot[p], drift[target][p])
    out["max_lr_drift_log2_by_axis"] = by_axis
    return out


def seed_noise(sweeps: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """How far η* moves between seeds of the same configuration (log2): the floor below which a drift is noise.

    For each parameterization and shape with several seeds, the range of the per-seed log2 η*; ``median`` and
    ``max`` over shapes per parameterization. Empty with one seed."""
    out: dict[str, Any] = {"per_shape": {}, "median": {}, "max": {}}
    for param, by_shape in sweeps.items():
        ranges = {}
        for name, sw in by_shape.items():
            fits = list(sw.get("seed_fits", {}).values())
            if len(fits) > 1:
                stars = [f.log2_lr_star for f in fits]
                ranges[name] = max(stars) - min(stars)
        if ranges:
            out["per_shape"][param] = ranges
            out["median"][param] = float(np.median(list(ranges.values())))
            out["max"][param] = max(ranges.values())
    return out
