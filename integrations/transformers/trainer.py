"""What ``HffArguments`` turns into for a Trainer: callbacks, an optimizer factory, a train sampler.

Every trainer entry point (``hff sft`` and the Python API) asks :func:`trainer_extras` and passes the result
to the trainer's constructor (``extras.as_kwargs()``) or applies it to a built trainer (``extras.apply``,
for trainers such as TRL's ``GRPOTrainer`` whose constructor has no ``optimizer_cls_and_kwargs``), so a
technique is switched on in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_fundamentals.integrations.arguments import HffArguments


@dataclass
class TrainerExtras:
    """Constructor arguments hf_fundamentals adds to a ``Trainer``/TRL trainer."""

    callbacks: list[Any] = field(default_factory=list)
    optimizer_cls_and_kwargs: tuple[Any, dict[str, Any]] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the trainer constructor (only those that are set)."""
        kwargs: dict[str, Any] = {"callbacks": list(self.callbacks)}
        if self.optimizer_cls_and_kwargs is not None:
            kwargs["optimizer_cls_and_kwargs"] = self.optimizer_cls_and_kwargs
        return kwargs

    def apply(self, trainer: Any) -> Any:
        """Switch the extras on in an already built trainer (before ``train()``); returns the trainer."""
        for callback in self.callbacks:
            trainer.add_callback(callback)
        if self.optimizer_cls_and_kwargs is not None:
            if trainer.optimizer is not None:
                raise ValueError(
                    "this trainer was given its own optimizer (optimizers=...); it cannot also take "
                    "--hff_optimizer. Drop one of the two."
                )
            trainer.optimizer_cls_and_kwargs = self.optimizer_cls_and_kwargs
        return trainer


def trainer_extras(hff_args: HffArguments, training_args: Any = None, model: Any = None) -> TrainerExtras:
    """Build the callbacks / optimizer factory that ``hff_args`` switches on for a run with ``training_args``."""
    del model  # routing reads the model inside the optimizer factory, after PEFT/quantization wrapping
    extras = TrainerExtras()
    if hff_args.hff_optimizer == "muon":
        if training_args is None:
            raise ValueError(
                "--hff_optimizer muon needs the run's TrainingArguments (lr, weight decay, betas)"
            )
        from hf_fundamentals.integrations.transformers.muon import muon_optimizer_cls_and_kwargs

        extras.optimizer_cls_and_kwargs = muon_optimizer_cls_and_kwargs(
            training_args, **hff_args.muon_kwargs()
        )
    return extras
