"""How a domain classifier confuses domains, measured on held-out labelled reference documents.

Under label shift every estimator in :mod:`hf_fundamentals.audit.estimators` needs the same few numbers about
the classifier: the hard confusion ``C[i, j] = P(argmax = j | y = i)``, the soft confusion
``M[i, j] = E[p(j | x) | y = i]`` and the source prior. :class:`Confusion` holds them, and the checks that
every entry point shares live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Confusion", "check_probs", "check_weights"]

# A row of probabilities may be off by this much from summing to one (float32 softmax outputs pass).
_ROW_SUM_ATOL = 1e-4


def check_probs(probs: np.ndarray, n_classes: int | None = None, *, name: str = "probs") -> np.ndarray:
    """Validate an (n, K) matrix of per-document class probabilities and return it as float64.

    Rows must be finite, non-negative and sum to one; ``n_classes`` (when given) must match K.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_documents, n_classes) of probabilities, got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: got 0 rows; pass at least one document's probabilities")
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ValueError(
            f"{name}: has {arr.shape[1]} columns but the reference has {n_classes} classes; "
            f"the columns must be the reference domains in the same order"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(
            f"{name}: row {bad} has a non-finite value ({arr[bad].tolist()}); probabilities only"
        )
    if arr.min() < 0.0:
        bad = int(np.argwhere(arr < 0.0)[0, 0])
        raise ValueError(
            f"{name}: row {bad} has a negative entry ({arr[bad].min():.4g}); pass probabilities "
            f"(e.g. Calibrator.transform(logits)), not logits"
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > _ROW_SUM_ATOL
    if np.any(off):
        bad = int(np.argmax(off))
        raise ValueError(
            f"{name}: row {bad} sums to {sums[bad]:.6g}; every row must sum to 1 (within {_ROW_SUM_ATOL}). "
            f"Pass probabilities (e.g. Calibrator.transform(logits)), not logits or unnormalised scores"
        )
    return arr


def check_weights(weights: np.ndarray | None, n: int, *, name: str = "weights") -> np.ndarray:
    """Validate optional per-document weights (e.g. token counts); ``None`` means equal weights."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    arr = np.asarray(weights, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{name}: expected a 1-D array of length {n} (one weight per document), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0:
        raise ValueError(f"{name}: weights must be finite and non-negative (min {np.nanmin(arr):.4g})")
    if arr.sum() <= 0.0:
        raise ValueError(f"{name}: weights sum to {arr.sum():.4g}; at least one weight must be positive")
    return arr


def check_labels(labels: np.ndarray, n: int, n_classes: int, *, name: str = "labels") -> np.ndarray:
    """Validate integer class labels in ``[0, n_classes)`` for ``n`` documents."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{name}: expected a 1-D array of length {n} (one label per row), got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class indices in [0, {n_classes}), got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name}: values must lie in [0, {n_classes}); got min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64)


def _check_row_stochastic(matrix: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name}: expected a square (K, K) matrix, got shape {arr.shape}")
    check_probs(arr, arr.shape[0], name=name)
    return arr


@dataclass(frozen=True)
class Confusion:
    """The classifier's behaviour on held-out labelled reference documents, as label-shift estimators need it.

    ``hard[i, j] = P(argmax = j | y = i)``; ``soft[i, j] = E[p(j | x) | y = i]``; ``source_prior`` is the mean
    calibrated prediction on the held-out documents (Alexandari et al. 2020), the prior EM divides out;
    ``label_prior`` is the held-out label frequencies (RLLS's source marginal).
    """

    hard: np.ndarray
    soft: np.ndarray
    source_prior: np.ndarray
    label_prior: np.ndarray
    n_per_class: np.ndarray

    def __post_init__(self) -> None:
        hard = _check_row_stochastic(self.hard, "Confusion.hard")
        soft = _check_row_stochastic(self.soft, "Confusion.soft")
        k = hard.shape[0]
        if soft.shape != (k, k):
            raise ValueError(
                f"Confusion.soft: shape {soft.shape} does not match Confusion.hard's {hard.shape}"
            )
        for name in ("source_prior", "label_prior"):
            vec = np.asarray(getattr(self, name), dtype=np.float64)
            if vec.shape != (k,) or vec.min() < 0 or abs(vec.sum() - 1.0) > _ROW_SUM_ATOL:
                raise ValueError(f"Confusion.{name}: expected a probability vector of length {k}, got {vec}")
            object.__setattr__(self, name, vec)
        counts = np.asarray(self.n_per_class, dtype=np.int64)
        if counts.shape != (k,):
            raise ValueError(f"Confusion.n_per_class: expected shape ({k},), got {counts.shape}")
        object.__setattr__(self, "hard", hard)
        object.__setattr__(self, "soft", soft)
        object.__setattr__(self, "n_per_class", counts)

    @property
    def n_classes(self) -> int:
        """K, the number of domains."""
        return int(self.hard.shape[0])

    @classmethod
    def from_predictions(
        cls, probs: np.ndarray, labels: np.ndarray, n_classes: int | None = None
    ) -> Confusion:
        """Measure C, M and the priors from calibrated probabilities and true labels of held-out documents."""
        probs = check_probs(probs, n_classes, name="probs")
        k = probs.shape[1]
        labels = check_labels(labels, probs.shape[0], k, name="labels")
        counts = np.bincount(labels, minlength=k)
        if np.any(counts == 0):
            missing = np.flatnonzero(counts == 0).tolist()
            raise ValueError(
                f"labels: classes {missing} have no held-out documents; every class needs at least one "
                f"to estimate its row of the confusion matrix"
            )
        onehot = np.zeros_like(probs)
        onehot[np.arange(probs.shape[0]), probs.argmax(axis=1)] = 1.0
        by_class = np.zeros((k, probs.shape[0]))
        by_class[labels, np.arange(probs.shape[0])] = 1.0
        hard = (by_class @ onehot) / counts[:, None]
        soft = (by_class @ probs) / counts[:, None]
        return cls(
            hard=hard,
            soft=soft,
            source_prior=probs.mean(axis=0),
            label_prior=counts / counts.sum(),
            n_per_class=counts,
        )

    def permuted(self, order: np.ndarray) -> Confusion:
        """The same confusion with classes reordered so that new class ``i`` is old class ``order[i]``."""
        order = np.asarray(order)
        return Confusion(
            hard=self.hard[np.ix_(order, order)],
            soft=self.soft[np.ix_(order, order)],
            source_prior=self.source_prior[order],
            label_prior=self.label_prior[order],
            n_per_class=self.n_per_class[order],
        )
