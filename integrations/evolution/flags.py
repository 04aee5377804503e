"""``--hff_awd`` and the ``--awd_*`` flags (anchored weight decay in any trainer, arXiv 2605.30148)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class EvolutionFlags(FlagGroup):
    """Anchored weight decay: after each optimizer step, pull the trained weights toward their start."""

    switch = "hff_awd"
    switch_hint = "add --hff_awd l2 (or l1)"

    hff_awd: str = field(
        default="none",
        metadata={
            "help": "Anchored weight decay (arXiv 2605.30148): after each optimizer step pull the trained weights "
            "toward their start, 'l2' (theta0 + (1 - lr*lambda)(theta - theta0)) or 'l1' (soft threshold); 'none'."
        },
    )
    awd_lambda: float = field(
        default=10.0,
        metadata={
            "help": "AWD lambda; the shrink per step is lr*lambda (10 is the paper's for ES at alpha 5e-4)."
        },
    )
    awd_include: str | None = field(
        default=None, metadata={"help": "AWD: regex of parameter names to anchor."}
    )
    awd_exclude: str | None = field(
        default=None, metadata={"help": "AWD: regex of parameter names to leave."}
    )

    def check_flags(self) -> None:
        if self.hff_awd not in ("none", "l2", "l1"):
            raise ValueError(f"--hff_awd {self.hff_awd!r}; accepted: none, l2, l1")
