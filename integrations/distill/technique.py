"""Distillation's hooks: the trainer mixin with the KD loss, and the teacher it loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hf_fundamentals.integrations.distill.flags import DistillFlags
from hf_fundamentals.integrations.registry import Technique


class DistillTechnique(Technique):
    name = "distill"
    title = "weak-teacher distillation"
    flags = DistillFlags
    commands = ("kd",)

    def describe(self, args: Any) -> str:
        return (
            f"distillation from {args.hff_kd_teacher} (alpha {args.kd_alpha:g}, T {args.kd_temperature:g}, "
            f"{args.kd_kl} KL)"
        )

    def trainer_mixin(self, args: Any) -> Callable[[type], type]:
        from hf_fundamentals.integrations.distill.kd_trainer import kd_trainer_class

        return kd_trainer_class

    def trainer_kwargs(self, args: Any) -> dict[str, Any]:
        return {
            "teacher_model": args.hff_kd_teacher,
            "kd": args.kd_config(),
            "teacher_dtype": args.kd_teacher_dtype,
            "teacher_revision": args.kd_teacher_revision,
        }


TECHNIQUE = DistillTechnique()
