"""``--hff_attention`` and the ``--attention_*`` flags (approximate attention backends for the model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class AttentionFlags(FlagGroup):
    """Switch the trained model to an hf_fundamentals attention backend, with its settings in the model config."""

    switch = "hff_attention"
    switch_hint = "add --hff_attention blocksparse (or lowrank)"

    hff_attention: str = field(
        default="none",
        metadata={
            "help": "Approximate attention: 'blocksparse' (exact softmax over the key blocks a bound "
            "cannot prove negligible; skipped mass <= --attention_eps, certified error kept per call) or "
            "'lowrank' (feature-map attention, no bound); 'none'. Sets attn_implementation to hff_<kind>; calls "
            "with fewer keys than --attention_min_seq_len, and masks it does not handle, run exact sdpa."
        },
    )
    attention_eps: float = field(
        default=1e-3,
        metadata={"help": "blocksparse: bound on the skipped attention mass per query, in [0, 1]."},
    )
    attention_block_size: int = field(default=64, metadata={"help": "blocksparse: key/query block size."})
    attention_min_seq_len: int = field(
        default=4096,
        metadata={"help": "Key length below which every call is exact sdpa (0: always approximate)."},
    )
    attention_feature_map: str = field(
        default="taylor2", metadata={"help": "lowrank: 'taylor2' (degree-2 Taylor) or 'random' (FAVOR+)."}
    )
    attention_rank: int | None = field(
        default=None,
        metadata={"help": "lowrank: number of random features (default 256; taylor2 ignores it)."},
    )

    def check_flags(self) -> None:
        if self.hff_attention == "none":
            return
        from hf_fundamentals.integrations.attention.approx import NAMES

        if self.hff_attention not in NAMES:
            raise ValueError(f"--hff_attention {self.hff_attention!r}; accepted: none, {', '.join(NAMES)}")
        self.attention_settings()  # bad values fail now, before the model loads

    def attention_settings(self):
        """The :class:`~hf_fundamentals.integrations.attention.approx.AttentionSettings` of these flags (None
        without --hff_attention); they go into the model's config (``config.hff_attention``), per model."""
        if self.hff_attention == "none":
            return None
        from hf_fundamentals.integrations.attention.approx import AttentionSettings

        return AttentionSettings(
            eps=self.attention_eps, block_size=self.attention_block_size, min_seq_len=self.attention_min_seq_len,
            feature_map=self.attention_feature_map, rank=self.attention_rank,
        )  # fmt: skip

    def attn_implementation(self) -> str | None:
        """The ``attn_implementation`` name --hff_attention selects (None without it)."""
        if self.hff_attention == "none":
            return None
        from hf_fundamentals.integrations.attention.approx import NAMES

        return NAMES[self.hff_attention]
