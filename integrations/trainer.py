"""What ``HffArguments`` turns into for a Trainer: callbacks, an optimizer factory, a trainer mixin, a dataset step.

Every trainer entry point (``hff sft`` and the Python API) asks :func:`trainer_extras` and passes the result
to the trainer's constructor (``extras.as_kwargs()``, or ``extras.trainer_class(Base)(...,
**extras.trainer_kwargs())`` when a technique changes the loss) or applies it to a built trainer
(``extras.apply``, for trainers such as TRL's ``GRPOTrainer`` whose constructor has no
``optimizer_cls_and_kwargs``). The extras are collected from the registered techniques' hooks
(:class:`~hf_fundamentals.integrations.registry.Technique`); nothing here names a technique.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_fundamentals.integrations.arguments import HffArguments
from hf_fundamentals.integrations.registry import Technique, enabled_techniques


@dataclass
class TrainerExtras:
    """Constructor arguments hf_fundamentals adds to a ``Trainer``/TRL trainer."""

    callbacks: list[Any] = field(default_factory=list)
    optimizer_cls_and_kwargs: tuple[Any, dict[str, Any]] | None = None
    hff_args: HffArguments | None = None
    techniques: list[Technique] = field(default_factory=list)
    """The techniques switched on, in registry order."""
    optimizer_switch: str | None = None
    """The flag of the technique that supplies ``optimizer_cls_and_kwargs`` (for error messages)."""

    def trainer_class(self, base: type) -> type:
        """``base`` with the trainer-level techniques mixed in (those that change the loss); ``base`` itself
        otherwise."""
        cls = base
        for t in self.techniques:
            mixin = t.trainer_mixin(self.hff_args)
            if mixin is not None:
                cls = mixin(cls)
        return cls

    def trainer_kwargs(self) -> dict[str, Any]:
        """Constructor keywords for :meth:`trainer_class` (callbacks, optimizer factory and the techniques' own)."""
        kwargs = self.as_kwargs()
        for t in self.techniques:
            for key, value in t.trainer_kwargs(self.hff_args).items():
                if key in kwargs:
                    raise ValueError(f"two techniques set the trainer keyword {key!r} (the second: {t.name})")
                kwargs[key] = value
        return kwargs

    def model_init_kwargs(self) -> dict[str, Any]:
        """``from_pretrained`` keywords the techniques need (e.g. ``attn_implementation``)."""
        found: dict[str, Any] = {}
        for t in self.techniques:
            found.update(t.model_init_kwargs(self.hff_args))
        return found

    def prepare_train_dataset(self, dataset: Any, training_args: Any = None) -> Any:
        """The train dataset as the flags want it (e.g. scored and reordered by a technique); unchanged when no
        technique touches it."""
        for t in self.techniques:
            dataset = t.prepare_train_dataset(self.hff_args, dataset, training_args)
        return dataset

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the trainer constructor (only those that are set)."""
        kwargs: dict[str, Any] = {"callbacks": list(self.callbacks)}
        if self.optimizer_cls_and_kwargs is not None:
            kwargs["optimizer_cls_and_kwargs"] = self.optimizer_cls_and_kwargs
        return kwargs

    def apply(self, trainer: Any) -> Any:
        """Switch the extras on in an already built trainer (before ``train()``); returns the trainer."""
        for t in self.techniques:
            if t.trainer_mixin(self.hff_args) is not None:
                raise ValueError(
                    f"--{t.flags.switch} changes the trainer's loss, which cannot be switched on in a built trainer: "
                    "build it as extras.trainer_class(TrainerClass)(..., **extras.trainer_kwargs())"
                )
        if self.optimizer_cls_and_kwargs is not None and trainer.optimizer is not None:
            raise ValueError(
                f"this trainer was given its own optimizer (optimizers=...); it cannot also take "
                f"--{self.optimizer_switch}'s. "
                "Drop one of the two."
            )
        for callback in self.callbacks:
            trainer.add_callback(callback)
            if hasattr(callback, "apply_to_built_trainer"):  # its on_init_end has passed: do its work now
                callback.apply_to_built_trainer(trainer)
        for t in self.techniques:
            t.on_built_trainer(self.hff_args, trainer)
        if self.optimizer_cls_and_kwargs is not None:
            trainer.optimizer_cls_and_kwargs = self.optimizer_cls_and_kwargs
        return trainer


def trainer_extras(hff_args: HffArguments, training_args: Any = None, model: Any = None) -> TrainerExtras:
    """Build the callbacks / optimizer factory / trainer mixins that ``hff_args`` switches on for a run with
    ``training_args`` (adjusted in place where a technique needs it, e.g. sequential sampling for an order)."""
    del model  # routing reads the model inside the optimizer factory, after PEFT/quantization wrapping
    on = enabled_techniques(hff_args)
    extras = TrainerExtras(hff_args=hff_args, techniques=on)
    names = {t.name for t in on}
    replaced = {r for t in on for r in t.replaces_optimizer_of if r in names}
    optimizers: dict[str, tuple[Any, dict[str, Any]]] = {}
    for t in on:
        if training_args is not None:
            t.configure_training_args(hff_args, training_args)
        extras.callbacks.extend(t.callbacks(hff_args, training_args))
        if t.name not in replaced:
            found = t.optimizer(hff_args, training_args)
            if found is not None:
                optimizers[t.name] = found
    if len(optimizers) > 1:
        raise ValueError(
            f"{' and '.join(sorted(optimizers))} each supply the optimizer; switch on one of them"
        )
    if optimizers:
        supplier = next(t for t in on if t.name in optimizers)
        _refuse_a_second_optimizer(hff_args, supplier, training_args)
        extras.optimizer_cls_and_kwargs = optimizers[supplier.name]
        extras.optimizer_switch = supplier.flags.switch
    return extras


_DEFAULT_OPTIMS = {"adamw_torch", "adamw_torch_fused"}
"""``--optim`` values that mean "not set" (the Trainer's defaults)."""


def _refuse_a_second_optimizer(hff_args: Any, supplier: Technique, training_args: Any) -> None:
    """A technique that supplies the optimizer replaces the Trainer's ``--optim``: refuse one that was set."""
    optim = getattr(training_args, "optim", None)
    name = str(getattr(optim, "value", optim))
    if optim is not None and name not in _DEFAULT_OPTIMS:
        switch = supplier.flags.switch
        raise ValueError(
            f"--{switch} {getattr(hff_args, switch)} supplies the optimizer, so --optim {name} would be ignored; "
            "drop --optim (the run's --learning_rate, --weight_decay and --adam_* carry over)"
        )
