"""The attention backends' hooks: their transformers registration, the ``attn_implementation`` the flags select,
and the callback that writes the flags' settings into the trained model's config."""

from __future__ import annotations

from typing import Any

from hf_fundamentals.integrations.attention.flags import AttentionFlags
from hf_fundamentals.integrations.registry import Technique


class AttentionTechnique(Technique):
    name = "attention"
    title = "attention backends (approximate, Preisach)"
    flags = AttentionFlags
    hf_names = (
        ("attention", "hff_blocksparse"),
        ("attention", "hff_lowrank"),
        ("attention", "hff_preisach"),
        ("attention", "hff_sparse_decode"),
    )

    def describe(self, args: Any) -> str:
        knob = (
            f"eps {args.attention_eps:g}"
            if args.hff_attention == "blocksparse"
            else args.attention_feature_map
        )
        return f"attention {args.hff_attention} ({knob}, exact below {args.attention_min_seq_len} keys)"

    def register_hf(self) -> None:
        from hf_fundamentals.integrations.attention.approx import register_attention
        from hf_fundamentals.integrations.attention.preisach import register_preisach
        from hf_fundamentals.integrations.attention.sparse_decode import register_sparse_decode

        register_attention()
        register_preisach()
        register_sparse_decode()

    def model_init_kwargs(self, args: Any) -> dict[str, Any]:
        return {"attn_implementation": args.attn_implementation()}

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        from hf_fundamentals.integrations.attention.approx import AttentionSettingsCallback

        return [AttentionSettingsCallback(args.hff_attention, args.attention_settings())]


TECHNIQUE = AttentionTechnique()
