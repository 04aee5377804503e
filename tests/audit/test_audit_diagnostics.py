"""Diagnostics: conditioning, out-of-taxonomy detection, quiet on clean audits; and the metrics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from audit_simulation import simulated_split

from hf_fundamentals.audit import (
    AuditWarning,
    ci_coverage,
    diagnose,
    l1_error,
    max_abs_error,
    mean_abs_error,
    overlap_accuracy,
    tolerance_accuracy,
    trivial_baselines,
)

K = 4


def _reference(rng, separation=3.0):
    labels, _, probs = simulated_split(K, 800, np.full(K, 1 / K), rng, separation=separation)
    return labels, probs


def test_clean_audit_raises_no_warning():
    rng = np.random.default_rng(0)
    labels, conf_probs = _reference(rng)
    prior = np.array([0.6, 0.2, 0.15, 0.05])
    _, _, probs = simulated_split(K, 500, prior, rng, separation=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AuditWarning)
        diag = diagnose(probs, conf_probs, labels, prior, domains=list("abcd"))
    assert diag.warnings == ()
    assert abs(diag.out_of_taxonomy_score) < 0.05 and diag.atypical_fraction < 0.15
    assert diag.sigma_min_soft > 0.1 and np.isfinite(diag.condition_number_hard)
    json.dumps(diag.to_dict())


def test_out_of_taxonomy_generations_are_flagged():
    rng = np.random.default_rng(1)
    labels, conf_probs = _reference(rng)
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    _, _, in_taxonomy = simulated_split(K, 300, prior, rng, separation=3.0)
    # Text from no listed domain: the classifier spreads its probability (near-uniform predictions).
    off = rng.dirichlet(np.full(K, 8.0), size=200)
    probs = np.vstack([in_taxonomy, off])
    with pytest.warns(AuditWarning, match="out-of-taxonomy"):
        diag = diagnose(probs, conf_probs, labels, prior)
    assert diag.out_of_taxonomy_score > 0.15
    assert any("out-of-taxonomy" in w for w in diag.warnings)


def test_mean_prediction_outside_every_mixture_is_flagged():
    rng = np.random.default_rng(2)
    labels, conf_probs = _reference(rng, separation=1.0)
    # A weak classifier never puts 97% on one domain on average, but these generations do: p_bar lies
    # outside the hull of M's rows, so no mixture of reference domains explains them.
    probs = np.tile([0.97, 0.01, 0.01, 0.01], (400, 1))
    with pytest.warns(AuditWarning, match="not a mixture of the reference domains"):
        diag = diagnose(probs, conf_probs, labels, np.array([1.0, 0.0, 0.0, 0.0]))
    assert diag.hull_residual > 3 * diag.residual_noise


def test_ill_conditioned_confusion_names_the_confused_domains():
    rng = np.random.default_rng(3)
    labels, _, probs = simulated_split(K, 800, np.full(K, 1 / K), rng)
    # Domains c and d are the same text: relabel half of c's documents as d.
    c_docs = np.flatnonzero(labels == 2)
    labels = labels.copy()
    labels[c_docs[::2]] = 3
    probs = probs.copy()
    both = np.isin(labels, [2, 3])
    probs[both, 2:] = probs[both, 2:].sum(axis=1, keepdims=True) / 2
    with pytest.warns(AuditWarning) as record:
        diag = diagnose(probs[:300], probs, labels, np.full(K, 0.25), domains=["a", "b", "c", "d"])
    assert set(diag.most_confused) == {"c", "d"}
    assert diag.sigma_min_soft < 0.1
    assert any("'c'" in str(w.message) and "'d'" in str(w.message) for w in record)


def test_few_generations_warn():
    rng = np.random.default_rng(4)
    labels, conf_probs = _reference(rng)
    _, _, probs = simulated_split(K, 20, np.full(K, 0.25), rng, separation=3.0)
    with pytest.warns(AuditWarning, match="only 20 generations"):
        diagnose(probs, conf_probs, labels, np.full(K, 0.25))


def test_metrics_on_known_values():
    truth = np.array([0.8, 0.1, 0.1])
    est = np.array([0.7, 0.2, 0.1])
    assert overlap_accuracy(est, truth) == pytest.approx(0.9)
    assert overlap_accuracy(est, 100 * truth) == pytest.approx(0.9)  # percentages are normalised
    assert l1_error(est, truth) == pytest.approx(0.2)
    assert mean_abs_error(est, truth) == pytest.approx(0.2 / 3)
    assert max_abs_error(est, truth) == pytest.approx(0.1)
    assert tolerance_accuracy(est, truth, tol=0.02) == pytest.approx(1 / 3)
    assert ci_coverage([0.75, 0.0, 0.05], [0.85, 0.05, 0.2], truth) == pytest.approx(2 / 3)
    base = trivial_baselines(truth)
    np.testing.assert_allclose(base["uniform"], [1 / 3] * 3)
    np.testing.assert_allclose(base["all_on_dominant"], [1, 0, 0])
    assert overlap_accuracy(base["all_on_dominant"], truth) == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"estimate, truth: expected two 1-D vectors of equal length"):
        overlap_accuracy(est, truth[:2])


def _em_and_pacc(probs, conf_probs, labels, seed=0):
    from hf_fundamentals.audit import Confusion, bootstrap_priors, estimate_prior

    confusion = Confusion.from_predictions(conf_probs, labels, K)
    methods = ("mlls_em", "pacc")
    points = tuple(estimate_prior(probs, confusion, method=m).prior for m in methods)
    boot = bootstrap_priors(probs, conf_probs, labels, methods, n_bootstrap=200, seed=seed)
    return methods, points, tuple(boot[m].samples for m in methods)


def test_estimator_cross_check_is_quiet_under_label_shift():
    from hf_fundamentals.audit import estimator_disagreement

    fired = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        labels, conf_probs = _reference(rng)
        prior = rng.dirichlet(np.ones(K))
        _, _, probs = simulated_split(K, 600, prior, rng, separation=3.0)
        gap = estimator_disagreement(*_em_and_pacc(probs, conf_probs, labels, seed), domains=list("abcd"))
        lo, hi = gap.interval_points
        assert lo <= gap.gap_points <= hi or not gap.significant
        fired.append(gap.significant)
    assert sum(fired) <= 1


def test_estimator_cross_check_fires_when_generations_are_less_separable_than_the_reference():
    """Style shift: the generations are classified less sharply than reference text of the same domain, so
    calibration-based EM over-sharpens the mixture while PACC's confusion correction does not."""
    from hf_fundamentals.audit import estimator_disagreement

    rng = np.random.default_rng(7)
    labels, conf_probs = _reference(rng, separation=3.0)
    prior = np.array([0.6, 0.2, 0.15, 0.05])
    _, _, probs = simulated_split(K, 1000, prior, rng, separation=3.0, overconfidence=0.4)
    methods, points, samples = _em_and_pacc(probs, conf_probs, labels)
    gap = estimator_disagreement(methods, points, samples, domains=list("abcd"))
    assert gap.significant and abs(gap.gap_points) >= 3.0
    assert "estimators disagree" in gap.message() and repr(gap.domain) in gap.message()
    json.dumps(gap.to_dict())
    with pytest.raises(ValueError, match="samples"):
        estimator_disagreement(methods, points, (samples[0][:, :2], samples[1]), domains=list("abcd"))
