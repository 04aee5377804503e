"""A schedule-aware law for one training run: Tissue et al.'s scaling law with learning-rate annealing.

Tissue, Wang & Wang (arXiv 2408.11029, Eq. 1) model the loss of one run at step s as

    L(s) = L0 + A·S1^(−α) − C·S2,

with ``S1 = Σ_{i≤s} η_i`` the *forward area* (the area under the LR curve) and ``S2 = Σ_{i≤s} m_i`` the *annealing
area*, ``m_i = λ·m_{i−1} + (η_{i−1} − η_i)``, a momentum of the LR decrements with decay λ (0.999 in the paper).
The first term is a power law in how far the optimizer has moved, the second the extra drop that annealing buys,
delayed by the momentum. Because S1 and S2 come from the LR sequence, one fitted curve predicts the loss of the
same model under any other schedule (cosine, WSD, constant). Warm-up steps count as peak LR (the authors'
reference code, and their Section 3.4: warm-up mainly stabilizes training, counting its small LRs would bend S1).

The fit follows the rest of the package (Huber δ = 1e-3 on log loss, summed, L-BFGS-B with the analytic gradient),
started from a variable-projection grid: for fixed α the law is linear in (L0, A, C), so non-negative least
squares gives those three for every α on a grid and the best starts are polished. Intervals come from a moving-
block bootstrap of the log residuals (the residuals of one run are autocorrelated, so whole blocks are resampled),
refitting each replicate: per-constant percentile intervals with identifiability flags, and a *prediction*
interval (refit predictions times a resampled residual) that stays meaningful when constants are not identified.
Choshen et al. (arXiv 2410.11840, Sec. 5) advise dropping the earliest checkpoints of a run; ``fit_annealing``
takes ``min_step`` for that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from hf_fundamentals.scaling.fit import _minimize, _Objective, r_squared

DEFAULT_DECAY = 0.999
"""λ of the annealing momentum (arXiv 2408.11029, Sec. 3.2: 0.999 fits their runs; 0.99-0.999 all work)."""
DECAY_GRID = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
"""λ values ``decay="auto"`` profiles. The momentum remembers about 1/(1 − λ) steps: 1000 at the paper's 0.999,
which suits runs of tens of thousands of steps but is longer than a run of a few hundred."""
SCHEDULES = ("constant", "cosine", "linear", "wsd")


# ----------------------------------------------------------------------------------------------- schedules
def lr_schedule(
    kind: str,
    total_steps: int,
    peak_lr: float,
    *,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> np.ndarray:
    """LR of every optimizer update 1..``total_steps`` under a transformers schedule (entry k: update k+1).

    The formulas are transformers' ``get_scheduler`` lambdas (``optimization.py``): ``constant`` (with warm-up),
    ``linear``, ``cosine`` (half a cycle to 0), ``wsd`` (warm-up, stable, then a cosine decay over ``decay_steps``,
    default 20% of the run, to ``min_lr_ratio``). Warm-up is linear from 0 (from ``min_lr_ratio`` in ``wsd``)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {list(SCHEDULES)}")
    if total_steps < 1 or warmup_steps < 0 or warmup_steps >= total_steps:
        raise ValueError(
            f"need total_steps >= 1 and 0 <= warmup_steps < total_steps; got {total_steps}, {warmup_steps}"
        )
    if not (peak_lr > 0 and math.isfinite(peak_lr)):
        raise ValueError(f"peak_lr must be a positive number; got {peak_lr!r}")
    k = np.arange(total_steps, dtype=np.float64)
    warm = k < warmup_steps
    factor = np.ones(total_steps)
    if kind == "linear":
        factor = np.maximum(0.0, (total_steps - k) / max(1, total_steps - warmup_steps))
    elif kind == "cosine":
        progress = (k - warmup_steps) / max(1, total_steps - warmup_steps)
        factor = np.maximum(0.0, 0.5 * (1.0 + np.cos(math.pi * progress)))
    elif kind == "wsd":
        decay = int(round(0.2 * total_steps)) if decay_steps is None else int(decay_steps)
        if not 0 < decay <= total_steps - warmup_steps:
            raise ValueError(f"decay_steps must be in (0, total_steps - warmup_steps]; got {decay}")
        start = total_steps - decay
        progress = np.clip((k - start) / decay, 0.0, 1.0)
        cos = 0.5 * (1.0 + np.cos(math.pi * progress))
        factor = np.where(k < start, 1.0, min_lr_ratio + (1.0 - min_lr_ratio) * cos)
    ramp = k / max(1, warmup_steps)
    if kind == "wsd":  # transformers' WSD warm-up starts at min_lr_ratio
        ramp = min_lr_ratio + (1.0 - min_lr_ratio) * ramp
    factor = np.where(warm, ramp, factor)
    return peak_lr * factor


