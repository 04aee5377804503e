"""MemFT's hooks: the trainer mixin that replaces the token loss, and its keywords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hf_fundamentals.integrations.memorization.flags import MemorizationFlags
from hf_fundamentals.integrations.registry import Technique


class MemorizationTechnique(Technique):
    name = "memorization"
    title = "MemFT"
    flags = MemorizationFlags
    commands = ("lora-capacity",)

    def describe(self, args: Any) -> str:
        retire = f", retire after {args.memft_retire_after} learned visits" if args.memft_retire_after else ""
        return f"memft {args.hff_memft} (p > {args.memft_threshold:g}{retire})"

    def trainer_mixin(self, args: Any) -> Callable[[type], type]:
        from hf_fundamentals.integrations.memorization.memft_trainer import memft_trainer_class

        return memft_trainer_class

    def trainer_kwargs(self, args: Any) -> dict[str, Any]:
        return {"memft": args.memft_config(), "memft_curriculum_epochs": args.memft_curriculum_epochs}


TECHNIQUE = MemorizationTechnique()
