"""hff-approx-attention: certified block-sparse attention and an exact flash-style baseline, in Triton.

Loaded by transformers as ``attn_implementation="<org>/hff-approx-attention"`` (it exports
``flash_attn_forward`` with the AttentionInterface signature and ``supports_flash_attn``, so transformers
registers it as-is with the sdpa mask), or directly with ``kernels.get_kernel`` / ``get_local_kernel``.

Settings: a model whose config carries ``hff_attention`` (a dict written by hf_fundamentals' ``set_attention``
or ``--hff_attention``, saved in ``config.json``) runs with its ``eps``, ``block_size`` and ``min_seq_len``, per
model. Otherwise the module-wide settings below apply (``configure``; environment variables give them at import):

* ``mode``: ``"blocksparse"`` (default; ``HFF_ATTENTION_MODE``) or ``"exact"``.
* ``eps``: tolerance on every query's skipped attention mass (``HFF_ATTENTION_EPS``, default 1e-3).
* ``block``: query/key block size (``HFF_ATTENTION_BLOCK``, default 64).
* ``min_seq_len``: below this key length the exact kernel runs (``HFF_ATTENTION_MIN_SEQ_LEN``, default 4096).

Masks: ``None`` (causal per ``is_causal``/``module.is_causal``) or transformers' 4-D bool sdpa mask, recognised
exactly as causal-at-an-offset and/or key padding. Anything else (sliding windows, packed sequences, softcap,
sinks) runs PyTorch's exact sdpa, with a one-time warning, as do CPU tensors unless ``TRITON_INTERPRET=1``.
Nothing here imports anything but torch and triton.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

from ._blocksparse import SparseResult, blocksparse_forward, select_blocks
from ._flash import IO_SLOTS, flash_forward
from ._lowrank import lowrank_forward

__all__ = [
    "IO_SLOTS",
    "SparseResult",
    "blocksparse_forward",
    "configure",
    "flash_attn_forward",
    "flash_forward",
    "lowrank_forward",
    "select_blocks",
    "settings",
    "supports_flash_attn",
]

supports_flash_attn = True
"""Tells transformers (``load_and_register_attn_kernel``) to register ``flash_attn_forward`` as it is."""

logger = logging.getLogger(__name__)
_SETTINGS = {
    "mode": os.environ.get("HFF_ATTENTION_MODE", "blocksparse"),
    "eps": float(os.environ.get("HFF_ATTENTION_EPS", "1e-3")),
    "block": int(os.environ.get("HFF_ATTENTION_BLOCK", "64")),
    "min_seq_len": int(os.environ.get("HFF_ATTENTION_MIN_SEQ_LEN", "4096")),
}
_WARNED: set[str] = set()


def configure(**kwargs) -> dict:
    """Change the module-wide settings (``mode``, ``eps``, ``block``, ``min_seq_len``); returns them all."""
    unknown = set(kwargs) - set(_SETTINGS)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; known: {sorted(_SETTINGS)}")
    if "mode" in kwargs and kwargs["mode"] not in ("blocksparse", "exact"):
        raise ValueError(f"mode must be 'blocksparse' or 'exact'; got {kwargs['mode']!r}")
    if "eps" in kwargs and not 0.0 <= float(kwargs["eps"]) < 1.0:
        raise ValueError(f"eps must lie in [0, 1); got {kwargs['eps']}")
    if "block" in kwargs and (kwargs["block"] < 16 or kwargs["block"] & (kwargs["block"] - 1)):
        raise ValueError(f"block must be a power of two >= 16; got {kwargs['block']}")
    _SETTINGS.update(kwargs)
    return dict(_SETTINGS)


def settings() -> dict:
    """The current settings."""
    return dict(_SETTINGS)


def _settings_for(module: torch.nn.Module) -> dict:
    """The settings of a call: the module config's ``hff_attention`` where present, else the module-wide ones."""
    per_model = getattr(getattr(module, "config", None), "hff_attention", None)
    if not per_model:
        return _SETTINGS
    out = dict(_SETTINGS)
    for ours, theirs in (("eps", "eps"), ("block", "block_size"), ("min_seq_len", "min_seq_len")):
        if theirs in per_model:
            out[ours] = per_model[theirs]
    return out


