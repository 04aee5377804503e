"""ES and anchored weight decay's hooks: the AWD callback in any trainer (ES itself is ``hff es`` / ``ESTrainer``)."""

from __future__ import annotations

from typing import Any

from hf_fundamentals.integrations.evolution.flags import EvolutionFlags
from hf_fundamentals.integrations.registry import Technique


class EvolutionTechnique(Technique):
    name = "evolution"
    title = "ES trainer, anchored weight decay, drift monitor"
    flags = EvolutionFlags
    commands = ("es",)

    def describe(self, args: Any) -> str:
        return f"anchored weight decay {args.hff_awd} (lambda {args.awd_lambda:g})"

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        from hf_fundamentals.integrations.evolution.awd import AnchoredWeightDecayCallback

        return [
            AnchoredWeightDecayCallback(
                lam=args.awd_lambda, kind=args.hff_awd, include=args.awd_include, exclude=args.awd_exclude
            )
        ]


TECHNIQUE = EvolutionTechnique()
