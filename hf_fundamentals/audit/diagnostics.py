"""Diagnostics of an audit: is the inverse problem well posed, and do the generations fit the taxonomy?

- Conditioning: singular values of the hard and soft confusion matrices; the weakest direction names the
  domains the classifier cannot tell apart.
- Fit: the distance from p_bar to the set of label-shifted reference mixtures ``{M^T pi : pi in simplex}``,
  compared with what sampling noise alone would give.
- Cross-check: under label shift a calibration-based estimate (EM) and a confusion-based one (PACC) agree up to
  noise; a gap beyond their paired-bootstrap noise says the generations are not label-shifted reference text
  (style shift, a weak LM, off-taxonomy text), which biases EM most (benchmarks/audit_llmscan_mini.py).
- Out-of-taxonomy: under label shift the generations' classifier confidence is distributed like the reference
  documents' reweighted to the estimated prior. ``out_of_taxonomy_score`` = 0.5 - the generations' mean
  confidence percentile in that distribution: about 0 when the taxonomy fits, up to 0.5 when every generation
  is less confidently classified than every reference document.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hf_fundamentals.audit.confusion import Confusion, check_labels, check_probs, check_weights
from hf_fundamentals.audit.estimators import SINGULAR_CONDITION, AuditWarning
from hf_fundamentals.audit.simplex import simplex_least_squares

__all__ = ["Diagnostics", "Disagreement", "cross_check_partner", "diagnose", "estimator_disagreement"]

# Warn when the soft confusion's smallest singular value is below this: errors in p_bar are amplified ~1/sigma.
ILL_CONDITIONED_SIGMA = 0.1
# Reference percentile of confidence below which a generation counts as atypical (so 5% are expected).
ATYPICAL_QUANTILE = 0.05
# Warn when the generations' mean confidence percentile is below 0.5 by this much and by this many standard
# errors (AUROC of confidence for held-out real domains is about 0.83, so 30% off-taxonomy text gives ~0.1).
OUT_OF_TAXONOMY_DEFICIT = 0.05
OUT_OF_TAXONOMY_Z = 4.0
# Warn when p_bar is farther from every reference mixture than this many noise standard deviations.
RESIDUAL_Z = 3.0
MIN_GENERATIONS = 50
# Flag a cross-check gap at least this large (points) whose paired-bootstrap interval excludes 0.
DISAGREEMENT_POINTS = 3.0
CALIBRATION_BASED = frozenset({"mlls_em"})


@dataclass(frozen=True)
class Diagnostics:
    """Numbers that say how far to trust an audit, and the warnings they triggered (also raised as AuditWarning).

    ``out_of_taxonomy_score`` is 0.5 minus the generations' mean confidence percentile among reference documents
    of the same mixture (``expected_out_of_taxonomy_score`` = 0, standard error ``out_of_taxonomy_score_se``);
    ``atypical_fraction`` is the share below the reference's 5th percentile (0.05 expected).
    """

    condition_number_hard: float
    sigma_min_hard: float
    condition_number_soft: float
    sigma_min_soft: float
    most_confused: tuple[str, str] | None
    hull_residual: float
    residual_noise: float
    out_of_taxonomy_score: float
    expected_out_of_taxonomy_score: float
    out_of_taxonomy_score_se: float
    atypical_fraction: float
    mean_confidence_generations: float
    mean_confidence_reference: float
    n_generations: int
    effective_n_generations: float
    warnings: tuple[str, ...]
    estimator_gap: dict[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (infinities become None)."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


@dataclass(frozen=True)
class Disagreement:
    """The largest gap between two estimators' point estimates, on ``domain``, with the paired-bootstrap
    interval of that gap (both in points); ``significant`` when it is at least ``DISAGREEMENT_POINTS`` and the
    interval excludes 0."""

    methods: tuple[str, str]
    domain: str
    gap_points: float
    interval_points: tuple[float, float]
    significant: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "methods": list(self.methods),
            "domain": self.domain,
            "gap_points": self.gap_points,
            "interval_points": list(self.interval_points),
            "significant": self.significant,
        }

    def message(self) -> str:
        """The warning text for a significant gap."""
        a, b = self.methods
        lo, hi = self.interval_points
        return (
            f"estimators disagree beyond sampling noise: {a} and {b} differ by {abs(self.gap_points):.1f} points "
            f"on {self.domain!r} (paired-bootstrap interval of the gap {lo:+.1f} to {hi:+.1f}). A gap this size is "
            f"rare when generations read like the reference text of their domains and common when they do not "
            f"(style shift, a weak model, off-taxonomy text); calibration-based EM is hurt most, and the "
            f"intervals do not cover this kind of error"
        )


def cross_check_partner(method: str) -> str:
    """The estimator of the other family that ``method`` is cross-checked against (EM <-> PACC)."""
    return "pacc" if method in CALIBRATION_BASED else "mlls_em"


def estimator_disagreement(
    methods: tuple[str, str],
    points: tuple[np.ndarray, np.ndarray],
    samples: tuple[np.ndarray, np.ndarray],
    domains: Sequence[str],
    confidence: float = 0.95,
    min_points: float = DISAGREEMENT_POINTS,
) -> Disagreement:
    """Compare two estimators' points (K,) using their bootstrap replicates (B, K) drawn on the *same*
    resamples, so the interval of the difference is paired (noise common to both cancels)."""
    gap = 100.0 * (np.asarray(points[0]) - np.asarray(points[1]))
    a, b = np.asarray(samples[0]), np.asarray(samples[1])
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != gap.size or len(domains) != gap.size:
        raise ValueError(
            f"samples: expected two (B, {gap.size}) arrays and {gap.size} domains, got {a.shape}, {b.shape} "
            f"and {len(domains)} domains"
        )
    diffs = 100.0 * (a - b)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    flagged = ((lo > 0) | (hi < 0)) & (np.abs(gap) >= min_points)
    i = int(np.argmax(np.where(flagged, np.abs(gap), -1.0))) if flagged.any() else int(np.argmax(np.abs(gap)))
    return Disagreement(
        methods=tuple(methods),
        domain=str(domains[i]),
        gap_points=float(gap[i]),
        interval_points=(float(lo[i]), float(hi[i])),
        significant=bool(flagged[i]),
    )


def _singular(matrix: np.ndarray) -> tuple[float, float, np.ndarray]:
    _, sv, vt = np.linalg.svd(matrix)
    cond = math.inf if sv[-1] <= 0 else float(sv[0] / sv[-1])
    return cond, float(sv[-1]), vt[-1]


def _weighted_percentiles(reference: np.ndarray, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each value in the weighted reference sample (ties count half)."""
    order = np.argsort(reference)
    ref, cum = reference[order], np.cumsum(weights[order])
    total = cum[-1]
    below = np.searchsorted(ref, values, side="left")
    upto = np.searchsorted(ref, values, side="right")
    cum0 = np.concatenate([[0.0], cum])
    return (cum0[below] + 0.5 * (cum0[upto] - cum0[below])) / total


