"""The :mod:`hf_fundamentals.attention` references as transformers attention implementations.

Two names are registered (no ``/``: a slash means a Hub kernel; no ``flash``/``sdpa`` substrings, which
transformers tests for):

* ``"hff_blocksparse"``: :func:`~hf_fundamentals.attention.blocksparse_attention`, exact softmax over the key
  blocks that cannot be certified negligible; the skipped attention mass of every query is ``<= eps`` and the
  per-call certified bound on ``|output − exact|`` is kept (see *Statistics*). ``eps=0`` is exact.
* ``"hff_lowrank"``: :func:`~hf_fundamentals.attention.lowrank_attention` (feature-map attention, no bound).

Usage::

    from hf_fundamentals.integrations.transformers.attention import configure_attention, set_attention

    configure_attention(eps=1e-3, block_size=64, min_seq_len=4096)
    set_attention(model, "blocksparse")        # or from_pretrained(..., attn_implementation="hff_blocksparse")
                                                # after register_attention()

**Settings** are module-wide (:func:`configure_attention`), read at every call. ``min_seq_len`` (default 4096,
HyperAttention's default threshold, attention.md §1.6): a call whose key length is below it runs transformers'
exact ``sdpa_attention_forward`` instead, so short prompts and most fine-tuning batches are exact.

**Masks.** Each name is also registered in ``AttentionMaskInterface`` with transformers' ``sdpa_mask`` (without
that, transformers hands the attention ``attention_mask=None`` even for padded batches). The function then gets
``None`` or a 4-D ``[batch, 1, n_q, n_k]`` bool mask (a float 0/-inf mask is accepted too) and converts it to the
references' ``(causal, key_padding_mask)`` by an exact comparison with the mask it would build:

* ``None``: causal iff ``is_causal`` (kwarg, else ``module.is_causal``) and ``n_q > 1``, exactly like sdpa,
  including sdpa's upper-left crop of the keys to ``n_q`` (empty static-cache prefill). Decode steps
  (``n_q == 1``) see every key.
* causal, aligned at any offset ``j <= i + offset`` (dynamic cache: the end of the keys; static cache: keys past
  the current position are dropped), AND a key-padding mask: handled (left/right padding, decode with a padded
  cache).
* key-padding only (every row identical, bidirectional modules): handled, non-causal.
* anything else falls back to exact sdpa with a one-time ``logger.warning`` giving the reason: sliding-window
  bands, packed sequences (block-diagonal masks, ``position_ids`` restarts with no mask, ``cu_seq_lens_q`` with
  several documents), arbitrary additive or per-head masks, ``softcap``, attention sinks (``s_aux``),
  ``position_bias`` and paged caches.
* ``dropout > 0`` raises ``ValueError`` (also below ``min_seq_len``, so a config with ``attention_dropout > 0``
  fails at the first step rather than at the first long batch): set ``attention_dropout=0``.

Query rows that see no real key (left-padding rows) are zeros here; sdpa returns something else for such rows,
and nothing downstream reads them.

**Statistics.** Every call stores an :class:`AttentionCallStats` on the attention module as
``module._hff_last_bound`` (also returned by :func:`last_call_stats`): the path taken (``"blocksparse"``,
``"lowrank"`` or ``"sdpa"``), the reason for a fall-back, and for block-sparse calls the certified
``max_error_bound`` (max over batch, heads, queries and dimensions of the per-element bound on
``|output − exact|``), ``max_mass_bound`` (skipped attention mass, ``<= eps``) and ``kept_fraction``. The two
bounds are 0-d tensors (no device sync); call ``float()`` on them. :func:`model_error_bound` gives the max over
a model's layers after a forward pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from hf_fundamentals.attention import FEATURE_MAPS, blocksparse_attention, lowrank_attention

logger = logging.getLogger(__name__)

BLOCKSPARSE = "hff_blocksparse"
LOWRANK = "hff_lowrank"
NAMES = {"blocksparse": BLOCKSPARSE, "lowrank": LOWRANK}
"""Short kind -> registered ``attn_implementation`` name."""


@dataclass(frozen=True)
class AttentionSettings:
    """Parameters used by the registered functions (see :func:`configure_attention`)."""

    eps: float = 1e-3
    block_size: int = 64
    min_seq_len: int = 4096
    feature_map: str = "taylor2"
    rank: int | None = None
    chunk_size: int = 256
    seed: int = 0


_settings = AttentionSettings()


def configure_attention(
    eps: float = 1e-3,
    block_size: int = 64,
    min_seq_len: int = 4096,
    feature_map: str = "taylor2",
    rank: int | None = None,
    chunk_size: int = 256,
    seed: int = 0,
) -> AttentionSettings:
    """Set the parameters of ``hff_blocksparse`` (``eps``, ``block_size``) and ``hff_lowrank`` (``feature_map``,
    ``rank``, ``chunk_size``, ``seed``) and the exact-fallback threshold ``min_seq_len`` (key length below which
    sdpa runs; 0 forces the approximate path). Takes effect at the next call; returns the new settings."""
    global _settings
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1]; got {eps}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; got {block_size!r}")
    if min_seq_len < 0:
        raise ValueError(f"min_seq_len must be >= 0; got {min_seq_len}")
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}; got {feature_map!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    _settings = AttentionSettings(eps, block_size, min_seq_len, feature_map, rank, chunk_size, seed)
    return _settings


def attention_settings() -> AttentionSettings:
    """The settings currently in force."""
    return _settings


@dataclass
class AttentionCallStats:
    """What the last call of a registered function on one attention module did (``module._hff_last_bound``).

    ``path``: "blocksparse", "lowrank" or "sdpa" (exact fall-back; ``reason`` says why). ``max_error_bound``:
    certified bound on ``max |output − exact|`` (0-d tensor; 0 for sdpa, None for lowrank, which has no bound).
    ``max_mass_bound``: bound on the skipped attention mass (``<= eps``; block-sparse only). ``kept_fraction``:
    kept (query block, key block) pairs over visible pairs (block-sparse only)."""

    path: str
    n_q: int
    n_k: int
    reason: str | None = None
    max_error_bound: Tensor | None = None
    max_mass_bound: Tensor | None = None
    kept_fraction: float | None = None


_last: AttentionCallStats | None = None
_mask_memo: tuple | None = None
"""(last mask tensor, (n_q, n_k), its structure): the mask is built once per forward and shared by the layers."""
_warned: set[str] = set()


def last_call_stats() -> AttentionCallStats | None:
    """Stats of the most recent call of either registered function, on any module."""
    return _last


def model_error_bound(model: torch.nn.Module) -> float | None:
    """Max certified ``max_error_bound`` over the attention modules of ``model`` after its last forward (None if
    no module ran ``hff_blocksparse``/sdpa through these functions or one of them ran ``hff_lowrank``)."""
    bounds = []
    for m in model.modules():
        stats = getattr(m, "_hff_last_bound", None)
        if isinstance(stats, AttentionCallStats):
            if stats.max_error_bound is None:
                return None
            bounds.append(float(stats.max_error_bound))
    return max(bounds) if bounds else None


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        logger.warning("hf_fundamentals attention falls back to exact sdpa: %s", reason)


def _record(module: torch.nn.Module, stats: AttentionCallStats) -> None:
    global _last
    _last = stats
    try:
        module._hff_last_bound = stats
    except (AttributeError, TypeError):  # a module that refuses new attributes still gets last_call_stats()
        pass


# ------------------------------------------------------------------------------------------ mask recognition
def _bool_mask(mask: Tensor) -> Tensor | None:
    """True = may attend; None when a float mask holds values other than 0 and "masked" (<= dtype min)."""
    if mask.dtype == torch.bool:
        return mask
    if not mask.is_floating_point():
        return None
    allowed = mask == 0
    blocked = mask <= torch.finfo(mask.dtype).min
    return allowed if bool((allowed | blocked).all()) else None


def mask_structure(mask: Tensor, n_q: int, n_k: int) -> tuple[bool, int, Tensor | None] | None:
    """Recognise a 4-D ``[batch, 1, n_q, n_k]`` mask as ``(causal, n_keep, key_padding_mask)``.

    * key padding only (all rows equal): ``(False, n_k, rows[:, 0] or None)``;
    * causal at offset ``o`` (query i sees key j iff ``j <= i + o``) AND key padding: ``(True, n_q + o, kpm)``
      where the keys ``>= n_q + o`` are visible to no query and are dropped, so causality is aligned to the end of
      the kept keys (the references' convention);
    * anything else (sliding window, packed documents, per-head or additive masks): None.

    ``key_padding_mask`` is None when every kept key is real. The check is exact (one comparison with the mask
    the conversion implies)."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != n_q or mask.shape[3] != n_k:
        return None
    allowed = _bool_mask(mask)
    if allowed is None:
        return None
    allowed = allowed[:, 0]  # [b, n_q, n_k]
    last = allowed[:, -1, :]  # the last query sees every key a causal or padding mask lets anyone see
    if bool((allowed == last[:, None, :]).all()):
        return False, n_k, None if bool(last.all()) else last
    i = torch.arange(n_q, device=mask.device)[:, None]
    j = torch.arange(n_k, device=mask.device)[None, :]
    rel = torch.where(allowed, (j - i)[None], torch.full_like(allowed, -n_q - 1, dtype=torch.long))
    offset = int(rel.max())
    n_keep = n_q + offset
    if offset < -n_q or n_keep < 1 or n_keep > n_k:
        return None
    kpm = last[:, :n_keep]
    expected = (j[:, :n_keep] <= i + offset)[None] & kpm[:, None, :]
    if not bool((allowed[..., :n_keep] == expected).all()) or bool(allowed[..., n_keep:].any()):
        return None
    return True, n_keep, None if bool(kpm.all()) else kpm


def _is_packed(kwargs: dict) -> str | None:
    """A reason string when the kwargs describe several packed documents in one row (without a mask)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and cu.numel() > 2:
        return "packed sequences (cu_seq_lens_q with several documents)"
    pos = kwargs.get("position_ids")
    if isinstance(pos, Tensor) and pos.dim() == 2 and pos.shape[-1] > 1:
        if bool((torch.diff(pos, dim=-1) != 1).any()):
            return "packed sequences (position_ids restart inside a row)"
    return None


# -------------------------------------------------------------------------------------- attention functions
def _plan(module, query, key, attention_mask, is_causal, kwargs):
    """``(causal, n_keep, key_padding_mask)`` for the approximate path, or a fall-back reason string."""
    for name, what in (("softcap", "softcap"), ("s_aux", "attention sinks (s_aux)")):
        if kwargs.get(name) is not None:
            return f"{what} is not supported"
    if kwargs.get("position_bias") is not None:
        return "position_bias is not supported"
    if kwargs.get("cache") is not None:
        return "paged caches are not supported"
    n_q, n_k = query.shape[2], key.shape[2]
    if attention_mask is None:
        packed = _is_packed(kwargs)
        if packed is not None:
            return packed
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        causal = bool(causal) and n_q > 1
        # sdpa's is_causal is upper-left aligned and crops the keys to n_q (empty static-cache prefill).
        n_keep = n_q if causal and n_k > n_q else n_k
        return causal, n_keep, None
    global _mask_memo
    memo = _mask_memo
    if memo is not None and memo[0] is attention_mask and memo[1] == (n_q, n_k):
        found = memo[2]  # every layer of a forward gets the same mask object: check it once
    else:
        found = mask_structure(attention_mask, n_q, n_k)
        _mask_memo = (attention_mask, (n_q, n_k), found)
    if found is None:
        window = kwargs.get("sliding_window")
        if window is not None and n_k > window:
            return f"sliding-window mask (window {window} < {n_k} keys)"
        return (
            "the attention mask is neither causal nor key-padding (sliding window, packed documents, "
            f"or a custom {tuple(attention_mask.shape)} {attention_mask.dtype} mask)"
        )
    return found


def _forward(kind, module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout and dropout > 0:
        raise ValueError(
            f"{NAMES[kind]} does not implement attention dropout (got dropout={dropout}); set the model config's "
            "attention_dropout to 0 or use attn_implementation='sdpa'"
        )
    settings = _settings
    n_q, n_k = query.shape[2], key.shape[2]

    def exact(reason: str | None):
        zero = query.new_zeros((), dtype=torch.float32)
        _record(module, AttentionCallStats("sdpa", n_q, n_k, reason, zero, zero, 1.0))
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            **kwargs,
        )  # fmt: skip

    if n_k < settings.min_seq_len:
        return exact(f"{n_k} keys < min_seq_len={settings.min_seq_len}")
    plan = _plan(module, query, key, attention_mask, is_causal, kwargs)
    if isinstance(plan, str):
        _warn_once(plan)
        return exact(plan)
    causal, n_keep, kpm = plan
    if n_keep < n_k:
        key, value = key[:, :, :n_keep], value[:, :, :n_keep]
    if kind == "blocksparse":
        res = blocksparse_attention(
            query, key, value, eps=settings.eps, block_size=settings.block_size, scaling=scaling,
            causal=causal, key_padding_mask=kpm,
        )  # fmt: skip
        out = res.output
        err = res.error_bound.detach()
        mass = res.mass_bound.detach()
        stats = AttentionCallStats(
            "blocksparse", n_q, n_k, None,
            err.amax() if err.numel() else err.new_zeros(()),
            mass.amax() if mass.numel() else mass.new_zeros(()),
            float(res.kept_fraction),
        )  # fmt: skip
    else:
        out = lowrank_attention(
            query, key, value, feature_map=settings.feature_map, rank=settings.rank, scaling=scaling,
            causal=causal, key_padding_mask=kpm, chunk_size=settings.chunk_size, seed=settings.seed,
        )  # fmt: skip
        stats = AttentionCallStats("lowrank", n_q, n_k)
    _record(module, stats)
    return out.transpose(1, 2).contiguous(), None


def blocksparse_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """``AttentionInterface`` function ``"hff_blocksparse"``: q ``[b, h, n_q, d]``, k/v ``[b, h_kv, n_k, d]``
    (GQA not expanded) -> ``([b, n_q, h, d] contiguous, None)``. See the module docstring."""
    return _forward(
        "blocksparse", module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
    )


def lowrank_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """``AttentionInterface`` function ``"hff_lowrank"`` (same contract as :func:`blocksparse_attention_forward`)."""
    return _forward(
        "lowrank", module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
    )


FUNCTIONS = {BLOCKSPARSE: blocksparse_attention_forward, LOWRANK: lowrank_attention_forward}


# ------------------------------------------------------------------------------------------------ registration
def register_attention() -> list[str]:
    """Register both names in ``AttentionInterface`` and, with transformers' ``sdpa_mask``, in
    ``AttentionMaskInterface`` (idempotent, class-wide). Returns the names."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    for name, fn in FUNCTIONS.items():
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)
    return list(FUNCTIONS)


