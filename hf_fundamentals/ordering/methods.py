"""Score-based training orders (arXiv 2605.30334, microsoft/data-efficacy), on index arrays.

Every function takes per-sample scores (or an already sorted index array) and returns a permutation of
``0..N-1``: position ``t`` of the result is the dataset row trained on ``t``-th. Semantics follow the
reference code (``data_ordering/common.py``): Python-stable sorts (ties keep dataset order), split points with
Python's half-to-even ``round``, strided layers for folding/zigzag, STR/SAW as folding/zigzag inside the
transition regions around the section split points, and window jitter as a seeded shuffle of consecutive
chunks. Everything is vectorized numpy, so 10 million scores order in about a second.

Where the reference is inconsistent we pick one behaviour and say so: descending order is a *stable*
descending sort everywhere (the reference's ``sorting.py`` returns ascending order when asked for descending
because it reverses twice); random streams come from ``numpy.random.Generator`` seeded per stage, so
shuffles are reproducible here but not bit-identical to the reference's Python ``random``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

METHODS = ("random", "sorting", "folding", "zigzag", "segment", "stair", "saw")

# Repo defaults (data_ordering/config/*.yaml): FO/ZIG 5 layers; STR K=2, L=3, rho=0.225; SAW K=3, L=2, rho=0.075.
_DEFAULT_LAYERS = {"folding": 5, "zigzag": 5, "stair": 3, "saw": 2}
_DEFAULT_SECTIONS = {"stair": 2, "saw": 3}
_DEFAULT_RATIO = {"stair": 0.225, "saw": 0.075}

# Separate random streams per stage, so switching jitter on does not change a random order's shuffle.
_STREAM_RANDOM, _STREAM_SEGMENT, _STREAM_GUMBEL, _STREAM_WINDOW = 0, 1, 2, 3


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D numeric array; NaN/inf and non-numeric input fail with the first bad position."""
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one score per sample (1-D); got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.int8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be numbers; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} has {int(bad.sum())} NaN/inf values (first at index {first}: {arr[first]}); "
                "fill or drop those samples before ordering"
            )
    return arr


def _positive_int(value: Any, name: str) -> int:
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def sorted_indices(scores: Any, ascending: bool = True) -> np.ndarray:
    """Indices that sort ``scores``; stable in both directions (ties keep dataset order, as Python's ``sorted``)."""
    arr = as_scores(scores)
    if ascending:
        return np.argsort(arr, kind="stable")
    n = arr.shape[0]
    # A stable ascending sort of the reversed array, read backwards, is a stable descending sort.
    return (n - 1 - np.argsort(arr[::-1], kind="stable"))[::-1].copy()


def random_order(n: int, seed: int = 42) -> np.ndarray:
    """A seeded uniform shuffle of ``0..n-1`` (the paper's Random baseline)."""
    return _rng(seed, _STREAM_RANDOM).permutation(int(n))


def folding_order(sorted_idx: Any, layers: int = 5) -> np.ndarray:
    """FO-L: ``S[0::L], S[1::L], ..., S[L-1::L]``: L sweeps over the whole score range."""
    layers = _positive_int(layers, "layers")
    s = np.asarray(sorted_idx)
    return np.concatenate([s[layer::layers] for layer in range(layers)]) if s.size else s.copy()


def zigzag_order(sorted_idx: Any, layers: int = 5) -> np.ndarray:
    """ZIG-L: the FO-L layers with every odd layer reversed (up, down, up, ...), so sweeps never jump back."""
    layers = _positive_int(layers, "layers")
    s = np.asarray(sorted_idx)
    if not s.size:
        return s.copy()
    parts = [s[layer::layers] if layer % 2 == 0 else s[layer::layers][::-1] for layer in range(layers)]
    return np.concatenate(parts)


