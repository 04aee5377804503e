"""Bootstrap of prior estimates over every held-out sample the audit depends on, then percentile intervals.

Levels: the confusion split is resampled within each class (so C, M and the source prior carry their error),
the generations are resampled (so p_bar does) and, when logits are given, the calibration split is resampled
and the calibrator refit (EM leans on calibration; without this level its intervals are too narrow).
Generation resamples are multinomial counts used as weights, and EM runs all replicates at once.

The percentile bootstrap fails at the simplex boundary (Andrews 2000): a domain with no generations gives
replicates that are all 0 and an interval [0, 0]. The upper end is therefore floored at the zero-count bound
``-ln(alpha / 2) / n_eff`` (the "rule of three" at 95%): with ``n_eff`` generations smaller shares are
indistinguishable from 0 even for a perfect classifier.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from hf_fundamentals.audit.calibration import fit_calibrator
from hf_fundamentals.audit.confusion import Confusion, check_labels, check_probs, check_weights
from hf_fundamentals.audit.estimators import ESTIMATORS, em_batched

__all__ = ["BootstrapResult", "Recalibration", "bootstrap_priors"]


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap replicates (B, K) of one estimator and their percentile interval at ``confidence``."""

    method: str
    samples: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    confidence: float


@dataclass(frozen=True)
class Recalibration:
    """Logits that let the bootstrap refit the calibrator (``method`` as in :func:`fit_calibrator`) on resamples
    of the calibration split; the confusion split's and the generations' probabilities are then recomputed."""

    method: str
    calibration_logits: np.ndarray
    calibration_labels: np.ndarray
    confusion_logits: np.ndarray
    generation_logits: np.ndarray
    calibration_groups: np.ndarray | None = None
    """The document of each calibration row, when rows are snippets (resampled by document)."""


def _stratified_draw(
    labels: np.ndarray, k: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> np.ndarray:
    """Indices of one stratified resample with replacement (class sizes kept).

    With ``groups`` (e.g. the document each snippet was cut from), whole groups are drawn within each class: the
    snippets of one document are not independent draws, and resampling them one by one would understate the
    spread (a cluster bootstrap; Davison & Hinkley 1997, section 3.8).
    """
    parts = []
    for i in range(k):
        idx = np.flatnonzero(labels == i)
        if groups is None:
            parts.append(idx[rng.integers(idx.size, size=idx.size)])
            continue
        ids, members = np.unique(groups[idx], return_inverse=True)
        picked = rng.integers(ids.size, size=ids.size)
        order = np.argsort(members, kind="stable")
        starts = np.searchsorted(members[order], np.arange(ids.size + 1))
        parts.append(np.concatenate([idx[order[starts[g] : starts[g + 1]]] for g in picked]))
    return np.concatenate(parts)


def _replicates(
    probs: np.ndarray,
    conf_probs: np.ndarray,
    conf_labels: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
    recalibration: Recalibration | None,
    resample_confusion: bool,
    confusion_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Confusion]]:
    """Per-replicate generation probabilities (B, n, K) (or the shared (n, K)) and confusions."""
    k = conf_probs.shape[1]
    gen_probs = []
    confusions = []
    full = None
    if recalibration is not None:
        full = fit_calibrator(
            recalibration.calibration_logits, recalibration.calibration_labels, recalibration.method
        )
    for _ in range(n_bootstrap):
        if recalibration is not None:
            cal = _stratified_draw(recalibration.calibration_labels, k, rng, recalibration.calibration_groups)
            calibrator = fit_calibrator(
                recalibration.calibration_logits[cal],
                recalibration.calibration_labels[cal],
                recalibration.method,
                initial=full,
            )
            replicate_conf = calibrator.transform(recalibration.confusion_logits)
            gen_probs.append(calibrator.transform(recalibration.generation_logits))
        else:
            replicate_conf = conf_probs
        rows = (
            _stratified_draw(conf_labels, k, rng, confusion_groups)
            if resample_confusion
            else np.arange(conf_labels.size)
        )
        confusions.append(Confusion.from_predictions(replicate_conf[rows], conf_labels[rows], k))
    return (np.stack(gen_probs) if gen_probs else probs), confusions


