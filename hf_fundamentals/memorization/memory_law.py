"""The parametric memory law dL(r, l) = C r^alpha l^(-beta) + b, its fit, and a LoRA rank planner.

``dL`` is the per-token loss reduction on the memorized targets (before training minus after), ``r`` the LoRA
rank and ``l`` the memory length in target tokens (arXiv 2605.30260). The fit is least squares in
(log C, alpha, beta, b) from a grid of starts (scipy). The planner turns an exact-match goal into a loss
reduction, using the sweep itself (the smallest dL at which runs reached the goal, smoothed by isotonic
regression of exact match on dL), then inverts the law for r.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares
from sklearn.isotonic import IsotonicRegression


@dataclass
class MemoryLawFit:
    """Fitted constants, fit quality and the data size."""

    C: float
    alpha: float
    beta: float
    b: float
    r2: float
    rmse: float
    n_points: int

    def predict(self, rank: float | np.ndarray, length: float | np.ndarray) -> np.ndarray:
        """Predicted loss reduction at ``rank`` and ``length``."""
        return self.C * np.power(rank, self.alpha) * np.power(length, -self.beta) + self.b

    def rank_for(self, length: float, delta_l: float) -> float | None:
        """Smallest (real) rank whose predicted reduction reaches ``delta_l`` at ``length``; None if unreachable."""
        need = (delta_l - self.b) * length**self.beta / self.C
        if need <= 0:
            return 0.0
        if self.alpha <= 0:
            return None
        return float(need ** (1.0 / self.alpha))

    def to_dict(self) -> dict:
        return asdict(self)


def _as_arrays(*cols: Sequence[float]) -> list[np.ndarray]:
    arrays = [np.asarray(c, dtype=np.float64) for c in cols]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("rank, length and delta_l must be 1-D and of equal length")
    return arrays


def fit_memory_law(
    ranks: Sequence[float], lengths: Sequence[float], delta_l: Sequence[float]
) -> MemoryLawFit:
    """Fit ``dL = C r^alpha l^(-beta) + b`` (C > 0) to a rank x length sweep; needs at least 5 points."""
    r, ell, y = _as_arrays(ranks, lengths, delta_l)
    if r.shape[0] < 5:
        raise ValueError(f"the law has 4 constants; fit it on at least 5 points (got {r.shape[0]})")
    if (r <= 0).any() or (ell <= 0).any():
        raise ValueError("ranks and lengths must be positive")
    lr, ll = np.log(r), np.log(ell)

    def residual(p: np.ndarray) -> np.ndarray:
        log_c, alpha, beta, b = p
        return np.exp(log_c + alpha * lr - beta * ll) + b - y

    best = None
    for alpha0 in (0.1, 0.3, 0.6, 1.0):
        for beta0 in (0.1, 0.3, 0.6, 1.0):
            for b0 in (0.0, float(y.min())):
                scale = np.maximum(y - b0, 1e-6)
                log_c0 = float(np.mean(np.log(scale) - alpha0 * lr + beta0 * ll))
                res = least_squares(residual, [log_c0, alpha0, beta0, b0], method="trf", max_nfev=4000)
                if best is None or res.cost < best.cost:
                    best = res
    assert best is not None
    log_c, alpha, beta, b = best.x
    pred = residual(best.x) + y
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2)) or math.inf
    return MemoryLawFit(
        C=float(math.exp(log_c)), alpha=float(alpha), beta=float(beta), b=float(b), r2=1.0 - ss_res / ss_tot,
        rmse=math.sqrt(ss_res / y.shape[0]), n_points=int(y.shape[0]),
    )  # fmt: skip


def delta_l_for_exact_match(
    delta_l: Sequence[float], exact_match: Sequence[float], target: float
) -> float | None:
    """The loss reduction at which exact match reaches ``target`` in the sweep (isotonic fit of EM on dL)."""
    x, y = _as_arrays(delta_l, exact_match)
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y)
    grid = np.linspace(x.min(), x.max(), 2001)
    ok = grid[iso.predict(grid) >= target]
    return float(ok[0]) if ok.size else None


def plan_rank(
    fit: MemoryLawFit,
    length: float,
    exact_match_target: float,
    sweep_delta_l: Sequence[float],
    sweep_exact_match: Sequence[float],
    available_ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
) -> dict:
    """The LoRA rank to store ``length`` target tokens at >= ``exact_match_target`` exact match.

    Returns the needed reduction, the real-valued rank from the law, the smallest available rank at or above
    it, and whether the answer extrapolates beyond the sweep. ``rank`` is None when the sweep never reached
    the target (the law cannot say which reduction the target needs) or the law cannot reach it.
    """
    need = delta_l_for_exact_match(sweep_delta_l, sweep_exact_match, exact_match_target)
    plan: dict = {"length": length, "exact_match_target": exact_match_target, "delta_l_needed": need}
    if need is None:
        plan.update(rank=None, reason="no run in the sweep reached this exact match")
        return plan
    real = fit.rank_for(length, need)
    plan["rank_from_law"] = real
    if real is None:
        plan.update(rank=None, reason="the fitted law does not grow with rank")
        return plan
    fitting = [r for r in sorted(available_ranks) if r >= real]
    plan["rank"] = fitting[0] if fitting else None
    if not fitting:
        plan["reason"] = f"needs rank {real:.0f}, above the largest available ({max(available_ranks)})"
    return plan


def tokens_per_rank(
    ranks: Sequence[int], lengths: Sequence[int], exact_match: Sequence[float], target: float = 0.9
) -> dict[int, float]:
    """Measured capacity: for each rank, the largest swept length reaching ``target`` exact match, divided by rank."""
    out: dict[int, float] = {}
    for r, ell, em in zip(ranks, lengths, exact_match, strict=True):
        if em >= target:
            out[int(r)] = max(out.get(int(r), 0.0), float(ell) / float(r))
    return dict(sorted(out.items()))
