"""The LR-sweep helpers (the log2-LR lattice, grid extension until the optimum is bracketed: a simulated sweep
recovers a known optimum far from the start, the drift table, seed noise) and the coordinate-check summaries
(spread, the readout_lr comparison)."""

from __future__ import annotations

import math

import pytest

from hf_fundamentals.moe import (
    TEN_PERCENT_LOG2,
    CoordData,
    drift_table,
    fit_optimum,
    grid_extension,
    initial_grid,
    readout_lr_comparison,
    seed_noise,
    snap,
    spread_summary,
)


def test_lattice_and_initial_grid():
    assert snap(-7.3, 0.5) == -7.5 and snap(-7.2, 0.5) == -7.0 and snap(-7.26, 1.0) == -7.0
    assert initial_grid(-7.3, 0.5, 5) == [-8.5, -8.0, -7.5, -7.0, -6.5]
    assert initial_grid(-7.0, 1.0, 3) == [-8.0, -7.0, -6.0]
    # the extra point of an even count goes above
    assert initial_grid(-7.0, 0.5, 4) == [-7.5, -7.0, -6.5, -6.0]
    with pytest.raises(ValueError, match="points must be a positive integer"):
        initial_grid(0.0, 0.5, 0)
    with pytest.raises(ValueError, match="spacing must be > 0"):
        snap(1.0, 0.0)


def _losses(xs, x0, diverge_above=math.inf):
    return {x: (math.inf if x > diverge_above else 3.0 + 0.1 * (x - x0) ** 2) for x in xs}


def test_bracketed_grid_needs_nothing():
    assert grid_extension(_losses([-9, -8.5, -8, -7.5, -7], -8.1), spacing=0.5) == []


def test_edge_minima_extend_outward():
    xs = [-9, -8.5, -8, -7.5, -7]
    assert grid_extension(_losses(xs, -10.0), spacing=0.5) == [-9.5]  # minimum at the low edge
    assert grid_extension(_losses(xs, -5.0), spacing=0.5) == [-6.5]  # at the high edge
    # one point short of the margin on the low side
    assert grid_extension(_losses(xs, -8.6), spacing=0.5) == [-9.5]
    assert grid_extension(_losses(xs, -8.6), spacing=0.5, margin=1) == []


def test_divergence_brackets_the_high_side_and_all_diverged_goes_lower():
    xs = [-9, -8.5, -8, -7.5, -7]
    # minimum at -7.5 (the last finite point), the next larger LR diverged: nothing to add above
    assert grid_extension(_losses(xs, -7.0, diverge_above=-7.5), spacing=0.5) == []
    assert grid_extension(dict.fromkeys(xs, math.inf), spacing=0.5) == [-9.5]
    assert grid_extension({-8.0: float("nan")}, spacing=1.0) == [-9.0]


def test_budget_stops_extension():
    xs = [-9, -8.5, -8, -7.5, -7]
    assert grid_extension(_losses(xs, -12.0), spacing=0.5, max_points=5) == []
    assert grid_extension(_losses(xs, -12.0), spacing=0.5, max_points=6) == [-9.5]
    with pytest.raises(ValueError, match="at least one result"):
        grid_extension({}, spacing=0.5)
    with pytest.raises(ValueError, match="margin must be an integer >= 1"):
        grid_extension({0.0: 1.0}, spacing=0.5, margin=0)


def _simulate(x0, center, *, diverge_above=math.inf, max_points=11, spacing=0.5):
    """The benchmark's loop on a synthetic loss: initial grid, extend until bracketed, fit."""
    results = {}
    pending = initial_grid(center, spacing, 5)
    while pending:
        results.update(_losses(pending, x0, diverge_above))
        pending = grid_extension(results, spacing=spacing, max_points=max_points)
    xs = sorted(results)
    return results, fit_optimum([2.0**x for x in xs], [results[x] for x in xs])


def test_simulated_sweep_finds_an_optimum_far_from_the_start():
    results, fit = _simulate(-10.3, -7.5)  # 2.8 octaves below the start
    assert not fit.at_edge and abs(fit.log2_lr_star - (-10.3)) < 1e-6
    xs = sorted(results)
    i = xs.index(min(results, key=results.get))
    assert i >= 2 and len(xs) - 1 - i >= 2  # two finite neighbours on each side
    assert len(xs) <= 11


def test_simulated_sweep_with_divergence_and_with_a_too_small_budget():
    results, fit = _simulate(-7.7, -7.5, diverge_above=-7.0)  # -6.5 diverged: it brackets the high side
    assert sorted(results) == [-8.5, -8.0, -7.5, -7.0, -6.5]  # one finite point above the minimum suffices
    assert not fit.at_edge and fit.n_dropped == 1 and abs(fit.log2_lr_star + 7.7) < 1e-6
    # the best finite LR sits right below a divergence: nothing more to run, and the fit says so
    results, fit = _simulate(-7.2, -7.5, diverge_above=-7.0)
    assert len(results) == 5 and fit.at_edge and "diverged" in fit.reason
    _, fit = _simulate(-14.0, -7.5, max_points=7)  # the budget runs out: flagged, not silently wrong
    assert fit.at_edge and "extend the grid" in fit.reason


def _fit(x0, lo=-12.0, n=13):
    xs = [lo + 0.5 * i for i in range(n)]
    return fit_optimum([2.0**x for x in xs], [3.0 + 0.1 * (x - x0) ** 2 for x in xs])