def diagnose(
    probs: np.ndarray,
    confusion_probs: np.ndarray,
    confusion_labels: np.ndarray,
    prior: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    domains: Sequence[str] | None = None,
    emit: bool = True,
) -> Diagnostics:
    """Diagnose an audit from the generations' calibrated ``probs``, the confusion split and the estimated
    ``prior``; with ``emit`` each problem is also raised as an :class:`AuditWarning`."""
    conf_probs = check_probs(confusion_probs, name="confusion_probs")
    k = conf_probs.shape[1]
    conf_labels = check_labels(confusion_labels, conf_probs.shape[0], k, name="confusion_labels")
    probs = check_probs(probs, k)
    w = check_weights(weights, probs.shape[0])
    w = w / w.sum()
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (k,) or prior.min() < -1e-9 or abs(prior.sum() - 1.0) > 1e-6:
        raise ValueError(f"prior: expected a probability vector of length {k}, got {prior}")
    names = list(domains) if domains is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"domains: got {len(names)} names for {k} classes")
    confusion = Confusion.from_predictions(conf_probs, conf_labels, k)
    messages: list[str] = []

    cond_h, smin_h, _ = _singular(confusion.hard)
    cond_s, smin_s, v = _singular(confusion.soft)
    order = np.argsort(-np.abs(v))
    most_confused = (names[order[0]], names[order[1]]) if k >= 2 else None
    if cond_s > SINGULAR_CONDITION or cond_h > SINGULAR_CONDITION:
        messages.append(
            f"confusion matrix is numerically singular (cond hard {cond_h:.3g}, soft {cond_s:.3g}): the "
            f"classifier cannot separate {most_confused[0]!r} from {most_confused[1]!r}, so their split is not "
            f"identified; merge them in the taxonomy or use a stronger classifier"
        )
    elif smin_s < ILL_CONDITIONED_SIGMA:
        messages.append(
            f"soft confusion matrix is ill-conditioned (smallest singular value {smin_s:.3g} < "
            f"{ILL_CONDITIONED_SIGMA}, condition number {cond_s:.3g}): noise is amplified about {1 / smin_s:.0f}x, "
            f"mostly between {most_confused[0]!r} and {most_confused[1]!r}; expect wide intervals for them"
        )

    # Fit: distance from p_bar to the hull of reference mixtures vs. sampling noise.
    pbar = w @ probs
    hull = simplex_least_squares(confusion.soft.T, pbar).x
    hull_residual = float(np.linalg.norm(confusion.soft.T @ hull - pbar))
    n_eff = float(1.0 / np.sum(w**2))
    gen_var = float(np.sum(w @ (probs - pbar) ** 2)) / n_eff
    class_var = 0.0
    for i in range(k):
        rows = conf_probs[conf_labels == i]
        class_var += prior[i] ** 2 * float(np.sum(rows.var(axis=0))) / rows.shape[0]
    residual_noise = math.sqrt(gen_var + class_var)
    if hull_residual > RESIDUAL_Z * residual_noise:
        messages.append(
            f"the generations' mean prediction is not a mixture of the reference domains' (distance "
            f"{hull_residual:.3g}, about {hull_residual / max(residual_noise, 1e-300):.1f}x sampling noise): "
            f"label shift does not hold; the generations may contain domains outside the taxonomy"
        )

    # Out-of-taxonomy: where each generation's confidence falls in the reference confidence distribution,
    # reweighted to the estimated prior. Under label shift these percentiles are uniform (mean 0.5).
    conf_max = conf_probs.max(axis=1)
    ref_w = (prior / confusion.label_prior)[conf_labels]
    if ref_w.sum() <= 0:
        ref_w = np.ones_like(ref_w)
    gen_max = probs.max(axis=1)
    percentiles = _weighted_percentiles(conf_max, ref_w, gen_max)
    score = float(0.5 - w @ percentiles)
    n_ref_eff = float(ref_w.sum() ** 2 / np.sum(ref_w**2))
    score_se = math.sqrt((1.0 / 12.0) * (1.0 / n_eff + 1.0 / n_ref_eff))
    atypical = float(w @ (percentiles < ATYPICAL_QUANTILE))
    if score > max(OUT_OF_TAXONOMY_DEFICIT, OUT_OF_TAXONOMY_Z * score_se):
        messages.append(
            f"out-of-taxonomy: generations are classified less confidently than reference text of the same "
            f"mixture (mean confidence percentile {0.5 - score:.2f}, expected 0.50; {atypical:.0%} fall below "
            f"the reference's 5th percentile): some may come from domains the taxonomy does not list, or differ "
            f"from the reference text in style"
        )
    if probs.shape[0] < MIN_GENERATIONS:
        messages.append(
            f"only {probs.shape[0]} generations (< {MIN_GENERATIONS}): estimates are noisy; sample more"
        )
    if emit:
        for message in messages:
            warnings.warn(message, AuditWarning, stacklevel=2)
    return Diagnostics(
        condition_number_hard=cond_h,
        sigma_min_hard=smin_h,
        condition_number_soft=cond_s,
        sigma_min_soft=smin_s,
        most_confused=most_confused,
        hull_residual=hull_residual,
        residual_noise=residual_noise,
        out_of_taxonomy_score=score,
        expected_out_of_taxonomy_score=0.0,
        out_of_taxonomy_score_se=score_se,
        atypical_fraction=atypical,
        mean_confidence_generations=float(w @ gen_max),
        mean_confidence_reference=float(np.average(conf_max, weights=ref_w)),
        n_generations=int(probs.shape[0]),
        effective_n_generations=n_eff,
        warnings=tuple(messages),
    )
