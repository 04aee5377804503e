"""Turning points of a fitted law: D*(N), the token count where loss stops falling at fixed N, and N*(D).

Each is the minimum of ``ln L`` along one log-axis: a coarse log-spaced scan brackets it, then bounded Brent
(``scipy.optimize.minimize_scalar``) refines it. A law whose minimum is not interior (monotone laws, or a Shannon
law whose noise exponents do not exceed its signal exponent) has no turning point: ``None``. For the Shannon law
ln SNR is concave in ln D and in ln N (a linear term minus a log-sum-exp), so the minimum, when it exists, is
unique and the scan cannot land in the wrong basin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from scipy.optimize import minimize_scalar

from hf_fundamentals.scaling.laws import ScalingLaw, as_positive, get_law

SEARCH_RANGE = (1.0, 1e40)
"""Where a turning point is looked for (in N or D); a minimum beyond it is reported as None."""


def _interior_argmin(fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, scan: int) -> float | None:
    """argmin of ``fn`` over [lo, hi] (log-coordinates) when it is interior, else None."""
    xs = np.linspace(lo, hi, scan)
    ys = fn(xs)
    i = int(np.nanargmin(ys))
    if i in (0, scan - 1):
        return None
    res = minimize_scalar(
        lambda x: float(fn(np.array([x]))[0]), bounds=(xs[i - 1], xs[i + 1]), method="bounded",
        options={"xatol": 1e-10},
    )  # fmt: skip
    x = float(res.x) if res.fun <= ys[i] else float(xs[i])
    # a minimum at the search edge is the edge of the range, not a turning point of the law
    if x - lo < 1e-6 or hi - x < 1e-6:
        return None
    return x


def d_star(
    law: str | ScalingLaw,
    params: Mapping[str, float],
    N: float,
    *,
    search: tuple[float, float] = SEARCH_RANGE,
    scan: int = 400,
) -> float | None:
    """Tokens D that minimize the predicted loss of an N-parameter model; None when loss keeps falling in D."""
    law = get_law(law)
    u = math.log(float(as_positive("N", N)))
    if not law.has_d_turning(params):
        return None
    theta = law.to_theta(params)
    lo, hi = (math.log(float(x)) for x in as_positive("search", search))
    x = _interior_argmin(lambda v: law.log_loss(theta, np.full_like(v, u), v), lo, hi, scan)
    return None if x is None else math.exp(x)


def n_star(
    law: str | ScalingLaw,
    params: Mapping[str, float],
    D: float,
    *,
    search: tuple[float, float] = SEARCH_RANGE,
    scan: int = 400,
) -> float | None:
    """Parameters N that minimize the predicted loss at D tokens; None when loss keeps falling in N."""
    law = get_law(law)
    v = math.log(float(as_positive("D", D)))
    if not law.has_n_turning(params):
        return None
    theta = law.to_theta(params)
    lo, hi = (math.log(float(x)) for x in as_positive("search", search))
    x = _interior_argmin(lambda u: law.log_loss(theta, u, np.full_like(u, v)), lo, hi, scan)
    return None if x is None else math.exp(x)
