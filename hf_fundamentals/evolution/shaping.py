"""Reward shaping and ES coefficients: z-score (default), centered rank, none; mirrored pairs.

The update is ``θ ← θ + (α/N)·Σ_j c_j ε_j`` over noise directions ``j`` (Qiu et al., arXiv 2509.24372;
VsonicV/es-fine-tuning-paper ``countdown/es_fine-tuning_countdown_iid.py``); this module
turns the ``N`` member rewards into the ``c_j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHAPINGS = ("zscore", "centered_rank", "none")
ZSCORE_EPS = 1e-8  # VsonicV/es-fine-tuning-paper: ẑ = (r − mean) / (std + 1e-8)


def _as_rewards(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D sequence; got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        bad = [i for i, v in enumerate(r.tolist()) if not np.isfinite(v)]
        raise ValueError(f"rewards must be finite; members {bad} have {[r[i] for i in bad]}")
    return r


def zscore(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(r − mean) / (std + 1e-8)`` with the population std (ddof 0, as numpy in
    VsonicV/es-fine-tuning-paper); all-equal rewards give exact zeros (no NaN, no update)."""
    r = _as_rewards(rewards)
    if np.ptp(r) == 0.0:
        return np.zeros_like(r)
    return (r - r.mean()) / (r.std() + ZSCORE_EPS)


def centered_ranks(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenAI-ES centered ranks: rank / (N − 1) − 0.5, in [−0.5, 0.5]. Ties get their average rank (our
    choice; OpenAI's argsort breaks them arbitrarily), so all-equal rewards give zeros."""
    r = _as_rewards(rewards)
    if r.size == 1:
        return np.zeros_like(r)
    order = np.argsort(r, kind="stable")
    ranks = np.empty_like(r)
    ranks[order] = np.arange(r.size, dtype=np.float64)
    values, inverse = np.unique(r, return_inverse=True)
    if values.size < r.size:  # average the ranks of tied rewards
        sums = np.bincount(inverse, weights=ranks)
        counts = np.bincount(inverse)
        ranks = (sums / counts)[inverse]
    return ranks / (r.size - 1) - 0.5


def shape_rewards(rewards: Sequence[float] | np.ndarray, method: str = "zscore") -> np.ndarray:
    """Shaped rewards, one per member: ``zscore`` (default, as arXiv 2509.24372), ``centered_rank`` or
    ``none`` (the raw rewards unchanged, so equal rewards are *not* zeroed there)."""
    if method == "zscore":
        return zscore(rewards)
    if method == "centered_rank":
        return centered_ranks(rewards)
    if method == "none":
        return _as_rewards(rewards).copy()
    raise ValueError(f"reward shaping {method!r} is not known; accepted: {', '.join(SHAPINGS)}")


def es_coefficients(
    rewards: Sequence[float] | np.ndarray, shaping: str = "zscore", mirrored: bool = False
) -> np.ndarray:
    """The coefficient ``c_j`` of each noise direction. Plain: the shaped reward of member ``j``. Mirrored
    (members ``2k`` at ``+σε_k`` and ``2k+1`` at ``−σε_k``): shaped over all ``N`` evaluations, then
    ``c_k = ẑ⁺_k − ẑ⁻_k`` (as kschweig/es-awd ``es.py``); the update still divides by ``N``."""
    shaped = shape_rewards(rewards, shaping)
    if not mirrored:
        return shaped
    if shaped.size % 2:
        raise ValueError(f"mirrored sampling needs an even number of rewards (± pairs); got {shaped.size}")
    return shaped[0::2] - shaped[1::2]
