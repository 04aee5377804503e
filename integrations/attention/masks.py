"""Recognising the attention masks transformers hands an ``AttentionInterface`` function, for the hf_fundamentals
backends (approximate attention, Preisach): which calls are causal or key-padding only, and which must fall back.

Each backend is registered in ``AttentionMaskInterface`` with transformers' ``sdpa_mask`` (without that,
transformers hands the attention ``attention_mask=None`` even for padded batches). A function then gets ``None``
or a 4-D ``[batch, 1, n_q, n_k]`` bool mask (a float 0/-inf mask is accepted too); :func:`attention_plan` converts
it to the references' ``(causal, n_keep, key_padding_mask)`` by an exact comparison with the mask it would build:

* ``None``: causal iff ``is_causal`` (kwarg, else ``module.is_causal``) and ``n_q > 1``, exactly like sdpa,
  including sdpa's upper-left crop of the keys to ``n_q`` (empty static-cache prefill). Decode steps
  (``n_q == 1``) see every key.
* causal, aligned at any offset ``j <= i + offset`` (dynamic cache: the end of the keys; static cache: keys past
  the current position are dropped), AND a key-padding mask: handled (left/right padding, decode with a padded
  cache).
* key-padding only (every row identical, bidirectional modules): handled, non-causal.
* anything else is a reason string for an exact fall-back: sliding-window bands, packed sequences
  (block-diagonal masks, ``position_ids`` restarts with no mask, ``cu_seq_lens_q`` with several documents),
  arbitrary additive or per-head masks, ``softcap``, attention sinks (``s_aux``), ``position_bias`` and paged
  caches.
"""

from __future__ import annotations

import torch
from torch import Tensor

_mask_memo: tuple | None = None
"""(last mask tensor, (n_q, n_k), its structure): the mask is built once per forward and shared by the layers."""


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


def attention_plan(module, query, key, attention_mask, is_causal, kwargs):
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
