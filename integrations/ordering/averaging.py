"""Weight averaging as a Trainer callback (``--hff_average last_k|ema``): the last-k snapshot average or an EMA
of the trainable weights, kept on CPU or the model's device, saved in every checkpoint folder so that
``resume_from_checkpoint`` continues it exactly, and put into the model at the end of training (so that
``trainer.evaluate()`` and ``trainer.save_model()`` see the average) unless ``swap=False``.

The math is :class:`hf_fundamentals.ordering.averaging.WeightAverage`; this module times it on the Trainer's
events: ``on_step_end`` (after the optimizer step, before the step's save and evaluation), ``on_save``
(the checkpoint folder exists by then) and ``on_train_end``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_fundamentals.ordering.averaging import WeightAverage

logger = logging.getLogger(__name__)

STATE_NAME = "hff_average.pt"
"""File in each checkpoint folder with the average's state (``hff_average.rank<r>.pt`` per rank under FSDP2)."""
DEVICES = ("cpu", "model")


def _trainable(model: Any) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _sharded(named: list[tuple[str, torch.Tensor]]) -> bool:
    return any(callable(getattr(p, "to_local", None)) for _, p in named)


def _state_file(folder: str | os.PathLike, sharded: bool, rank: int) -> Path:
    return Path(folder) / (f"hff_average.rank{rank}.pt" if sharded else STATE_NAME)


