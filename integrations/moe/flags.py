"""``--hff_mue`` and the ``--mue_*`` flags (train under a Complete-muE transfer plan, arXiv 2605.23893)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup


@dataclass
class MoEFlags(FlagGroup):
    """Complete-muE: the plan's per-group AdamW hyperparameters and forward multipliers for an MoE target."""

    switch = "hff_mue"
    switch_hint = "add --hff_mue PLAN.json (from `hff mue`)"

    hff_mue: str | None = field(
        default=None,
        metadata={
            "help": "Complete-muE (arXiv 2605.23893): a transfer plan JSON written by `hff mue`. The optimizer gets "
            "the plan's per-group AdamW lr/wd/eps/betas (replacing --learning_rate, --weight_decay, --adam_*; the "
            "LR schedule still applies) and the model its forward multipliers. The model must be the plan's target, "
            "built under it (hff mue --save_model, load_mue_model), or add --mue_apply. With --hff_optimizer muon, "
            "Muon's matrices take the plan's global lr (Proposed: the paper covers AdamW only)."
        },
    )
    mue_apply: bool = field(
        default=False,
        metadata={
            "help": "Re-initialize the model under --hff_mue when the trainer is built (plan init stds, normalized "
            "routing): training from scratch. A resumed checkpoint still loads over it."
        },
    )

    def check_flags(self) -> None:
        self.mue_plan()  # a missing or broken plan fails now, not after the model has loaded

    def mue_plan(self):
        """The :class:`~hf_fundamentals.moe.Plan` in the --hff_mue file (None without --hff_mue)."""
        if self.hff_mue is None:
            return None
        from pathlib import Path

        from hf_fundamentals.moe import Plan

        path = Path(self.hff_mue).expanduser()
        if not path.is_file():
            raise ValueError(
                f"--hff_mue {self.hff_mue!r}: no such file; write a plan with `hff mue ... --out FILE`"
            )
        try:
            return Plan.from_json(path.read_text())
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"--hff_mue {self.hff_mue!r} is not a Complete-muE plan: {err}") from err
