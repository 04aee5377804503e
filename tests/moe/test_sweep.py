"""LR-sweep optimum: a quadratic in log2(lr) recovers a known optimum between grid points, edge minima are flagged
and clamped, diverged runs are dropped, non-convex fits fall back to the grid minimum, and the drift metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_fundamentals.moe import TEN_PERCENT_LOG2, OptimumFit, fit_optimum, lr_drift_log2

SQRT2_GRID = [2.0 ** (-14 + 0.5 * i) for i in range(13)]  # 2^-14 ... 2^-8 in √2 steps


def test_exact_quadratic_optimum_between_grid_points():
    x0 = -10.37  # between 2^-10.5 and 2^-10
    losses = [2.5 + 0.3 * (math.log2(lr) - x0) ** 2 for lr in SQRT2_GRID]
    fit = fit_optimum(SQRT2_GRID, losses)
    assert abs(fit.log2_lr_star - x0) < 1e-6
    assert fit.lr_star == pytest.approx(2.0**x0, rel=1e-6)
    assert fit.curvature == pytest.approx(0.6)
    assert fit.loss_star == pytest.approx(2.5)
    assert not fit.at_edge and not fit.degenerate and fit.reason == ""
    assert len(fit.lrs_used) == 5 and fit.n_dropped == 0
    # the grid minimum itself is 0.13 away in log2: only the fit passes the 10% threshold
    grid_best = SQRT2_GRID[int(np.argmin(losses))]
    assert abs(math.log2(grid_best) - x0) > 0.1
    # coefficients evaluate on log2 lr
    assert np.polyval(fit.coefficients, x0) == pytest.approx(2.5)


def test_uses_the_nearest_points_only():
    x0 = -11.2
    losses = [1.0 + 0.2 * (math.log2(lr) - x0) ** 2 for lr in SQRT2_GRID]
    losses[0] = 50.0  # far from the minimum: must not enter a 3-point fit
    fit = fit_optimum(SQRT2_GRID, losses, points=3)
    assert len(fit.lrs_used) == 3
    assert SQRT2_GRID[0] not in fit.lrs_used
    assert abs(fit.log2_lr_star - x0) < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_asymmetric_noisy_loss_on_sqrt2_grid(seed):
    """Steeper on the high-LR side (as real sweeps are: a cubic term) with seeded noise: η* within 0.1 in log2."""
    x0 = -10.8
    rng = np.random.default_rng(seed)
    u = np.log2(SQRT2_GRID) - x0
    losses = 3.0 + 0.08 * u**2 + 0.01 * u**3 + rng.normal(0.0, 0.001, size=u.size)
    fit = fit_optimum(SQRT2_GRID, losses)
    assert abs(fit.log2_lr_star - x0) < 0.1
    assert not fit.at_edge and not fit.degenerate


def test_asymmetry_bias_cancels_in_the_drift_metric():
    """A strongly asymmetric loss (twice as steep above η*) biases each η* by about -0.15 in log2, more than the
    10% threshold, but two sweeps of the same shape 0.3 apart still measure a drift of 0.3 within 0.02."""
    x = np.log2(SQRT2_GRID)

    def sweep(x0: float) -> OptimumFit:
        u = x - x0
        return fit_optimum(SQRT2_GRID, 3.0 + np.where(u < 0, 0.06 * u**2, 0.12 * u**2))

    ref, target = sweep(-10.8), sweep(-10.5)
    assert abs(ref.log2_lr_star + 10.8) > TEN_PERCENT_LOG2  # the bias is real
    assert lr_drift_log2(ref, target) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("direction", ["largest", "smallest"])
def test_edge_minimum_is_flagged_and_clamped(direction):
    losses = [3.0 - 0.1 * i for i in range(len(SQRT2_GRID))]  # still falling at the largest lr
    if direction == "smallest":
        losses = losses[::-1]
    fit = fit_optimum(SQRT2_GRID, losses)
    edge = SQRT2_GRID[-1] if direction == "largest" else SQRT2_GRID[0]
    assert fit.at_edge
    assert fit.lr_star == edge
    assert fit.log2_lr_star == pytest.approx(math.log2(edge))
    assert direction in fit.reason and "extrapolate" in fit.reason


def test_diverged_runs_are_dropped():
    x0 = -10.3
    losses = [2.0 + 0.25 * (math.log2(lr) - x0) ** 2 for lr in SQRT2_GRID]
    clean = fit_optimum(SQRT2_GRID[:10], losses[:10])
    losses[10:] = [float("nan"), float("inf"), float("nan")]
    fit = fit_optimum(SQRT2_GRID, losses)
    assert fit.n_dropped == 3
    assert fit.log2_lr_star == pytest.approx(clean.log2_lr_star, abs=1e-9)
    assert abs(fit.log2_lr_star - x0) < 1e-6
    assert all(math.isfinite(v) for v in fit.losses_used)


def test_edge_next_to_divergence_says_so():
    losses = [3.0 - 0.1 * i for i in range(10)] + [float("nan")] * 3
    fit = fit_optimum(SQRT2_GRID, losses)
    assert fit.at_edge and fit.lr_star == SQRT2_GRID[9]
    assert "diverged" in fit.reason


def test_unordered_input_is_sorted():
    x0 = -9.9
    losses = [1.0 + 0.4 * (math.log2(lr) - x0) ** 2 for lr in SQRT2_GRID]
    perm = np.random.default_rng(0).permutation(len(SQRT2_GRID))
    fit = fit_optimum([SQRT2_GRID[i] for i in perm], [losses[i] for i in perm])
    assert abs(fit.log2_lr_star - x0) < 1e-6


def test_non_convex_fit_falls_back_to_the_grid_minimum():
    lrs = [2.0**k for k in range(-12, -7)]
    losses = [-4.0, -4.5, 0.0, -1.0, -4.0]  # interior grid minimum, but the 5-point fit is concave
    assert np.polyfit(np.log2(lrs), losses, 2)[0] < 0
    fit = fit_optimum(lrs, losses)
    assert fit.degenerate and not fit.at_edge
    assert fit.curvature < 0
    assert fit.lr_star == lrs[1] and fit.loss_star == -4.5
    assert "curvature" in fit.reason


def test_too_few_finite_points_is_degenerate():
    fit = fit_optimum([1e-4, 1e-3, 1e-2], [1.0, 0.5, float("nan")])
    assert fit.degenerate and fit.at_edge and math.isnan(fit.curvature)
    assert fit.lr_star == 1e-3
    with pytest.raises(ValueError, match="diverged"):
        fit_optimum([1e-4, 1e-3], [float("nan"), float("inf")])


@pytest.mark.parametrize(
    "lrs, losses, kw, match",
    [
        ([1e-3, 1e-2], [1.0], {}, "same length"),
        ([], [], {}, "at least one"),
        ([1e-3, -1e-2, 1e-1], [1.0, 0.5, 1.0], {}, "> 0"),
        ([1e-3, 1e-3, 1e-2], [1.0, 0.5, 1.0], {}, "distinct"),
        ([1e-3, 1e-2, 1e-1], [1.0, 0.5, 1.0], {"points": 2}, "points"),
    ],
)
def test_bad_inputs_raise(lrs, losses, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_optimum(lrs, losses, **kw)


def test_drift_metric():
    assert TEN_PERCENT_LOG2 == pytest.approx(0.137503523749935)
    assert lr_drift_log2(1e-3, 2e-3) == pytest.approx(1.0)
    assert lr_drift_log2(2e-3, 1e-3) == pytest.approx(1.0)
    assert lr_drift_log2(1e-3, 1.1e-3) == pytest.approx(TEN_PERCENT_LOG2)
    assert lr_drift_log2(1e-3, 1.05e-3) < TEN_PERCENT_LOG2 < lr_drift_log2(1e-3, 1.2e-3)
    a = fit_optimum(SQRT2_GRID, [(math.log2(lr) + 10.0) ** 2 for lr in SQRT2_GRID])
    b = fit_optimum(SQRT2_GRID, [(math.log2(lr) + 10.25) ** 2 for lr in SQRT2_GRID])
    assert isinstance(a, OptimumFit)
    assert lr_drift_log2(a, b) == pytest.approx(0.25, abs=1e-9)
    assert lr_drift_log2(a, 2.0**-9) == pytest.approx(1.0, abs=1e-9)
    for bad in (0.0, -1e-3, float("nan"), "1e-3"):
        with pytest.raises(ValueError, match="learning rate"):
            lr_drift_log2(bad, 1e-3)