def cross_guidance_order(
    sorted_idx: Any, num_sections: int, transition_ratio: float, layers: int, mode: str
) -> np.ndarray:
    """STR (``mode='folding'``) / SAW (``mode='zigzag'``): FO-L / ZIG-L only inside the transition regions.

    Split points ``p_k = round(N k / K)``, radius ``R = round(N rho)``; region ``[max(c, p_k - R),
    min(N, p_k + R))`` where ``c`` is the end of the previous region; outside the regions the sorted order is
    kept (a plain curriculum).
    """
    num_sections = _positive_int(num_sections, "num_sections")
    layers = _positive_int(layers, "layers")
    if transition_ratio < 0:
        raise ValueError(f"transition_ratio must be >= 0; got {transition_ratio}")
    if mode not in ("folding", "zigzag"):
        raise ValueError(f"mode must be 'folding' (STR) or 'zigzag' (SAW); got {mode!r}")
    s = np.asarray(sorted_idx)
    n = s.shape[0]
    if n == 0 or num_sections == 1 or transition_ratio == 0:
        return s.copy()
    rearrange = folding_order if mode == "folding" else zigzag_order
    radius = round(n * transition_ratio)
    parts, cursor = [], 0
    for section in range(1, num_sections):
        split = round(n * section / num_sections)
        start, end = max(cursor, split - radius), min(n, split + radius)
        if cursor < start:
            parts.append(s[cursor:start])
        if start < end:
            parts.append(rearrange(s[start:end], layers))
        cursor = max(cursor, end)
    if cursor < n:
        parts.append(s[cursor:])
    return np.concatenate(parts)


def stair_order(
    scores: Any,
    num_sections: int = 2,
    layers: int = 3,
    transition_ratio: float = 0.225,
    ascending: bool = True,
) -> np.ndarray:
    """STR (Stair): a curriculum whose transition regions are folded (FO-L); repo defaults K=2, L=3, rho=0.225."""
    return cross_guidance_order(
        sorted_indices(scores, ascending), num_sections, transition_ratio, layers, "folding"
    )


def saw_order(
    scores: Any,
    num_sections: int = 3,
    layers: int = 2,
    transition_ratio: float = 0.075,
    ascending: bool = True,
) -> np.ndarray:
    """SAW (Saw): a curriculum whose transition regions are zigzagged (ZIG-L); repo defaults K=3, L=2, rho=0.075."""
    return cross_guidance_order(
        sorted_indices(scores, ascending), num_sections, transition_ratio, layers, "zigzag"
    )