def resolve_every(mode: str, every: int, k: int, args: Any, max_steps: int) -> int:
    """Steps between updates. ``every > 0`` is taken as is. ``0``: for ``ema`` every step; for ``last_k`` the
    checkpoint interval when saving by steps (``save_steps``, a fraction of the run if < 1, as the Trainer
    reads it), so the average is that of the last k checkpoints, else the last 20% of the run split in k."""
    if every:
        return int(every)
    if mode == "ema":
        return 1
    strategy = str(getattr(getattr(args, "save_strategy", None), "value", getattr(args, "save_strategy", "")))
    save_steps = getattr(args, "save_steps", 0) or 0
    if strategy == "steps" and save_steps:
        return max(1, math.ceil(max_steps * save_steps) if save_steps < 1 else int(save_steps))
    return max(1, (max_steps // 5) // k)


class WeightAveragingCallback(TrainerCallback, ExportableState):
    """Keep a last-k or EMA average of the model's trainable weights during ``Trainer.train``.

    ``mode``: ``"last_k"`` (uniform average of the weights after steps ``T, T-e, ..., T-(k-1)e``) or ``"ema"``
    (decay ``decay`` per update, warm-up ``min(decay, (1+n)/(10+n))``). ``every``: steps between snapshots /
    updates (0: see :func:`resolve_every`). ``device``: ``"cpu"`` or ``"model"``. ``swap``: copy the average
    into the model in ``on_train_end``. The average itself is :attr:`average` (a
    :class:`~hf_fundamentals.ordering.averaging.WeightAverage`).

    Exact resume: every checkpoint folder gets the average's state (``hff_average.pt``); a run resumed from
    that folder (``trainer.train(resume_from_checkpoint=...)``, or ``--resume_from_checkpoint``) reads it
    back and ends with the same average as an uninterrupted run. The folder is found as ``resume_from``,
    ``args.resume_from_checkpoint``, the folder the checkpoint was written to (recorded in its
    ``trainer_state.json``), or ``output_dir/checkpoint-<step>``; a missing state is an error, never a silently
    restarted average. Under DDP each rank keeps the same average
    and rank 0 saves it; under FSDP2 each rank averages and saves its own shard. DeepSpeed is refused (ZeRO-3
    parameters are partitioned outside ``named_parameters``).
    """

    def __init__(
        self, mode: str = "last_k", *, k: int = 5, every: int = 0, decay: float = 0.999, device: str = "cpu",
        swap: bool = True, resume_from: str | os.PathLike | None = None,
    ) -> None:  # fmt: skip
        if device not in DEVICES:
            raise ValueError(f"device {device!r}; accepted: {', '.join(DEVICES)}")
        WeightAverage(mode, k=k, every=max(1, every), decay=decay)  # validate now, not at on_train_begin
        if int(every) != every or every < 0:
            raise ValueError(f"every must be an integer >= 0 (0: default interval); got {every!r}")
        self.mode, self.k, self.every, self.decay = mode, k, int(every), decay
        self.device, self.swap, self.resume_from = device, swap, resume_from
        self.average: WeightAverage | None = None
        self.swapped = False
        self.saved_in: str | None = None

    def state(self) -> dict[str, Any]:
        """For ``trainer_state.json`` (transformers' ``ExportableState``): the settings and the folder this
        checkpoint's average was written to, so a resume from that folder finds it."""
        return {
            "args": {"mode": self.mode, "k": self.k, "every": self.every, "decay": self.decay,
                     "device": self.device, "swap": self.swap},
            "attributes": {"saved_in": self.saved_in},
        }  # fmt: skip

    # -------------------------------------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if getattr(args, "deepspeed", None):
            raise ValueError("weight averaging does not support DeepSpeed (ZeRO-3 partitions the parameters)")
        if self.swap and getattr(args, "load_best_model_at_end", False):
            raise ValueError(
                "load_best_model_at_end and swapping the weight average in at the end both choose the final "
                "model; pass swap=False (--hff_average_swap false) or drop load_best_model_at_end"
            )
        every = resolve_every(self.mode, self.every, self.k, args, state.max_steps)
        self.average = WeightAverage(self.mode, k=self.k, every=every, decay=self.decay,
                                     device="cpu" if self.device == "cpu" else None)  # fmt: skip
        self.swapped = False
        named = _trainable(model)
        if state.global_step > 0:
            self._resume(args, state, named)
        wanted = self.average.snapshot_steps(state.max_steps)
        logger.info(
            "weight averaging (%s): %d updates at steps %s, one fp32 copy of %d trainable tensors on %s",
            self.mode, len(wanted), _short(wanted), len(named), self.device,
        )  # fmt: skip
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # where a save at this step goes (Trainer._save_checkpoint writes trainer_state.json before on_save)
        self.saved_in = str((Path(args.output_dir) / f"checkpoint-{state.global_step}").resolve())
        if self.average is not None and self.average.wants(state.global_step, state.max_steps):
            self.average.update(_trainable(model), state.global_step)
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.average is None:
            return control
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        named = _trainable(model)
        sharded = _sharded(named)
        if sharded or args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            payload = {**self.average.state_dict(), "global_step": state.global_step,
                       "max_steps": state.max_steps}  # fmt: skip
            torch.save(payload, _state_file(folder, sharded, args.process_index))
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.average is None or not self.swap:
            return control
        if not self.average.count:
            logger.warning(
                "weight averaging: training stopped at step %d before any snapshot step (%s); the model keeps "
                "its last weights", state.global_step, _short(self.average.snapshot_steps(state.max_steps)),
            )  # fmt: skip
            return control
        self.average.copy_to(_trainable(model))
        self.swapped = True
        logger.info("weight averaging: the %s average of steps %s is now the model's weights", self.mode,
                    _short(self.average.steps))  # fmt: skip
        return control

    # ------------------------------------------------------------------------------------------- resume
    def _resume(self, args: Any, state: Any, named: list[tuple[str, torch.Tensor]]) -> None:
        sharded = _sharded(named)
        rank = getattr(args, "process_index", 0)
        recorded = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__) or {}
        if isinstance(recorded, list):
            recorded = recorded[0] if recorded else {}
        candidates = [self.resume_from, getattr(args, "resume_from_checkpoint", None),
                      recorded.get("attributes", {}).get("saved_in"),
                      Path(args.output_dir) / f"checkpoint-{state.global_step}"]  # fmt: skip
        found = None
        for c in candidates:
            if c and isinstance(c, (str, os.PathLike)) and _state_file(c, sharded, rank).is_file():
                found = _state_file(c, sharded, rank)
                break
        if found is None:
            raise FileNotFoundError(
                f"resuming at step {state.global_step} with weight averaging, but no {STATE_NAME} was found in "
                f"{[str(c) for c in candidates if c]}; pass resume_from=<checkpoint folder> to the callback "
                "(the checkpoint was written without averaging, or the folder moved)"
            )
        saved = torch.load(found, map_location="cpu", weights_only=True)
        if saved["global_step"] != state.global_step or saved["max_steps"] != state.max_steps:
            raise ValueError(
                f"{found} holds the average at step {saved['global_step']} of {saved['max_steps']}, but the run "
                f"resumes at step {state.global_step} of {state.max_steps}; the average would not be exact"
            )
        self.average.load_state_dict(saved)
        self.average.place_like(named)
        logger.info("weight averaging: resumed from %s (%d updates so far)", found, self.average.count)


def load_average(model: Any, checkpoint: str | os.PathLike) -> Any:
    """Put the average saved in a checkpoint folder into ``model`` (its trainable weights); returns ``model``.

    For evaluating the average of a run that was not swapped, or of an intermediate checkpoint.
    """
    saved = torch.load(Path(checkpoint) / STATE_NAME, map_location="cpu", weights_only=True)
    avg = WeightAverage(**saved["config"], device=None)
    avg.load_state_dict(saved)
    avg.copy_to(_trainable(model))
    return model


def _short(steps: list[int]) -> str:
    return str(steps) if len(steps) <= 6 else f"[{steps[0]}, {steps[1]}, ..., {steps[-1]}] ({len(steps)})"
