"""Transfer regret and drift with bootstrap intervals, on synthetic per-seed sweeps whose optimum, curvature
and noise are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_fundamentals.moe import (
    DRIFT_HALF_WIDTH_LOG2,
    fit_optimum,
    loss_at,
    transfer_regret,
    transfer_table,
)

GRID = np.arange(-8.5, -5.49, 0.5)  # 7 points, sqrt(2) apart


def sweep(x0, *, curv=0.05, noise=0.004, offsets=0.03, seeds=5, rng=None, grid=GRID):
    """[seeds x lrs] losses: 2 + (curv/2)(x - x0)^2 (curv = d²loss/dx²) + a per-seed offset + per-run noise."""
    rng = np.random.default_rng(0) if rng is None else rng
    base = 2.0 + 0.5 * curv * (grid - x0) ** 2
    return (
        base[None, :]
        + offsets * rng.standard_normal((seeds, 1))
        + noise * rng.standard_normal((seeds, grid.size))
    )


def test_known_optimum_and_regret_are_recovered_with_intervals_that_hold_them():
    rng = np.random.default_rng(1)
    proxy, target = sweep(-7.6, rng=rng), sweep(-6.8, rng=rng)
    r = transfer_regret(GRID, proxy, GRID, target, n_boot=500)
    true_regret = 0.5 * 0.05 * 0.8**2
    assert abs(r.transferred_log2_lr - -7.6) < 0.2 and abs(r.target_log2_lr_star - -6.8) < 0.2
    assert (
        r.drift_log2.lo <= 0.8 <= r.drift_log2.hi and r.drift_log2.point > 0
    )  # signed: the target wants more
    assert r.regret_nats.lo <= true_regret <= r.regret_nats.hi
    assert abs(r.regret_nats.point - true_regret) < 0.008
    assert not r.degenerate and r.reason == "" and r.paired and r.drift_resolved


def test_identical_curves_have_no_regret():
    rng = np.random.default_rng(2)
    r = transfer_regret(GRID, sweep(-7.0, rng=rng), GRID, sweep(-7.0, rng=rng), n_boot=300)
    assert r.regret_nats.point < 0.002 and r.regret_nats.lo >= 0.0
    assert abs(r.drift_log2.point) < 0.1 and r.drift_log2.half_width < 0.1


def test_seed_offsets_shift_whole_curves_and_do_not_widen_the_drift_interval():
    """A seed that is better at every LR says nothing about where the optimum is: resampling whole seed rows
    keeps the optimum's interval as narrow as the per-run noise allows."""
    rng = np.random.default_rng(3)
    quiet = transfer_regret(GRID, sweep(-7.5, offsets=0.3, noise=0.002, rng=rng),
                            GRID, sweep(-6.5, offsets=0.3, noise=0.002, rng=rng), n_boot=300)  # fmt: skip
    assert quiet.drift_log2.half_width < 0.1
    loud = transfer_regret(
        GRID, sweep(-7.5, noise=0.03, rng=rng), GRID, sweep(-6.5, noise=0.03, rng=rng), n_boot=300
    )
    assert loud.drift_log2.half_width > quiet.drift_log2.half_width


def test_the_drift_interval_covers_the_truth_in_most_repeats():
    """Repeated synthetic studies: the 95% percentile interval over 5 seeds holds the true drift most times
    (a 5-seed bootstrap under-covers somewhat; far below would mean the interval ignores a noise source)."""
    rng = np.random.default_rng(4)
    hits = []
    for _ in range(30):
        r = transfer_regret(
            GRID, sweep(-7.2, noise=0.01, rng=rng), GRID, sweep(-6.7, noise=0.01, rng=rng), n_boot=200
        )
        hits.append(r.drift_log2.lo <= 0.5 <= r.drift_log2.hi)
    assert np.mean(hits) >= 0.7


