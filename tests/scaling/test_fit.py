"""The fitter: recovery of known laws from synthetic runs, the Chinchilla anchor on Epoch AI's data, the
diagnostics, serialization, plots, and clear errors for bad runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_fundamentals.scaling import LAWS, FitResult, fit_law, huber, plot_fits, profile, r_squared

SHANNON = dict(a=1.2e-4, alpha=0.3, b=1e-2, beta=0.6, c=1e-6, gamma=0.35, d=1e-9, delta=1.0, e=1.0)
"""A Shannon law with a U-shape in D inside the sampled range (D* ≈ 1.8e9–3.4e9 tokens)."""
CHINCHILLA = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
EPOCH_REFIT = dict(
    E=(1.8172, 0.03), A=(482.01, 124.58), B=(2085.43, 1293.23), alpha=(0.3478, 0.02), beta=(0.3658, 0.02)
)
"""Besiroglu et al. 2024 (arXiv 2404.10102): value and standard error."""


def _runs(law, params, Ns, Ds, noise=0.0, seed=0):
    N, D = (x.ravel() for x in np.meshgrid(Ns, Ds, indexing="ij"))
    loss = LAWS[law].predict(params, N, D)
    noisy = loss * np.exp(np.random.default_rng(seed).normal(0.0, noise, loss.size)) if noise else loss
    return N, D, loss, noisy


def test_huber_is_quadratic_inside_and_linear_outside():
    r = np.array([-0.5, -1e-4, 0.0, 2e-4, 3.0])
    value, grad = huber(r, 1e-3)
    np.testing.assert_allclose(value, [1e-3 * (0.5 - 5e-4), 5e-9, 0.0, 2e-8, 1e-3 * (3.0 - 5e-4)])
    np.testing.assert_allclose(grad, [-1e-3, -1e-4, 0.0, 2e-4, 1e-3])
    assert r_squared([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert r_squared([1.0], [1.0]) is None and r_squared([2.0, 2.0], [1.0, 3.0]) is None


def test_shannon_noise_free_is_recovered_exactly():
    Ns, Ds = np.array([1e7, 3e7, 1e8, 3e8, 1e9]), np.logspace(8.5, 11.5, 10)
    N, D, loss, _ = _runs("shannon", SHANNON, Ns, Ds)
    fit = fit_law("shannon", N, D, loss, n_starts=16)
    assert fit.objective < 1e-12
    np.testing.assert_allclose(fit.predict(N, D), loss, rtol=1e-5)
    for name, value in LAWS["shannon"].normalize(SHANNON).items():
        assert fit.params[name] == pytest.approx(value, rel=1e-3), name


def test_shannon_with_noise_predicts_held_out_tokens():
    """0.5% log-normal noise, the two largest token counts of every size held out (an extrapolation in D past
    the loss minimum): predictions stay within ~2.5% and D*(N) within 15% of the truth."""
    Ns, Ds = np.array([1e7, 3e7, 1e8, 3e8, 1e9]), np.logspace(8.5, 11.5, 10)
    N, D, loss, noisy = _runs("shannon", SHANNON, Ns, Ds, noise=0.005)
    held = D >= Ds[-2]
    fit = fit_law("shannon", N, D, noisy, heldout=held, n_starts=16)
    assert fit.n_train == 40 and fit.n_heldout == 10
    assert fit.r2_train > 0.999 and fit.r2_heldout > 0.99
    assert np.max(np.abs(fit.predict(N[held], D[held]) / loss[held] - 1)) < 0.025
    for n in Ns:
        assert fit.d_star(n) == pytest.approx(_true_d_star(n), rel=0.15)


def _true_d_star(n):
    from hf_fundamentals.scaling import d_star

    return d_star("shannon", SHANNON, n)


def test_chinchilla_parameters_are_recovered_with_bootstrap_intervals():
    Ns, Ds = np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8)
    N, D, loss, noisy = _runs("chinchilla", CHINCHILLA, Ns, Ds, noise=0.003, seed=1)
    held = N == Ns[-1]
    fit = fit_law("chinchilla", N, D, noisy, heldout=held, n_starts=20, n_boot=30, seed=0)
    assert fit.converged and fit.at_bounds == []
    assert fit.params["E"] == pytest.approx(1.8, rel=0.05)
    assert fit.params["alpha"] == pytest.approx(0.35, abs=0.03) and fit.params["beta"] == pytest.approx(
        0.37, abs=0.03
    )
    assert np.max(np.abs(fit.predict(N[held], D[held]) / loss[held] - 1)) < 0.01
    assert fit.n_agree >= 2 and fit.n_agree <= fit.n_starts == 20
    for name, value in CHINCHILLA.items():
        b = fit.bootstrap[name]
        assert b["n"] == 30 and b["se"] > 0 and b["lo"] < b["hi"]
        assert b["lo"] - 3 * b["se"] < value < b["hi"] + 3 * b["se"], name


def test_kaplan_recovers_its_own_law():
    true = dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)
    N, D, loss, _ = _runs("kaplan", true, np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6))
    fit = fit_law("kaplan", N, D, loss, n_starts=32)
    np.testing.assert_allclose(fit.predict(N, D), loss, rtol=1e-5)
    assert fit.d_star(1e9) is None and fit.n_star(1e10) is None


@pytest.mark.skipif(
    not (DATA / "chinchilla_epoch_extracted.csv").is_file(), reason=f"no {DATA}/chinchilla CSV"
)
def test_chinchilla_anchor_on_epoch_data_is_within_one_standard_error():
    """Besiroglu et al. (arXiv 2404.10102) anchor: Epoch's 245 extracted points, the 5 highest losses dropped,
    D = C/(6N)."""
    import csv

    with open(DATA / "chinchilla_epoch_extracted.csv") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: float(r["loss"]))[:-5]
    N = np.array([float(r["Model Size"]) for r in rows])
    D = np.array([float(r["Training FLOP"]) for r in rows]) / (6 * N)
    loss = np.array([float(r["loss"]) for r in rows])
    fit = fit_law("chinchilla", N, D, loss, n_starts=40)
    assert fit.n_train == 240
    for name, (value, se) in EPOCH_REFIT.items():
        assert abs(fit.params[name] - value) <= se, (name, fit.params[name], value, se)


def test_fit_result_round_trips_through_json(tmp_path):
    N, D, loss, _ = _runs("chinchilla", CHINCHILLA, np.geomspace(1e7, 1e9, 4), np.geomspace(1e9, 1e11, 4))
    fit = fit_law("chinchilla", N, D, loss, heldout=N == 1e9, n_starts=5, n_boot=3)
    back = FitResult.from_json(fit.to_json())
    assert back == FitResult.from_dict(json.loads(json.dumps(fit.to_dict())))
    np.testing.assert_allclose(back.predict(N, D), fit.predict(N, D))
    assert "chinchilla" in fit.summary() and "held-out" in fit.summary()
    with pytest.raises(ValueError, match="unknown keys"):
        FitResult.from_dict(dict(fit.to_dict(), foo=1))


def test_screened_and_random_starts_agree_on_an_easy_fit():
    N, D, loss, _ = _runs("chinchilla", CHINCHILLA, np.geomspace(1e7, 1e10, 5), np.geomspace(1e9, 1e12, 5))
    a = fit_law("chinchilla", N, D, loss, n_starts=10, screen=True)
    b = fit_law("chinchilla", N, D, loss, n_starts=30, screen=False, seed=3)
    for name in CHINCHILLA:
        assert a.params[name] == pytest.approx(b.params[name], rel=1e-3)
    assert a.extra == {"screen": True, "grid_size": 4500}


def test_bad_runs_fail_with_a_clear_message():
    N, D, loss, _ = _runs("chinchilla", CHINCHILLA, np.geomspace(1e7, 1e9, 3), np.geomspace(1e9, 1e11, 3))
    with pytest.raises(ValueError, match="needs at least 9 training points; got 8"):
        fit_law("shannon", N[:8], D[:8], loss[:8])
    with pytest.raises(ValueError, match="needs at least 6 training points; got 5"):
        fit_law("chinchilla", N, D, loss, heldout=np.arange(9) >= 5)
    with pytest.raises(ValueError, match="loss must be finite and > 0"):
        fit_law("chinchilla", N, D, np.where(np.arange(9) == 2, np.nan, loss))
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        fit_law("chinchilla", np.where(np.arange(9) == 2, 0.0, N), D, loss)
    with pytest.raises(ValueError, match="D must be finite and > 0"):
        fit_law("chinchilla", N, -D, loss)
    with pytest.raises(ValueError, match="same length"):
        fit_law("chinchilla", N, D[:-1], loss)
    with pytest.raises(ValueError, match="heldout must be a boolean mask"):
        fit_law("chinchilla", N, D, loss, heldout=[0, 1])
    with pytest.raises(ValueError, match="huber_delta"):
        fit_law("chinchilla", N, D, loss, huber_delta=0)
    with pytest.raises(ValueError, match="starts must have 5 columns"):
        fit_law("chinchilla", N, D, loss, starts=np.zeros((2, 4)))


def test_plot_writes_an_image(tmp_path):
    N, D, loss, noisy = _runs("chinchilla", CHINCHILLA, np.geomspace(1e7, 1e9, 3), np.geomspace(1e9, 1e11, 5))
    held = D == D.max()
    fits = {law: fit_law(law, N, D, noisy, heldout=held, n_starts=4) for law in ("chinchilla", "kaplan")}
    fig = plot_fits(fits, N, D, noisy, heldout=held, path=tmp_path / "fig.png", title="t")
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert len(fig.axes) == 2


def test_identifiability_flags_fire_on_an_unidentified_fit_and_stay_quiet_on_an_identified_one():
    """Chinchilla on a 6x6 grid of sizes and tokens: every constant pinned down. The same law on one model size:
    A and α only enter through A/N^α at that N (any α fits with a matching A), and E trades off against it."""
    Ns, Ds = np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)
    N, D, _, noisy = _runs("chinchilla", CHINCHILLA, Ns, Ds, noise=0.003, seed=2)
    good = fit_law("chinchilla", N, D, noisy, n_starts=10, n_boot=30, seed=0)
    assert all(v["identified"] for v in good.identifiability.values()), good.identifiability
    assert "every constant identified" in good.summary()
    lo, hi = good.predict_interval(1e11, 1e13)
    assert lo < good.predict(1e11, 1e13) < hi

    one = N == Ns[2]
    bad = fit_law("chinchilla", N[one], D[one], noisy[one], n_starts=10, n_boot=30, seed=0)
    flagged = {k for k, v in bad.identifiability.items() if not v["identified"]}
    assert {"A", "alpha"} <= flagged and "degenerate" in bad.identifiability["alpha"]["flags"], (
        bad.identifiability
    )
    assert "NOT IDENTIFIED" in bad.summary()
    back = FitResult.from_json(bad.to_json())
    assert back.identifiability == bad.identifiability


def test_shannon_ratio_is_the_e_to_zero_limit_of_the_full_law():
    law = LAWS["shannon_ratio"]
    ratio = dict(a=0.14, alpha=0.42, b=9.2, beta=1.08, gamma=0.63, k=0.07, delta=2.3)
    N, D = (x.ravel() for x in np.meshgrid(np.geomspace(1e8, 1e10, 4), np.geomspace(1e9, 1e12, 5)))
    np.testing.assert_allclose(LAWS["shannon"].predict(law.to_shannon(ratio), N, D), law.predict(ratio, N, D),
                               rtol=1e-9)  # fmt: skip
    assert law.has_d_turning(ratio) and not LAWS["shannon"].has_d_turning(dict(SHANNON, delta=0.5, gamma=0.3))


def test_shannon_ratio_removes_the_ray_the_full_law_cannot_see():
    """Noise terms 10^9 above e: the full law's (b, c, d) slide together (profile flat over ±4 nats, b flagged
    'degenerate'); the ratio form fits as well, none of its constants on a null direction, its ln b profile rises."""
    far = dict(SHANNON, b=SHANNON["b"] * 1e15, c=SHANNON["c"] * 1e15, d=SHANNON["d"] * 1e15)
    Ns, Ds = np.array([1e7, 3e7, 1e8, 3e8, 1e9]), np.logspace(8.5, 11.5, 10)
    N, D, clean, noisy = _runs("shannon", far, Ns, Ds, noise=0.003, seed=5)
    full = fit_law("shannon", N, D, noisy, n_starts=16, n_boot=10, seed=0)
    ratio = fit_law("shannon_ratio", N, D, noisy, n_starts=16, n_boot=10, seed=0)
    assert "degenerate" in full.identifiability["b"]["flags"], full.identifiability
    assert not any("degenerate" in v["flags"] for v in ratio.identifiability.values()), ratio.identifiability
    assert ratio.objective <= full.objective * 1.01
    flat = profile(full, N, D, noisy, "ln_b", [-4.0, 4.0])
    assert max(flat) <= full.objective * (1 + 1e-3)
    rises = profile(ratio, N, D, noisy, "ln_b", [-4.0, 4.0])
    assert min(rises) > ratio.objective * 1.05
    assert np.max(np.abs(ratio.predict(N, D) / clean - 1)) < 0.005
    with pytest.raises(ValueError, match="not a fit coordinate"):
        profile(full, N, D, noisy, "ln_k", [0.0])