def _warn_once(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        logger.warning("hff-approx-attention: %s; running exact torch sdpa for such calls", reason)


def _parse_mask(mask: torch.Tensor, n_q: int, n_k: int) -> tuple[bool, int, torch.Tensor | None] | None:
    """A 4-D sdpa mask as (causal, offset, key_padding_mask) when it is exactly that structure, else None."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != (n_q, n_k):
        return None
    m = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0
    pos_q = torch.arange(n_q, device=m.device)[:, None]
    pos_k = torch.arange(n_k, device=m.device)[None, :]
    kp = m.any(dim=1)  # a key no query sees is treated as padding
    if bool((m == kp[:, None, :]).all()):
        return False, 0, None if bool(kp.all()) else kp
    last = int(torch.nonzero(m[0, -1]).max()) if bool(m[0, -1].any()) else -1
    for offset in dict.fromkeys((n_k - n_q, last - (n_q - 1))):
        causal = pos_k <= pos_q + offset
        if bool((m == (causal[None] & kp[:, None, :])).all()):
            return True, offset, None if bool(kp.all()) else kp
    return None


def _sdpa(query, key, value, mask, scaling, causal):
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=bool(causal and mask is None), scale=scaling
    )
    return out


def flash_attn_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers AttentionInterface function: query [B, H, n_q, D], key/value [B, H_kv, n_k, D]; returns
    ([B, n_q, H, D], None). Runs the configured kernel; per-call statistics land on ``module._hff_kernel_stats``."""
    if dropout and module.training:
        raise ValueError(
            "hff-approx-attention has no attention dropout: set attention_dropout=0 in the config"
        )
    n_q, n_k = query.shape[2], key.shape[2]
    scale = query.shape[-1] ** -0.5 if scaling is None else float(scaling)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    reason = None
    for name in ("softcap", "s_aux", "position_bias"):
        if kwargs.get(name) is not None:
            reason = f"{name} is not supported"
    window = kwargs.get("sliding_window")
    if attention_mask is None and window is not None and n_k > window:
        reason = "sliding windows are not supported"  # with a mask, the window is in it and checked there
    padding = None
    offset = n_k - n_q
    if reason is None:
        if attention_mask is None:
            causal = bool(causal) and n_q > 1
            if causal and n_q != n_k:
                reason = "a causal call without a mask whose query and key lengths differ"
        else:
            parsed = _parse_mask(attention_mask, n_q, n_k)
            if parsed is None:
                reason = "a mask that is not causal-at-an-offset plus key padding (packed or banded)"
            else:
                causal, offset, padding = parsed
    if reason is None and not query.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        reason = "Triton kernels need a CUDA device (or TRITON_INTERPRET=1)"
    if reason is not None:
        _warn_once(reason)
        module._hff_kernel_stats = {"path": "sdpa", "reason": reason}
        out = _sdpa(query, key, value, attention_mask, scale, causal)
        return out.transpose(1, 2).contiguous(), None
    settings = _settings_for(module)
    if settings["mode"] == "exact" or n_k < settings["min_seq_len"] or settings["eps"] == 0.0:
        out = flash_forward(
            query, key, value, scale=scale, causal=causal, key_padding_mask=padding, offset=offset
        )
        module._hff_kernel_stats = {"path": "exact"}
    else:
        res = blocksparse_forward(
            query, key, value, scale=scale, eps=settings["eps"], causal=causal, key_padding_mask=padding,
            offset=offset, block=settings["block"],
        )  # fmt: skip
        out = res.output
        module._hff_kernel_stats = {
            "path": "blocksparse",
            "max_mass_bound": res.mass_bound.amax(),
            "kept_fraction": res.kept_fraction,
        }
    return out.transpose(1, 2).contiguous(), None
