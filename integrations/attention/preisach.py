"""Preisach attention as a transformers ``AttentionInterface`` function, routed per module (hybrid models).

See :mod:`hf_fundamentals.integrations.attention.preisach_model` for the model transform, the settings and
save/reload; this module holds the function, its registration and the constants both share."""

from __future__ import annotations

import logging
import math

from torch import Tensor, nn

from hf_fundamentals.attention.lowrank import compute_dtype
from hf_fundamentals.attention.preisach import PreisachAttention, preisach_drive
from hf_fundamentals.integrations.attention.masks import attention_plan

logger = logging.getLogger(__name__)

PREISACH = "hff_preisach"
"""The registered ``attn_implementation`` name."""
CONFIG_KEY = "hff_preisach"
"""The config attribute (saved in ``config.json``) holding the :func:`add_preisach` settings."""
SUBMODULE = "preisach"
"""Name of the ``PreisachAttention`` submodule on a chosen attention module."""
SETTINGS_VERSION = 1
DRIVE_SOURCES = ("key", "value")
"""``"key"``: ``u = <k_t, w_h>·scaling`` (our design; RoPE-rotated keys in RoPE models); ``"value"``:
``u = <v_t, w_h>·scaling`` (values carry no rotation: position-free, rate-independent)."""


# ------------------------------------------------------------------------------------------- the function
def _settings_of(module: nn.Module) -> dict | None:
    config = getattr(module, "config", None)
    settings = getattr(config, CONFIG_KEY, None)
    return settings if isinstance(settings, dict) else None


def _fallback_function(name: str):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == PREISACH:  # never route to ourselves
        return sdpa_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(name, sdpa_attention_forward)


def _layer_name(module: nn.Module) -> str:
    idx = getattr(module, "layer_idx", None)
    return f"layer {idx}" if idx is not None else type(module).__name__


def _preisach_plan(
    module: nn.Module, query: Tensor, key: Tensor, attention_mask: Tensor | None, kwargs: dict
) -> tuple[int, Tensor | None]:
    """``(n_keep, key_padding_mask)``: keep the first ``n_keep`` keys, queries aligned to their end. Raises
    ``ValueError`` for everything Preisach attention cannot run (module docstring)."""
    where = f"{PREISACH} ({_layer_name(module)})"
    plan = attention_plan(module, query, key, attention_mask, True, kwargs)
    if isinstance(plan, str):
        raise ValueError(
            f"{where}: {plan}. Preisach attention handles causal attention with key padding only; "
            "run this layer with softmax attention (leave it out of add_preisach's layers)"
        )
    causal, n_keep, kpm = plan
    n_q = query.shape[2]
    if causal or attention_mask is None:  # mask None with n_q == 1: a decode step sees every key
        return n_keep, kpm
    # Every query row sees the same keys. One query (a decode step): the causal row itself; drop the trailing
    # keys no row sees (static cache slots past the current position) so the query aligns to its own key.
    if n_q == 1:
        if kpm is not None:
            seen = kpm.any(0).nonzero()
            n_keep = int(seen[-1]) + 1 if seen.numel() else n_keep
            kpm = kpm[:, :n_keep]
            kpm = None if bool(kpm.all()) else kpm
        return n_keep, kpm
    # Several queries seeing identical rows: causal only if no query sees a key past its own position (e.g. a
    # one-token sequence followed by right padding); otherwise the mask is bidirectional.
    offset = key.shape[2] - n_q
    if kpm is not None and not bool(kpm[:, offset + 1 :].any()):
        return n_keep, kpm
    raise ValueError(
        f"{where}: the attention mask is bidirectional (every query sees the same keys, including later ones); "
        "Preisach attention is causal by construction and cannot serve encoder / bidirectional attention"
    )


