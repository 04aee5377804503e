"""STR/SAW ordering's hooks: sequential sampling, the shuffle guard, the scored, ordered train dataset, and the
weight-averaging callback (``--hff_average``, on with or without an order)."""

from __future__ import annotations

import contextlib
from typing import Any

from hf_fundamentals.integrations.ordering.flags import OrderingFlags
from hf_fundamentals.integrations.registry import Technique


class OrderingTechnique(Technique):
    name = "ordering"
    title = "STR/SAW data ordering"
    flags = OrderingFlags
    commands = ("order",)

    @staticmethod
    def _ordered(args: Any) -> bool:
        return getattr(args, "hff_order", "none") != "none"

    @staticmethod
    def _averaged(args: Any) -> bool:
        return getattr(args, "hff_average", "none") != "none"

    def enabled(self, args: Any) -> bool:
        return self._ordered(args) or self._averaged(args)

    def describe(self, args: Any) -> str:
        parts = [f"order {args.order_spec().label()} by {args.order_score!r}"] if self._ordered(args) else []
        if self._averaged(args):
            parts.append(
                f"weight average {args.hff_average}" + (" (final model)" if args.hff_average_swap else "")
            )
        return "; ".join(parts)

    def configure_training_args(self, args: Any, training_args: Any) -> None:
        from hf_fundamentals.integrations.ordering.sampler import preserve_order

        if self._ordered(args):
            preserve_order(training_args, allow_shuffle=args.order_allow_shuffle)

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        from hf_fundamentals.integrations.ordering.sampler import OrderGuardCallback

        out = [OrderGuardCallback(allow_shuffle=args.order_allow_shuffle)] if self._ordered(args) else []
        if self._averaged(args):
            out.append(args.averaging_callback())
        return out

    def prepare_train_dataset(self, args: Any, dataset: Any, training_args: Any) -> Any:
        """Scored (``--order_scorer``) when the score column is missing, then ordered. Scoring runs on the main
        process first (other ranks read the ``datasets`` cache); every rank computes the same order."""
        from hf_fundamentals.integrations.ordering.datasets import add_score_column, order_dataset

        if not self._ordered(args):
            return dataset
        if args.order_score not in dataset.column_names:
            if args.order_scorer == "none":
                raise KeyError(
                    f"--order_score {args.order_score!r} is not a column of the train dataset (columns: "
                    f"{dataset.column_names}); pass the column that holds the scores, or --order_scorer "
                    "model_nll|compression to compute it"
                )
            first = training_args.main_process_first(desc="scoring") if training_args is not None else None
            with first if first is not None else contextlib.nullcontext():
                dataset = add_score_column(
                    dataset, args.order_scorer, text_column=args.order_text_column, column=args.order_score,
                    model=args.order_score_model,
                )  # fmt: skip
        return order_dataset(
            dataset, args.order_spec(), score_column=args.order_score, domain_column=args.order_domain_column
        )

    def on_built_trainer(self, args: Any, trainer: Any) -> None:
        from hf_fundamentals.integrations.ordering.sampler import guard_built_trainer

        if not self._ordered(args):
            return
        guard_built_trainer(trainer, allow_shuffle=args.order_allow_shuffle)


TECHNIQUE = OrderingTechnique()
