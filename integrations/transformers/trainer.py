"""What ``HffArguments`` turns into for a Trainer: callbacks, an optimizer factory, an ordered train dataset.

Every trainer entry point (``hff sft`` and the Python API) asks :func:`trainer_extras` and passes the result
to the trainer's constructor (``extras.as_kwargs()``) or applies it to a built trainer (``extras.apply``,
for trainers such as TRL's ``GRPOTrainer`` whose constructor has no ``optimizer_cls_and_kwargs``), so a
technique is switched on in exactly one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from hf_fundamentals.integrations.arguments import HffArguments


@dataclass
class TrainerExtras:
    """Constructor arguments hf_fundamentals adds to a ``Trainer``/TRL trainer."""

    callbacks: list[Any] = field(default_factory=list)
    optimizer_cls_and_kwargs: tuple[Any, dict[str, Any]] | None = None
    hff_args: HffArguments | None = None

    def trainer_class(self, base: type) -> type:
        """``base`` with the trainer-level techniques mixed in (``--hff_memft``, ``--hff_kd_teacher``); ``base``
        itself otherwise."""
        if self.hff_args is not None and self.hff_args.hff_kd_teacher is not None:
            from hf_fundamentals.integrations.transformers.distill import kd_trainer_class

            return kd_trainer_class(base)
        if self.hff_args is None or self.hff_args.hff_memft == "none":
            return base
        from hf_fundamentals.integrations.transformers.memft import memft_trainer_class

        return memft_trainer_class(base)

    def trainer_kwargs(self) -> dict[str, Any]:
        """Constructor keywords for :meth:`trainer_class` (callbacks, optimizer factory, MemFT config, teacher)."""
        kwargs = self.as_kwargs()
        if self.hff_args is not None and self.hff_args.hff_kd_teacher is not None:
            kwargs["teacher_model"] = self.hff_args.hff_kd_teacher
            kwargs["kd"] = self.hff_args.kd_config()
            kwargs["teacher_dtype"] = self.hff_args.kd_teacher_dtype
            kwargs["teacher_revision"] = self.hff_args.kd_teacher_revision
        if self.hff_args is not None and self.hff_args.hff_memft != "none":
            kwargs["memft"] = self.hff_args.memft_config()
            kwargs["memft_curriculum_epochs"] = self.hff_args.memft_curriculum_epochs
        return kwargs

    def prepare_train_dataset(self, dataset: Any, training_args: Any = None) -> Any:
        """The train dataset as the flags want it: scored (``--order_scorer``) and ordered (``--hff_order``).

        Without ``--hff_order`` the dataset comes back unchanged. Scoring runs on the main process first (other
        ranks read the ``datasets`` cache), and every rank computes the same order from the same scores.
        """
        hff = self.hff_args
        if hff is None or hff.hff_order == "none":
            return dataset
        from hf_fundamentals.integrations.ordering import add_score_column, order_dataset

        if hff.order_score not in dataset.column_names:
            if hff.order_scorer == "none":
                raise KeyError(
                    f"--order_score {hff.order_score!r} is not a column of the train dataset (columns: "
                    f"{dataset.column_names}); pass the column that holds the scores, or --order_scorer "
                    "perplexity|compression to compute it"
                )
            first = training_args.main_process_first(desc="scoring") if training_args is not None else None
            with first if first is not None else contextlib.nullcontext():
                dataset = add_score_column(
                    dataset, hff.order_scorer, text_column=hff.order_text_column, column=hff.order_score,
                    model=hff.order_score_model,
                )  # fmt: skip
        return order_dataset(
            dataset, hff.order_spec(), score_column=hff.order_score, domain_column=hff.order_domain_column
        )

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the trainer constructor (only those that are set)."""
        kwargs: dict[str, Any] = {"callbacks": list(self.callbacks)}
        if self.optimizer_cls_and_kwargs is not None:
            kwargs["optimizer_cls_and_kwargs"] = self.optimizer_cls_and_kwargs
        return kwargs

    def apply(self, trainer: Any) -> Any:
        """Switch the extras on in an already built trainer (before ``train()``); returns the trainer."""
        if self.hff_args is not None and self.hff_args.hff_memft != "none":
            raise ValueError(
                "--hff_memft changes the trainer's loss, which cannot be switched on in a built trainer: build it "
                "as extras.trainer_class(TrainerClass)(..., **extras.trainer_kwargs())"
            )
        if self.hff_args is not None and self.hff_args.hff_kd_teacher is not None:
            raise ValueError(
                "--hff_kd_teacher changes the trainer's loss, which cannot be switched on in a built trainer: build "
                "it as extras.trainer_class(TrainerClass)(..., **extras.trainer_kwargs())"
            )
        if self.optimizer_cls_and_kwargs is not None and trainer.optimizer is not None:
            raise ValueError(
                "this trainer was given its own optimizer (optimizers=...); it cannot also take "
                "--hff_optimizer / --hff_mue. Drop one of the two."
            )
        for callback in self.callbacks:
            trainer.add_callback(callback)
            if hasattr(callback, "apply_to_built_trainer"):  # its on_init_end has passed: do its work now
                callback.apply_to_built_trainer(trainer)
        if self.hff_args is not None and self.hff_args.hff_order != "none":
            from hf_fundamentals.integrations.transformers.ordering import guard_built_trainer

            guard_built_trainer(trainer, allow_shuffle=self.hff_args.order_allow_shuffle)
        if self.optimizer_cls_and_kwargs is not None:
            trainer.optimizer_cls_and_kwargs = self.optimizer_cls_and_kwargs
        return trainer