def _name(kind: str) -> str:
    if kind in NAMES:
        return NAMES[kind]
    if kind in FUNCTIONS:
        return kind
    raise ValueError(f"kind must be one of {sorted(NAMES)} (or {sorted(FUNCTIONS)}); got {kind!r}")


def set_attention(model, kind: str = "blocksparse", **settings) -> str:
    """Register, optionally :func:`configure_attention` (``**settings``, merged into the current settings), and
    switch ``model`` to ``hff_<kind>`` with ``model.set_attn_implementation``. Returns the name. A model whose
    attention does not go through ``AttentionInterface`` is left unchanged (transformers logs a warning)."""
    name = _name(kind)
    if settings:
        unknown = set(settings) - {f.name for f in fields(AttentionSettings)}
        if unknown:
            raise TypeError(f"unknown attention settings: {sorted(unknown)}")
        configure_attention(**vars(replace(_settings, **settings)))
    register_attention()
    model.set_attn_implementation(name)
    return name


def load_with_attention(model_name_or_path, kind: str = "blocksparse", *, auto_class=None, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(model_name_or_path, attn_implementation="hff_<kind>", **kwargs)``
    after registering; keyword arguments named like :class:`AttentionSettings` fields go to
    :func:`configure_attention` (merged into the current settings), the rest to ``from_pretrained``. Note that
    transformers does not save ``_attn_implementation`` in ``config.json``: pass it at every load."""
    name = _name(kind)
    keys = {f.name for f in fields(AttentionSettings)}
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in keys}
    if settings:
        configure_attention(**vars(replace(_settings, **settings)))
    register_attention()
    if auto_class is None:
        from transformers import AutoModelForCausalLM as auto_class
    return auto_class.from_pretrained(model_name_or_path, attn_implementation=name, **kwargs)


__all__ = [
    "BLOCKSPARSE",
    "LOWRANK",
    "NAMES",
    "AttentionCallStats",
    "AttentionSettings",
    "attention_settings",
    "blocksparse_attention_forward",
    "configure_attention",
    "last_call_stats",
    "load_with_attention",
    "lowrank_attention_forward",
    "mask_structure",
    "model_error_bound",
    "register_attention",
    "set_attention",
]
