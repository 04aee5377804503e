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

from hf_fundamentals.memorization.memft import (
    MemFTConfig,
    SlidingState,
    curriculum_active_samples,
    empty_weight_cut,
    falls_back_to_mean,
    memft_weights,
    token_losses,
)

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


class CurriculumSampler(torch.utils.data.Sampler[int]):
    """SW-curriculum order: a once-shuffled item list, epoch e training its first ``active(e)`` items in order.

    All curriculum epochs come out of one pass of this sampler (the Trainer runs one epoch), so the step count
    is exact: ``curriculum_total_steps``. ``batch_size`` is the items per optimizer step (per-device batch x
    processes x accumulation).
    """

    def __init__(
        self, n_items: int, batch_size: int, epochs: int, config: MemFTConfig, seed: int = 42
    ) -> None:
        perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed)).tolist()
        self.order = [
            i
            for e in range(epochs)
            for i in perm[: curriculum_active_samples(e, n_items, batch_size, config)]
        ]

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


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
        if self.memft.retire_after:
            raise NotImplementedError("retire_after is not available yet (see the MemFT issue notes)")
        self.loss_is_scaled_for_ga = True  # the window normalization below replaces the Trainer's
        self._memft_window = _Window()
        self._memft_sliding = SlidingState()
        self._memft_active: dict[int, list[bool]] = {}
        self._memft_log = {"weight": 0.0, "targets": 0.0, "active": 0.0, "covered": 0.0}
        self._memft_counts = {"skipped_steps": 0, "fallback_steps": 0}
        self._memft_skip_next = False
        self.add_callback(_MemFTStateCallback(self))

    # ------------------------------------------------------------------ data
    def _get_train_sampler(self, train_dataset=None):
        if self.memft.mode != "sw_curriculum":
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        args = self.args
        batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
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
        losses, mask, correct = token_losses(outputs.logits, labels)
        if not model.training:  # evaluation: the plain mean loss over targets
            loss = losses.sum() / mask.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss
        weights = memft_weights(losses, mask, correct, self.memft, self._memft_sliding,
                                self._previously_active(item_ids, mask))  # fmt: skip
        self._remember_active(item_ids, weights, mask)
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
            self._memft_log = dict.fromkeys(self._memft_log, 0.0)
        return super().log(logs, *args, **kwargs)

    def memft_state_dict(self) -> dict[str, Any]:
        return {
            "sliding": self._memft_sliding.state_dict(),
            "active": {str(k): v for k, v in self._memft_active.items()},
            "counts": dict(self._memft_counts),
            "skip_next": self._memft_skip_next,
        }

    def load_memft_state_dict(self, state: dict[str, Any]) -> None:
        self._memft_sliding.load_state_dict(state["sliding"])
        self._memft_active = {int(k): v for k, v in state["active"].items()}
        self._memft_counts = dict(state["counts"])
        self._memft_skip_next = bool(state["skip_next"])

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

    return collate


def single_mlp_lora_config(model: Any, r: int, layer: int | None = None, **lora_kwargs: Any):
    """PEFT ``LoraConfig`` for the paper's placement: one adapter on a single decoder layer's MLP.

    The reference adds ``x A B`` to one MLP's output (Qwen3-8B layer 24 of 36, Llama-3.1-8B layer 18 of 32);
    the closest PEFT form is LoRA on that layer's ``down_proj``. ``layer`` defaults to 60% of the depth;
    ``lora_alpha`` defaults to ``r`` so the update is not rescaled (the reference applies no alpha).
    For the usual placement pass ``target_modules="all-linear"`` to PEFT instead.
    """
    from peft import LoraConfig

    n_layers = int(model.config.num_hidden_layers)
    layer = round(0.6 * n_layers) if layer is None else int(layer)
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} is outside the model's 0..{n_layers - 1}")
    names = [n for n, _ in model.named_modules() if n.endswith(f"layers.{layer}.mlp.down_proj")]
    if not names:
        raise ValueError(f"no module named like 'layers.{layer}.mlp.down_proj' in this model")
    lora_kwargs.setdefault("lora_alpha", r)
    return LoraConfig(r=r, target_modules=[f"layers.{layer}.mlp.down_proj"], **lora_kwargs)
