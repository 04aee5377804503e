"""Preisach attention (:class:`~hf_fundamentals.attention.preisach.PreisachAttention`) inside transformers models.

Usage::

    from hf_fundamentals.integrations.attention.preisach import add_preisach, load_preisach_model

    model = AutoModelForCausalLM.from_pretrained(repo)               # any AttentionInterface model (sdpa)
    add_preisach(model, layers=[0, 5], n_relays=32, variant="density")  # hybrid: Preisach in layers 0 and 5
    ...train (Trainer or a plain loop: the Preisach parameters are ordinary model parameters)...
    model.save_pretrained(out)                                      # weights + config.hff_preisach
    model = load_preisach_model(out)                                # same logits, bit for bit

**What** :func:`add_preisach` **does.** For each chosen decoder layer it attaches a ``PreisachAttention``
(``H`` query heads, ``head_dim``, ``n_relays`` relays per head) as the submodule ``preisach`` of the layer's
attention module (``model.model.layers[i].self_attn.preisach``), so its parameters (``drive``, ``alpha``,
``gap``, ``density`` and, for ``variant="value"``, ``gate``) are in ``state_dict``, in ``model.parameters()``
(the optimizer trains them), and move with ``.to()``. It registers ``"hff_preisach"`` (no ``/``) in
``AttentionInterface`` and, with ``sdpa_mask``, in ``AttentionMaskInterface`` (so padding reaches it), writes the
settings to ``config.hff_preisach`` and switches the model to ``attn_implementation="hff_preisach"``.

**Per-module routing (hybrid mode).** transformers has one implementation name per model: every attention
layer calls ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``. So :func:`preisach_attention_forward`
routes per module: a module with a ``preisach`` submodule runs Preisach attention on the layer's own
(projected, RoPE-rotated) query/key/value; any other module calls the implementation the model had before
(``config.hff_preisach["attn_fallback"]``, e.g. ``"sdpa"``), unchanged. The fallback must consume the sdpa mask
format (a 4-D bool mask or ``None``): ``"sdpa"``, ``"hff_blocksparse"``, ``"hff_lowrank"``; a model on
``"eager"`` or a flash implementation gets ``"sdpa"`` (logged). Calling ``model.set_attn_implementation("sdpa")``
afterwards turns every layer back to softmax (the Preisach parameters stay, unused); ``set_attn_implementation(
PREISACH)`` turns them on again.

**Masks.** A Preisach layer is causal by construction. The mask is read with the same recognition as the
approximate attention (:func:`~hf_fundamentals.integrations.attention.masks.mask_structure`):
``None`` (causal, unpadded), causal at any offset AND key padding (left or right padding, decode over a padded
cache, static caches: the keys no query sees are dropped) are handled; padded tokens are no relay events and
their output rows are 0. Refused with ``ValueError`` (never a silent fall-back, because Preisach is not an
approximation of softmax): non-causal modules (``is_causal=False``, encoders) and bidirectional masks, packed
sequences (block-diagonal masks, restarting ``position_ids``, ``cu_seq_lens_q``), sliding-window bands longer
than the window (set ``config.sliding_window=None`` for long Mistral contexts), per-head or additive masks,
``softcap``, attention sinks, ``position_bias``, paged caches, and ``dropout > 0`` (set ``attention_dropout=0``).

**Decode with a KV cache.** The layer still writes its keys/values to the cache, and each step recomputes the
relays over the whole cached key sequence, with the queries aligned to the END of the keys (the reference's
convention): O(n·R) per new token, exact, no extra state. (The reference's O(1) decode state,
``PreisachAttention.step``, is not wired in: the cache holds every key anyway.)

**Save / reload.** ``save_pretrained`` stores the Preisach parameters with the other weights
(``model.layers.<i>.self_attn.preisach.<name>``) and ``config.hff_preisach`` (the settings dict of
:func:`add_preisach`: layers, n_relays, variant, relay_mode, temperature, threshold_range, seed, eps,
attn_fallback) in ``config.json``. A plain ``from_pretrained`` builds the base architecture and drops the
``preisach`` keys as unexpected (it logs them); :func:`load_preisach_model` loads the base model, re-applies
:func:`add_preisach` with the saved settings and copies the saved Preisach tensors in exactly (same logits).
Loading with ``from_pretrained(..., attn_implementation="hff_preisach")`` alone fails at the first forward
with a message pointing here. ``temperature`` is a module attribute, not a weight: change it with
:func:`set_preisach_temperature` so the saved config follows an annealing schedule.

**Positional encoding.** transformers applies RoPE to q/k before the attention function, so with the default
``drive_source="key"`` the drive ``u = <k_t, w_h>·scaling`` sees rotated keys: it depends on absolute
positions, rate-independence (arXiv 2605.23603) does not hold exactly, and a left-padded batch matches the
unpadded rows only with ``position_ids`` that skip the padding (``generate`` passes them; a plain forward does
not). ``drive_source="value"`` drives the relays from the (unrotated) values instead: position-free.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from hf_fundamentals.attention.preisach import VARIANTS, PreisachAttention
from hf_fundamentals.attention.preisach.relays import RELAY_MODES
from hf_fundamentals.integrations.attention.preisach import (
    CONFIG_KEY,
    DRIVE_SOURCES,
    PREISACH,
    SETTINGS_VERSION,
    SUBMODULE,
    _resolve_fallback,
    register_preisach,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- the transform
def attention_modules(model) -> dict[int, nn.Module]:
    """``{layer_idx: attention module}`` for the decoder self-attention modules of ``model``."""
    found: dict[int, nn.Module] = {}
    for name, module in model.named_modules():
        idx = getattr(module, "layer_idx", None)
        if name.endswith("self_attn") and isinstance(idx, int):
            if idx in found:
                raise ValueError(
                    f"two self-attention modules claim layer_idx={idx} (an encoder-decoder or multimodal model?); "
                    "add_preisach supports decoder-only language models"
                )
            found[idx] = module
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no '*.self_attn' modules with a layer_idx: add_preisach supports "
            "decoder-only models whose attention goes through AttentionInterface (Llama, Qwen2/3, Mistral, ...)"
        )
    return found


def preisach_layers(model) -> dict[int, PreisachAttention]:
    """``{layer_idx: PreisachAttention}`` of the layers :func:`add_preisach` converted."""
    return {
        i: getattr(m, SUBMODULE)
        for i, m in sorted(attention_modules(model).items())
        if isinstance(getattr(m, SUBMODULE, None), PreisachAttention)
    }


def _resolve_layers(layers: str | Iterable[int], n_layers: int) -> list[int]:
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of layer indices; got {layers!r}")
        return list(range(n_layers))
    chosen = list(layers)
    if not chosen:
        raise ValueError("layers is empty: choose at least one layer (or 'all')")
    for i in chosen:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers:
            raise ValueError(
                f"layers must be integer indices in [0, {n_layers}) (the model has {n_layers} decoder layers); "
                f"got {i!r} in {chosen!r}"
            )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layers has duplicates: {chosen!r}")
    return sorted(chosen)


def add_preisach(
    model,
    layers: str | Iterable[int] = "all",
    n_relays: int = 32,
    variant: str = "density",
    *,
    relay_mode: str = "ste",
    drive_source: str = "key",
    temperature: float = 0.1,
    threshold_range: tuple[float, float] = (-2.0, 2.0),
    eps: float = 1e-6,
    seed: int = 0,
    attn_fallback: str | None = None,
):
    """Give the chosen decoder layers of ``model`` Preisach attention (module docstring); returns ``model``.

    ``layers``: ``"all"`` or decoder-layer indices (hybrid mode). ``n_relays``, ``variant`` ("density" or
    "value"), ``relay_mode`` ("ste", "soft" or "hard"), ``temperature``, ``threshold_range``, ``eps``: the
    ``PreisachAttention`` settings; ``drive_source`` "key" or "value" (:data:`DRIVE_SOURCES`); layer ``i`` is initialised with seed ``seed + i``. ``attn_fallback``: the
    implementation of the other layers (default: the model's current one). The new parameters take the device
    and dtype of the attention module's first parameter (``q_proj.weight``). The settings go to ``config.hff_preisach``."""
    if not model._can_set_attn_implementation():
        raise ValueError(
            f"{type(model).__name__} does not dispatch attention through AttentionInterface, so a registered "
            "function cannot replace it"
        )
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if relay_mode not in RELAY_MODES:
        raise ValueError(f"relay_mode must be one of {RELAY_MODES}; got {relay_mode!r}")
    if drive_source not in DRIVE_SOURCES:
        raise ValueError(f"drive_source must be one of {DRIVE_SOURCES}; got {drive_source!r}")
    modules = attention_modules(model)
    existing = [i for i, m in modules.items() if getattr(m, SUBMODULE, None) is not None]
    if existing:
        raise ValueError(
            f"layers {existing} already have a '{SUBMODULE}' submodule: add_preisach was applied to this model"
        )
    text_config = model.config.get_text_config()
    n_layers = getattr(text_config, "num_hidden_layers", None) or len(modules)
    chosen = _resolve_layers(layers, n_layers)
    missing = [i for i in chosen if i not in modules]
    if missing:
        raise ValueError(f"no self-attention module found for layers {missing}")
    register_preisach()
    fallback = _resolve_fallback(model, attn_fallback)
    heads = text_config.num_attention_heads
    lo, hi = (float(x) for x in threshold_range)
    for i in chosen:
        module = modules[i]
        head_dim = getattr(module, "head_dim", None) or text_config.hidden_size // heads
        pal = PreisachAttention(
            heads, head_dim, n_relays, variant=variant, relay_mode=relay_mode, temperature=temperature,
            eps=eps, threshold_range=(lo, hi), seed=seed + i,
        )  # fmt: skip
        ref = next(module.parameters(), None)
        if ref is not None:
            pal = pal.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        module.add_module(SUBMODULE, pal)
    settings = {
        "version": SETTINGS_VERSION,
        "layers": chosen,
        "n_relays": int(n_relays),
        "variant": variant,
        "relay_mode": relay_mode,
        "drive_source": drive_source,
        "temperature": float(temperature),
        "threshold_range": [lo, hi],
        "eps": float(eps),
        "seed": int(seed),
        "attn_fallback": fallback,
    }
    setattr(model.config, CONFIG_KEY, settings)
    if text_config is not model.config:
        setattr(text_config, CONFIG_KEY, settings)
    model.set_attn_implementation(PREISACH)
    return model


def set_preisach_temperature(model, temperature: float) -> None:
    """Set the relay temperature of every Preisach layer and in ``config.hff_preisach`` (so a saved model keeps
    it); for annealing schedules (``hf_fundamentals.attention.preisach.geometric_temperature``)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    pals = preisach_layers(model)
    if not pals:
        raise ValueError("the model has no Preisach layers (call add_preisach first)")
    for pal in pals.values():
        pal.temperature = float(temperature)
    settings = getattr(model.config, CONFIG_KEY)
    settings["temperature"] = float(temperature)


# ----------------------------------------------------------------------------------------------- reload
_HUB_KWARGS = ("cache_dir", "revision", "token", "subfolder", "local_files_only", "force_download")


def _checkpoint_tensors(path, hub_kwargs: dict) -> dict[str, Tensor]:
    """The tensors of ``path`` (local dir or Hub id; single or sharded safetensors) whose key contains
    ``.preisach.``."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    index = cached_file(path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False,
                        **hub_kwargs)  # fmt: skip
    if index is not None:
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        shards = sorted({v for k, v in weight_map.items() if f".{SUBMODULE}." in k})
    else:
        shards = ["model.safetensors"]
    out: dict[str, Tensor] = {}
    for shard in shards:
        file = cached_file(path, shard, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if file is None:
            raise ValueError(f"{path}: no {shard} (load_preisach_model reads safetensors checkpoints)")
        with safe_open(file, framework="pt") as f:
            for k in f.keys():
                if f".{SUBMODULE}." in k:
                    out[k] = f.get_tensor(k)
    return out


def load_preisach_model(path, *, auto_class=None, **kwargs):
    """Load a model saved after :func:`add_preisach`: ``auto_class.from_pretrained(path, **kwargs)`` (default
    ``AutoModelForCausalLM``; the base architecture, which drops the Preisach weights), :func:`add_preisach`
    with ``config.hff_preisach``, then the saved Preisach tensors copied in exactly. ``attn_implementation`` in
    ``kwargs`` sets the non-Preisach layers' implementation (default: the saved ``attn_fallback``). transformers'
    load report lists the ``...preisach...`` keys as UNEXPECTED (expected: they are loaded afterwards); a
    checkpoint that lacks some of them raises ``ValueError``. Safetensors checkpoints, single or sharded."""
    from transformers import AutoConfig

    hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    config = kwargs.get("config")
    if config is None:
        config = AutoConfig.from_pretrained(path, **hub_kwargs)
    settings = getattr(config, CONFIG_KEY, None)
    if not isinstance(settings, dict):
        raise ValueError(
            f"{path}: config has no '{CONFIG_KEY}' settings; it was not saved after add_preisach"
        )
    settings = dict(settings)
    version = settings.pop("version", SETTINGS_VERSION)
    if version != SETTINGS_VERSION:
        raise ValueError(
            f"{path}: {CONFIG_KEY} version {version} is not supported (this code reads {SETTINGS_VERSION})"
        )
    fallback = settings.pop("attn_fallback", "sdpa")
    impl = kwargs.pop("attn_implementation", None)
    if impl is None or impl == PREISACH:
        impl = fallback
    if auto_class is None:
        from transformers import AutoModelForCausalLM as auto_class
    register_preisach()
    model = auto_class.from_pretrained(path, attn_implementation=impl, **kwargs)
    settings["threshold_range"] = tuple(settings["threshold_range"])
    add_preisach(model, **settings, attn_fallback=impl)
    own = {k: v for k, v in model.state_dict().items() if f".{SUBMODULE}." in k}
    saved = _checkpoint_tensors(path, hub_kwargs)
    params = dict(model.named_parameters())
    missing = []
    with torch.no_grad():
        for name in own:
            key = (
                name
                if name in saved
                else next((k for k in saved if k.endswith("." + name) or name.endswith("." + k)), None)
            )
            if key is None:
                missing.append(name)
                continue
            target = params[name]
            if saved[key].shape != target.shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(saved[key].shape)}, expected {tuple(target.shape)}"
                )
            target.copy_(saved[key])
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks the Preisach weights {missing}")
    return model


__all__ = [
    "add_preisach",
    "attention_modules",
    "load_preisach_model",
    "preisach_layers",
    "set_preisach_temperature",
]
