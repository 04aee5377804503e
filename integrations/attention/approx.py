"""The :mod:`hf_fundamentals.attention` references as transformers attention implementations.

Two names are registered (no ``/``: a slash means a Hub kernel; no ``flash``/``sdpa`` substrings, which
transformers tests for):

* ``"hff_blocksparse"``: :func:`~hf_fundamentals.attention.blocksparse_attention`, exact softmax over the key
  blocks that cannot be certified negligible; the skipped attention mass of every query is ``<= eps`` and the
  per-call certified bound on ``|output − exact|`` is kept (see *Statistics*). ``eps=0`` is exact.
* ``"hff_lowrank"``: :func:`~hf_fundamentals.attention.lowrank_attention` (feature-map attention, no bound).

Usage (settings are per model: they live in ``model.config.hff_attention`` and travel with ``save_pretrained``)::

    from hf_fundamentals.integrations.attention import set_attention

    set_attention(model, "blocksparse", eps=1e-3, block_size=64, min_seq_len=4096)
    # or: from_pretrained(..., attn_implementation="hff_blocksparse"), then set_attention_settings(model, eps=...)

``min_seq_len`` (default 4096, HyperAttention's threshold, arXiv 2310.05869 §4): a call whose key length is
below it runs transformers' exact ``sdpa_attention_forward`` instead, so short prompts and most fine-tuning
batches are exact. A model whose config carries no settings runs with the defaults of :class:`AttentionSettings`.

**Masks** are recognised by :mod:`.masks`; what it cannot express as causal + key padding falls back to exact
sdpa with a one-time ``logger.warning`` giving the reason.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor
from transformers import TrainerCallback

from hf_fundamentals.attention import FEATURE_MAPS, blocksparse_attention, lowrank_attention
from hf_fundamentals.integrations.attention.masks import attention_plan

logger = logging.getLogger(__name__)

BLOCKSPARSE = "hff_blocksparse"
LOWRANK = "hff_lowrank"
NAMES = {"blocksparse": BLOCKSPARSE, "lowrank": LOWRANK}
"""Short kind -> registered ``attn_implementation`` name."""


CONFIG_KEY = "hff_attention"
"""The model-config attribute holding the settings (a dict of :class:`AttentionSettings` fields)."""


@dataclass(frozen=True)
class AttentionSettings:
    """Parameters of ``hff_blocksparse`` (``eps``, ``block_size``), ``hff_lowrank`` (``feature_map``, ``rank``,
    ``chunk_size``, ``seed``) and the exact-fallback threshold ``min_seq_len`` (key length below which sdpa runs;
    0 forces the approximate path). Validated on construction."""

    eps: float = 1e-3
    block_size: int = 64
    min_seq_len: int = 4096
    feature_map: str = "taylor2"
    rank: int | None = None
    chunk_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must lie in [0, 1]; got {self.eps}")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1; got {self.block_size!r}")
        if self.min_seq_len < 0:
            raise ValueError(f"min_seq_len must be >= 0; got {self.min_seq_len}")
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {FEATURE_MAPS}; got {self.feature_map!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {self.chunk_size}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionSettings:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown attention settings: {sorted(unknown)}")
        return cls(**data)


DEFAULT_SETTINGS = AttentionSettings()
_parsed: dict[tuple, AttentionSettings] = {}


def settings_of(module: torch.nn.Module) -> AttentionSettings:
    """The settings a call on ``module`` runs with: its config's ``hff_attention`` (set by :func:`set_attention`,
    :func:`set_attention_settings`, ``--hff_attention`` or a saved config), else the defaults."""
    raw = getattr(getattr(module, "config", None), CONFIG_KEY, None)
    if not raw:
        return DEFAULT_SETTINGS
    key = tuple(sorted(raw.items()))
    found = _parsed.get(key)
    if found is None:
        found = _parsed[key] = AttentionSettings.from_dict(raw)
    return found


def _configs(model: torch.nn.Module) -> list[Any]:
    """The model's config and every distinct config its modules hold (e.g. a multimodal model's text_config)."""
    seen: dict[int, Any] = {}
    for m in (model, *model.modules()):
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            seen.setdefault(id(cfg), cfg)
    return list(seen.values())


def set_attention_settings(model: torch.nn.Module, **settings: Any) -> AttentionSettings:
    """Merge ``settings`` into ``model``'s attention settings (its config's ``hff_attention``) and return them.
    They are read at every call and saved with the config, so a reloaded model keeps them."""
    current = settings_of(model) if getattr(model, "config", None) is not None else DEFAULT_SETTINGS
    new = AttentionSettings.from_dict({**asdict(current), **settings})
    for cfg in _configs(model):
        setattr(cfg, CONFIG_KEY, asdict(new))
    return new


def configure_attention(*args: Any, **kwargs: Any) -> None:
    """Removed: settings are per model now. Raises with the new spelling."""
    raise TypeError(
        "configure_attention() set process-wide attention settings and was removed: settings are per model. "
        "Use set_attention(model, 'blocksparse', eps=..., min_seq_len=...) or set_attention_settings(model, ...)"
    )


def attention_settings(model: torch.nn.Module | None = None) -> AttentionSettings:
    """The settings ``model`` runs with (the defaults without a model)."""
    return DEFAULT_SETTINGS if model is None else settings_of(model)


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


def _forward(kind, module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout and dropout > 0:
        raise ValueError(
            f"{NAMES[kind]} does not implement attention dropout (got dropout={dropout}); set the model config's "
            "attention_dropout to 0 or use attn_implementation='sdpa'"
        )
    settings = settings_of(module)
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
    plan = attention_plan(module, query, key, attention_mask, is_causal, kwargs)
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
    """Register, merge ``**settings`` into the model's attention settings (:func:`set_attention_settings`), and
    switch ``model`` to ``hff_<kind>`` with ``model.set_attn_implementation``. Returns the name. A model whose
    attention does not go through ``AttentionInterface`` is left unchanged (transformers logs a warning)."""
    name = _name(kind)
    set_attention_settings(model, **settings)
    register_attention()
    model.set_attn_implementation(name)
    return name


def load_with_attention(model_name_or_path, kind: str = "blocksparse", *, auto_class=None, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(model_name_or_path, attn_implementation="hff_<kind>", **kwargs)``
    after registering; keyword arguments named like :class:`AttentionSettings` fields become the model's
    settings, the rest go to ``from_pretrained``. Note that transformers does not save ``_attn_implementation``
    in ``config.json``: pass it at every load (the settings themselves are saved)."""
    name = _name(kind)
    keys = {f.name for f in fields(AttentionSettings)}
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in keys}
    AttentionSettings.from_dict(settings)  # bad values fail before the load
    register_attention()
    if auto_class is None:
        from transformers import AutoModelForCausalLM as auto_class
    model = auto_class.from_pretrained(model_name_or_path, attn_implementation=name, **kwargs)
    if settings:
        set_attention_settings(model, **settings)
    return model


