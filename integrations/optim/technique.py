"""Muon's hooks: the optimizer factory that ``--hff_optimizer muon`` puts in the trainer."""

from __future__ import annotations

from typing import Any

from hf_fundamentals.integrations.optim.flags import OptimFlags
from hf_fundamentals.integrations.registry import Technique


class OptimTechnique(Technique):
    name = "optim"
    title = "Muon"
    flags = OptimFlags
    commands = ("muon",)

    def describe(self, args: Any) -> str:
        return f"muon ({args.muon_mode}, {args.muon_ns_method}, adjust_lr={args.muon_adjust_lr})"

    def optimizer(self, args: Any, training_args: Any) -> tuple[Any, dict[str, Any]]:
        if training_args is None:
            raise ValueError(
                "--hff_optimizer muon needs the run's TrainingArguments (lr, weight decay, betas)"
            )
        from hf_fundamentals.integrations.optim.factory import muon_optimizer_cls_and_kwargs

        return muon_optimizer_cls_and_kwargs(training_args, **args.muon_kwargs())


TECHNIQUE = OptimTechnique()
