"""Anchored Weight Decay as a ``TrainerCallback``: after every optimizer step, pull the weights toward θ0.

``θ ← θ0 + (1 − s)(θ − θ0)`` (l2) or a soft threshold of ``θ − θ0`` by ``s`` (l1), with ``s = lr_t·λ`` and
``lr_t`` the learning rate of the step just taken (arXiv 2605.30148; for ES, lr_t is α). The anchor θ0 is the
weights at the start of training, kept in fp32 on CPU; it is written into every checkpoint
(``awd_anchor.safetensors``) and read back on resume, so a resumed run keeps pulling toward the *base* model,
not toward the checkpoint. Runs on ``on_optimizer_step``, i.e. after ``optimizer.step()`` and before the
scheduler moves the learning rate, in any Trainer (SFT, GRPO, ...).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from transformers import TrainerCallback

from hf_fundamentals.evolution.anchored_decay import AnchoredDecay

logger = logging.getLogger(__name__)
ANCHOR_FILE = "awd_anchor.safetensors"


class AnchoredWeightDecayCallback(TrainerCallback):
    """AWD after each optimizer step; logs ``awd/deviation_before``, ``awd/deviation_after`` and ``awd/shrink``.

    ``lam`` is λ (the paper's 10 is for ES at α = 5e-4; at gradient-trainer learning rates such as 1e-5 the
    same λ barely acts, so re-tune it). ``include``/``exclude`` are name regexes; by default only parameters
    that require grad are anchored (a LoRA run anchors its adapters, not the frozen base), ``trainable_only=
    False`` anchors all, as the paper does for full ES. ``lr`` overrides the learning rate read from the
    scheduler (ES trainers pass α).
    """

    def __init__(
        self,
        lam: float = 10.0,
        kind: str = "l2",
        include: str | None = None,
        exclude: str | None = None,
        trainable_only: bool = True,
        anchor_device: str = "cpu",
        lr: float | None = None,
    ) -> None:
        self.lam, self.kind, self.include, self.exclude = lam, kind, include, exclude
        self.trainable_only, self.anchor_device, self.lr = trainable_only, anchor_device, lr
        self.decay: AnchoredDecay | None = None
        self.last: dict[str, float] = {}
        self.only: set[str] | None = None
        """Names to anchor, set by a trainer that moves only those (``ESTrainer``: the perturbed tensors), so
        the anchor and its checkpoint copy hold nothing that cannot drift."""

    def _params(self, model) -> list[tuple[str, Any]]:
        return [
            (n, p)
            for n, p in model.named_parameters()
            if (p.requires_grad or not self.trainable_only) and (self.only is None or n in self.only)
        ]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise ValueError("AnchoredWeightDecayCallback needs the model in on_train_begin")
        if getattr(args, "weight_decay", 0.0) > 0:
            warnings.warn(
                f"weight_decay={args.weight_decay} also decays toward zero; with anchored decay set it to 0",
                stacklevel=2,
            )
        self.decay = AnchoredDecay(self._params(model), kind=self.kind, lam=self.lam, include=self.include,
                                   exclude=self.exclude, device=self.anchor_device)  # fmt: skip
        peak = self.lr if self.lr is not None else args.learning_rate
        self.decay.shrink_for(peak)  # refuse lr·λ >= 1 before the first step, not in the middle of training
        if state.global_step > 0:  # resuming: the anchor is the base model, saved with the checkpoint
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", ANCHOR_FILE)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"resuming at step {state.global_step} without {path}: the anchor (the weights before "
                    "training) is needed; resume from a checkpoint written with this callback"
                )
            from safetensors.torch import load_file

            self.decay.load_anchor(load_file(path))
        return control

    def on_optimizer_step(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        lr = self.lr
        if lr is None:
            lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else args.learning_rate
        self.last = self.decay.step(self._params(model), lr)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.last and "loss" in logs:
            extra = {f"awd/{k}": round(v, 6) for k, v in self.last.items()}
            logs.update(extra)
            if state.log_history:
                state.log_history[-1].update(extra)
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.decay is not None and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                from safetensors.torch import save_file

                save_file(
                    {k: v.contiguous() for k, v in self.decay.anchor.items()},
                    os.path.join(folder, ANCHOR_FILE),
                )
        return control