def annealing_areas(
    lrs: Sequence[float] | np.ndarray, *, decay: float = DEFAULT_DECAY, warmup_as_peak: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)`` after each update: S1 the cumulative LR, S2 the cumulative annealing momentum.

    ``lrs[k]`` is the LR of update k+1. With ``warmup_as_peak`` the LRs before the first maximum are raised to it
    (the paper's treatment of warm-up, see the module docstring). ``m_1 = 0``; ``m_i = λ·m_{i−1} + η_{i−1} − η_i``.
    """
    eta = np.asarray(lrs, dtype=np.float64).copy()
    if eta.ndim != 1 or eta.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-D sequence (one LR per update); got shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError("lrs must be finite and >= 0")
    if not 0 <= decay < 1:
        raise ValueError(f"decay (λ) must be in [0, 1); got {decay!r}")
    if warmup_as_peak:
        peak = int(np.argmax(eta))
        eta[:peak] = eta[peak]
    drops = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drops):  # a linear recursion; n is at most the run's step count
        acc = decay * acc + d
        m[i] = acc
    return np.cumsum(eta), np.cumsum(m)


# ------------------------------------------------------------------------------------------------ the law
class AnnealingLaw:
    """``L = L0 + A·S1^(−α) − C·S2`` in fit coordinates ``(ln L0, ln A, α, ln C)``.

    Duck-types the part of :class:`~hf_fundamentals.scaling.ScalingLaw` the fitter's objective uses:
    ``log_loss_and_grad(theta, u, v)`` with ``u = S1`` and ``v = S2`` (not logarithms: S2 can be 0)."""

    name = "annealing"
    param_names = ("L0", "A", "alpha", "C")
    theta_names = ("ln_L0", "ln_A", "alpha", "ln_C")
    formula = "L = L0 + A*S1^(-alpha) - C*S2"

    def bounds(self, loss: np.ndarray) -> tuple[tuple[float, float], ...]:
        """L-BFGS-B box: L0 below 10× the largest loss, exponents in [0, 3], the rest wide."""
        return ((-30.0, math.log(10 * float(np.max(loss)))), (-30.0, 60.0), (0.0, 3.0), (-30.0, 60.0))

    def loss_and_grad(
        self, theta: np.ndarray, s1: np.ndarray, s2: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted loss and its gradient in theta (shape (n, 4))."""
        ln_l0, ln_a, alpha, ln_c = (float(t) for t in theta)
        power = np.exp(ln_a - alpha * np.log(s1))
        l0, c = math.exp(ln_l0), math.exp(ln_c)
        pred = l0 + power - c * s2
        grad = np.stack([np.full_like(s1, l0), power, -power * np.log(s1), -c * s2], axis=-1)
        return pred, grad

    def log_loss_and_grad(self, theta, u, v):
        pred, grad = self.loss_and_grad(theta, u, v)
        safe = np.maximum(pred, 1e-300)
        return np.log(safe), grad / safe[:, None]

    def to_params(self, theta: Sequence[float]) -> dict[str, float]:
        ln_l0, ln_a, alpha, ln_c = (float(t) for t in theta)
        return {"L0": math.exp(ln_l0), "A": math.exp(ln_a), "alpha": alpha, "C": math.exp(ln_c)}

    def to_theta(self, params: Mapping[str, float]) -> np.ndarray:
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise ValueError(f"annealing law needs {list(self.param_names)}; missing {missing}")
        floor = math.exp(-30.0)
        return np.array([
            math.log(max(float(params["L0"]), floor)), math.log(max(float(params["A"]), floor)),
            float(params["alpha"]), math.log(max(float(params["C"]), floor)),
        ])  # fmt: skip

    def predict(self, params: Mapping[str, float], s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Loss at forward areas ``s1`` (> 0) and annealing areas ``s2``."""
        return self.loss_and_grad(self.to_theta(params), np.asarray(s1, float), np.asarray(s2, float))[0]


ANNEALING = AnnealingLaw()


# ------------------------------------------------------------------------------------------ identifiability
def identifiability(
    estimates: Mapping[str, float],
    intervals: Mapping[str, tuple[float | None, float | None]],
    on_bound: Sequence[str] = (),
    *,
    degenerate: Sequence[str] = (),
    max_ratio: float = 10.0,
) -> dict[str, dict[str, Any]]:
    """Per constant: estimate, interval and flags. ``wide``: the interval spans at least ``max_ratio`` (an order of
    magnitude by default; constants and exponents here are all >= 0, so a ratio applies to both), or reaches 0;
    ``on_bound``: the estimate sits on its fit bound (its value is set by the box, not by the data);
    ``degenerate``: the constant moves along a direction the data cannot see (see :func:`degenerate_constants`;
    a bootstrap started at the fit does not move along it, so its interval alone would look narrow);
    ``identified`` is True when no flag fires."""
    out: dict[str, dict[str, Any]] = {}
    for name, est in estimates.items():
        lo, hi = intervals.get(name, (None, None))
        flags = []
        if lo is None or hi is None:
            flags.append("no_interval")
        elif lo <= 0 or hi / lo >= max_ratio:
            flags.append("wide")
        if name in on_bound:
            flags.append("on_bound")
        if name in degenerate:
            flags.append("degenerate")
        out[name] = {"estimate": float(est), "lo": lo, "hi": hi, "flags": flags, "identified": not flags}
    return out


def degenerate_constants(jac: np.ndarray, names: Sequence[str], *, rtol: float = 1e-6) -> list[str]:
    """Constants that load on a (near-)null direction of the fit's Jacobian ``jac`` (points × coordinates, columns
    scaled to unit norm first): a singular value below ``rtol`` × the largest means the predictions do not change
    along that direction, so the constants with weight > 0.3 in it are not determined by the data."""
    jac = np.asarray(jac, dtype=np.float64)
    norms = np.linalg.norm(jac, axis=0)
    out = {names[i] for i in np.flatnonzero(norms <= 1e-300)}
    live = np.flatnonzero(norms > 1e-300)
    if live.size:
        _, sv, vt = np.linalg.svd(jac[:, live] / norms[live], full_matrices=False)
        for s, v in zip(sv, vt, strict=True):
            if s < rtol * sv[0]:
                out |= {names[live[i]] for i in np.flatnonzero(np.abs(v) > 0.3)}
    return [n for n in names if n in out]


def block_resample(
    resid: np.ndarray, n_boot: int, rng: np.random.Generator, block: int | None = None
) -> np.ndarray:
    """``n_boot`` moving-block bootstrap series of ``resid`` (blocks of ``block`` consecutive residuals, default
    ⌈n^(1/3)⌉, concatenated and cut to n): keeps the short-range correlation of a loss curve's residuals."""
    n = resid.size
    block = max(1, min(n, math.ceil(n ** (1 / 3)) if block is None else int(block)))
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[..., None] + np.arange(block)).reshape(n_boot, -1)[:, :n]
    return resid[idx]