def segment_order(
    scores: Any,
    low_pct: float = 10.0,
    high_pct: float = 10.0,
    front_is_high: bool = False,
    back_is_high: bool = True,
    seed: int = 42,
) -> np.ndarray:
    """SEG: a front block (lowest ``low_pct``% by default), a shuffled middle, a back block (highest ``high_pct``%).

    Block sizes are ``floor(N * pct / 100)``, rescaled when they add up to more than N; each block is shuffled
    on its own. The paper's G1 probe is SEG "l10-h10" (the defaults).
    """
    if low_pct < 0 or high_pct < 0:
        raise ValueError(f"low_pct and high_pct must be >= 0; got {low_pct}, {high_pct}")
    s = sorted_indices(scores, ascending=True)
    n = s.shape[0]
    n_front, n_back = int(n * low_pct // 100), int(n * high_pct // 100)
    if n_front + n_back > n:
        n_front = int(n_front * n / (n_front + n_back))
        n_back = n - n_front
    rng = _rng(seed, _STREAM_SEGMENT)
    if front_is_high == back_is_high:
        k = n_front + n_back
        selected, middle = (s[n - k :], s[: n - k]) if front_is_high else (s[:k], s[k:])
        selected = rng.permutation(selected)
        front, back = selected[:n_front], selected[n_front:]
    else:
        front = s[n - n_front :] if front_is_high else s[:n_front]
        rest = s[: n - n_front] if front_is_high else s[n_front:]
        back = rest[len(rest) - n_back :] if back_is_high else rest[:n_back]
        middle = rest[: len(rest) - n_back] if back_is_high else rest[n_back:]
    return np.concatenate([rng.permutation(front), rng.permutation(middle), rng.permutation(back)])


def sorting_order(scores: Any, ascending: bool = True) -> np.ndarray:
    """CL (vanilla curriculum): the stable score sort."""
    return sorted_indices(scores, ascending)


def gumbel_rank_jitter(order: Any, tau: float, seed: int = 42) -> np.ndarray:
    """Move each position ``t`` to ``t + tau * Gumbel`` and re-sort: a soft, seeded loosening of the order."""
    arr = np.asarray(order)
    if tau < 0:
        raise ValueError(f"gumbel_tau must be >= 0; got {tau}")
    if tau == 0 or arr.size == 0:
        return arr.copy()
    noise = _rng(seed, _STREAM_GUMBEL).gumbel(size=arr.shape[0]) * tau
    return arr[np.argsort(np.arange(arr.shape[0], dtype=np.float64) + noise, kind="stable")]


def window_jitter(order: Any, window_size: int, seed: int = 42, domains: Any = None) -> np.ndarray:
    """JIT: shuffle each consecutive chunk of ``window_size`` positions (the global trend survives).

    With ``domains`` (one label per dataset row), each window is also interleaved by domain: a domain with
    ``c`` samples in a window of ``w`` takes positions spread evenly (about every ``w/c``), so no domain runs
    longer than the window's mix forces. ``window_size`` <= 1 returns the order unchanged.
    """
    arr = np.asarray(order)
    n = arr.shape[0]
    if window_size is None or window_size <= 1 or n == 0:
        return arr.copy()
    window_size = int(window_size)
    rng = _rng(seed, _STREAM_WINDOW)
    full = (n // window_size) * window_size
    out = np.empty_like(arr)
    if full:
        out[:full] = rng.permuted(arr[:full].reshape(-1, window_size), axis=1).reshape(-1)
    if full < n:
        out[full:] = rng.permutation(arr[full:])
    if domains is None:
        return out
    codes = domain_codes(domains, n_rows=None)[out]
    window = np.arange(n, dtype=np.int64) // window_size
    n_domains = int(codes.max()) + 1
    group = window * n_domains + codes
    counts = np.bincount(group)  # per (window, domain); at most n_windows * n_domains entries
    # occurrence rank of each position inside its (window, domain) group, in the shuffled order
    by_group = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[by_group] = np.arange(n, dtype=np.int64) - starts[group[by_group]]
    # spread each domain evenly over its window; a per-window random domain precedence breaks ties (spreads
    # of different domains differ by at least 1/window^2, far above the tie-breaker's 1e-13)
    key = (rank + 0.5) / counts[group] + 1e-13 * rng.random((int(window[-1]) + 1, n_domains))[window, codes]
    within = np.empty(n, dtype=np.int64)
    if full:
        rows = np.argsort(key[:full].reshape(-1, window_size), axis=1, kind="stable")
        within[:full] = (rows + np.arange(0, full, window_size)[:, None]).reshape(-1)
    if full < n:
        within[full:] = full + np.argsort(key[full:], kind="stable")
    return out[within]


def domain_codes(domains: Any, n_rows: int | None = None) -> np.ndarray:
    """Integer codes ``0..D-1`` for a sequence of domain labels (strings or ints)."""
    arr = np.asarray(domains)
    if arr.ndim != 1:
        raise ValueError(f"domains must be one label per sample (1-D); got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"domains has {arr.shape[0]} labels but there are {n_rows} samples")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class OrderSpec:
    """One training order, fully specified: the method and every knob (``None`` = the method's repo default)."""

    method: str = "saw"
    ascending: bool = True
    layers: int | None = None
    num_sections: int | None = None
    transition_ratio: float | None = None
    window_size: int = 0
    gumbel_tau: float = 0.0
    seg_low_pct: float = 10.0
    seg_high_pct: float = 10.0
    seg_front_is_high: bool = False
    seg_back_is_high: bool = True
    seed: int = 42

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"order method {self.method!r} is not one of {', '.join(METHODS)}")
        for name in ("layers", "num_sections"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(value, name)
        if self.transition_ratio is not None and self.transition_ratio < 0:
            raise ValueError(f"transition_ratio must be >= 0; got {self.transition_ratio}")
        if self.window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0 or 1: no jitter); got {self.window_size}")
        if self.gumbel_tau < 0:
            raise ValueError(f"gumbel_tau must be >= 0 (0: off); got {self.gumbel_tau}")

    def resolved(self) -> OrderSpec:
        """This spec with the method's defaults filled in (what the order actually used)."""
        return replace(
            self,
            layers=self.layers if self.layers is not None else _DEFAULT_LAYERS.get(self.method),
            num_sections=self.num_sections
            if self.num_sections is not None
            else _DEFAULT_SECTIONS.get(self.method),
            transition_ratio=self.transition_ratio
            if self.transition_ratio is not None
            else _DEFAULT_RATIO.get(self.method),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """A short name such as ``SAW(K=3,L=2,rho=0.075)+JIT(1000)``."""
        r = self.resolved()
        if r.method in ("stair", "saw"):
            name = f"{'STR' if r.method == 'stair' else 'SAW'}(K={r.num_sections},L={r.layers},rho={r.transition_ratio:g})"
        elif r.method in ("folding", "zigzag"):
            name = f"{'FO' if r.method == 'folding' else 'ZIG'}-{r.layers}"
        elif r.method == "segment":
            name = f"SEG(l{r.seg_low_pct:g}-h{r.seg_high_pct:g})"
        else:
            name = "Random" if r.method == "random" else "CL"
        if r.method in ("sorting", "folding", "zigzag", "stair", "saw") and not r.ascending:
            name += " desc"
        if r.gumbel_tau:
            name += f"+Gumbel({r.gumbel_tau:g})"
        if r.window_size > 1:
            name += f"+JIT({r.window_size})"
        return name


def order_indices(
    scores: Any,
    spec: OrderSpec | str | None = None,
    *,
    domains: Sequence[Any] | None = None,
    **overrides: Any,
) -> np.ndarray:
    """The training order for ``scores`` under ``spec`` (a method name or an :class:`OrderSpec`), as int64 indices.

    ``overrides`` set spec fields (``order_indices(s, "saw", window_size=1000)``). ``domains`` (one label per
    row) makes the window jitter domain-aware. Gumbel rank jitter, when on, runs before window jitter.
    """
    if spec is None or isinstance(spec, str):
        spec = OrderSpec(method=spec or "saw", **overrides)
    elif overrides:
        spec = replace(spec, **overrides)
    r = spec.resolved()
    arr = as_scores(scores)
    n = arr.shape[0]
    if domains is not None:
        domain_codes(domains, n_rows=n)  # validate length early
    if r.method == "random":
        order = random_order(n, r.seed)
    elif r.method == "sorting":
        order = sorting_order(arr, r.ascending)
    elif r.method == "folding":
        order = folding_order(sorted_indices(arr, r.ascending), r.layers)
    elif r.method == "zigzag":
        order = zigzag_order(sorted_indices(arr, r.ascending), r.layers)
    elif r.method == "segment":
        order = segment_order(
            arr, r.seg_low_pct, r.seg_high_pct, r.seg_front_is_high, r.seg_back_is_high, r.seed
        )
    elif r.method == "stair":
        order = stair_order(arr, r.num_sections, r.layers, r.transition_ratio, r.ascending)
    else:
        order = saw_order(arr, r.num_sections, r.layers, r.transition_ratio, r.ascending)
    order = gumbel_rank_jitter(order, r.gumbel_tau, r.seed)
    order = window_jitter(order, r.window_size, r.seed, domains=domains)
    return order.astype(np.int64, copy=False)
