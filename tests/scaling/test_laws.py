"""The laws themselves: formulas against hand-written ones, exact gradients, and the Shannon law's scale
invariance (the one direction in its 9 constants that the data cannot see, which is why e = 1 is fixed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from hf_fundamentals.scaling import LAWS, get_law

SHANNON = dict(a=1.2e-4, alpha=0.3, b=1e-2, beta=0.6, c=1e-6, gamma=0.35, d=1e-9, delta=1.0, e=1.0)
N_GRID = np.array([1e7, 3e7, 1e8, 3e8, 1e9])
D_GRID = np.logspace(8.5, 11.5, 10)


def _mesh():
    N, D = np.meshgrid(N_GRID, D_GRID, indexing="ij")
    return N.ravel(), D.ravel()


def test_shannon_matches_the_formula_by_hand():
    N, D = _mesh()
    p = SHANNON
    snr = p["b"] * D ** p["beta"] / (p["c"] * (D * N) ** p["gamma"] + p["d"] * D ** p["delta"] + p["e"])
    want = 1.0 / (p["a"] * N ** p["alpha"] * np.log2(1.0 + snr))
    np.testing.assert_allclose(LAWS["shannon"].predict(p, N, D), want, rtol=1e-12)
    np.testing.assert_allclose(LAWS["shannon"].snr(p, N, D), snr, rtol=1e-12)


def test_shannon_is_stable_at_tiny_and_huge_snr():
    law = LAWS["shannon"]
    tiny = dict(SHANNON, b=1e-30)  # SNR ~ 1e-28: log2(1 + SNR) underflows if computed naively
    N, D = 1e8, 1e10
    snr = law.snr(tiny, N, D)
    np.testing.assert_allclose(
        law.predict(tiny, N, D), math.log(2) / (tiny["a"] * N ** tiny["alpha"] * snr), rtol=1e-9
    )
    huge = dict(SHANNON, b=1e20)
    assert np.isfinite(law.predict(huge, N, D))


def test_chinchilla_and_kaplan_match_their_papers():
    N, D = 70e9, 1.4e12  # Chinchilla itself, with the published constants
    chin = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    want = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    assert LAWS["chinchilla"].predict(chin, N, D) == pytest.approx(want, rel=1e-12)
    kap = dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)
    want = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    assert LAWS["kaplan"].predict(kap, N, D) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_gradients_are_exact(name):
    law = LAWS[name]
    rng = np.random.default_rng(1)
    u, v = np.log(rng.uniform(1e7, 1e10, 12)), np.log(rng.uniform(1e9, 1e12, 12))
    for theta in law.init_grid()[rng.choice(law.init_grid().shape[0], 3, replace=False)]:
        theta = theta + rng.uniform(0.05, 0.1, theta.size)
        _, jac = law.log_loss_and_grad(theta, u, v)
        num = np.stack(
            [approx_fprime(theta, lambda t, i=i: law.log_loss(t, u, v)[i], 1e-7) for i in range(u.size)]
        )
        np.testing.assert_allclose(jac, num, atol=1e-5 * max(1.0, np.abs(jac).max()))


@pytest.mark.parametrize("name", sorted(LAWS))
def test_batched_rows_equal_one_at_a_time(name):
    law = LAWS[name]
    u, v = np.log(N_GRID), np.log(D_GRID[:5])
    rows = law.init_grid()[:7] + 0.05
    batch = law.log_loss(rows, u, v)
    np.testing.assert_allclose(batch, np.stack([law.log_loss(r, u, v) for r in rows]), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_params_round_trip_through_fit_coordinates(name):
    law = LAWS[name]
    theta = law.init_grid()[3] + 0.1
    np.testing.assert_allclose(law.to_theta(law.to_params(theta)), theta, rtol=1e-12)


@pytest.mark.parametrize("k", [1e-3, 0.5, 7.0, 1e4])
def test_shannon_snr_is_invariant_to_scaling_b_c_d_e_together(k):
    """SNR = b D^β / (c (DN)^γ + d D^δ + e): numerator and denominator are both linear in (b | c, d, e), so
    (b, c, d, e) -> k (b, c, d, e) leaves SNR, hence L, unchanged for every N and D."""
    N, D = _mesh()
    law = LAWS["shannon"]
    scaled = dict(SHANNON, **{name: k * SHANNON[name] for name in ("b", "c", "d", "e")})
    np.testing.assert_allclose(law.predict(scaled, N, D), law.predict(SHANNON, N, D), rtol=1e-12)
    assert law.normalize(scaled) == pytest.approx(law.normalize(SHANNON), rel=1e-12)
    # scaling only some of them is a different law
    for subset in (("b",), ("c", "d", "e"), ("b", "c", "d")):
        other = dict(SHANNON, **{name: 2.0 * SHANNON[name] for name in subset})
        assert not np.allclose(law.predict(other, N, D), law.predict(SHANNON, N, D), rtol=1e-6)


def _jacobian_all_nine(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """d ln L / d(ln a, α, ln b, β, ln c, γ, ln d, δ, ln e) by central differences."""
    law = LAWS["shannon"]
    names = ("a", "alpha", "b", "beta", "c", "gamma", "d", "delta", "e")
    logged = {"a", "b", "c", "d", "e"}
    base = np.array([math.log(SHANNON[n]) if n in logged else SHANNON[n] for n in names])

    def f(x):
        p = {n: (math.exp(t) if n in logged else t) for n, t in zip(names, x, strict=True)}
        return np.log(law.predict(p, N, D))

    h = 1e-6
    return np.stack(
        [(f(base + h * np.eye(9)[i]) - f(base - h * np.eye(9)[i])) / (2 * h) for i in range(9)], axis=1
    )


def test_shannon_has_exactly_one_unidentifiable_direction():
    """Over a grid of several N and D the 9 constants have rank-8 sensitivity; the null direction is
    (ln b, ln c, ln d, ln e) moving together, the invariance above. Fixing e = 1 removes it."""
    N, D = _mesh()
    jac = _jacobian_all_nine(N, D)
    s = np.linalg.svd(jac, compute_uv=False)
    assert s[-1] / s[0] < 1e-7 and s[-2] / s[0] > 1e-5
    null = np.linalg.svd(jac)[2][-1]
    want = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1]) / 2.0
    assert abs(abs(null @ want) - 1.0) < 1e-6


def test_shannon_with_one_model_size_loses_another_direction():
    """With a single N, a·N^α is one number: ln a and α trade off at the ratio −ln N (rank 7 of 9); this is why
    one training run needs the reduced single-N form (our design) or a prior from other sizes."""
    N, D = np.full(D_GRID.size, 1e8), D_GRID
    _, s, vt = np.linalg.svd(_jacobian_all_nine(N, D))
    assert s[-2] / s[0] < 1e-9 and s[-3] / s[0] > 1e-9
    a_alpha = np.zeros(9)
    a_alpha[:2] = [-math.log(1e8), 1.0]
    a_alpha /= np.linalg.norm(a_alpha)
    assert np.linalg.norm(vt[-2:] @ a_alpha) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_name_the_argument():
    law = LAWS["chinchilla"]
    p = dict(E=1.7, A=400, B=400, alpha=0.3, beta=0.3)
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        law.predict(p, [1e8, -1], 1e9)
    with pytest.raises(ValueError, match="D must be finite and > 0"):
        law.predict(p, 1e8, float("nan"))
    with pytest.raises(ValueError, match="missing \\['beta'\\]"):
        law.predict({k: v for k, v in p.items() if k != "beta"}, 1e8, 1e9)
    with pytest.raises(ValueError, match="A must be finite and > 0"):
        law.predict(dict(p, A=0.0), 1e8, 1e9)
    with pytest.raises(ValueError, match="unknown scaling law 'gpt'"):
        get_law("gpt")
