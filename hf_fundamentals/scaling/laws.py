"""Scaling laws L(N, D) in one shape: named parameters, log-space fit coordinates, a start grid, predictions.

Every law is fitted in coordinates ``theta`` where positive constants enter by their logarithm and exponents
as they are, and predicts ``ln L`` from ``u = ln N`` and ``v = ln D`` with its analytic gradient, so that
L-BFGS gets exact derivatives. Laws:

* ``shannon`` (arXiv 2605.23901): ``L = 1/C``, ``C = a·N^α·log2(1 + SNR)``,
  ``SNR = b·D^β / (c·(D·N)^γ + d·D^δ + e)``. Scaling b, c, d and e by one k leaves SNR unchanged, so e = 1 is
  fixed in the fit (8 free constants); ``predict`` accepts any e and normalizes.
* ``chinchilla`` (Hoffmann et al. 2022): ``L = E + A/N^α + B/D^β``.
* ``kaplan`` (Kaplan et al. 2020, Table 2 joint form): ``L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``.
* ``shannon_ratio``: the Shannon law on its ``e -> 0`` ray, measured from a pivot (N0, D0) = (1e9, 1e11): when
  both noise terms dwarf e (on Pythia by 10^10 and more), only the ratios b/c and d/c reach the predictions, so
  the full law's b and c slide together over orders of magnitude; this form fits those ratios (7 constants),
  its log-constants taken at the pivot so that they do not trade off against their exponents.
* ``shannon_run``: the Shannon law along a single run (N fixed), what a training callback can fit.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
from scipy.special import expit

LN_LN2 = math.log(math.log(2.0))


def as_positive(name: str, value: float | np.ndarray) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError naming ``name`` if any entry is NaN, infinite or <= 0."""
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(
            f"{name} must be finite and > 0 everywhere; got {arr[bad].ravel()[:5].tolist()} "
            f"({int(bad.sum())} bad of {arr.size})"
        )
    return arr