def test_drift_table_against_the_proxy_of_the_same_parameterization():
    proxy = {"sp": _fit(-8.0), "mue": _fit(-7.0)}
    fits = {
        "N16": {"sp": _fit(-8.5), "mue": _fit(-7.05)},
        "d256": {"sp": _fit(-10.0), "mue": _fit(-6.9)},
    }
    out = drift_table(fits, proxy, {"N16": ("N",), "d256": ("width",)})
    d = out["lr_drift_log2"]
    assert d["N16"]["sp"] == pytest.approx(0.5) and d["N16"]["mue"] == pytest.approx(0.05)
    assert d["d256"]["sp"] == pytest.approx(2.0) and d["d256"]["mue"] == pytest.approx(0.1)
    assert out["signed_log2_shift"]["d256"]["sp"] == pytest.approx(-2.0)
    assert out["max_lr_drift_log2_sp"] == pytest.approx(2.0)
    assert out["max_lr_drift_log2_mue"] == pytest.approx(0.1)
    assert out["max_lr_drift_log2_by_axis"]["N"]["sp"] == pytest.approx(0.5)
    assert out["within_threshold"]["N16"] == {"sp": False, "mue": True}
    assert out["threshold_log2"] == TEN_PERCENT_LOG2 and out["flags"] == []
    assert len(out["rows"]) == 2 and len(out["rows"][0]) == len(out["header"])


def test_drift_table_flags_edge_fits_and_refuses_missing_ones():
    proxy = {"sp": _fit(-8.0), "mue": _fit(-7.0)}
    edge = _fit(-14.0)  # optimum below the grid: clamped to its edge
    assert edge.at_edge
    out = drift_table({"d256": {"sp": edge, "mue": _fit(-7.0)}}, proxy)
    assert len(out["flags"]) == 1 and out["flags"][0].startswith("d256/sp:")
    assert out["rows"][0][-1] == "sp"
    with pytest.raises(ValueError, match=r"no fit for \['mue'\]"):
        drift_table({"x": {"sp": edge}}, proxy)


def test_spread_summary_skips_logits_at_init_only():
    data = CoordData(
        keys=["64", "128"],
        modules=["model.layers.0.mlp", "model.layers.1.mlp", "lm_head"],
        steps=3,
        values={
            "64": {
                "model.layers.0.mlp": [1.0, 1.0, 1.0],
                "model.layers.1.mlp": [1.0, 1.0, 1.0],
                "lm_head": [1.0] * 3,
            },
            "128": {
                "model.layers.0.mlp": [1.0, 1.2, 1.0],
                "model.layers.1.mlp": [1.0, 1.0, 1.0],
                "lm_head": [0.1, 0.8, 1.0],
            },
        },
        losses={"64": [0.0] * 3, "128": [0.0] * 3},
    )
    s = spread_summary(data)
    assert s["per_group"]["FFN/MoE block out"] == pytest.approx(1.1)  # layers averaged, then max/min
    assert s["per_group"]["logits"] == pytest.approx(1.25)  # step 0 (10x) left out
    assert s["worst_group"] == "logits" and s["worst"] == pytest.approx(1.25)
    assert s["last_step_worst"] == pytest.approx(1.0) and s["last_step_per_group"]["logits"] == pytest.approx(
        1.0
    )
    assert spread_summary(data, skip_logits_at_init=False)["worst"] == pytest.approx(10.0)


def _width_data(logits_128: float) -> CoordData:
    return CoordData(
        keys=["64", "128"],
        modules=["model.layers.0.mlp", "lm_head"],
        steps=2,
        values={
            "64": {"model.layers.0.mlp": [1.0, 1.0], "lm_head": [0.5, 2.0]},
            "128": {"model.layers.0.mlp": [1.0, 1.5], "lm_head": [0.25, logits_128]},
        },
        losses={"64": [0.0] * 2, "128": [0.0] * 2},
    )


def test_readout_lr_comparison_reports_logits_and_block_per_width():
    out = readout_lr_comparison(_width_data(2.0), _width_data(1.0))
    assert out["mup"]["logits_last_step"] == {"64": 2.0, "128": 2.0}
    assert out["blog"]["logits_last_step"] == {"64": 2.0, "128": 1.0}
    assert out["blog"]["block_out_last_step"] == {"64": 1.0, "128": 1.5}
    assert out["mup"]["spread"]["last_step_per_group"]["logits"] == pytest.approx(1.0)
    assert out["blog"]["spread"]["last_step_per_group"]["logits"] == pytest.approx(2.0)


def test_seed_noise_is_the_range_of_per_seed_optima():
    xs = [-9.0, -8.0, -7.0, -6.0, -5.0]
    lrs = [2.0**x for x in xs]

    def fit_at(x0):
        return fit_optimum(lrs, [3.0 + 0.1 * (x - x0) ** 2 for x in xs])

    sweeps = {
        "sp": {"a": {"seed_fits": {0: fit_at(-7.0), 1: fit_at(-6.4)}}, "b": {"seed_fits": {0: fit_at(-7.0)}}},
        "mue": {"a": {"seed_fits": {0: fit_at(-7.0), 1: fit_at(-7.1), 2: fit_at(-6.9)}}},
    }
    noise = seed_noise(sweeps)
    assert noise["per_shape"]["sp"] == {"a": pytest.approx(0.6, abs=1e-6)}  # "b" has one seed: no range
    assert noise["median"]["mue"] == pytest.approx(0.2, abs=1e-6) and noise["max"]["sp"] == pytest.approx(0.6)
    assert seed_noise({"sp": {"a": {"seed_fits": {}}}}) == {"per_shape": {}, "median": {}, "max": {}}