# ---------------------------------------------------------------------------------------------- the fit
@dataclass
class AnnealingFit:
    """A fitted schedule-aware law: constants, diagnostics, bootstrap replicates; predicts any LR schedule."""

    params: dict[str, float]
    theta: list[float]
    decay: float
    warmup_as_peak: bool
    objective: float
    huber_delta: float
    n_train: int
    steps: list[int]
    r2_train: float | None
    rmse_train: float | None
    converged: bool
    at_bounds: list[str]
    ci: float = 0.9
    n_boot: int = 0
    boot_thetas: list[list[float]] = field(default_factory=list)
    """Refitted coordinates of every bootstrap replicate (prediction intervals for any schedule use them)."""
    log_residuals: list[float] = field(default_factory=list)
    identifiability: dict[str, dict[str, Any]] = field(default_factory=dict)
    decay_profile: dict[str, float] | None = None
    """With ``decay="auto"``: the objective at every λ tried (the lowest chose ``decay``)."""
    law: str = "annealing"

    def areas(self, lrs: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(S1, S2)`` of an LR sequence with this fit's λ and warm-up rule."""
        return annealing_areas(lrs, decay=self.decay, warmup_as_peak=self.warmup_as_peak)

    def predict(
        self, lrs: Sequence[float] | np.ndarray, steps: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """Predicted loss after each of ``steps`` (1-based updates; default every step) under the LRs ``lrs``."""
        s1, s2 = self.areas(lrs)
        idx = _step_index(steps, s1.size)
        return ANNEALING.predict(self.params, s1[idx], s2[idx])

    def predict_interval(
        self, lrs: Sequence[float] | np.ndarray, steps: Sequence[int] | np.ndarray | None = None,
        *, ci: float | None = None, seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Percentile prediction interval at ``ci`` (default the fit's): bootstrap refits' predictions times a
        residual drawn from this fit's log residuals. Without bootstrap replicates, ``(pred, pred)``."""
        pred = self.predict(lrs, steps)
        if not self.boot_thetas:
            return pred, pred
        ci = self.ci if ci is None else ci
        s1, s2 = self.areas(lrs)
        idx = _step_index(steps, s1.size)
        rng = np.random.default_rng(seed)
        resid = np.asarray(self.log_residuals) if self.log_residuals else np.zeros(1)
        draws = np.stack(
            [ANNEALING.loss_and_grad(np.asarray(t), s1[idx], s2[idx])[0] for t in self.boot_thetas]
        )
        draws = draws * np.exp(rng.choice(resid, size=draws.shape))
        q = (1 - ci) / 2
        return np.quantile(draws, q, axis=0), np.quantile(draws, 1 - q, axis=0)

    def summary(self) -> str:
        """Constants with intervals and flags, and the fit's scores, in a few lines."""
        how = " (lowest objective of the grid)" if self.decay_profile else ""
        lines = [
            f"annealing (Tissue et al., arXiv 2408.11029): {ANNEALING.formula}, lambda={self.decay}{how}"
        ]
        for name in ANNEALING.param_names:
            info = self.identifiability.get(name)
            s = f"  {name} = {self.params[name]:.4g}"
            if info and info["lo"] is not None:
                s += f"  [{info['lo']:.3g}, {info['hi']:.3g}] ({self.ci:.0%} bootstrap)"
            if info and info["flags"]:
                s += "  NOT IDENTIFIED: " + ", ".join(info["flags"])
            lines.append(s)
        r2 = "n/a" if self.r2_train is None else f"{self.r2_train:.4f}"
        lines.append(f"  R² {r2} on {self.n_train} evaluations (steps {self.steps[0]}-{self.steps[-1]})"
                     + ("" if self.converged else "; NOT converged"))  # fmt: skip
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        from hf_fundamentals.scaling.fit import _json_safe

        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnnealingFit:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown or data.get("law") != "annealing":
            raise ValueError(f"not an AnnealingFit (law {data.get('law')!r}, unknown keys {sorted(unknown)})")
        return cls(**dict(data))

    def save(self, path: str | Path) -> None:
        """Write ``{"fits": {"annealing": ...}}``, the shape ``hff scaling predict`` reads."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"fits": {"annealing": self.to_dict()}}, indent=1))


def _step_index(steps, n: int) -> np.ndarray:
    if steps is None:
        return np.arange(n)
    s = np.asarray(steps, dtype=np.int64)
    if s.size and (s.min() < 1 or s.max() > n):
        raise ValueError(f"steps must lie in 1..{n} (the LR sequence's length); got {s.min()}..{s.max()}")
    return s - 1


def _grid_starts(s1, s2, loss, alphas, keep):
    """Variable projection: for each α, NNLS for (L0, A, C) on relative residuals; the ``keep`` best as starts."""
    w = 1.0 / loss
    rows = []
    for alpha in alphas:
        x = np.stack([np.ones_like(s1), s1**-alpha, -s2], axis=1) * w[:, None]
        if not np.any(s2 != 0):
            x = x[:, :2]
        coef, res = nnls(x, loss * w)
        coef = np.concatenate([coef, [0.0] * (3 - coef.size)])
        rows.append((res, alpha, coef))
    rows.sort(key=lambda r: r[0])
    tiny = math.exp(-30.0)
    return [
        np.array([math.log(max(c[0], tiny)), math.log(max(c[1], tiny)), a, math.log(max(c[2], tiny))])
        for _, a, c in rows[:keep]
    ]


def _fit_theta(s1, s2, loss, delta, starts, bounds, max_iter=2000):
    obj = _Objective(ANNEALING, s1, s2, np.log(loss), delta)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    best = None
    for x0 in starts:
        res = _minimize(obj, np.clip(x0, lo, hi), bounds, max_iter)
        if best is None or res.fun < best.fun:
            best = res
    return best


def fit_annealing(
    steps: Sequence[int] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    lrs: Sequence[float] | np.ndarray,
    *,
    decay: float | str = DEFAULT_DECAY,
    warmup_as_peak: bool = True,
    min_step: int = 1,
    huber_delta: float = 1e-3,
    n_starts: int = 8,
    n_boot: int = 200,
    ci: float = 0.9,
    block: int | None = None,
    seed: int = 0,
) -> AnnealingFit:
    """Fit ``L0 + A·S1^(−α) − C·S2`` to eval ``losses`` after ``steps`` (1-based updates) of a run whose update k
    used ``lrs[k−1]`` (at least max(steps) entries). Evaluations before ``min_step`` are dropped. ``n_boot``
    moving-block bootstrap refits give the constants' intervals, flags and the prediction interval at ``ci``.

    ``decay="auto"`` profiles λ over :data:`DECAY_GRID`: the fit with the lowest objective on these evaluations wins
    (the choice uses the fitted points only; the bootstrap then holds λ fixed, so intervals ignore its uncertainty).
    """
    if decay == "auto":
        fits = [
            fit_annealing(steps, losses, lrs, decay=lam, warmup_as_peak=warmup_as_peak, min_step=min_step,
                          huber_delta=huber_delta, n_starts=n_starts, n_boot=0)
            for lam in DECAY_GRID
        ]  # fmt: skip
        best = min(range(len(fits)), key=lambda i: fits[i].objective)
        out = fit_annealing(steps, losses, lrs, decay=DECAY_GRID[best], warmup_as_peak=warmup_as_peak,
                            min_step=min_step, huber_delta=huber_delta, n_starts=n_starts, n_boot=n_boot, ci=ci,
                            block=block, seed=seed)  # fmt: skip
        out.decay_profile = {str(lam): f.objective for lam, f in zip(DECAY_GRID, fits, strict=True)}
        return out
    if not (isinstance(decay, int | float) and 0 <= decay < 1):
        raise ValueError(f"decay must be 'auto' or a number in [0, 1); got {decay!r}")
    steps = np.asarray(steps, dtype=np.int64)
    losses = np.asarray(losses, dtype=np.float64)
    if steps.shape != losses.shape or steps.ndim != 1:
        raise ValueError(f"steps and losses must be 1-D of one length; got {steps.shape}, {losses.shape}")
    if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
        raise ValueError("losses must be finite and > 0")
    if not (huber_delta > 0 and 0 < ci < 1 and n_boot >= 0 and n_starts >= 1):
        raise ValueError(
            f"bad settings: huber_delta={huber_delta}, ci={ci}, n_boot={n_boot}, n_starts={n_starts}"
        )
    keep = steps >= min_step
    steps, losses = steps[keep], losses[keep]
    if steps.size < 5:
        raise ValueError(
            f"the annealing law has 4 constants and needs at least 5 evaluations at step >= {min_step}; "
            f"got {steps.size}"
        )
    s1_all, s2_all = annealing_areas(lrs, decay=decay, warmup_as_peak=warmup_as_peak)
    idx = _step_index(steps, s1_all.size)
    s1, s2 = s1_all[idx], s2_all[idx]
    if np.any(s1 <= 0):
        raise ValueError("the forward area S1 must be > 0 at every evaluation (an LR of 0 throughout?)")
    bounds = ANNEALING.bounds(losses)
    starts = _grid_starts(s1, s2, losses, np.linspace(0.02, 2.0, 40), n_starts)
    best = _fit_theta(s1, s2, losses, huber_delta, starts, bounds)
    theta = np.asarray(best.x, dtype=np.float64)
    pred = ANNEALING.loss_and_grad(theta, s1, s2)[0]
    resid = np.log(losses) - np.log(np.maximum(pred, 1e-300))
    at_bounds = [
        n for n, t, (a, b) in zip(ANNEALING.theta_names, theta, bounds, strict=True)
        if min(t - a, b - t) <= 1e-6 * max(b - a, 1.0)
    ]  # fmt: skip
    params = ANNEALING.to_params(theta)
    boot_thetas: list[list[float]] = []
    intervals: dict[str, tuple[float | None, float | None]] = {}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        # residuals of a 4-constant fit are smaller than the noise by sqrt((n-4)/n): undo that (Davison &
        # Hinkley 1997, Sec. 6.2.3, the leverage-free version of their modified residuals)
        scaled = (resid - resid.mean()) * math.sqrt(steps.size / (steps.size - 4))
        series = block_resample(scaled, n_boot, rng, block)
        for r in series:
            y = pred * np.exp(r)
            res = _fit_theta(s1, s2, y, huber_delta, [theta, *starts[:1]], bounds)
            if np.all(np.isfinite(res.x)):
                boot_thetas.append([float(t) for t in res.x])
        q = (1 - ci) / 2
        for name in ANNEALING.param_names:
            vals = np.array([ANNEALING.to_params(t)[name] for t in boot_thetas])
            intervals[name] = (
                (float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q))) if vals.size else (None, None)
            )
    on_bound = [ANNEALING.param_names[ANNEALING.theta_names.index(t)] for t in at_bounds]
    degenerate = degenerate_constants(ANNEALING.log_loss_and_grad(theta, s1, s2)[1], ANNEALING.param_names)
    return AnnealingFit(
        params=params,
        theta=[float(t) for t in theta],
        decay=float(decay),
        warmup_as_peak=bool(warmup_as_peak),
        objective=float(best.fun) * huber_delta,
        huber_delta=float(huber_delta),
        n_train=int(steps.size),
        steps=[int(s) for s in steps],
        r2_train=r_squared(losses, pred),
        rmse_train=float(np.sqrt(np.mean((losses - pred) ** 2))),
        converged=bool(best.success),
        at_bounds=at_bounds,
        ci=float(ci),
        n_boot=int(n_boot),
        boot_thetas=boot_thetas,
        log_residuals=[float(r) for r in resid],
        identifiability=identifiability(params, intervals, on_bound, degenerate=degenerate)
        if n_boot > 0
        else {},
    )


def load_annealing(path: str | Path) -> AnnealingFit:
    """The annealing fit of a file written by :meth:`AnnealingFit.save` (or ``ScalingLawCallback``)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "fits" in data and "annealing" in data["fits"]:
        return AnnealingFit.from_dict(data["fits"]["annealing"])
    if isinstance(data, dict) and data.get("law") == "annealing":
        return AnnealingFit.from_dict(data)
    raise ValueError(f"{path}: holds no annealing fit")
