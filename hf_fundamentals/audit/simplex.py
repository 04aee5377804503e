"""Least squares over the probability simplex, and the Euclidean projection onto it.

ACC and PACC solve ``min_{pi in simplex} ||A pi - b||^2`` exactly: Lawson-Hanson NNLS with a heavily weighted
row of ones finds the support, an equality-constrained solve on that support polishes it, and the KKT
conditions are checked (projected-gradient refinement takes over if they fail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

__all__ = ["SimplexSolution", "project_to_simplex", "simplex_least_squares"]


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of a vector onto the probability simplex (sort-based, Held et al. / Duchi et al.)."""
    v = np.asarray(v, dtype=np.float64)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, v.size + 1)
    rho = np.flatnonzero(u - css / ind > 0)[-1]
    theta = css[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


@dataclass(frozen=True)
class SimplexSolution:
    """The minimiser ``x`` and how it was certified: KKT violation and whether the fallback had to run."""

    x: np.ndarray
    kkt_violation: float
    used_fallback: bool


def _kkt_violation(gram: np.ndarray, atb: np.ndarray, x: np.ndarray) -> float:
    """Largest violation of the simplex-QP optimality conditions at ``x`` (0 at the exact optimum)."""
    g = gram @ x - atb  # half the gradient of ||Ax - b||^2
    support = x > 0
    nu = np.dot(x, g)  # the multiplier: on the support every g_j equals nu
    on = np.abs(g[support] - nu).max(initial=0.0)
    off = np.maximum(nu - g[~support], 0.0).max(initial=0.0)
    return float(max(on, off))


def _solve_on_support(gram: np.ndarray, atb: np.ndarray, support: np.ndarray) -> np.ndarray | None:
    """Equality-constrained least squares restricted to ``support`` (KKT system; min-norm if singular)."""
    s = np.flatnonzero(support)
    k = s.size
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = gram[np.ix_(s, s)]
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = np.append(atb[s], 1.0)
    try:
        sol = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:
        sol = None
    if (
        sol is None
        or not np.all(np.isfinite(sol))
        or np.abs(kkt @ sol - rhs).max() > 1e-9 * (1 + np.abs(rhs).max())
    ):
        sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    z = sol[:k]
    if not np.all(np.isfinite(z)) or z.min() < -1e-12:
        return None
    x = np.zeros(gram.shape[0])
    x[s] = np.maximum(z, 0.0)
    total = x.sum()
    return x / total if total > 0 else None


def _projected_gradient(gram: np.ndarray, atb: np.ndarray, x0: np.ndarray, iters: int = 20_000) -> np.ndarray:
    """Accelerated projected gradient (FISTA with restarts): slow but always correct fallback."""
    lip = max(np.linalg.eigvalsh(gram).max(), 1e-12)
    x = y = x0.copy()
    t = 1.0
    for _ in range(iters):
        x_new = project_to_simplex(y - (gram @ y - atb) / lip)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        if np.dot(x_new - x, x_new - y) > 0:  # adaptive restart
            t_new = 1.0
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        if np.abs(x_new - x).max() < 1e-15:
            x = x_new
            break
        x, t = x_new, t_new
    return x


def simplex_least_squares(a: np.ndarray, b: np.ndarray, *, tol: float = 1e-9) -> SimplexSolution:
    """Solve ``min ||a @ x - b||^2`` subject to ``x >= 0`` and ``sum(x) == 1`` exactly (a convex QP).

    Works for singular ``a`` too (any minimiser is returned; all are on the simplex).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    k = a.shape[1]
    scale = max(float(np.abs(a).max()), 1e-12)
    weight = 1e3 * scale
    x0, _ = nnls(np.vstack([a, np.full((1, k), weight)]), np.append(b, weight), maxiter=50 * k)
    gram = a.T @ a
    atb = a.T @ b
    if x0.sum() > 0:
        x0 = x0 / x0.sum()
    else:
        x0 = np.full(k, 1.0 / k)
    # Polish on NNLS's support; the support can be one too large when an entry is ~0, so also try dropping it.
    best, best_viol = x0, _kkt_violation(gram, atb, x0)
    supports = [x0 > 0]
    if not np.array_equal(x0 > 1e-9, supports[0]):
        supports.append(x0 > 1e-9)
    for support in supports:
        if not support.any():
            continue
        cand = _solve_on_support(gram, atb, support)
        if cand is not None:
            viol = _kkt_violation(gram, atb, cand)
            if viol < best_viol:
                best, best_viol = cand, viol
    gscale = max(float(np.abs(gram).max()), 1e-12)
    if best_viol <= tol * gscale:
        return SimplexSolution(x=best, kkt_violation=best_viol, used_fallback=False)
    refined = _projected_gradient(gram, atb, best)
    viol = _kkt_violation(gram, atb, refined)
    if viol < best_viol:
        best, best_viol = refined, viol
    return SimplexSolution(x=best, kkt_violation=best_viol, used_fallback=True)
