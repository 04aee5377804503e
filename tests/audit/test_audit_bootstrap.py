"""Bootstrap: intervals cover the truth in a small label-shift simulation; seeded; the calibration level."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from audit_simulation import simulated_split
from scipy.special import softmax

from hf_fundamentals.audit import (
    AuditWarning,
    Confusion,
    Recalibration,
    bootstrap_priors,
    ci_coverage,
    estimate_prior,
    fit_calibrator,
)

K = 4


def _trial(rng: np.random.Generator, n_gen: int = 400):
    conf_labels, _, conf_probs = simulated_split(K, 600, np.full(K, 1 / K), rng)
    prior = rng.dirichlet(np.full(K, 0.7))
    _, _, probs = simulated_split(K, n_gen, prior, rng)
    return prior, probs, conf_probs, conf_labels


def test_intervals_contain_the_truth_most_of_the_time():
    rng = np.random.default_rng(0)
    coverage = {"mlls_em": [], "pacc": []}
    for trial in range(30):
        prior, probs, conf_probs, conf_labels = _trial(rng)
        boot = bootstrap_priors(probs, conf_probs, conf_labels, list(coverage), n_bootstrap=150, seed=trial)
        for method, result in boot.items():
            coverage[method].append(ci_coverage(result.ci_low, result.ci_high, prior))
    for method, values in coverage.items():
        assert np.mean(values) >= 0.85, (method, np.mean(values))


def test_bootstrap_is_seeded_and_shaped():
    prior, probs, conf_probs, conf_labels = _trial(np.random.default_rng(1), n_gen=200)
    a = bootstrap_priors(probs, conf_probs, conf_labels, ["pacc", "mlls_em"], n_bootstrap=50, seed=7)
    b = bootstrap_priors(probs, conf_probs, conf_labels, ["pacc", "mlls_em"], n_bootstrap=50, seed=7)
    for method in ("pacc", "mlls_em"):
        assert a[method].samples.shape == (50, K)
        np.testing.assert_array_equal(a[method].samples, b[method].samples)
        assert np.all(a[method].ci_low <= a[method].ci_high)
        np.testing.assert_allclose(a[method].samples.sum(axis=1), 1.0, atol=1e-9)
    c = bootstrap_priors(probs, conf_probs, conf_labels, ["pacc"], n_bootstrap=50, seed=8)
    assert not np.array_equal(a["pacc"].samples, c["pacc"].samples)


def test_empty_domain_gets_an_upper_bound_not_a_zero_width_interval():
    rng = np.random.default_rng(2)
    conf_labels, _, conf_probs = simulated_split(K, 800, np.full(K, 1 / K), rng, separation=6.0)
    _, _, probs = simulated_split(K, 300, np.array([0.5, 0.5, 0.0, 0.0]), rng, separation=6.0)
    boot = bootstrap_priors(probs, conf_probs, conf_labels, ["mlls_em"], n_bootstrap=100, seed=0)["mlls_em"]
    assert boot.ci_low[2] == pytest.approx(0.0, abs=1e-3)
    assert boot.ci_high[2] >= -np.log(0.025) / 300 - 1e-12


def test_recalibration_level_refits_the_calibrator():
    rng = np.random.default_rng(3)
    k = 3
    means = 2.0 * np.eye(k)
    cal_labels = rng.integers(k, size=400)
    cal_logits = 3.0 * (means[cal_labels] + rng.normal(size=(400, k)))
    conf_labels = rng.integers(k, size=400)
    conf_logits = 3.0 * (means[conf_labels] + rng.normal(size=(400, k)))
    gen_labels = rng.choice(k, size=300, p=[0.6, 0.3, 0.1])
    gen_logits = 3.0 * (means[gen_labels] + rng.normal(size=(300, k)))
    calibrator = fit_calibrator(cal_logits, cal_labels)
    conf_probs, probs = calibrator.transform(conf_logits), calibrator.transform(gen_logits)
    recal = Recalibration("bcts", cal_logits, cal_labels, conf_logits, gen_logits)
    fixed = bootstrap_priors(probs, conf_probs, conf_labels, ["mlls_em"], n_bootstrap=60, seed=0)["mlls_em"]
    refit = bootstrap_priors(
        probs, conf_probs, conf_labels, ["mlls_em"], n_bootstrap=60, seed=0, recalibration=recal
    )["mlls_em"]
    assert not np.allclose(fixed.samples, refit.samples)
    assert ci_coverage(refit.ci_low, refit.ci_high, [0.6, 0.3, 0.1]) >= 2 / 3
    with pytest.raises(ValueError, match=r"recalibration.generation_logits: shape \(5, 3\)"):
        bad = Recalibration("bcts", cal_logits, cal_labels, conf_logits, gen_logits[:5])
        bootstrap_priors(probs, conf_probs, conf_labels, ["pacc"], n_bootstrap=5, recalibration=bad)


def test_two_hundred_replicates_take_seconds():
    rng = np.random.default_rng(4)
    k, n = 8, 500
    means = 2.5 * np.eye(k) + 0.8 * rng.normal(size=(k, k))
    conf_labels = rng.integers(k, size=800)
    conf_probs = softmax(means[conf_labels] + rng.normal(size=(800, k)), axis=1)
    gen_labels = rng.choice(k, size=n, p=rng.dirichlet(np.ones(k)))
    probs = softmax(means[gen_labels] + rng.normal(size=(n, k)), axis=1)
    start = time.perf_counter()
    bootstrap_priors(probs, conf_probs, conf_labels, ["mlls_em", "pacc"], n_bootstrap=200, seed=0)
    assert time.perf_counter() - start < 15.0  # about 1 s on 2 cores; generous for loaded CI machines


def test_bootstrap_rejects_bad_arguments():
    prior, probs, conf_probs, conf_labels = _trial(np.random.default_rng(5), n_gen=50)
    with pytest.raises(ValueError, match=r"methods: unknown estimators \['em'\]"):
        bootstrap_priors(probs, conf_probs, conf_labels, ["em"])
    with pytest.raises(ValueError, match=r"n_bootstrap: got 1; expected at least 2"):
        bootstrap_priors(probs, conf_probs, conf_labels, ["pacc"], n_bootstrap=1)
    with pytest.raises(ValueError, match=r"confidence: got 95; expected a level in \(0, 1\)"):
        bootstrap_priors(probs, conf_probs, conf_labels, ["pacc"], confidence=95)
    with pytest.raises(ValueError, match=r"probs: has 3 columns but the reference has 4 classes"):
        bootstrap_priors(probs[:, :3], conf_probs, conf_labels, ["pacc"])


def test_point_estimates_sit_inside_their_intervals_mostly():
    rng = np.random.default_rng(6)
    inside = []
    for trial in range(10):
        prior, probs, conf_probs, conf_labels = _trial(rng)
        confusion = Confusion.from_predictions(conf_probs, conf_labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AuditWarning)
            point = estimate_prior(probs, confusion, method="pacc").prior
        boot = bootstrap_priors(probs, conf_probs, conf_labels, ["pacc"], n_bootstrap=100, seed=trial)["pacc"]
        inside.append(np.mean((point >= boot.ci_low - 1e-12) & (point <= boot.ci_high + 1e-12)))
    assert np.mean(inside) >= 0.9


def test_snippets_are_resampled_by_document_not_one_by_one():
    """Ten near-copies of each of a few documents: resampling rows one by one would treat them as ten draws."""
    from hf_fundamentals.audit.bootstrap import _stratified_draw

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    groups = np.repeat(np.arange(8), 10)  # 4 documents per class, 10 snippets each
    for _ in range(20):
        rows = _stratified_draw(labels, 2, rng, groups)
        assert rows.size == labels.size and np.array_equal(np.bincount(labels[rows]), [40, 40])
        for g in np.unique(groups[rows]):  # a drawn document comes with all of its snippets
            assert np.count_nonzero(groups[rows] == g) % 10 == 0
    # the spread of a per-class mean is larger under the document bootstrap when snippets share their document
    values = np.repeat(rng.normal(size=8), 10) + 0.01 * rng.normal(size=80)
    spread = [
        np.std([values[_stratified_draw(labels, 2, rng, g)][:40].mean() for _ in range(300)])
        for g in (None, groups)
    ]
    assert spread[1] > 2 * spread[0]
