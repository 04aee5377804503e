"""``--hff_memft`` and the ``--memft_*`` flags (the MemFT loss for memorizing fine-tunes, arXiv 2605.30260)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class MemorizationFlags(FlagGroup):
    """MemFT: put the loss only on target tokens that are not yet learned; optionally retire learned items."""

    switch = "hff_memft"
    switch_hint = "add --hff_memft ot (or another mode), or drop the MemFT flags"

    hff_memft: str = field(
        default="none",
        metadata={
            "help": "MemFT loss for memorizing fine-tunes (arXiv 2605.30260): 'ot' (loss only on target tokens "
            "with p < threshold; plain mean when none), 'ot_zero_bp' (no gradient when none), 'sw_sliding' "
            "(long passages: window from the first wrong token), 'sw_curriculum' (growing item prefix; needs "
            "--memft_curriculum_epochs); 'sft' (the plain loss through the MemFT trainer: its logging and "
            "--memft_retire_after); 'none': the usual loss."
        },
    )
    memft_threshold: float = field(
        default=0.5, metadata={"help": "Probability above which a target token counts as learned."}
    )
    memft_window: int = field(default=50, metadata={"help": "sw_sliding window (tokens after the anchor)."})
    memft_position_decay_lambda: float | None = field(
        default=None,
        metadata={"help": "OT: decay the k-th hard token of a row by exp(-lambda k/(n-1)) (off)."},
    )
    memft_hysteresis_high: float | None = field(
        default=None,
        metadata={
            "help": "OT hysteresis: a token leaves the loss at p >= this and re-enters below the threshold "
            "(needs a memft_item_id column)."
        },
    )
    memft_skip_empty_steps: bool = field(
        default=False,
        metadata={"help": "ot_zero_bp/sw_curriculum: skip the optimizer step when no token is active."},
    )
    memft_curriculum_epochs: int | None = field(
        default=None, metadata={"help": "sw_curriculum: number of curriculum epochs (sets the step count)."}
    )
    memft_retire_after: int = field(
        default=0,
        metadata={
            "help": "Retire-when-learned: stop sampling an item once all its target tokens were above the "
            "threshold (hysteresis_high if set) at this many visits in a row; later epochs get shorter and "
            "training stops when every item is retired (0 = off)."
        },
    )
    memft_retire_recheck: bool = field(
        default=True,
        metadata={
            "help": "Recheck retired items by a forward pass at epoch starts; re-admit forgotten ones."
        },
    )

    def check_flags(self) -> None:
        from hf_fundamentals.memorization import MODES

        if self.hff_memft not in ("none", *MODES):
            raise ValueError(f"--hff_memft {self.hff_memft!r}; accepted: none, {', '.join(MODES)}")
        if self.hff_memft == "none":
            return
        self.memft_config()
        if self.hff_memft == "sw_curriculum" and not self.memft_curriculum_epochs:
            raise ValueError("--hff_memft sw_curriculum needs --memft_curriculum_epochs")

    def memft_config(self):
        """The :class:`~hf_fundamentals.memorization.MemFTConfig` of these flags (None with --hff_memft none)."""
        from hf_fundamentals.memorization import MemFTConfig

        if self.hff_memft == "none":
            return None
        return MemFTConfig(
            mode=self.hff_memft,
            threshold=self.memft_threshold,
            window=self.memft_window,
            position_decay_lambda=self.memft_position_decay_lambda,
            hysteresis_high=self.memft_hysteresis_high,
            skip_empty_steps=self.memft_skip_empty_steps,
            retire_after=self.memft_retire_after,
            retire_recheck=self.memft_retire_recheck,
        )
