"""hf_fundamentals' attention backends in transformers' ``AttentionInterface``, registered when this package is
imported: the approximate references (``hff_blocksparse``, ``hff_lowrank``) with per-model settings, Preisach
attention (``hff_preisach``, hybrid per layer), page-sparse decoding (``hff_sparse_decode``) and the mask recognition they share.

Modules: ``flags`` (``AttentionFlags``), ``approx``, ``masks``, ``preisach`` (the function), ``preisach_model``
(``add_preisach``, ``load_preisach_model``), ``technique``. The references are :mod:`hf_fundamentals.attention`;
the Triton kernels are Hub kernel repos under ``kernels/``."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "BLOCKSPARSE": "approx",
    "LOWRANK": "approx",
    "NAMES": "approx",
    "AttentionCallStats": "approx",
    "AttentionSettings": "approx",
    "AttentionSettingsCallback": "approx",
    "attention_settings": "approx",
    "blocksparse_attention_forward": "approx",
    "configure_attention": "approx",
    "last_call_stats": "approx",
    "load_with_attention": "approx",
    "lowrank_attention_forward": "approx",
    "model_error_bound": "approx",
    "register_attention": "approx",
    "set_attention": "approx",
    "set_attention_settings": "approx",
    "settings_of": "approx",
    "attention_plan": "masks",
    "mask_structure": "masks",
    "PREISACH": "preisach",
    "preisach_attention_forward": "preisach",
    "register_preisach": "preisach",
    "add_preisach": "preisach_model",
    "attention_modules": "preisach_model",
    "load_preisach_model": "preisach_model",
    "preisach_layers": "preisach_model",
    "set_preisach_temperature": "preisach_model",
    "AttentionFlags": "flags",
    "SPARSE_DECODE": "sparse_decode",
    "SparseDecodeCache": "sparse_decode",
    "SparseDecodeSettings": "sparse_decode",
    "register_sparse_decode": "sparse_decode",
    "set_sparse_decode": "sparse_decode",
    "set_sparse_decode_settings": "sparse_decode",
    "sparse_decode_attention_forward": "sparse_decode",
    "sparse_stats": "sparse_decode",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)


def _register_on_import() -> None:
    """Importing this package makes ``attn_implementation="hff_blocksparse" | "hff_lowrank" | "hff_preisach" | "hff_sparse_decode"``
    resolve in ``from_pretrained`` (they are registered in transformers' ``AttentionInterface`` and
    ``AttentionMaskInterface``; idempotent)."""
    from hf_fundamentals.integrations.attention.approx import register_attention
    from hf_fundamentals.integrations.attention.preisach import register_preisach
    from hf_fundamentals.integrations.attention.sparse_decode import register_sparse_decode

    register_attention()
    register_preisach()
    register_sparse_decode()


_register_on_import()
