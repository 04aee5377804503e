"""Temperature scaling and bias-corrected temperature scaling (BCTS) of classifier logits.

BCTS (Alexandari et al. 2020) maps logits ``z`` to ``softmax(z / T + b)``. With ``a = 1 / T`` the logits are
affine in ``(a, b)``, so the negative log-likelihood is convex and L-BFGS finds the global optimum. Log-
probabilities work as well as logits: softmax ignores a per-row shift, and ``a * (z - c) + b`` only shifts rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from hf_fundamentals.audit.confusion import check_labels

__all__ = ["CALIBRATION_METHODS", "Calibrator", "fit_calibrator"]

CALIBRATION_METHODS = ("bcts", "temperature", "none")

# 1/T is kept in this range: perfectly separated calibration data would otherwise push T to 0.
_INV_T_BOUNDS = (1e-3, 1e3)


def _check_logits(logits: np.ndarray, n_classes: int | None = None, name: str = "logits") -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name}: expected a 2-D array (n_documents, n_classes >= 2), got shape {arr.shape}")
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ValueError(
            f"{name}: has {arr.shape[1]} columns but the calibrator was fit on {n_classes} classes"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name}: contains non-finite values; pass finite logits or log-probabilities (clip -inf log-probs)"
        )
    return arr


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from logits (or log-probabilities) to calibrated probabilities ``softmax(z / T + b)``."""

    method: str
    temperature: float
    bias: np.ndarray
    nll: float = field(default=float("nan"))

    @property
    def n_classes(self) -> int:
        """K, the number of classes the calibrator was fit on."""
        return int(self.bias.shape[0])

    def transform_log(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated log-probabilities (n, K)."""
        z = _check_logits(logits, self.n_classes)
        return log_softmax(z / self.temperature + self.bias, axis=1)

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, K); rows sum to one."""
        z = _check_logits(logits, self.n_classes)
        return softmax(z / self.temperature + self.bias, axis=1)


def _nll_and_grad(
    params: np.ndarray, z: np.ndarray, onehot: np.ndarray, fit_bias: bool
) -> tuple[float, np.ndarray]:
    a = params[0]
    b = params[1:] if fit_bias else 0.0
    scaled = a * z + b
    scaled -= scaled.max(axis=1, keepdims=True)
    expd = np.exp(scaled)
    total = expd.sum(axis=1, keepdims=True)
    n = z.shape[0]
    nll = float(np.sum(np.log(total)) - np.sum(onehot * scaled)) / n
    diff = (expd / total - onehot) / n  # d nll / d scaled
    grad_a = float(np.sum(diff * z))
    if fit_bias:
        return nll, np.concatenate([[grad_a], diff.sum(axis=0)])
    return nll, np.array([grad_a])


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of integer ``labels`` under row probabilities ``probs``."""
    p = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(np.maximum(p[np.arange(p.shape[0]), labels], 1e-300))))


def fit_calibrator(
    logits: np.ndarray, labels: np.ndarray, method: str = "bcts", *, initial: Calibrator | None = None
) -> Calibrator:
    """Fit a calibrator on held-out (calibration-split) logits and integer labels by minimising NLL.

    ``method``: ``"bcts"`` (temperature + per-class bias), ``"temperature"`` (T only) or ``"none"`` (identity).
    ``initial`` warm-starts the optimiser (the bootstrap refits near the full-data optimum).
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"method: got {method!r}; accepted calibration methods are {list(CALIBRATION_METHODS)}"
        )
    z = _check_logits(logits)
    n, k = z.shape
    y = check_labels(labels, n, k)
    if method == "none":
        cal = Calibrator("none", 1.0, np.zeros(k))
        return Calibrator("none", 1.0, np.zeros(k), negative_log_likelihood(cal.transform(z), y))
    # Centre each row: the optimum is unchanged and the problem is better scaled.
    z = z - z.mean(axis=1, keepdims=True)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    fit_bias = method == "bcts"
    x0 = np.zeros(1 + (k if fit_bias else 0))
    x0[0] = 1.0
    if initial is not None and initial.n_classes == k:
        x0[0] = min(max(1.0 / initial.temperature, _INV_T_BOUNDS[0]), _INV_T_BOUNDS[1])
        if fit_bias:
            x0[1:] = initial.bias
    bounds = [_INV_T_BOUNDS] + [(None, None)] * (k if fit_bias else 0)
    res = minimize(
        _nll_and_grad,
        x0,
        args=(z, onehot, fit_bias),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-10},
    )
    a = float(res.x[0])
    bias = res.x[1:] - res.x[1:].mean() if fit_bias else np.zeros(k)
    return Calibrator(method, 1.0 / a, bias, float(res.fun))
