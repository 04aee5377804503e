"""MemFT in the Trainer: ``class T(MemFTTrainerMixin, Trainer)`` (or ``SFTTrainer``), or ``memft_trainer_class``.

The loss of one optimizer step is ``sum(w l) / sum(w)`` over *all* its micro-batches and processes, so
gradient accumulation and data parallelism do not change the update: each micro-batch backpropagates its raw
``sum(w l)`` and, once the accumulation window is complete, the gradients are divided by the window's total
weight (all-reduced across processes). The Trainer's ``compute_loss_func`` cannot do this (it sees neither
the model nor the inputs), hence the mixin. When a window has no active token, ``ot``/``sw_sliding`` redo it
with the plain mean loss (the reference's fallback), ``ot_zero_bp`` leaves zero gradients, and with
``skip_empty_steps`` the optimizer step itself is skipped (AdamW momentum would otherwise still move the
weights). The sliding state and hysteresis table are saved in each checkpoint (``memft_state.json``) and
restored on resume.

With ``retire_after=k`` an item leaves sampling once all its target tokens were learned at k visits in a row
(:class:`~hf_fundamentals.memorization.RetireBook`): each epoch trains only the remaining items (fewer steps),
retired items are rechecked by a forward pass at an epoch start (``retire_recheck``; due once the visits
trained since the last recheck reach the retired count) and come back when forgotten, and training stops once every item is retired and passes the recheck. Visits are gathered across
processes at each optimizer step, so every process holds the same book; the book and the epoch plan are in
``memft_state.json``, so resuming continues the same plan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from hf_fundamentals.integrations.memorization.memft_samplers import CurriculumSampler, RetireSampler
from hf_fundamentals.memorization.memft import (
    MemFTConfig,
    SlidingState,
    empty_weight_cut,
    falls_back_to_mean,
    memft_weights,
    token_losses,
)
from hf_fundamentals.memorization.retire import RetireBook

logger = logging.getLogger(__name__)
STATE_FILE = "memft_state.json"
ITEM_ID = "memft_item_id"


class _Window:
    """Sums over the micro-batches of one optimizer step."""

    def __init__(self) -> None:
        self.reset(1)

    def reset(self, micro_batches: int) -> None:
        self.left = micro_batches
        self.weight = 0.0
        self.targets = 0.0
        self.raw = 0.0
        self.plain = 0.0
        self.active = 0.0
        self.covered = 0.0
        self.stored: list[dict[str, Any]] = []
        self.visits: list[tuple[int, bool]] = []


class MemFTTrainerMixin:
    """Train with the MemFT loss of ``memft`` (a :class:`MemFTConfig`); eval loss stays the plain mean.

    Logs ``memft_active_ratio`` (share of target tokens still trained on), ``memft_coverage`` (share with
    p > threshold), ``memft_skipped_steps`` and ``memft_fallback_steps``. With ``hysteresis_high`` the dataset
    needs a ``memft_item_id`` column (keep it with ``remove_unused_columns=False`` and a collator that passes
    it through, or use :func:`memft_collator`).
    """

    def __init__(self, *args: Any, memft: MemFTConfig | None = None, memft_curriculum_epochs: int | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.memft = memft or MemFTConfig()
        self.memft_curriculum_epochs = memft_curriculum_epochs
        if self.memft.mode == "sw_curriculum" and not memft_curriculum_epochs:
            raise ValueError(
                "mode 'sw_curriculum' needs memft_curriculum_epochs (the curriculum's epoch count)"
            )
        self.loss_is_scaled_for_ga = True  # the window normalization below replaces the Trainer's
        self._memft_window = _Window()
        self._memft_sliding = SlidingState()
        self._memft_active: dict[int, list[bool]] = {}
        self._memft_log = {"weight": 0.0, "targets": 0.0, "active": 0.0, "covered": 0.0}
        self._memft_counts = {"skipped_steps": 0, "fallback_steps": 0, "train_tokens": 0, "recheck_tokens": 0}
        self._memft_skip_next = False
        self._memft_book: RetireBook | None = None
        self._memft_rows = None
        if self.memft.retire_after or self.memft.hysteresis_high is not None:
            self._memft_attach_item_ids()
        if self.memft.retire_after:
            self._memft_book = RetireBook(
                len(self.train_dataset), self.memft.retire_after, seed=self.args.seed
            )
        self.add_callback(_MemFTStateCallback(self))

    def _memft_attach_item_ids(self) -> None:
        """Give every row its id (its row number) and let the id through column removal and collation."""
        if getattr(self.args, "packing", False):
            raise ValueError(
                "retire_after and hysteresis_high track items, which packing merges: set packing=False"
            )
        dataset = self.train_dataset
        names = getattr(dataset, "column_names", None)
        if names is None:  # not a datasets.Dataset: the rows must carry the id themselves
            if self.memft.retire_after and not hasattr(dataset, "__len__"):
                raise ValueError("retire_after needs a sized dataset (an IterableDataset cannot skip items)")
        elif ITEM_ID not in names:
            self.train_dataset = dataset.add_column(ITEM_ID, np.arange(len(dataset), dtype=np.int64))
        elif self.memft.retire_after and dataset[ITEM_ID] != list(range(len(dataset))):
            raise ValueError(
                f"with retire_after the {ITEM_ID!r} column must be the row number (0, 1, 2, ...)"
            )
        if not getattr(self.data_collator, "keeps_memft_item_id", False):
            self.data_collator = memft_collator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and ITEM_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, ITEM_ID]

    # ------------------------------------------------------------------ data
    def _get_train_sampler(self, train_dataset=None):
        args = self.args
        batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
        if self._memft_book is not None:
            return RetireSampler(self._memft_book, batch, self._memft_epoch_start)
        if self.memft.mode != "sw_curriculum":
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return CurriculumSampler(
            len(dataset), batch, self.memft_curriculum_epochs, self.memft, seed=args.seed
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._memft_window.reset(len(batch_samples))
        return batch_samples, num_items

    # ------------------------------------------------------------------ loss
    def _previously_active(self, item_ids, mask):
        if self.memft.hysteresis_high is None:
            return None
        if item_ids is None:
            raise ValueError(
                f"hysteresis_high needs a {ITEM_ID!r} column in the batches (see memft_collator)"
            )
        prev = torch.zeros_like(mask)
        for row, item in enumerate(item_ids.tolist()):
            flags = self._memft_active.get(int(item))
            if flags is not None:
                positions = mask[row].nonzero().flatten()[: len(flags)]
                prev[row, positions] = torch.tensor(flags[: len(positions)], dtype=torch.bool)
        return prev

    def _remember_active(self, item_ids, weights, mask):
        if self.memft.hysteresis_high is None or item_ids is None:
            return
        for row, item in enumerate(item_ids.tolist()):
            self._memft_active[int(item)] = (weights[row][mask[row]] > 0).tolist()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        item_ids = inputs.pop(ITEM_ID, None)
        outputs = model(**inputs)
        if model.training:
            self._memft_counts["train_tokens"] += _tokens(inputs, labels)
        losses, mask, correct = token_losses(outputs.logits, labels)
        if not model.training:  # evaluation: the plain mean loss over targets
            loss = losses.sum() / mask.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss
        weights = memft_weights(losses, mask, correct, self.memft, self._memft_sliding,
                                self._previously_active(item_ids, mask))  # fmt: skip
        self._remember_active(item_ids, weights, mask)
        if self._memft_book is not None:
            with torch.no_grad():
                learned = ((losses <= self.memft.learned_loss_threshold) | ~mask).all(dim=1)
            self._memft_window.visits.extend(zip(item_ids.tolist(), learned.tolist(), strict=True))
        raw = (losses * weights).sum()
        win = self._memft_window
        with torch.no_grad():
            cut = self.memft.floor + 0.01 if self.memft.mode == "sw_sliding" else 0.0
            win.weight += float(weights.sum())
            win.targets += float(mask.sum())
            win.raw += float(raw)
            win.plain += float(losses.sum())
            win.active += float(((weights > cut) & mask).sum())
            win.covered += float(((losses < self.memft.loss_threshold) & mask).sum())
        if falls_back_to_mean(self.memft):
            win.stored.append({**inputs, "labels": labels})
        return (raw, outputs) if return_outputs else raw

    def _all_reduce(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.args.device)
        if self.accelerator.num_processes > 1:
            tensor = self.accelerator.reduce(tensor, reduction="sum")
        return tensor.tolist()

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        win = self._memft_window
        win.left -= 1
        if win.left > 0:
            return torch.zeros_like(loss)
        weight, targets, raw, plain, active, covered = self._all_reduce(
            [win.weight, win.targets, win.raw, win.plain, win.active, win.covered]
        )
        for key, value in zip(("weight", "targets", "active", "covered"), (weight, targets, active, covered),
                              strict=True):  # fmt: skip
            self._memft_log[key] += value
        if self._memft_book is not None:
            self._memft_retire_step(win.visits)
            win.visits = []
        world = self.accelerator.num_processes
        params = [p for p in model.parameters() if p.grad is not None]
        if weight > empty_weight_cut(self.memft):
            for p in params:
                p.grad.mul_(world / weight)
            value = raw / weight
        elif falls_back_to_mean(self.memft):
            self._memft_counts["fallback_steps"] += 1
            for p in params:
                p.grad.zero_()
            for i, stored in enumerate(win.stored):
                context = (
                    self.accelerator.no_sync(model) if i < len(win.stored) - 1 else contextlib.nullcontext()
                )
                with context, self.compute_loss_context_manager():
                    stored_labels = stored.pop("labels")
                    losses, _mask, _ = token_losses(model(**stored).logits, stored_labels)
                    self.accelerator.backward(losses.sum())
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(world / max(targets, 1.0))
            value = plain / max(targets, 1.0)
        else:
            for p in params:
                p.grad.zero_()
            value = 0.0
            if self.memft.skip_empty_steps:
                self._memft_skip_next = True
        win.stored = []
        return torch.tensor(value, device=loss.device, dtype=loss.dtype)

    # ------------------------------------------------------------------ retire-when-learned
    def _memft_gather(self, values: list) -> list:
        """Concatenate a list across processes (process order), the same result on every process."""
        if self.accelerator.num_processes == 1:
            return list(values)
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

    def _memft_retire_step(self, visits: list[tuple[int, bool]]) -> None:
        """End of an accumulation window (before the optimizer step, so with the weights that produced the
        losses): apply every process's visits in process order."""
        book = self._memft_book
        book.visit_all(self._memft_gather(visits))
        book.steps_in_epoch += 1

    def _memft_all_learned(self) -> bool:
        """After an optimizer step: True when every item is retired and still passes the recheck with the
        updated weights (the model that training stops with)."""
        book = self._memft_book
        if book is None or not book.all_retired:
            return False
        self._memft_recheck_retired()
        if book.all_retired:
            logger.info("MemFT: every item is retired and passed its recheck; stopping training")
            return True
        return False

    def _memft_dataset_rows(self):
        if self._memft_rows is None:
            dataset = self.train_dataset
            if hasattr(dataset, "column_names"):
                dataset = self._remove_unused_columns(dataset, description="training")
            self._memft_rows = dataset
        return self._memft_rows

    def _memft_epoch_start(self) -> None:
        if self._memft_book.recheck_due():
            self._memft_recheck_retired()

    def _memft_recheck_retired(self) -> list[int]:
        """Forward-only check of the retired items (each process takes a share); re-admits those with a
        target token at or below the threshold. Returns the re-admitted items."""
        book = self._memft_book
        if book is None or not self.memft.retire_recheck or not book.retired:
            return []
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        mine = sorted(book.retired)[rank::world]
        rows, batch, failed = self._memft_dataset_rows(), self.args.per_device_train_batch_size, []
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.compute_loss_context_manager():
                for start in range(0, len(mine), batch):
                    chunk = mine[start : start + batch]
                    inputs = self._prepare_inputs(self.data_collator([rows[i] for i in chunk]))
                    labels = inputs.pop("labels")
                    ids = inputs.pop(ITEM_ID)
                    losses, mask, _ = token_losses(model(**inputs).logits, labels)
                    self._memft_counts["recheck_tokens"] += _tokens(inputs, labels)
                    forgotten = ((losses > self.memft.loss_threshold) & mask).any(dim=1)
                    failed.extend(
                        int(i) for i, bad in zip(ids.tolist(), forgotten.tolist(), strict=True) if bad
                    )
        finally:
            model.train(was_training)
        back = book.readmit(self._memft_gather(failed))
        if back:
            logger.info(f"MemFT: {len(back)} retired item(s) fell below the threshold and are sampled again")
        return back

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs,
                             resume_from_checkpoint, trial):  # fmt: skip
        epochs, steps = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        book = self._memft_book
        if book is not None and resume_from_checkpoint is not None and book.resume_pending:
            # retired items make epochs shorter than the Trainer's global_step arithmetic assumes
            epochs = book.epoch
            steps = (
                0
                if self.args.ignore_data_skip
                else book.steps_in_epoch * self.args.gradient_accumulation_steps
            )
        return epochs, steps

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        inner_step = optimizer.step

        def step(*a, **kw):
            if self._memft_skip_next:
                self._memft_skip_next = False
                self._memft_counts["skipped_steps"] += 1
                return None
            return inner_step(*a, **kw)

        optimizer.step = step
        return optimizer

    # ------------------------------------------------------------------ logging and state
    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self._memft_log["targets"]:
            t = self._memft_log["targets"]
            logs["memft_active_ratio"] = round(self._memft_log["active"] / t, 4)
            logs["memft_coverage"] = round(self._memft_log["covered"] / t, 4)
            logs["memft_skipped_steps"] = self._memft_counts["skipped_steps"]
            logs["memft_fallback_steps"] = self._memft_counts["fallback_steps"]
            if self._memft_book is not None:
                logs["memft_retired"] = len(self._memft_book.retired)
                logs["memft_readmitted"] = self._memft_book.readmitted
            self._memft_log = dict.fromkeys(self._memft_log, 0.0)
        return super().log(logs, *args, **kwargs)

    def memft_counts(self) -> dict[str, int]:
        """Running totals on this process: skipped and fallback steps, training tokens (forward + backward,
        padding excluded), forward-only recheck tokens and retired items."""
        book = self._memft_book
        return {**self._memft_counts, "retired": len(book.retired) if book is not None else 0}

    def memft_state_dict(self) -> dict[str, Any]:
        return {
            "sliding": self._memft_sliding.state_dict(),
            "active": {str(k): v for k, v in self._memft_active.items()},
            "counts": dict(self._memft_counts),
            "skip_next": self._memft_skip_next,
            "retire": self._memft_book.state_dict() if self._memft_book is not None else None,
        }

    def load_memft_state_dict(self, state: dict[str, Any]) -> None:
        self._memft_sliding.load_state_dict(state["sliding"])
        self._memft_active = {int(k): v for k, v in state["active"].items()}
        self._memft_counts = {**self._memft_counts, **state["counts"]}
        self._memft_skip_next = bool(state["skip_next"])
        if self._memft_book is not None:
            if not state.get("retire"):
                raise ValueError(
                    "this checkpoint was trained without retire_after; resume with the same MemFT setup"
                )
            self._memft_book.load_state_dict(state["retire"])

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, str) and os.path.isfile(os.path.join(checkpoint, STATE_FILE)):
            with open(os.path.join(checkpoint, STATE_FILE)) as fh:
                self.load_memft_state_dict(json.load(fh))
        return super().train(resume_from_checkpoint, *args, **kwargs)