class AttentionSettingsCallback(TrainerCallback):
    """Writes ``--attention_*`` settings into the trained model's config when the trainer is built (the model
    may be loaded by the trainer itself from a name, as TRL's trainers do), and refuses a model that does not run
    the attention the flag selected."""

    def __init__(self, kind: str, settings: AttentionSettings) -> None:
        self.kind = kind
        self.settings = settings

    def _apply(self, model: Any) -> None:
        base = getattr(model, "get_base_model", lambda: model)()  # PEFT wraps the model
        set_attention_settings(base, **asdict(self.settings))
        impl = getattr(base.config, "_attn_implementation", None)
        if impl != NAMES[self.kind]:
            raise ValueError(
                f"--hff_attention {self.kind} but the model runs attn_implementation={impl!r}; load it with "
                f"attn_implementation={NAMES[self.kind]!r} (hff sft does) or call set_attention(model, {self.kind!r})"
            )

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self._apply(model)

    def apply_to_built_trainer(self, trainer: Any) -> None:
        """For ``TrainerExtras.apply`` (the trainer was built before this callback was added)."""
        self._apply(trainer.model)


__all__ = [
    "BLOCKSPARSE",
    "LOWRANK",
    "NAMES",
    "AttentionCallStats",
    "AttentionSettings",
    "AttentionSettingsCallback",
    "CONFIG_KEY",
    "attention_settings",
    "blocksparse_attention_forward",
    "configure_attention",
    "last_call_stats",
    "load_with_attention",
    "lowrank_attention_forward",
    "model_error_bound",
    "register_attention",
    "set_attention",
    "set_attention_settings",
    "settings_of",
]