def trainer_extras(hff_args: HffArguments, training_args: Any = None, model: Any = None) -> TrainerExtras:
    """Build the callbacks / optimizer factory that ``hff_args`` switches on for a run with ``training_args``."""
    del model  # routing reads the model inside the optimizer factory, after PEFT/quantization wrapping
    extras = TrainerExtras(hff_args=hff_args)
    if hff_args.hff_order != "none":
        from hf_fundamentals.integrations.transformers.ordering import OrderGuardCallback, preserve_order

        if training_args is not None:
            preserve_order(training_args, allow_shuffle=hff_args.order_allow_shuffle)
        extras.callbacks.append(OrderGuardCallback(allow_shuffle=hff_args.order_allow_shuffle))
    if hff_args.hff_awd != "none":
        from hf_fundamentals.integrations.transformers.awd import AnchoredWeightDecayCallback

        extras.callbacks.append(
            AnchoredWeightDecayCallback(
                lam=hff_args.awd_lambda,
                kind=hff_args.hff_awd,
                include=hff_args.awd_include,
                exclude=hff_args.awd_exclude,
            )  # fmt: skip
        )
    if hff_args.hff_mue is not None:
        from hf_fundamentals.integrations.transformers.mue import (
            MUON_OPTIMIZER_KEYS,
            CompleteMueCallback,
            mue_optimizer_cls_and_kwargs,
        )

        plan = hff_args.mue_plan()
        seed = training_args.seed if training_args is not None else 0
        extras.callbacks.append(CompleteMueCallback(plan, init=hff_args.mue_apply, seed=seed))
        muon = {}
        if hff_args.hff_optimizer == "muon":
            muon = {k: v for k, v in hff_args.muon_kwargs().items() if k in MUON_OPTIMIZER_KEYS}
        extras.optimizer_cls_and_kwargs = mue_optimizer_cls_and_kwargs(
            plan, training_args, optimizer="muon" if muon else "adamw", **muon
        )
    elif hff_args.hff_optimizer == "muon":
        if training_args is None:
            raise ValueError(
                "--hff_optimizer muon needs the run's TrainingArguments (lr, weight decay, betas)"
            )
        from hf_fundamentals.integrations.transformers.muon import muon_optimizer_cls_and_kwargs

        extras.optimizer_cls_and_kwargs = muon_optimizer_cls_and_kwargs(
            training_args, **hff_args.muon_kwargs()
        )
    return extras