def preisach_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """``AttentionInterface`` function ``"hff_preisach"``: q ``[b, H, n_q, d]``, k/v ``[b, H_kv, n_k, d]`` (GQA
    not expanded) -> ``([b, n_q, H, d_v] contiguous, None)``.

    A module with a ``preisach`` submodule runs it (module docstring: masks, decode); any other module runs
    the model's previous implementation (``config.hff_preisach["attn_fallback"]``) with the same arguments."""
    pal = getattr(module, SUBMODULE, None)
    settings = _settings_of(module)
    if not isinstance(pal, PreisachAttention):
        if settings is None:
            raise ValueError(
                f"attn_implementation={PREISACH!r} on a model without Preisach layers (no config.{CONFIG_KEY}): "
                "call add_preisach(model, ...) or load a saved Preisach model with load_preisach_model(path)"
            )
        idx = getattr(module, "layer_idx", None)
        if idx is not None and idx in settings.get("layers", ()):
            raise ValueError(
                f"layer {idx} is a Preisach layer in config.{CONFIG_KEY} but its attention module has no "
                f"'{SUBMODULE}' parameters (a plain from_pretrained drops them): load the model with "
                "hf_fundamentals.integrations.attention.preisach.load_preisach_model(path)"
            )
        fn = _fallback_function(settings.get("attn_fallback", "sdpa"))
        if is_causal is not None:
            kwargs["is_causal"] = is_causal
        return fn(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if not causal:
        raise ValueError(
            f"{PREISACH} ({_layer_name(module)}): the module is not causal (is_causal=False). Preisach attention "
            "is causal by construction (a relay's state depends on the past only) and cannot serve bidirectional "
            "or encoder attention; keep softmax attention in this layer"
        )
    if dropout and dropout > 0:
        raise ValueError(
            f"{PREISACH} has no attention weights to drop (got dropout={dropout}); set the model config's "
            "attention_dropout to 0"
        )
    n_keep, kpm = _preisach_plan(module, query, key, attention_mask, kwargs)
    if n_keep < key.shape[2]:
        key, value = key[:, :, :n_keep], value[:, :, :n_keep]
    drive_signal = None
    if settings is not None and settings.get("drive_source", "key") == "value":
        cdt = compute_dtype(query.dtype)
        s = 1.0 / math.sqrt(query.shape[-1]) if scaling is None else float(scaling)
        drive_signal = preisach_drive(value.to(cdt), pal.drive.to(cdt), heads=query.shape[1], scaling=s)
    out = pal(
        query, key, value, key_padding_mask=kpm, scaling=scaling, causal=True, drive_signal=drive_signal
    )
    return out.transpose(1, 2).contiguous(), None


# ------------------------------------------------------------------------------------------- registration
def register_preisach() -> str:
    """Register ``"hff_preisach"`` in ``AttentionInterface`` and, with ``sdpa_mask``, in
    ``AttentionMaskInterface`` (idempotent, class-wide). Returns the name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(PREISACH, preisach_attention_forward)
    AttentionMaskInterface.register(PREISACH, sdpa_mask)
    return PREISACH


def _resolve_fallback(model, attn_fallback: str | None) -> str:
    """The implementation the non-Preisach layers keep: it must take the sdpa mask format."""
    from transformers import AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    masks = AttentionMaskInterface._global_mapping
    if attn_fallback is not None:
        if attn_fallback == PREISACH or masks.get(attn_fallback) is not sdpa_mask:
            compatible = sorted(k for k, v in masks.items() if v is sdpa_mask and k != PREISACH)
            raise ValueError(
                f"attn_fallback={attn_fallback!r}: the non-Preisach layers share the {PREISACH} mask (sdpa "
                f"format), so their implementation must use it too; accepted: {compatible}"
            )
        return attn_fallback
    current = model.config._attn_implementation
    if current == PREISACH:  # add_preisach on a model already switched: keep its saved fallback
        return (_settings_of(model) or {}).get("attn_fallback", "sdpa")
    if masks.get(current) is sdpa_mask:
        return current
    logger.warning(
        "add_preisach: the model's attention %r needs another mask format than %s; the non-Preisach layers "
        "will run 'sdpa' (pass attn_fallback= to choose)",
        current,
        PREISACH,
    )
    return "sdpa"
