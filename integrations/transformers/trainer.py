"""What ``HffArguments`` turns into for a Trainer: callbacks, an optimizer factory, a train sampler.

Every trainer entry point (``hff sft`` and the Python API) asks :func:`trainer_extras` and passes the result
to the trainer's constructor, so a technique is switched on in exactly one place.
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


def trainer_extras(hff_args: HffArguments, model: Any = None) -> TrainerExtras:
    """Build the callbacks / optimizer / sampler that ``hff_args`` switches on (none until techniques land)."""
    del model  # techniques that need the model (Muon's parameter routing) will read it here
    return TrainerExtras()
