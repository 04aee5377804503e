"""Turning points D*(N) and N*(D) from the solver against a brute-force grid; monotone laws have none."""

from __future__ import annotations

import numpy as np
import pytest

from hf_fundamentals.scaling import LAWS, d_star, n_star

U_SHAPED = dict(a=1.2e-4, alpha=0.3, b=1e-2, beta=0.6, c=1e-6, gamma=0.35, d=1e-9, delta=1.0, e=1.0)
"""γ < α: a U-shape in D only."""
N_SHAPED = dict(a=1e-3, alpha=0.2, b=1.0, beta=0.5, c=1e-12, gamma=0.6, d=1e-6, delta=0.3, e=1.0)
"""γ > α and γ > β: U-shapes in both N and D."""


def _brute(fn, lo, hi, n=400_001):
    x = np.linspace(np.log(lo), np.log(hi), n)
    return float(np.exp(x[np.argmin(fn(np.exp(x)))]))


@pytest.mark.parametrize("params", [U_SHAPED, N_SHAPED])
@pytest.mark.parametrize("N", [1e7, 3e8, 1e11])
def test_d_star_matches_a_brute_force_grid(params, N):
    law = LAWS["shannon"]
    got = d_star(law, params, N)
    want = _brute(lambda D: law.predict(params, N, D), 1.0, 1e30)
    assert got == pytest.approx(want, rel=2e-4)
    loss = law.predict(params, N, got)
    assert loss <= law.predict(params, N, got * 1.01) and loss <= law.predict(params, N, got / 1.01)


@pytest.mark.parametrize("D", [1e9, 1e12])
def test_n_star_matches_a_brute_force_grid(D):
    law = LAWS["shannon"]
    assert law.has_n_turning(N_SHAPED)
    got = n_star(law, N_SHAPED, D)
    want = _brute(lambda N: law.predict(N_SHAPED, N, D), 1.0, 1e30)
    assert got == pytest.approx(want, rel=2e-4)


def test_shannon_without_noise_growth_is_monotone():
    """max(γ, δ) <= β: noise never outgrows the signal, loss keeps falling with D (and γ <= α with N)."""
    law = LAWS["shannon"]
    monotone = dict(U_SHAPED, gamma=0.2, delta=0.5)
    assert not law.has_d_turning(monotone) and not law.has_n_turning(monotone)
    assert d_star(law, monotone, 1e8) is None and n_star(law, monotone, 1e10) is None
    D = np.geomspace(1.0, 1e30, 2000)
    assert np.all(np.diff(law.predict(monotone, 1e8, D)) < 0)


@pytest.mark.parametrize(
    "law,params",
    [
        ("chinchilla", dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)),
        ("kaplan", dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)),
    ],
)
def test_monotone_laws_have_no_turning_point(law, params):
    assert d_star(law, params, 1e9) is None and n_star(law, params, 1e11) is None


def test_turning_point_inputs_are_checked():
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        d_star("shannon", U_SHAPED, -1.0)
    with pytest.raises(ValueError, match="D must be finite and > 0"):
        n_star("shannon", N_SHAPED, float("inf"))
