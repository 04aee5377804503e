"""Page-sparse decode attention (:mod:`hf_fundamentals.attention.sparse_decode`) in transformers: a KV cache that
keeps per-page key summaries beside K/V, and the ``AttentionInterface`` function ``"hff_sparse_decode"``.

Usage::

    from hf_fundamentals.integrations.attention.sparse_decode import SparseDecodeCache, set_sparse_decode

    set_sparse_decode(model, top_p=0.95)              # or from_pretrained(..., attn_implementation="hff_sparse_decode")
    out = model.generate(**inputs, past_key_values=SparseDecodeCache(model.config), max_new_tokens=64)

What runs where (Quest's split, arXiv 2406.10774 §4: the first layers are dense):

* prefill, and any call with more than one query: exact sdpa;
* the first ``dense_layers`` layers (default 2), and decode steps with fewer than ``min_seq_len`` keys: exact sdpa;
* every other single-token decode step: the top-p page-sparse step, reading the summaries of the
  :class:`SparseDecodeCache` (updated incrementally, one page per step). With another cache (the default
  ``DynamicCache``, a ``StaticCache``) the step is the same but recomputes the summaries from the keys each time
  (one pass over K; logged once).

Settings are per model (``config.hff_sparse_decode``, saved with the config). Refused with an error: sliding-window
or chunked layers (set ``sliding_window=None`` if your contexts stay inside the window), attention dropout,
``softcap``, attention sinks (``s_aux``), paged caches (continuous batching) and decode masks that are not key
padding. Beam search works (the cache reorders its summaries with its keys).

After each call the attention module holds a :class:`SparseDecodeStats` as ``module._hff_sparse_stats`` (path,
pages read, the certified bound on the dropped attention mass)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import DynamicCache, DynamicLayer

from hf_fundamentals.attention.sparse_decode import n_pages, sparse_decode_attention, update_page_summaries

logger = logging.getLogger(__name__)

SPARSE_DECODE = "hff_sparse_decode"
CONFIG_KEY = "hff_sparse_decode"


@dataclass(frozen=True)
class SparseDecodeSettings:
    """``top_p``: estimated attention mass the kept pages must reach (1 = read every page, exact);
    ``page_size`` tokens per page; ``sink_pages`` pages kept from the first visible token; ``window`` most recent
    tokens always kept; ``max_fraction`` cap on the non-floor pages read; ``alpha`` the ranking score's weight on
    the box radius (1: Quest's upper bound); ``dense_layers`` first layers that stay dense; ``min_seq_len`` decode
    steps with fewer keys stay dense."""

    top_p: float = 0.99
    page_size: int = 16
    sink_pages: int = 1
    window: int = 64
    max_fraction: float = 0.24
    alpha: float = 0.5
    dense_layers: int = 2
    min_seq_len: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1]; got {self.top_p}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must lie in [0, 1]; got {self.max_fraction}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1]; got {self.alpha}")
        for name in ("page_size", "sink_pages", "window", "dense_layers", "min_seq_len"):
            value = getattr(self, name)
            low = 1 if name == "page_size" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparseDecodeSettings:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown sparse-decode settings: {sorted(unknown)}")
        return cls(**data)


DEFAULT_SETTINGS = SparseDecodeSettings()
_parsed: dict[tuple, SparseDecodeSettings] = {}


def settings_of(obj: Any) -> SparseDecodeSettings:
    """The settings of a module or model (its config's ``hff_sparse_decode``), else the defaults."""
    cfg = (
        obj
        if hasattr(obj, "to_dict") and not isinstance(obj, torch.nn.Module)
        else getattr(obj, "config", None)
    )
    raw = getattr(cfg, CONFIG_KEY, None)
    if not raw:
        return DEFAULT_SETTINGS
    key = tuple(sorted(raw.items()))
    if key not in _parsed:
        _parsed[key] = SparseDecodeSettings.from_dict(raw)
    return _parsed[key]


def set_sparse_decode_settings(model: torch.nn.Module, **settings: Any) -> SparseDecodeSettings:
    """Merge ``settings`` into the model's (every config it holds) ``hff_sparse_decode``; returns them."""
    new = SparseDecodeSettings.from_dict({**asdict(settings_of(model)), **settings})
    seen: set[int] = set()
    for m in (model, *model.modules()):
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict") and id(cfg) not in seen:
            seen.add(id(cfg))
            setattr(cfg, CONFIG_KEY, asdict(new))
    return new


# ---------------------------------------------------------------------------------------------------- cache
def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


class SparseDecodeLayer(DynamicLayer):
    """A ``DynamicLayer`` whose K/V live in buffers of page-aligned capacity (grown by 1.5x, so a step writes one
    token instead of re-concatenating the cache as ``DynamicLayer`` does) with ``kmin``/``kmax`` page summaries
    beside them, refreshed for the touched pages at every update. ``self.keys``/``self.values`` are views of the
    first ``n`` tokens; the keys view carries ``_hff_sparse_layer`` so that the attention function finds the
    summaries."""

    def __init__(self, page_size: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size
        self.n = 0
        self._k = self._v = self.kmin = self.kmax = None
        self.workspace: dict = {}  # the decode step's gather buffers, reused between steps

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def _views(self) -> None:
        self.keys = self._k[:, :, : self.n]
        self.values = self._v[:, :, : self.n]
        self.keys._hff_sparse_layer = self

    def _grow(self, need: int, like_k: Tensor, like_v: Tensor) -> None:
        cap = 0 if self._k is None else self._k.shape[2]
        if need <= cap and self._k.shape[0] == like_k.shape[0]:
            return
        new_cap = _round_up(max(need, int(cap * 1.5)), self.page_size)
        b, h, _, d = like_k.shape
        k = like_k.new_zeros(b, h, new_cap, d)  # zeros: a partial page's tail is read (masked; 0·NaN = NaN)
        v = like_v.new_zeros(b, h, new_cap, like_v.shape[-1])
        lo = like_k.new_empty(b, h, new_cap // self.page_size, d)
        hi = torch.empty_like(lo)
        if self.n:
            k[:, :, : self.n] = self._k[:, :, : self.n]
            v[:, :, : self.n] = self._v[:, :, : self.n]
            n_p = n_pages(self.n, self.page_size)
            lo[:, :, :n_p] = self.kmin[:, :, :n_p]
            hi[:, :, :n_p] = self.kmax[:, :, :n_p]
        self._k, self._v, self.kmin, self.kmax = k, v, lo, hi

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        m = key_states.shape[2]
        start, end = self.n, self.n + m
        self._grow(end, key_states, value_states)
        self._k[:, :, start:end] = key_states
        self._v[:, :, start:end] = value_states
        self.n = end
        update_page_summaries(self.kmin, self.kmax, self._k, start, end, self.page_size)
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.n

    def reset(self) -> None:
        self.n = 0
        self._k = self._v = self.kmin = self.kmax = None
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or not self.n:
            return
        self.n = max(0, self.n + tokens_to_remove)
        if self.n:
            p = (self.n - 1) // self.page_size
            update_page_summaries(self.kmin, self.kmax, self._k, p * self.page_size, self.n, self.page_size)
        self._views()

    def _batch(self, fn) -> None:
        if self._k is not None:
            self._k, self._v, self.kmin, self.kmax = (fn(t) for t in (self._k, self._v, self.kmin, self.kmax))
            self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: Tensor) -> None:
        self._batch(lambda t: t[indices].contiguous())


_REFUSED_LAYERS = ("sliding_attention", "chunked_attention", "hybrid_sliding")


class SparseDecodeCache(DynamicCache):
    """The cache for ``hff_sparse_decode``: one :class:`SparseDecodeLayer` per decoder layer of ``config``.

    Pass it to ``generate(past_key_values=SparseDecodeCache(model.config))``. ``page_size`` defaults to the
    model's settings. Refuses configs with sliding-window, chunked or linear-attention layers."""

    def __init__(self, config: Any, page_size: int | None = None) -> None:
        from transformers.cache_utils import get_layer_types_and_kwargs

        text = config.get_text_config(decoder=True)
        page_size = page_size or settings_of(text).page_size
        layer_types, _ = get_layer_types_and_kwargs(text)
        refused = sorted({t for t in layer_types if t != "full_attention"})
        if refused:
            raise ValueError(
                f"hff_sparse_decode implements full causal attention only; this config has {refused} layers "
                f"(sliding_window={getattr(text, 'sliding_window', None)}). If every context stays inside the "
                "window, set config.sliding_window = None (and layer_types to full_attention); otherwise use sdpa"
            )
        super().__init__()
        self.layers = [SparseDecodeLayer(page_size=page_size) for _ in layer_types]
        self.layer_class_to_replicate = None


# ------------------------------------------------------------------------------------------------ attention
@dataclass
class SparseDecodeStats:
    """What the last call on one attention module did: ``path`` ("sparse" or "dense", with ``reason``),
    ``pages_read`` (fraction of visible pages read, sparse only), ``mass_bound`` (0-d tensor: the largest certified
    bound on the dropped attention mass over batch and heads; 0 for dense), ``n_k`` keys."""

    path: str
    n_k: int
    reason: str | None = None
    pages_read: float | None = None
    mass_bound: Tensor | None = None


_warned: set[str] = set()


def _refuse(module, kwargs, dropout) -> None:
    if dropout and dropout > 0:
        raise ValueError(
            f"{SPARSE_DECODE} does not implement attention dropout (dropout={dropout}); set attention_dropout=0"
        )
    window = kwargs.get("sliding_window", getattr(module, "sliding_window", None))
    if window is not None:
        raise ValueError(
            f"{SPARSE_DECODE} implements full causal attention only; layer {getattr(module, 'layer_idx', '?')} "
            f"has sliding_window={window}. Set config.sliding_window = None if every context fits in it, or use sdpa"
        )
    for name, what in (
        ("softcap", "softcap"),
        ("s_aux", "attention sinks (s_aux)"),
        ("cache", "paged caches"),
    ):
        if kwargs.get(name) is not None:
            raise ValueError(f"{SPARSE_DECODE} does not support {what}")


def _key_valid(mask: Tensor | None, b: int, n_k: int) -> Tensor | None:
    if mask is None:
        return None
    if mask.dim() != 4 or mask.shape[-2] != 1 or mask.shape[-1] != n_k or mask.shape[1] != 1:
        raise ValueError(
            f"{SPARSE_DECODE}: a decode mask must be [batch, 1, 1, keys]; got {tuple(mask.shape)}"
        )
    row = mask[:, 0, 0, :]
    if row.dtype != torch.bool:
        allowed = row == 0
        if not bool((allowed | (row <= torch.finfo(row.dtype).min)).all()):
            raise ValueError(f"{SPARSE_DECODE}: additive decode masks other than 0/-inf are not supported")
        row = allowed
    row = row.expand(b, n_k)
    return None if bool(row.all()) else row


def sparse_decode_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """``AttentionInterface`` function ``"hff_sparse_decode"``: q ``[b, h, n_q, d]``, k/v ``[b, h_kv, n_k, d]``
    -> ``([b, n_q, h, d], None)``. Dense sdpa except single-token decode in layers ``>= dense_layers``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    _refuse(module, kwargs, dropout)
    s = settings_of(module)
    b, h_q, n_q, d = query.shape
    n_k = key.shape[2]
    layer_idx = getattr(module, "layer_idx", None) or 0
    reason = None
    if n_q > 1:
        reason = "prefill"
    elif layer_idx < s.dense_layers:
        reason = f"layer {layer_idx} < dense_layers={s.dense_layers}"
    elif n_k < s.min_seq_len:
        reason = f"{n_k} keys < min_seq_len={s.min_seq_len}"
    if reason is not None:
        _record(module, SparseDecodeStats("dense", n_k, reason, None, query.new_zeros(())))
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            **kwargs,
        )  # fmt: skip
    key_valid = _key_valid(attention_mask, b, n_k)
    layer = getattr(key, "_hff_sparse_layer", None)
    if layer is not None and layer.n == n_k and layer.page_size == s.page_size:
        kbuf, vbuf, kmin, kmax, ws = layer._k, layer._v, layer.kmin, layer.kmax, layer.workspace
    else:
        if "no_cache" not in _warned:
            _warned.add("no_cache")
            logger.warning(
                "%s without its SparseDecodeCache (or with another page size): page summaries are recomputed "
                "from the keys at every step; pass past_key_values=SparseDecodeCache(model.config)", SPARSE_DECODE,
            )  # fmt: skip
        kbuf, vbuf, kmin, kmax, ws = key, value, None, None, None
    res = sparse_decode_attention(
        query[:, :, 0], kbuf, vbuf, n=n_k, kmin=kmin, kmax=kmax, key_valid=key_valid, page_size=s.page_size,
        scaling=scaling, top_p=s.top_p, sink_pages=s.sink_pages, window=s.window, max_fraction=s.max_fraction, alpha=s.alpha, workspace=ws,
    )  # fmt: skip
    _record(module, SparseDecodeStats("sparse", n_k, None, res.pages_read, res.mass_bound.detach().amax()))
    return res.output[:, None], None


def _record(module: torch.nn.Module, stats: SparseDecodeStats) -> None:
    try:
        module._hff_sparse_stats = stats
    except (AttributeError, TypeError):
        pass


def sparse_stats(model: torch.nn.Module) -> list[SparseDecodeStats]:
    """The last call's :class:`SparseDecodeStats` of every attention module of ``model``, in layer order."""
    return [m._hff_sparse_stats for m in model.modules() if isinstance(getattr(m, "_hff_sparse_stats", None), SparseDecodeStats)]  # fmt: skip


def register_sparse_decode() -> list[str]:
    """Register ``"hff_sparse_decode"`` in ``AttentionInterface`` (and transformers' ``sdpa_mask`` in
    ``AttentionMaskInterface``); idempotent."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(SPARSE_DECODE, sparse_decode_attention_forward)
    AttentionMaskInterface.register(SPARSE_DECODE, sdpa_mask)
    return [SPARSE_DECODE]


def set_sparse_decode(model: torch.nn.Module, **settings: Any) -> SparseDecodeSettings:
    """Register, merge ``settings`` into the model's ``config.hff_sparse_decode`` and switch the model to
    ``attn_implementation="hff_sparse_decode"``. Returns the settings."""
    new = set_sparse_decode_settings(model, **settings)
    register_sparse_decode()
    model.set_attn_implementation(SPARSE_DECODE)
    return new


__all__ = [
    "CONFIG_KEY",
    "SPARSE_DECODE",
    "SparseDecodeCache",
    "SparseDecodeLayer",
    "SparseDecodeSettings",
    "SparseDecodeStats",
    "register_sparse_decode",
    "set_sparse_decode",
    "set_sparse_decode_settings",
    "settings_of",
    "sparse_decode_attention_forward",
    "sparse_stats",
]
