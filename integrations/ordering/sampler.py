"""Keep a training order intact through ``Trainer``, ``SFTTrainer`` and ``GRPOTrainer``.

The stock trainers shuffle (a ``RandomSampler``; TRL's ``shuffle_dataset``; length grouping; BFD packing),
which silently undoes an ordered dataset. Three pieces:

* :func:`preserve_order` sets a run's arguments so the trainer reads the dataset sequentially, and refuses
  settings that reorder on purpose (``group_by_length``, BFD packing) unless you allow shuffling.
* :class:`OrderGuardCallback` checks at ``on_train_begin`` that the train dataloader really is sequential
  and raises :class:`OrderShuffleError` otherwise (add it to any trainer).
* :class:`FixedOrderSampler` / :class:`OrderedTrainerMixin` yield a given index order from an unordered
  dataset (for ``Trainer``-style samplers; GRPO's repeat sampler needs a pre-ordered dataset instead).

With a sequential sampler, accelerate hands each of W processes every W-th batch, so optimizer step t
(gradient accumulation A, per-device batch b) consumes exactly ``order[t*G:(t+1)*G]`` with G = b*W*A; on
resume, the Trainer skips the batches already seen, so the order continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

_REORDERING_STRATEGIES = ("group_by_length", "batch_rebalance")


class OrderShuffleError(ValueError):
    """The trainer would reorder a dataset that was put in training order."""


def _is_sft(obj: Any) -> bool:
    return type(obj).__name__.startswith("SFT") or any(c.__name__ == "SFTTrainer" for c in type(obj).__mro__)


def shuffle_problems(args: Any) -> list[str]:
    """Reasons the run described by ``args`` (TrainingArguments or a TRL config) would not keep dataset order."""
    problems = []
    strategy = getattr(args, "train_sampling_strategy", "random")
    if strategy != "sequential":
        problems.append(f"train_sampling_strategy={strategy!r} (needs 'sequential')")
    if getattr(args, "shuffle_dataset", False):
        problems.append("shuffle_dataset=True (TRL shuffles the dataset; needs False)")
    if getattr(args, "packing", False) and str(getattr(args, "packing_strategy", "")).startswith("bfd"):
        problems.append(
            f"packing_strategy={args.packing_strategy!r} regroups samples by length (use 'wrapped' or no packing)"
        )
    return problems


def preserve_order(args: Any, allow_shuffle: bool = False) -> Any:
    """Set ``args`` so the trainer keeps dataset order (sequential sampler, no TRL shuffle); returns ``args``.

    The defaults that shuffle (``train_sampling_strategy='random'``, ``shuffle_dataset=True``) are switched
    off and logged. Settings that reorder by design (length grouping, BFD packing) raise
    :class:`OrderShuffleError` unless ``allow_shuffle``.
    """
    strategy = getattr(args, "train_sampling_strategy", None)
    deliberate = []
    if strategy in _REORDERING_STRATEGIES:
        deliberate.append(f"train_sampling_strategy={strategy!r}")
    if getattr(args, "packing", False) and str(getattr(args, "packing_strategy", "")).startswith("bfd"):
        deliberate.append(f"packing_strategy={args.packing_strategy!r}")
    if deliberate and not allow_shuffle:
        raise OrderShuffleError(
            f"{', '.join(deliberate)} reorders the training data, which undoes --hff_order; drop it (for packing "
            "use packing_strategy='wrapped'), or pass --order_allow_shuffle to train in the reordered way anyway"
        )
    changed = []
    if strategy == "random":
        args.train_sampling_strategy = "sequential"
        changed.append("train_sampling_strategy: random -> sequential")
    if getattr(args, "shuffle_dataset", False):
        args.shuffle_dataset = False
        changed.append("shuffle_dataset: True -> False")
    if changed:
        logger.info("hf_fundamentals ordering: %s (the data order is the training order)", "; ".join(changed))
    return args


def _samplers(dataloader: Any) -> Iterator[Any]:
    """The samplers inside a (possibly accelerate-wrapped) dataloader, outermost first."""
    seen: set[int] = set()
    stack = [dataloader]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if obj is not dataloader:
            yield obj
        for attr in ("sampler", "batch_sampler", "base_dataloader"):
            stack.append(getattr(obj, attr, None))


def dataloader_shuffles(dataloader: Any) -> str | None:
    """Why ``dataloader`` would reorder its dataset (a random or shuffling sampler), or None."""
    for sampler in _samplers(dataloader):
        if isinstance(sampler, torch.utils.data.RandomSampler):
            return "its sampler is a RandomSampler"
        if getattr(sampler, "shuffle", False) is True:
            return f"its {type(sampler).__name__} has shuffle=True"
        if type(sampler).__name__ in ("LengthGroupedSampler", "BatchRebalanceSampler"):
            return f"its sampler is a {type(sampler).__name__}"
    return None


class OrderGuardCallback(TrainerCallback):
    """Fail at the start of training if the trainer would shuffle an ordered dataset.

    ``allow_shuffle=True`` turns the error into a warning (for ablations that shuffle on purpose).
    """

    def __init__(self, allow_shuffle: bool = False) -> None:
        self.allow_shuffle = allow_shuffle

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        problems = [p for p in shuffle_problems(args) if not p.startswith("train_sampling_strategy")]
        reason = dataloader_shuffles(train_dataloader) if train_dataloader is not None else None
        if reason:
            problems.insert(0, f"the train dataloader shuffles ({reason})")
        if not problems:
            return control
        message = (
            "the training data was ordered (--hff_order / order_dataset) but this trainer would reorder it: "
            + "; ".join(problems)
            + ". Build the trainer with preserve_order(args) / trainer_extras(...) before constructing it "
            "(or pass allow_shuffle / --order_allow_shuffle to train shuffled on purpose)."
        )
        if self.allow_shuffle:
            logger.warning(message)
            return control
        raise OrderShuffleError(message)


class FixedOrderSampler(torch.utils.data.Sampler[int]):
    """Yields a fixed index order (the same every epoch); accelerate shards its batches across processes."""

    def __init__(self, order: Sequence[int] | np.ndarray, num_rows: int | None = None) -> None:
        arr = np.asarray(order, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"order must be 1-D indices; got shape {arr.shape}")
        if num_rows is not None and (arr.size and (arr.min() < 0 or arr.max() >= num_rows)):
            raise ValueError(f"order has indices outside 0..{num_rows - 1}")
        self.order = arr

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return int(self.order.shape[0])


class OrderedTrainerMixin:
    """Mix into a ``Trainer`` (``class T(OrderedTrainerMixin, Trainer)``) to train in a given order.

    ``train_order``: indices into the train dataset (e.g. ``order_indices(scores, "saw")``); ``None`` reads the
    dataset as it is (already ordered by ``order_dataset``). The run's arguments are put through
    :func:`preserve_order` and an :class:`OrderGuardCallback` is added.
    """

    def __init__(self, *args: Any, train_order: Sequence[int] | None = None, allow_shuffle: bool = False,
                 **kwargs: Any) -> None:  # fmt: skip
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None:
            preserve_order(training_args, allow_shuffle=allow_shuffle)
        super().__init__(*args, **kwargs)
        self.train_order = None if train_order is None else np.asarray(train_order, dtype=np.int64)
        self.add_callback(OrderGuardCallback(allow_shuffle=allow_shuffle))

    def _get_train_sampler(self, train_dataset=None):
        if self.train_order is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if len(self.train_order) != len(dataset):
            raise ValueError(
                f"train_order has {len(self.train_order)} indices but the train dataset has {len(dataset)} rows "
                "(did the trainer filter or pack it? then order the dataset itself with order_dataset)"
            )
        return FixedOrderSampler(self.train_order, num_rows=len(dataset))


def guard_built_trainer(trainer: Any, allow_shuffle: bool = False) -> None:
    """Make an already constructed trainer keep dataset order, or explain why it cannot (used by extras.apply)."""
    if _is_sft(trainer) and getattr(trainer.args, "shuffle_dataset", False) and not allow_shuffle:
        raise OrderShuffleError(
            "this SFTTrainer shuffled its dataset when it was built (shuffle_dataset=True); build it with "
            "args passed through preserve_order()/trainer_extras() first"
        )
    preserve_order(trainer.args, allow_shuffle=allow_shuffle)
    if getattr(trainer, "shuffle_dataset", False):  # GRPO/RLOO read this when they build their sampler
        trainer.shuffle_dataset = False
