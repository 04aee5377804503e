"""Label-shift estimators of a generator's domain prior from classifier probabilities on its generations.

Every estimator takes the (n, K) calibrated probabilities of the n generations, a :class:`Confusion` measured
on held-out reference documents and optional per-generation weights (token counts for token-weighted
averaging), and returns a :class:`PriorEstimate` on the simplex. Under label shift
``E_gen[p(j|x)] = sum_i pi_i M[i, j]`` (soft) and ``P_gen(argmax = j) = sum_i pi_i C[i, j]`` (hard).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from hf_fundamentals.audit.confusion import Confusion, check_probs, check_weights
from hf_fundamentals.audit.simplex import project_to_simplex, simplex_least_squares

__all__ = [
    "DEFAULT_METHOD",
    "ESTIMATORS",
    "AuditWarning",
    "PriorEstimate",
    "acc",
    "cc",
    "estimate_prior",
    "llmsurgeon_repo",
    "mlls_em",
    "pacc",
    "pcc",
    "rlls",
]

# The estimator audits lead with. Chosen by benchmarks/audit_llmscan_mini.py, the end-to-end benchmark on real LM
# generations: PACC has the lowest mean max-abs error there (1.5 points vs 4.9 for EM). The exact label-shift
# simulation (benchmarks/audit_estimators.py) ranks EM first, but real generations are not label-shifted
# reference text, and EM's reliance on calibration makes it the most fragile estimator once they are not.
DEFAULT_METHOD = "pacc"

# Above this condition number a confusion matrix is treated as numerically singular by the estimators.
SINGULAR_CONDITION = 1e8


class AuditWarning(UserWarning):
    """Something about the audit makes its numbers less trustworthy (ill-conditioned confusion, off-taxonomy text)."""


@dataclass(frozen=True)
class PriorEstimate:
    """One estimator's answer: ``prior`` on the simplex, the unconstrained ``raw`` solution where one exists,
    and ``residual`` = ||M^T prior - p_bar||_2, how far the soft moment equation is from holding."""

    name: str
    prior: np.ndarray
    raw: np.ndarray | None
    residual: float
    converged: bool = True
    n_iter: int = 0


def _prepare(
    probs: np.ndarray, confusion: Confusion, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(confusion, Confusion):
        raise TypeError(
            f"confusion: expected a hf_fundamentals.audit.Confusion, got {type(confusion).__name__}; "
            f"build one with Confusion.from_predictions(probs, labels) or fit_reference(...)"
        )
    probs = check_probs(probs, confusion.n_classes)
    w = check_weights(weights, probs.shape[0])
    return probs, w / w.sum()


def _soft_mean(probs: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w @ probs


def _hard_mean(probs: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.bincount(probs.argmax(axis=1), weights=w, minlength=probs.shape[1])


def _residual(confusion: Confusion, prior: np.ndarray, pbar: np.ndarray) -> float:
    return float(np.linalg.norm(confusion.soft.T @ prior - pbar))


def _warn_if_singular(matrix: np.ndarray, what: str, method: str) -> None:
    sv = np.linalg.svd(matrix, compute_uv=False)
    cond = math.inf if sv[-1] <= 0 else float(sv[0] / sv[-1])
    if cond > SINGULAR_CONDITION:
        warnings.warn(
            f"{method}: the {what} confusion matrix is numerically singular (condition number {cond:.3g}, "
            f"smallest singular value {sv[-1]:.3g}); two or more domains are indistinguishable to the classifier, "
            f"so their split is not identified. Returning one minimiser on the simplex; merge those domains or "
            f"use a better classifier.",
            AuditWarning,
            stacklevel=3,
        )


def cc(probs: np.ndarray, confusion: Confusion, *, weights: np.ndarray | None = None) -> PriorEstimate:
    """Classify and count: the (weighted) share of generations whose argmax is each domain; no correction."""
    probs, w = _prepare(probs, confusion, weights)
    prior = _hard_mean(probs, w)
    return PriorEstimate("cc", prior, None, _residual(confusion, prior, _soft_mean(probs, w)))


def pcc(probs: np.ndarray, confusion: Confusion, *, weights: np.ndarray | None = None) -> PriorEstimate:
    """Probabilistic classify and count: the (weighted) mean probability vector p_bar; no correction."""
    probs, w = _prepare(probs, confusion, weights)
    prior = _soft_mean(probs, w)
    return PriorEstimate("pcc", prior, None, _residual(confusion, prior, prior))


def acc(probs: np.ndarray, confusion: Confusion, *, weights: np.ndarray | None = None) -> PriorEstimate:
    """Adjusted classify and count (hard BBSE): ``argmin_{pi in simplex} ||C^T pi - q_hat||`` with argmax counts."""
    probs, w = _prepare(probs, confusion, weights)
    qhat = _hard_mean(probs, w)
    _warn_if_singular(confusion.hard, "hard", "acc")
    raw = np.linalg.lstsq(confusion.hard.T, qhat, rcond=None)[0]
    prior = simplex_least_squares(confusion.hard.T, qhat).x
    return PriorEstimate("acc", prior, raw, _residual(confusion, prior, _soft_mean(probs, w)))


def pacc(probs: np.ndarray, confusion: Confusion, *, weights: np.ndarray | None = None) -> PriorEstimate:
    """Probabilistic ACC (soft BBSE; LLMSurgeon as described): ``argmin_{pi in simplex} ||M^T pi - p_bar||``."""
    probs, w = _prepare(probs, confusion, weights)
    pbar = _soft_mean(probs, w)
    _warn_if_singular(confusion.soft, "soft", "pacc")
    raw = np.linalg.lstsq(confusion.soft.T, pbar, rcond=None)[0]
    prior = simplex_least_squares(confusion.soft.T, pbar).x
    return PriorEstimate("pacc", prior, raw, _residual(confusion, prior, pbar))


def llmsurgeon_repo(
    probs: np.ndarray,
    confusion: Confusion,
    *,
    weights: np.ndarray | None = None,
    unknown_threshold: float | None = 0.9,
) -> PriorEstimate:
    """The released LLMSurgeon code's recipe, for parity: hard C with soft p_bar, unconstrained
    ``np.linalg.lstsq``, then sort-based simplex projection (uniform if degenerate). Biased unless C ~ M.

    Like the repo's default ``--unknown_threshold 0.9``, each generation counts with weight ``1 - u`` where
    ``u = clip((tau - max_j p_j) / tau, 0, 1)``, so unconfident generations count less (None: plain mean).
    What stays ours: the probabilities come from this auditor's calibration (BCTS, cross-fitted), not the repo's
    single temperature fit on the confusion split itself.
    """
    probs, w = _prepare(probs, confusion, weights)
    if unknown_threshold is not None:
        if not 0.0 < unknown_threshold <= 1.0:
            raise ValueError(
                f"unknown_threshold: got {unknown_threshold}; expected a value in (0, 1] or None"
            )
        unknown = np.clip((unknown_threshold - probs.max(axis=1)) / unknown_threshold, 0.0, 1.0)
        kept = w * (1.0 - unknown)
        if kept.sum() > 0:  # every generation fully "unknown": the repo would divide by 0; use the plain mean
            w = kept / kept.sum()
    pbar = _soft_mean(probs, w)
    k = confusion.n_classes
    raw = np.linalg.lstsq(confusion.hard.T, pbar, rcond=None)[0]
    if np.all(np.isfinite(raw)):
        prior = project_to_simplex(raw)
        if not np.isfinite(prior).all() or prior.sum() <= 0:
            prior = np.full(k, 1.0 / k)
    else:
        prior = np.full(k, 1.0 / k)
    return PriorEstimate("llmsurgeon_repo", prior / prior.sum(), raw, _residual(confusion, prior, pbar))


# Largest SQUAREM extrapolation factor: |alpha| = ||r|| / ||v|| explodes when the EM map is locally linear.
_SQUAREM_MAX_STEP = 1e3


def _em_step(
    probs: np.ndarray, weights: np.ndarray, prior: np.ndarray, src: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One EM step for B problems: the next priors (B, K) and the log-likelihood (B,) at ``prior`` (up to a
    constant). E-step ``p(k|x) ~ (pi_k / pi_s_k) p_hat(k|x)``; M-step: weighted mean over documents."""
    r = (probs if probs.ndim == 3 else probs[None, :, :]) * (prior / src)[:, None, :]
    total = r.sum(axis=2, keepdims=True)
    r /= total
    new = np.matmul(weights[:, None, :], r)[:, 0, :]
    loglik = np.matmul(weights[:, None, :], np.log(np.maximum(total, 1e-300)))[:, 0, 0]
    return new, loglik