def _softmax_weights(*terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log-sum-exp, softmax weights)`` of same-shape terms (weights stacked on axis 0)."""
    stack = np.stack(np.broadcast_arrays(*terms))
    top = stack.max(axis=0)
    shifted = np.exp(stack - top)
    total = shifted.sum(axis=0)
    return top + np.log(total), shifted / total


def _cols(theta: np.ndarray) -> list[np.ndarray]:
    """Fit coordinates as columns that broadcast against (n,) data: scalars for one theta, (G, 1) for G rows."""
    theta = np.asarray(theta, dtype=np.float64)
    return [theta[..., i, None] for i in range(theta.shape[-1])]


class ScalingLaw(ABC):
    """A law L(N, D). Subclasses give the names, the fit coordinates and ``log_loss_and_grad``."""

    name: str
    param_names: tuple[str, ...]
    """Named constants as users read them (e.g. ``E, A, B, alpha, beta``)."""
    theta_names: tuple[str, ...]
    """Fit coordinates (``ln_`` for a log-constant, the exponent itself otherwise)."""
    bounds: tuple[tuple[float, float], ...]
    """L-BFGS-B box for each fit coordinate."""
    formula: str

    @property
    def n_params(self) -> int:
        """Free constants of the fit."""
        return len(self.theta_names)

    @abstractmethod
    def log_loss_and_grad(
        self, theta: np.ndarray, u: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``ln L`` at ``u = ln N``, ``v = ln D`` (shape (n,)) and its gradient in theta (shape (n, k)).

        ``theta`` may also be a (G, k) stack of rows: then shapes are (G, n) and (G, n, k)."""

    @abstractmethod
    def to_params(self, theta: np.ndarray) -> dict[str, float]:
        """Named constants from fit coordinates."""

    @abstractmethod
    def to_theta(self, params: Mapping[str, float]) -> np.ndarray:
        """Fit coordinates from named constants (missing or non-positive constants raise ValueError)."""

    @abstractmethod
    def init_grid(self) -> np.ndarray:
        """Starting points (rows) in fit coordinates."""

    def has_d_turning(self, params: Mapping[str, float]) -> bool:
        """Whether L has an interior minimum in D at fixed N (a U-shape in tokens)."""
        return False

    def has_n_turning(self, params: Mapping[str, float]) -> bool:
        """Whether L has an interior minimum in N at fixed D (a U-shape in parameters)."""
        return False

    def log_loss(self, theta: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``ln L`` alone."""
        return self.log_loss_and_grad(theta, u, v)[0]

    def predict(
        self, params: Mapping[str, float], N: float | np.ndarray, D: float | np.ndarray
    ) -> np.ndarray:
        """Predicted loss at N parameters and D tokens (broadcast together)."""
        u, v = np.broadcast_arrays(np.log(as_positive("N", N)), np.log(as_positive("D", D)))
        shape = u.shape
        theta = self.to_theta(params)
        return np.exp(self.log_loss(theta, u.ravel(), v.ravel())).reshape(shape)

    def start_theta(
        self, start: np.ndarray, u: np.ndarray, v: np.ndarray, log_loss: np.ndarray
    ) -> np.ndarray:
        """Grid starts (one row or a (G, k) stack) adjusted to the data before L-BFGS (identity unless a law
        profiles a constant)."""
        return start

    def _named(self, params: Mapping[str, float], names: tuple[str, ...]) -> list[float]:
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(
                f"{self.name} law needs parameters {list(names)}; missing {missing} in {sorted(params)}"
            )
        return [float(params[n]) for n in names]

    def _log_of(self, name: str, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{self.name} law: {name} must be finite and > 0; got {value!r}")
        return math.log(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.formula})"


class ChinchillaLaw(ScalingLaw):
    """``L = E + A/N^α + B/D^β``: an irreducible floor plus two power laws; monotone in N and D."""

    name = "chinchilla"
    param_names = ("E", "A", "B", "alpha", "beta")
    theta_names = ("ln_E", "ln_A", "ln_B", "alpha", "beta")
    bounds = ((-30.0, 30.0), (-30.0, 100.0), (-30.0, 100.0), (0.0, 3.0), (0.0, 3.0))
    formula = "L = E + A/N^alpha + B/D^beta"

    def log_loss_and_grad(self, theta, u, v):
        ln_e, ln_a, ln_b, alpha, beta = _cols(theta)
        y, w = _softmax_weights(ln_e + 0 * u, ln_a - alpha * u, ln_b - beta * v)
        grad = np.stack([w[0], w[1], w[2], -u * w[1], -v * w[2]], axis=-1)
        return y, grad

    def to_params(self, theta):
        ln_e, ln_a, ln_b, alpha, beta = (float(t) for t in theta)
        return {"E": math.exp(ln_e), "A": math.exp(ln_a), "B": math.exp(ln_b), "alpha": alpha, "beta": beta}

    def to_theta(self, params):
        e, a, b, alpha, beta = self._named(params, self.param_names)
        return np.array([self._log_of("E", e), self._log_of("A", a), self._log_of("B", b), alpha, beta])

    def init_grid(self):
        """Hoffmann et al. App. D.2: α, β ∈ {0, 0.5, …, 2}, ln E ∈ {−1, −0.5, …, 1}, ln A, ln B ∈ {0, 5, …, 25}."""
        exps = np.arange(0.0, 2.01, 0.5)
        ln_e = np.arange(-1.0, 1.01, 0.5)
        ln_ab = np.arange(0.0, 25.1, 5.0)
        return np.array(
            [[e, a, b, al, be] for e, a, b, al, be in itertools.product(ln_e, ln_ab, ln_ab, exps, exps)]
        )


class KaplanLaw(ScalingLaw):
    """``L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``: Kaplan et al.'s joint law; no floor, monotone in N and D."""

    name = "kaplan"
    param_names = ("N_c", "D_c", "alpha_N", "alpha_D")
    theta_names = ("ln_N_c", "ln_D_c", "alpha_N", "alpha_D")
    bounds = ((-10.0, 100.0), (-10.0, 100.0), (0.0, 3.0), (1e-3, 3.0))
    formula = "L = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D"

    def log_loss_and_grad(self, theta, u, v):
        ln_nc, ln_dc, alpha_n, alpha_d = _cols(theta)
        ratio = alpha_n / alpha_d
        t1 = ln_nc - u
        s, w = _softmax_weights(ratio * t1, ln_dc - v)
        y = alpha_d * s
        grad = np.stack(
            np.broadcast_arrays(alpha_n * w[0], alpha_d * w[1], w[0] * t1, s - w[0] * t1 * ratio), axis=-1
        )
        return y, grad

    def to_params(self, theta):
        ln_nc, ln_dc, alpha_n, alpha_d = (float(t) for t in theta)
        return {"N_c": math.exp(ln_nc), "D_c": math.exp(ln_dc), "alpha_N": alpha_n, "alpha_D": alpha_d}

    def to_theta(self, params):
        nc, dc, alpha_n, alpha_d = self._named(params, self.param_names)
        if not alpha_d > 0:
            raise ValueError(f"kaplan law: alpha_D must be > 0; got {alpha_d!r}")
        return np.array([self._log_of("N_c", nc), self._log_of("D_c", dc), alpha_n, alpha_d])

    def init_grid(self):
        """ln N_c, ln D_c ∈ {10, 20, 30, 40} (Kaplan's fit: 31.8 and 30.5), α_N, α_D ∈ {0.05, 0.1, 0.3, 0.6}."""
        logs = (10.0, 20.0, 30.0, 40.0)
        exps = (0.05, 0.1, 0.3, 0.6)
        return np.array(list(itertools.product(logs, logs, exps, exps)))


class ShannonLaw(ScalingLaw):
    """``L = 1/(a·N^α·log2(1 + b·D^β/(c·(DN)^γ + d·D^δ + e)))`` with e = 1 fixed (SNR is scale-free in b, c, d, e).

    ``ln L = −[ln a + α·u + ln softplus(ln SNR) − ln ln 2]`` and
    ``ln SNR = ln b + β·v − LSE(ln c + γ·(u + v), ln d + δ·v, ln e)``, stable for any SNR."""

    name = "shannon"
    param_names = ("a", "alpha", "b", "beta", "c", "gamma", "d", "delta", "e")
    theta_names = ("ln_a", "alpha", "ln_b", "beta", "ln_c", "gamma", "ln_d", "delta")
    bounds = (
        (-30.0, 30.0),
        (0.0, 3.0),
        (-30.0, 30.0),
        (0.0, 3.0),
        (-30.0, 30.0),
        (0.0, 3.0),
        (-30.0, 30.0),
        (0.0, 3.0),
    )
    formula = "L = 1/(a N^alpha log2(1 + b D^beta/(c (DN)^gamma + d D^delta + e))), e = 1"

    @staticmethod
    def _ln_softplus(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ln ln(1 + e^x)`` and its derivative, exact to float precision for very negative x."""
        small = x < -30.0
        xs = np.where(small, 0.0, x)
        sp = np.logaddexp(0.0, xs)
        g = np.where(small, x, np.log(sp))
        dg = np.where(small, 1.0, expit(xs) / sp)
        return g, dg

    def log_snr_and_grad(
        self, theta: np.ndarray, u: np.ndarray, v: np.ndarray, ln_e: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``ln SNR`` and its gradient in theta (the ln_a and alpha columns are 0)."""
        _, _, ln_b, beta, ln_c, gamma, ln_d, delta = _cols(theta)
        s = u + v
        m, w = _softmax_weights(ln_c + gamma * s, ln_d + delta * v, ln_e + 0 * u)
        x = ln_b + beta * v - m
        zero, one = np.zeros_like(x), np.ones_like(x)
        grad = np.stack(np.broadcast_arrays(zero, zero, one, v, -w[0], -w[0] * s, -w[1], -w[1] * v), axis=-1)
        return x, grad

    def log_loss_and_grad(self, theta, u, v):
        ln_a, alpha = _cols(theta)[:2]
        x, dx = self.log_snr_and_grad(theta, u, v)
        g, dg = self._ln_softplus(x)
        y = -(ln_a + alpha * u + g - LN_LN2)
        grad = -dg[..., None] * dx
        grad[..., 0] = -1.0
        grad[..., 1] = -u
        return y, grad

    def to_params(self, theta):
        ln_a, alpha, ln_b, beta, ln_c, gamma, ln_d, delta = (float(t) for t in theta)
        return {
            "a": math.exp(ln_a), "alpha": alpha, "b": math.exp(ln_b), "beta": beta, "c": math.exp(ln_c),
            "gamma": gamma, "d": math.exp(ln_d), "delta": delta, "e": 1.0,
        }  # fmt: skip

    def to_theta(self, params):
        """Fit coordinates of ``normalize(params)`` (b, c, d divided by e, so e = 1)."""
        p = self.normalize(params)
        return np.array([
            self._log_of("a", p["a"]), p["alpha"], self._log_of("b", p["b"]), p["beta"],
            self._log_of("c", p["c"]), p["gamma"], self._log_of("d", p["d"]), p["delta"],
        ])  # fmt: skip

    def normalize(self, params: Mapping[str, float]) -> dict[str, float]:
        """The same law with e = 1: b, c and d divided by e (``e`` defaults to 1 when absent)."""
        names = tuple(n for n in self.param_names if n != "e")
        vals = dict(zip(names, self._named(params, names), strict=True))
        e = float(params.get("e", 1.0))
        self._log_of("e", e)
        for k in ("b", "c", "d"):
            vals[k] = vals[k] / e
        vals["e"] = 1.0
        return vals

    def init_grid(self):
        """Start grid (our recipe, modelled on Chinchilla Approach 3, arXiv 2203.15556 App. D.2):
        α, β, γ, δ ∈ {0.1, 0.3, 0.6, 1.0}, ln b, ln c, ln d ∈ {−5, 0, 5, 10}; ln a is profiled
        per start (``start_theta``), so the grid holds ln a = 0 (4^7 = 16384 rows)."""
        exps = (0.1, 0.3, 0.6, 1.0)
        logs = (-5.0, 0.0, 5.0, 10.0)
        rows = [
            [0.0, al, lb, be, lc, ga, ld, de]
            for al, be, ga, de in itertools.product(exps, repeat=4)
            for lb, lc, ld in itertools.product(logs, repeat=3)
        ]
        return np.array(rows)

    def start_theta(self, start, u, v, log_loss):
        """Set ln a to its least-squares value given the other constants (ln a shifts ln L uniformly)."""
        theta = np.array(start, dtype=np.float64)
        theta[..., 0] = 0.0
        theta[..., 0] = np.mean(self.log_loss(theta, u, v) - log_loss, axis=-1)
        theta[..., 0] = np.clip(theta[..., 0], *self.bounds[0])
        return theta

    def has_d_turning(self, params):
        """As D grows the noise grows like D^max(γ, δ) (γ counts at any N) and the signal like D^β."""
        p = self.normalize(params)
        return max(p["gamma"], p["delta"]) > p["beta"]

    def has_n_turning(self, params):
        """At fixed D the capacity scales as N^(α−γ) for large N: a minimum in N exactly when γ > α."""
        p = self.normalize(params)
        return p["gamma"] > p["alpha"]

    def snr(self, params: Mapping[str, float], N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        """The law's signal-to-noise ratio at (N, D)."""
        u, v = np.broadcast_arrays(np.log(as_positive("N", N)), np.log(as_positive("D", D)))
        x, _ = self.log_snr_and_grad(self.to_theta(params), u.ravel(), v.ravel())
        return np.exp(x).reshape(u.shape)


class ShannonRatioLaw(ScalingLaw):
    """The Shannon law on its ``e -> 0`` ray, measured from a pivot (N0, D0) = (1e9, 1e11):
    ``L = 1/(a·n^α·log2(1 + b·d^β/((d·n)^γ + k·d^δ)))`` with ``n = N/N0`` and ``d = D/D0``.

    Two reparametrisations of the full law, both exact bijections once e is negligible: (1) e -> 0 with c = 1,
    since where ``c·(DN)^γ + d·D^δ >> e`` only b/c and d/c reach the predictions (the full law's b and c slide
    together along a ray); (2) the pivot: a, b and k are the capacity scale, the SNR and the second noise term's
    share at (N0, D0), so a constant no longer trades off against its exponent times ln N or ln D (the
    correlation that widens a log-constant's interval by ``Δexponent × ln D``). :meth:`to_shannon` maps back."""

    name = "shannon_ratio"
    N0, D0 = 1e9, 1e11
    param_names = ("a", "alpha", "b", "beta", "gamma", "k", "delta")
    theta_names = ("ln_a", "alpha", "ln_b", "beta", "gamma", "ln_k", "delta")
    bounds = ((-30.0, 30.0), (0.0, 3.0), (-30.0, 30.0), (0.0, 3.0), (0.0, 3.0), (-60.0, 30.0), (0.0, 3.0))
    formula = (
        "L = 1/(a n^alpha log2(1 + b d^beta/((d n)^gamma + k d^delta))), n = N/1e9, d = D/1e11 (e -> 0 ray)"
    )

    def log_loss_and_grad(self, theta, u, v):
        ln_a, alpha, ln_b, beta, gamma, ln_k, delta = _cols(theta)
        uu, vv = u - math.log(self.N0), v - math.log(self.D0)
        s = uu + vv
        m, w = _softmax_weights(gamma * s, ln_k + delta * vv)
        x = ln_b + beta * vv - m
        g, dg = ShannonLaw._ln_softplus(x)
        y = -(ln_a + alpha * uu + g - LN_LN2)
        zero, one = np.zeros_like(x), np.ones_like(x)
        dx = np.stack(np.broadcast_arrays(zero, zero, one, vv * one, -w[0] * s, -w[1], -w[1] * vv), axis=-1)
        grad = -dg[..., None] * dx
        grad[..., 0] = -1.0
        grad[..., 1] = -uu
        return y, grad

    def to_params(self, theta):
        ln_a, alpha, ln_b, beta, gamma, ln_k, delta = (float(t) for t in theta)
        return {
            "a": math.exp(ln_a), "alpha": alpha, "b": math.exp(ln_b), "beta": beta, "gamma": gamma,
            "k": math.exp(ln_k), "delta": delta,
        }  # fmt: skip

    def to_theta(self, params):
        a, alpha, b, beta, gamma, k, delta = self._named(params, self.param_names)
        return np.array(
            [self._log_of("a", a), alpha, self._log_of("b", b), beta, gamma, self._log_of("k", k), delta]
        )

    def to_shannon(self, params: Mapping[str, float], e: float = 1e-30) -> dict[str, float]:
        """The full law's constants (c = 1 and a tiny ``e``) that this form is the e -> 0 limit of."""
        p = {n: float(params[n]) for n in self.param_names}
        scale = (self.D0 * self.N0) ** p["gamma"]
        return {
            "a": p["a"] / self.N0 ** p["alpha"], "alpha": p["alpha"], "b": p["b"] * scale / self.D0 ** p["beta"],
            "beta": p["beta"], "c": 1.0, "gamma": p["gamma"], "d": p["k"] * scale / self.D0 ** p["delta"],
            "delta": p["delta"], "e": float(e),
        }  # fmt: skip

    def init_grid(self):
        """α, β, γ, δ ∈ {0.1, 0.3, 0.6, 1.0}, ln b ∈ {−5, −2.5, …, 7.5}, ln k ∈ {−10, −5, −2.5, 0, 2.5, 5}; ln a
        profiled per start (4^4·6·6 = 9216 rows)."""
        exps = (0.1, 0.3, 0.6, 1.0)
        rows = [
            [0.0, al, lb, be, ga, lk, de]
            for al, be, ga, de in itertools.product(exps, repeat=4)
            for lb in (-5.0, -2.5, 0.0, 2.5, 5.0, 7.5)
            for lk in (-10.0, -5.0, -2.5, 0.0, 2.5, 5.0)
        ]
        return np.array(rows)

    start_theta = ShannonLaw.start_theta

    def has_d_turning(self, params):
        """As for the full law: noise grows like D^max(γ, δ), signal like D^β."""
        return max(float(params["gamma"]), float(params["delta"])) > float(params["beta"])

    def has_n_turning(self, params):
        """Capacity scales as N^(α−γ) for large N: a minimum in N exactly when γ > α."""
        return float(params["gamma"]) > float(params["alpha"])


class ShannonRunLaw(ScalingLaw):
    """The Shannon law along one run (fixed N), our reduction of arXiv 2605.23901:
    ``L(D) = 1/(A·log2(1 + b·D^β/(K·D^δ + 1)))``.

    At fixed N the full law's ``a·N^α`` becomes A, and its two noise terms ``c·(DN)^γ + d·D^δ`` are merged into
    one ``K·D^δ`` (exact when one dominates over the run, which is what a single run can identify). ``N`` is
    accepted and ignored. Loss turns up in D exactly when δ > β."""

    name = "shannon_run"
    param_names = ("A", "b", "beta", "K", "delta")
    theta_names = ("ln_A", "ln_b", "beta", "ln_K", "delta")
    bounds = ((-30.0, 30.0), (-60.0, 30.0), (0.0, 3.0), (-60.0, 30.0), (0.0, 3.0))
    formula = "L = 1/(A log2(1 + b D^beta/(K D^delta + 1))), one run (N fixed)"

    def log_loss_and_grad(self, theta, u, v):
        ln_a, ln_b, beta, ln_k, delta = _cols(theta)
        m, w = _softmax_weights(ln_k + delta * v, 0 * v)
        x = ln_b + beta * v - m
        g, dg = ShannonLaw._ln_softplus(x)
        y = -(ln_a + g - LN_LN2)
        one = np.ones_like(x)
        dx = np.stack(np.broadcast_arrays(0 * one, one, v * one, -w[0], -w[0] * v), axis=-1)
        grad = -dg[..., None] * dx
        grad[..., 0] = -1.0
        return y, grad

    def to_params(self, theta):
        ln_a, ln_b, beta, ln_k, delta = (float(t) for t in theta)
        return {"A": math.exp(ln_a), "b": math.exp(ln_b), "beta": beta, "K": math.exp(ln_k), "delta": delta}

    def to_theta(self, params):
        a, b, beta, k, delta = self._named(params, self.param_names)
        return np.array([self._log_of("A", a), self._log_of("b", b), beta, self._log_of("K", k), delta])

    def init_grid(self):
        """β, δ ∈ {0.1, 0.3, 0.6, 1.0}, ln b ∈ {−20, −10, −5, 0, 5}, ln K ∈ {−40, −20, −10, −5, 0}; ln A profiled."""
        exps = (0.1, 0.3, 0.6, 1.0)
        return np.array(
            [
                [0.0, lb, be, lk, de]
                for be, de in itertools.product(exps, repeat=2)
                for lb in (-20.0, -10.0, -5.0, 0.0, 5.0)
                for lk in (-40.0, -20.0, -10.0, -5.0, 0.0)
            ]
        )

    def start_theta(self, start, u, v, log_loss):
        """ln A set to its least-squares value given the other constants."""
        theta = np.array(start, dtype=np.float64)
        theta[..., 0] = 0.0
        theta[..., 0] = np.mean(self.log_loss(theta, u, v) - log_loss, axis=-1)
        theta[..., 0] = np.clip(theta[..., 0], *self.bounds[0])
        return theta

    def has_d_turning(self, params):
        """Noise grows like D^δ and signal like D^β: a minimum in D exactly when δ > β."""
        return float(params["delta"]) > float(params["beta"])


LAWS: dict[str, ScalingLaw] = {
    law.name: law for law in (ShannonLaw(), ShannonRatioLaw(), ChinchillaLaw(), KaplanLaw(), ShannonRunLaw())
}
"""The laws by name."""


def get_law(law: str | ScalingLaw) -> ScalingLaw:
    """A law by name (``shannon``, ``shannon_ratio``, ``chinchilla``, ``kaplan``, ``shannon_run``) or the law itself."""
    if isinstance(law, ScalingLaw):
        return law
    if law not in LAWS:
        raise ValueError(f"unknown scaling law {law!r}; expected one of {sorted(LAWS)}")
    return LAWS[law]