def test_a_flat_or_monotone_target_is_reported_degenerate():
    rng = np.random.default_rng(5)
    proxy = sweep(-7.0, rng=rng)
    falling = 2.0 - 0.05 * (GRID - GRID[0])[None, :] + 0.001 * rng.standard_normal((5, GRID.size))
    r = transfer_regret(GRID, proxy, GRID, falling, n_boot=200)
    assert r.degenerate and "target" in r.reason and "edge" in r.reason
    assert r.boot_degenerate_fraction > 0.9
    concave = 2.0 - 0.02 * (GRID + 7.0)[None, :] ** 2 + np.zeros((5, 1))
    r2 = transfer_regret(GRID, proxy, GRID, concave, n_boot=50)
    assert r2.degenerate


def test_a_transferred_lr_outside_the_target_sweep_is_a_lower_bound():
    rng = np.random.default_rng(6)
    proxy = sweep(-7.0, rng=rng)
    tgrid = GRID + 3.0  # the target was swept at much larger lrs only
    r = transfer_regret(GRID, proxy, tgrid, sweep(-4.0, rng=rng, grid=tgrid), n_boot=100)
    assert r.extrapolated and "lower bound" in r.reason and r.regret_nats.point > 0


def test_diverged_runs_count_as_diverged_lrs():
    rng = np.random.default_rng(7)
    target = sweep(-7.0, rng=rng)
    target[2, -1] = math.inf  # one seed diverged at the largest lr
    r = transfer_regret(GRID, sweep(-7.0, rng=rng), GRID, target, n_boot=100)
    assert r.target_fit.n_dropped == 1 and abs(r.target_log2_lr_star - -7.0) < 0.3


def test_loss_at_reads_the_fit_inside_and_interpolates_outside():
    x = GRID
    y = 2.0 + 0.5 * 0.1 * (x + 7.0) ** 2
    fit = fit_optimum(2.0**x, y)
    v, out = loss_at(fit, x, y, -7.0)
    assert v == pytest.approx(2.0, abs=1e-9) and not out
    v, out = loss_at(fit, x, y, -5.5)  # outside the 5 fitted points: interpolated
    assert v == pytest.approx(y[-1]) and not out
    v, out = loss_at(fit, x, y, -3.0)
    assert v == pytest.approx(y[-1]) and out


def test_table_states_a_drift_only_when_its_interval_is_narrow():
    rng = np.random.default_rng(8)
    sweeps = {
        "sp": {
            "proxy": {"log2_lrs": GRID, "losses": sweep(-7.5, rng=rng)},
            "wide": {"log2_lrs": GRID, "losses": sweep(-6.5, rng=rng)},
        },
        "mue": {
            "proxy": {"log2_lrs": GRID, "losses": sweep(-7.0, rng=rng, curv=0.004, noise=0.01)},
            "wide": {"log2_lrs": GRID, "losses": sweep(-7.0, rng=rng, curv=0.004, noise=0.01)},
        },
    }
    t = transfer_table(sweeps, "proxy", n_boot=300)
    assert t["max_regret_sp"]["target"] == "wide" and t["max_regret_sp"]["point"] > 0.015
    assert t["drift_log2"]["sp"]["wide"]["resolved"]
    assert t["drift_log2"]["mue"]["wide"]["half_width"] > DRIFT_HALF_WIDTH_LOG2
    mue_row = next(r for r in t["rows"] if r[0] == "mue")
    assert "not resolved" in mue_row[3]
    assert any("drift not resolved" in f for f in t["flags"])


def test_bad_inputs_fail_by_name():
    y = sweep(-7.0)
    with pytest.raises(ValueError, match="NaN"):
        transfer_regret(GRID, np.where(np.eye(5, 7) > 0, np.nan, y), GRID, y)
    with pytest.raises(ValueError, match="seeds x lrs"):
        transfer_regret(GRID, y[:, :5], GRID, y)
    with pytest.raises(ValueError, match="paired"):
        transfer_regret(GRID, y, GRID, y[:3], paired=True)
    with pytest.raises(ValueError, match="n_boot"):
        transfer_regret(GRID, y, GRID, y, n_boot=0)
    assert not transfer_regret(GRID, y, GRID, y[:3], n_boot=20).paired
