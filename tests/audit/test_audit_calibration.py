"""Calibration: temperature recovery, BCTS vs TS, invariance to log-probabilities, oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from hf_fundamentals.audit import fit_calibrator
from hf_fundamentals.audit.calibration import negative_log_likelihood


def _calibrated_data(n: int, k: int, seed: int, bias: np.ndarray | None = None):
    """True logits z and labels drawn from softmax(z + bias): the model is calibrated at T = 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, k))
    shifted = z + (0.0 if bias is None else bias)
    p = softmax(shifted, axis=1)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_temperature_scaling_recovers_a_known_temperature(temperature):
    z, labels = _calibrated_data(6000, 5, seed=1)
    cal = fit_calibrator(temperature * z, labels, method="temperature")
    assert cal.temperature == pytest.approx(temperature, rel=0.07)
    np.testing.assert_array_equal(cal.bias, 0.0)


def test_bcts_recovers_the_bias_and_beats_temperature_scaling():
    bias = np.array([1.0, -0.5, 0.0, -0.5])
    z, labels = _calibrated_data(8000, 4, seed=2, bias=bias)
    bcts = fit_calibrator(3.0 * z, labels, method="bcts")
    ts = fit_calibrator(3.0 * z, labels, method="temperature")
    none = fit_calibrator(3.0 * z, labels, method="none")
    assert bcts.temperature == pytest.approx(3.0, rel=0.07)
    np.testing.assert_allclose(bcts.bias, bias - bias.mean(), atol=0.12)
    assert bcts.nll <= ts.nll + 1e-12 <= none.nll + 1e-12
    assert bcts.nll == pytest.approx(negative_log_likelihood(bcts.transform(3.0 * z), labels), abs=1e-9)


def test_log_probabilities_give_the_same_calibration_as_logits():
    z, labels = _calibrated_data(2000, 3, seed=3)
    from_logits = fit_calibrator(2.0 * z, labels)
    from_logprobs = fit_calibrator(log_softmax(2.0 * z, axis=1), labels)
    assert from_logits.temperature == pytest.approx(from_logprobs.temperature, rel=1e-5)
    np.testing.assert_allclose(
        from_logits.transform(2.0 * z), from_logprobs.transform(log_softmax(2.0 * z, 1)), atol=1e-6
    )
    probs = from_logits.transform(z)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_bcts_matches_abstention_implementation():
    calibration = pytest.importorskip("abstention.calibration")
    z, labels = _calibrated_data(3000, 4, seed=4, bias=np.array([0.5, 0.0, -0.3, 0.2]))
    ours = fit_calibrator(2.5 * z, labels, method="bcts")
    onehot = np.eye(4)[labels]
    theirs = calibration.TempScaling(bias_positions="all")(2.5 * z, onehot)
    nll_theirs = negative_log_likelihood(theirs(2.5 * z), labels)
    # Both optimise the same convex objective: our optimum is at least as good and the probabilities agree.
    assert ours.nll <= nll_theirs + 1e-6
    np.testing.assert_allclose(ours.transform(2.5 * z), theirs(2.5 * z), atol=2e-3)


def test_bad_calibration_input_fails_clearly():
    z, labels = _calibrated_data(50, 3, seed=5)
    with pytest.raises(ValueError, match=r"method: got 'platt'; accepted calibration methods are \['bcts'"):
        fit_calibrator(z, labels, method="platt")
    bad = z.copy()
    bad[0, 0] = -np.inf
    with pytest.raises(ValueError, match="logits: contains non-finite values"):
        fit_calibrator(bad, labels)
    with pytest.raises(ValueError, match=r"labels: expected a 1-D array of length 50"):
        fit_calibrator(z, labels[:10])
    cal = fit_calibrator(z, labels)
    with pytest.raises(ValueError, match="logits: has 4 columns but the calibrator was fit on 3 classes"):
        cal.transform(np.zeros((2, 4)))