def em_batched(
    probs: np.ndarray,
    weights: np.ndarray,
    source_prior: np.ndarray,
    *,
    tol: float = 1e-10,
    max_iter: int = 10_000,
    accelerate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saerens EM for B problems at once: ``probs`` is (n, K) shared by all, or (B, n, K) (the bootstrap's shapes).

    ``weights`` is (B, n), rows normalised to 1; ``source_prior`` is (B, K) or (K,). With ``accelerate`` the EM
    map is extrapolated by SQUAREM (Varadhan and Roland 2008; same fixed point, a likelihood safeguard keeps it
    monotone). Returns priors (B, K), EM-step counts and converged flags (an EM step moves < ``tol`` in L1).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n_problems = weights.shape[0]
    k = probs.shape[-1]
    src = np.broadcast_to(np.asarray(source_prior, dtype=np.float64), (n_problems, k))
    src = np.maximum(src, 1e-12)
    prior = src / src.sum(axis=1, keepdims=True)
    n_iter = np.zeros(n_problems, dtype=np.int64)
    converged = np.zeros(n_problems, dtype=bool)
    active = np.arange(n_problems)
    while active.size and n_iter[active].max() < max_iter:
        w, s, p0 = weights[active], src[active], prior[active]
        x = probs[active] if probs.ndim == 3 else probs
        p1, _ = _em_step(x, w, p0, s)
        step = np.abs(p1 - p0).sum(axis=1)
        n_iter[active] += 1
        done = step < tol
        if accelerate:
            p2, loglik1 = _em_step(x, w, p1, s)
            r, v = p1 - p0, p2 - 2.0 * p1 + p0
            alpha = -np.linalg.norm(r, axis=1) / np.maximum(np.linalg.norm(v, axis=1), 1e-300)
            alpha = np.clip(alpha, -_SQUAREM_MAX_STEP, -1.0)
            jump = p0 - 2.0 * alpha[:, None] * r + (alpha**2)[:, None] * v
            for _ in range(20):  # pull infeasible extrapolations back toward p2 (alpha = -1)
                bad = jump.min(axis=1) < 0.0
                if not bad.any():
                    break
                alpha[bad] = (alpha[bad] - 1.0) / 2.0
                alpha[bad & (alpha > -1.0 - 1e-3)] = -1.0
                jump[bad] = p0[bad] - 2.0 * alpha[bad, None] * r[bad] + (alpha[bad] ** 2)[:, None] * v[bad]
            still_bad = jump.min(axis=1) <= 0.0  # EM cannot leave an exact zero: fall back to plain EM there
            jump[still_bad] = p2[still_bad]
            jump /= jump.sum(axis=1, keepdims=True)
            p3, loglik_jump = _em_step(x, w, jump, s)
            n_iter[active] += 2
            worse = loglik_jump < loglik1 - 1e-12 * np.abs(loglik1)
            nxt = np.where(worse[:, None], p2, p3)
        else:
            nxt = p1
        prior[active] = np.where(done[:, None], p1, nxt)
        converged[active[done]] = True
        active = active[~done]
    prior /= prior.sum(axis=1, keepdims=True)
    return prior, n_iter, converged


def mlls_em(
    probs: np.ndarray,
    confusion: Confusion,
    *,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> PriorEstimate:
    """Maximum-likelihood label shift by EM (Saerens et al. 2002) on calibrated probabilities.

    Divides out ``confusion.source_prior`` (mean calibrated prediction on held-out reference data, as in
    Alexandari et al. 2020). Needs calibration (BCTS); it does not use C or M, which only enter the residual.
    """
    probs, w = _prepare(probs, confusion, weights)
    prior, n_iter, converged = em_batched(
        probs, w[None, :], confusion.source_prior, tol=tol, max_iter=max_iter
    )
    if not converged[0]:
        warnings.warn(
            f"mlls_em: EM did not converge in max_iter={max_iter} iterations (tol={tol}); classes are probably "
            f"near-collinear. The estimate is the last iterate.",
            AuditWarning,
            stacklevel=2,
        )
    p = prior[0] / prior[0].sum()
    return PriorEstimate(
        "mlls_em", p, None, _residual(confusion, p, _soft_mean(probs, w)), bool(converged[0]), int(n_iter[0])
    )


def rlls_rho(n_classes: int, n_source: int, delta: float = 0.05) -> float:
    """The RLLS regularisation scale 3 * Delta_C (Azizzadenesheli et al. 2019), for ``n_source`` held-out docs."""
    log_term = 2.0 * math.log(2.0 * n_classes / delta)
    return 3.0 * (log_term / (3.0 * n_source) + math.sqrt(log_term / n_source))


def _bounded_ridge(joint: np.ndarray, b: np.ndarray, mu: float) -> np.ndarray:
    """``argmin_{theta >= -1} ||joint theta - b||^2 + mu ||theta||^2``, exactly (NNLS on ``phi = theta + 1``)."""
    k = joint.shape[1]
    root = math.sqrt(mu)
    a = np.vstack([joint, root * np.eye(k)])
    rhs = np.concatenate([b + joint.sum(axis=1), np.full(k, root)])
    phi, _ = nnls(a, rhs, maxiter=50 * k)
    return phi - 1.0


def _rlls_ridge_path(joint: np.ndarray, b: np.ndarray, rho: float, iters: int = 80) -> np.ndarray:
    """RLLS's minimiser, found on the bounded-ridge path by golden-section search over log(mu).

    Every minimiser of ``||joint theta - b|| + rho ||theta||`` over ``theta >= -1`` is a bounded-ridge solution
    for some ``mu``; along the path ``||theta||`` falls monotonically, so the objective is unimodal in ``mu``.
    """

    def objective(theta: np.ndarray) -> float:
        return float(np.linalg.norm(joint @ theta - b) + rho * np.linalg.norm(theta))

    scale = max(float(np.linalg.norm(joint, 2)) ** 2, 1e-300)
    lo, hi = math.log(scale * 1e-14), math.log(scale * 1e8)
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
    t1, t2 = _bounded_ridge(joint, b, math.exp(x1)), _bounded_ridge(joint, b, math.exp(x2))
    f1, f2 = objective(t1), objective(t2)
    for _ in range(iters):
        if f1 <= f2:
            hi, x2, t2, f2 = x2, x1, t1, f1
            x1 = hi - golden * (hi - lo)
            t1 = _bounded_ridge(joint, b, math.exp(x1))
            f1 = objective(t1)
        else:
            lo, x1, t1, f1 = x1, x2, t2, f2
            x2 = lo + golden * (hi - lo)
            t2 = _bounded_ridge(joint, b, math.exp(x2))
            f2 = objective(t2)
    best = t1 if f1 <= f2 else t2
    zero = np.zeros_like(best)  # mu -> infinity: no shift at all
    return zero if objective(zero) < objective(best) else best


def _rlls_exact_fit(joint: np.ndarray, b: np.ndarray, theta: np.ndarray, rho: float) -> np.ndarray | None:
    """``theta`` if it is RLLS's exact minimiser: it fits exactly, is strictly feasible and the penalty is exact.

    At an exact fit the subgradient condition reads ``joint^T u = -rho theta / ||theta||`` for some ``||u|| <= 1``.
    """
    if not np.all(np.isfinite(theta)) or theta.min() <= -1.0:
        return None
    if np.linalg.norm(joint @ theta - b) > 1e-12 * max(1.0, float(np.linalg.norm(b))):
        return None
    norm = float(np.linalg.norm(theta))
    if norm == 0.0:
        return theta
    try:
        u = np.linalg.solve(joint.T, -rho * theta / norm)
    except np.linalg.LinAlgError:
        return None
    return theta if np.linalg.norm(u) <= 1.0 else None


def rlls(
    probs: np.ndarray,
    confusion: Confusion,
    *,
    weights: np.ndarray | None = None,
    rho: float | None = None,
    rho_scale: float = 0.01,
    delta: float = 0.05,
    mode: str = "hard",
) -> PriorEstimate:
    """Regularized learning under label shift (Azizzadenesheli et al. 2019).

    Solves ``min_{theta >= -1} ||C_joint theta - b|| + rho ||theta||`` with ``b = mu_gen - mu_ref`` and returns
    ``pi ~ (1 + theta) * label_prior``. The penalty shrinks the estimate toward the reference label prior
    (uniform for balanced references) while real mixtures are skewed, so the default ``rho`` is small:
    ``rho_scale * 3 * Delta_C`` with ``rho_scale = 0.01`` (QuaPy's default). For ``rho`` below the smallest
    singular value of ``C_joint`` the penalty is exact and RLLS equals BBSE with ``w >= 0``.
    ``mode`` picks hard (argmax, as in the paper) or soft confusion.
    """
    if mode not in ("hard", "soft"):
        raise ValueError(f"mode: got {mode!r}; accepted values are 'hard' and 'soft'")
    if rho is not None and (not math.isfinite(rho) or rho < 0):
        raise ValueError(
            f"rho: got {rho}; expected a finite number >= 0 (or None for rho_scale * 3 * Delta_C)"
        )
    probs, w = _prepare(probs, confusion, weights)
    pbar = _soft_mean(probs, w)
    if mode == "hard":
        cond_matrix, mu_gen = confusion.hard, _hard_mean(probs, w)
    else:
        cond_matrix, mu_gen = confusion.soft, pbar
    _warn_if_singular(cond_matrix, mode, "rlls")
    src = confusion.label_prior
    joint = (src[:, None] * cond_matrix).T  # joint[j, i] = P_ref(yhat = j, y = i)
    mu_ref = joint.sum(axis=1)
    b = mu_gen - mu_ref
    k = confusion.n_classes
    if rho is None:
        rho = rho_scale * rlls_rho(k, int(confusion.n_per_class.sum()), delta)
    raw = np.linalg.lstsq(joint, b, rcond=None)[0]
    theta = _rlls_exact_fit(joint, b, raw, rho)
    if theta is None:
        theta = _rlls_ridge_path(joint, b, rho)
    unnorm = np.maximum(1.0 + theta, 0.0) * src
    prior = unnorm / unnorm.sum() if unnorm.sum() > 0 else np.full(k, 1.0 / k)
    return PriorEstimate("rlls", prior, (1.0 + raw) * src, _residual(confusion, prior, pbar))


Estimator = Callable[..., PriorEstimate]

ESTIMATORS: dict[str, Estimator] = {
    "cc": cc,
    "pcc": pcc,
    "acc": acc,
    "pacc": pacc,
    "mlls_em": mlls_em,
    "rlls": rlls,
    "llmsurgeon_repo": llmsurgeon_repo,
}


def estimate_prior(
    probs: np.ndarray,
    reference: Confusion | Any,
    method: str = DEFAULT_METHOD,
    weights: np.ndarray | None = None,
    **kwargs: object,
) -> PriorEstimate:
    """Run the estimator named ``method`` (a key of :data:`ESTIMATORS`) on calibrated generation probabilities.

    ``reference`` is a :class:`Confusion` or anything holding one as ``.confusion`` (a ``FittedReference``).
    """
    if method not in ESTIMATORS:
        raise ValueError(f"method: unknown estimator {method!r}; accepted: {sorted(ESTIMATORS)}")
    confusion = getattr(reference, "confusion", reference)
    return ESTIMATORS[method](probs, confusion, weights=weights, **kwargs)
