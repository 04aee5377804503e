"""Memory law fit, prediction, rank planner and tokens-per-rank on synthetic sweeps with known constants."""

from __future__ import annotations

import numpy as np
import pytest

from hf_fundamentals.memorization import (
    delta_l_for_exact_match,
    fit_memory_law,
    plan_rank,
    tokens_per_rank,
)


def _sweep(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ranks, lengths = np.meshgrid([1, 2, 4, 8, 16, 32], [250, 500, 1000, 2000, 4000])
    r, ell = ranks.ravel().astype(float), lengths.ravel().astype(float)
    y = 30.0 * r**0.4 * ell**-0.35 + 0.5
    return r, ell, y + noise * rng.standard_normal(y.shape)


def test_fit_recovers_known_constants():
    r, ell, y = _sweep()
    fit = fit_memory_law(r, ell, y)
    assert fit.C == pytest.approx(30.0, rel=1e-3)
    assert fit.alpha == pytest.approx(0.4, abs=1e-4) and fit.beta == pytest.approx(0.35, abs=1e-4)
    assert fit.b == pytest.approx(0.5, abs=1e-3) and fit.r2 > 0.9999
    noisy = fit_memory_law(*_sweep(noise=0.05))
    assert 0.3 < noisy.alpha < 0.5 and noisy.r2 > 0.95
    assert fit.predict(8, 1000) == pytest.approx(30.0 * 8**0.4 * 1000**-0.35 + 0.5, rel=1e-4)


def test_rank_planner_inverts_the_law():
    r, ell, y = _sweep()
    fit = fit_memory_law(r, ell, y)
    em = (y > 3.0).astype(float)  # in this toy sweep, items are recalled once dL exceeds 3
    need = delta_l_for_exact_match(y, em, 0.9)
    assert need == pytest.approx(y[y > 3.0].min(), abs=0.05)
    plan = plan_rank(fit, 1000, 0.9, y, em)
    real = ((need - 0.5) * 1000**0.35 / 30.0) ** (1 / 0.4)
    assert plan["rank_from_law"] == pytest.approx(real, rel=1e-3)
    assert plan["rank"] == min(x for x in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if x >= real)
    assert plan_rank(fit, 1000, 0.9, y, np.zeros_like(y))["rank"] is None  # never reached: no answer


def test_tokens_per_rank_and_input_checks():
    assert tokens_per_rank([1, 1, 2, 2], [100, 200, 200, 500], [1.0, 0.5, 1.0, 0.95]) == {1: 100.0, 2: 250.0}
    with pytest.raises(ValueError, match="at least 5 points"):
        fit_memory_law([1, 2], [10, 10], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_memory_law([0, 1, 2, 3, 4], [1] * 5, [1.0] * 5)
