"""Measures of the paper's four guidances for any training order (our proposal; the paper's own are not public).

Each sample gets its score quantile ``q`` in [0, 1] (average rank for ties); the order is read as the sequence
``q[order]`` and cut into global batches (the samples one optimizer step consumes) and into blocks (1% of the
run by default, for the shape of the curve; at least min(64, 5% of the run) samples):

* **G1 boundary sharpening**: mean ``q`` of the first and last ``boundary_frac`` of the run, and the share of
  those samples that sit in the matching score tail.
* **G2 cyclic scheduling**: the block-mean curve is split into legs with a zigzag filter (a leg ends where
  the curve turns back by at least ``swing``); legs over more than two blocks are *sweeps*, legs within two
  blocks are *resets* (jumps). FO-L gives L sweeps and L-1 resets, ZIG-L L sweeps and no reset, a
  curriculum one sweep, a shuffle none. ``bin_coverage`` is the mean 5-95% ``q`` range inside 10 time bins.
* **G3 curriculum continuity**: the largest and mean change of batch-mean ``q`` between consecutive steps.
* **G4 local diversity**: the mean within-batch standard deviation of ``q`` (a shuffle gives 1/sqrt(12) =
  0.289, a sort about 0, window jitter with window w about (w/N)/sqrt(12)); with domain labels also the
  longest run of one domain and the mean number of domains per batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from hf_fundamentals.ordering.methods import as_scores, domain_codes

RANDOM_WITHIN_BATCH_STD = 1.0 / np.sqrt(12.0)


@dataclass
class GuidelineReport:
    """What an order does to the four guidances (see the module docstring for each field)."""

    n: int
    batch_size: int
    block_size: int
    front_mean_q: float
    back_mean_q: float
    front_in_low_tail: float
    back_in_high_tail: float
    sweeps: int
    resets: int
    bin_coverage: float
    max_batch_jump: float
    mean_batch_jump: float
    within_batch_std: float
    longest_domain_run: int | None = None
    mean_domains_per_batch: float | None = None
    n_domains: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_quantiles(scores: Any) -> np.ndarray:
    """Each sample's score quantile in [0, 1] (ties share their average rank)."""
    arr = as_scores(scores)
    n = arr.shape[0]
    if n < 2:
        return np.zeros(n)
    return (rankdata(arr, method="average") - 1.0) / (n - 1.0)


def _chunk_means(values: np.ndarray, size: int) -> np.ndarray:
    full = (values.shape[0] // size) * size
    means = values[:full].reshape(-1, size).mean(axis=1) if full else np.empty(0)
    if full < values.shape[0]:
        means = np.append(means, values[full:].mean())
    return means


def zigzag_legs(curve: np.ndarray, swing: float) -> list[tuple[int, int]]:
    """``(start, end)`` indices of the monotone legs of ``curve`` whose rise or fall is at least ``swing``."""
    legs: list[tuple[int, int]] = []
    if curve.shape[0] < 2:
        return legs
    lo = hi = 0
    trend, pivot, ext = 0, 0, 0
    for i in range(1, curve.shape[0]):
        v = curve[i]
        if trend == 0:
            if v < curve[lo]:
                lo = i
            if v > curve[hi]:
                hi = i
            if v - curve[lo] >= swing and lo < i:
                trend, pivot, ext = 1, lo, i
            elif curve[hi] - v >= swing and hi < i:
                trend, pivot, ext = -1, hi, i
        elif trend == 1:
            if v >= curve[ext]:
                ext = i
            elif curve[ext] - v >= swing:
                legs.append((pivot, ext))
                trend, pivot, ext = -1, ext, i
        else:
            if v <= curve[ext]:
                ext = i
            elif v - curve[ext] >= swing:
                legs.append((pivot, ext))
                trend, pivot, ext = 1, ext, i
    if trend != 0:
        legs.append((pivot, ext))
    return legs


def longest_run(labels: np.ndarray) -> int:
    """Length of the longest run of equal consecutive labels."""
    if labels.shape[0] == 0:
        return 0
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.concatenate([[0], change, [labels.shape[0]]])
    return int(np.diff(bounds).max())


def guideline_metrics(
    order: Any,
    scores: Any,
    batch_size: int = 32,
    *,
    domains: Any = None,
    block_size: int | None = None,
    boundary_frac: float = 0.1,
    swing: float = 0.5,
) -> GuidelineReport:
    """Measure G1-G4 for ``order`` (dataset indices in training order) over per-row ``scores``.

    ``batch_size`` is the global batch (per-device batch x processes x gradient accumulation), ``domains``
    optional per-row labels, ``block_size`` the curve's resolution (default 1% of the run, at least
    min(64, 5%) samples).
    """
    q_rows = score_quantiles(scores)
    order = np.asarray(order, dtype=np.int64)
    n = q_rows.shape[0]
    if order.shape != (n,) or (n and not np.array_equal(np.bincount(order, minlength=n), np.ones(n))):
        raise ValueError(f"order must be a permutation of 0..{n - 1} (one entry per score)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not 0 < boundary_frac <= 0.5:
        raise ValueError(f"boundary_frac must be in (0, 0.5]; got {boundary_frac}")
    q = q_rows[order]
    # 1% of the run, but at least min(64, 5%) samples so that shuffled noise cannot fake a 0.5 swing
    block = int(block_size or max(n // 100, min(64, max(1, n // 20))))
    k = max(1, int(round(n * boundary_frac)))
    front, back = q[:k], q[n - k :]

    curve = _chunk_means(q, block)
    legs = zigzag_legs(curve, swing)
    resets = sum(1 for a, b in legs if b - a <= 2)
    bins = np.array_split(q, min(10, n)) if n else []
    coverage = float(np.mean([np.percentile(b, 95) - np.percentile(b, 5) for b in bins])) if n else 0.0

    batch_means = _chunk_means(q, batch_size)
    jumps = np.abs(np.diff(batch_means)) if batch_means.shape[0] > 1 else np.zeros(1)
    full = (n // batch_size) * batch_size
    stds = q[:full].reshape(-1, batch_size).std(axis=1) if full else q.std(keepdims=True)

    report = GuidelineReport(
        n=n,
        batch_size=int(batch_size),
        block_size=block,
        front_mean_q=float(front.mean()) if n else 0.0,
        back_mean_q=float(back.mean()) if n else 0.0,
        front_in_low_tail=float((front < boundary_frac).mean()) if n else 0.0,
        back_in_high_tail=float((back >= 1 - boundary_frac).mean()) if n else 0.0,
        sweeps=len(legs) - resets,
        resets=resets,
        bin_coverage=coverage,
        max_batch_jump=float(jumps.max()),
        mean_batch_jump=float(jumps.mean()),
        within_batch_std=float(stds.mean()),
    )
    if domains is not None:
        codes = domain_codes(domains, n_rows=n)[order]
        report.n_domains = int(codes.max()) + 1 if n else 0
        report.longest_domain_run = longest_run(codes)
        if full:
            per_batch = np.sort(codes[:full].reshape(-1, batch_size), axis=1)
            distinct = 1 + (per_batch[:, 1:] != per_batch[:, :-1]).sum(axis=1)
            report.mean_domains_per_batch = float(distinct.mean())
        else:
            report.mean_domains_per_batch = float(np.unique(codes).shape[0])
    return report
