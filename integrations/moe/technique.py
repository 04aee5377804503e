"""Complete-muE's hooks: the plan's optimizer groups (AdamW, or MuonAdamW with ``--hff_optimizer muon``) and the
callback that puts the trainer's model under the plan."""

from __future__ import annotations

from typing import Any

from hf_fundamentals.integrations.moe.flags import MoEFlags
from hf_fundamentals.integrations.registry import Technique


class MoETechnique(Technique):
    name = "moe"
    title = "Complete-muE"
    flags = MoEFlags
    commands = ("mue",)
    replaces_optimizer_of = ("optim",)  # with --hff_optimizer muon the plan's groups are MuonAdamW groups

    def describe(self, args: Any) -> str:
        how = "re-initialized under the plan" if args.mue_apply else "model as built"
        return f"complete-muE {args.hff_mue} ({how})"

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        from hf_fundamentals.integrations.moe.optimizer import CompleteMueCallback

        seed = training_args.seed if training_args is not None else 0
        return [CompleteMueCallback(args.mue_plan(), init=args.mue_apply, seed=seed)]

    def optimizer(self, args: Any, training_args: Any) -> tuple[Any, dict[str, Any]]:
        from hf_fundamentals.integrations.moe.config import MUON_OPTIMIZER_KEYS
        from hf_fundamentals.integrations.moe.optimizer import mue_optimizer_cls_and_kwargs

        muon = {}
        if args.hff_optimizer == "muon":
            muon = {k: v for k, v in args.muon_kwargs().items() if k in MUON_OPTIMIZER_KEYS}
        return mue_optimizer_cls_and_kwargs(
            args.mue_plan(), training_args, optimizer="muon" if muon else "adamw", **muon
        )


TECHNIQUE = MoETechnique()
