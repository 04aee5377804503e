"""STR/SAW ordering's hooks: sequential sampling, the shuffle guard, and the scored, ordered train dataset."""

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

    def describe(self, args: Any) -> str:
        return f"order {args.order_spec().label()} by {args.order_score!r}"

    def configure_training_args(self, args: Any, training_args: Any) -> None:
        from hf_fundamentals.integrations.ordering.sampler import preserve_order

        preserve_order(training_args, allow_shuffle=args.order_allow_shuffle)

    def callbacks(self, args: Any, training_args: Any) -> list[Any]:
        from hf_fundamentals.integrations.ordering.sampler import OrderGuardCallback

        return [OrderGuardCallback(allow_shuffle=args.order_allow_shuffle)]

    def prepare_train_dataset(self, args: Any, dataset: Any, training_args: Any) -> Any:
        """Scored (``--order_scorer``) when the score column is missing, then ordered. Scoring runs on the main
        process first (other ranks read the ``datasets`` cache); every rank computes the same order."""
        from hf_fundamentals.integrations.ordering.datasets import add_score_column, order_dataset

        if args.order_score not in dataset.column_names:
            if args.order_scorer == "none":
                raise KeyError(
                    f"--order_score {args.order_score!r} is not a column of the train dataset (columns: "
                    f"{dataset.column_names}); pass the column that holds the scores, or --order_scorer "
                    "perplexity|compression to compute it"
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

        guard_built_trainer(trainer, allow_shuffle=args.order_allow_shuffle)


TECHNIQUE = OrderingTechnique()