class _MemFTStateCallback(TrainerCallback):
    """Writes the MemFT state next to each checkpoint (read back by ``MemFTTrainerMixin.train``)."""

    def __init__(self, trainer: MemFTTrainerMixin) -> None:
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                with open(os.path.join(folder, STATE_FILE), "w") as fh:
                    json.dump(self.trainer.memft_state_dict(), fh)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer._memft_all_learned():
            control.should_training_stop = True
        return control


def _tokens(inputs: dict[str, Any], labels: torch.Tensor) -> int:
    """Non-padding tokens of a batch (the attention mask when there is one)."""
    mask = inputs.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(labels.numel())


def memft_trainer_class(base: type) -> type:
    """``base`` (Trainer, SFTTrainer, ...) with the MemFT loss mixed in."""
    return type(f"MemFT{base.__name__}", (MemFTTrainerMixin, base), {})


def memft_collator(base_collator):
    """Wrap a collator so a ``memft_item_id`` feature survives collation as a tensor (needed for hysteresis)."""

    def collate(features):
        ids = [f[ITEM_ID] for f in features]
        batch = base_collator([{k: v for k, v in f.items() if k != ITEM_ID} for f in features])
        batch[ITEM_ID] = torch.tensor(np.asarray(ids, dtype=np.int64))
        return batch

    collate.keeps_memft_item_id = True
    return collate