def bootstrap_priors(
    probs: np.ndarray,
    confusion_probs: np.ndarray,
    confusion_labels: np.ndarray,
    methods: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
    recalibration: Recalibration | None = None,
    resample_confusion: bool = True,
    resample_generations: bool = True,
    confusion_groups: np.ndarray | None = None,
) -> dict[str, BootstrapResult]:
    """Percentile bootstrap intervals for each estimator in ``methods``, all on the same resamples.

    ``probs``: (n, K) calibrated probabilities of the generations; ``confusion_probs``/``confusion_labels``:
    calibrated probabilities and labels of the held-out confusion split; ``recalibration`` adds the
    calibration level (see :class:`Recalibration`); ``confusion_groups`` (the document of each confusion row,
    when rows are snippets of documents) resamples whole documents.
    """
    unknown = [m for m in methods if m not in ESTIMATORS]
    if unknown:
        raise ValueError(f"methods: unknown estimators {unknown}; accepted: {sorted(ESTIMATORS)}")
    if n_bootstrap < 2:
        raise ValueError(
            f"n_bootstrap: got {n_bootstrap}; expected at least 2 replicates (200 or more for 95% CIs)"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: got {confidence}; expected a level in (0, 1), e.g. 0.95")
    conf_probs = check_probs(confusion_probs, name="confusion_probs")
    k = conf_probs.shape[1]
    conf_labels = check_labels(confusion_labels, conf_probs.shape[0], k, name="confusion_labels")
    probs = check_probs(probs, k)
    n = probs.shape[0]
    if recalibration is not None:
        shapes = {
            "confusion_logits": (recalibration.confusion_logits, conf_probs.shape),
            "generation_logits": (recalibration.generation_logits, probs.shape),
        }
        for name, (arr, shape) in shapes.items():
            if np.shape(arr) != shape:
                raise ValueError(
                    f"recalibration.{name}: shape {np.shape(arr)} does not match the probabilities' {shape}"
                )
    w = check_weights(weights, n)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # Thousands of tiny K x K solves: multi-threaded BLAS only adds contention (threadpoolctl ships with sklearn).
    with threadpool_limits(limits=1, user_api="blas"):
        gen_probs, confusions = _replicates(
            probs,
            conf_probs,
            conf_labels,
            n_bootstrap,
            rng,
            recalibration,
            resample_confusion,
            confusion_groups,
        )
        if resample_generations:
            gen_counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(np.float64)
        else:
            gen_counts = np.ones((n_bootstrap, n))
        gen_weights = gen_counts * w[None, :]
        gen_weights /= gen_weights.sum(axis=1, keepdims=True)
        alpha = 1.0 - confidence
        floor = -math.log(alpha / 2.0) / (w.sum() ** 2 / np.sum(w**2))
        results: dict[str, BootstrapResult] = {}
        for method in methods:
            samples = _bootstrap_samples(method, gen_probs, confusions, gen_weights)
            low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
            results[method] = BootstrapResult(method, samples, low, np.maximum(high, floor), confidence)
    return results


def _bootstrap_samples(
    method: str, gen_probs: np.ndarray, confusions: list[Confusion], gen_weights: np.ndarray
) -> np.ndarray:
    """All replicates (B, K) of one estimator (EM batched, the others one replicate at a time)."""
    n_bootstrap, k = gen_weights.shape[0], gen_probs.shape[-1]
    if method == "mlls_em":
        sources = np.stack([c.source_prior for c in confusions])
        samples, _, _ = em_batched(gen_probs, gen_weights, sources)
        return samples
    fn = ESTIMATORS[method]
    samples = np.empty((n_bootstrap, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the point estimate already warned once
        for b in range(n_bootstrap):
            probs = gen_probs[b] if gen_probs.ndim == 3 else gen_probs
            samples[b] = fn(probs, confusions[b], weights=gen_weights[b]).prior
    return samples
