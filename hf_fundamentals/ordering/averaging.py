"""Weight averaging over a training run: the uniform average of the last k snapshots, or an EMA.

Why it sits with the orders: a curriculum puts its best data at the end of the run, where a decaying learning
rate barely lets the model learn from it. Luo et al. (arXiv 2511.18903) find that a curriculum's advantage
over a shuffle vanishes under the usual LR decay and comes back with a moderate decay plus an average of the
last checkpoints; averaging does the noise reduction that the decay would otherwise do.

:class:`WeightAverage` works on named tensors only (no Trainer): the Trainer glue is
:class:`hf_fundamentals.integrations.ordering.averaging.WeightAveragingCallback`.

* ``last_k``: the snapshots at steps ``T, T-e, ..., T-(k-1)e`` (``T`` the last step, ``e`` = ``every``) are
  summed into one fp32 buffer as training passes them, so the uniform average costs **one** fp32 copy of the
  averaged parameters, not k, because the snapshot steps are known once the run's length is.
* ``ema``: ``avg <- avg + (1 - d_n) (w - avg)`` every ``every`` steps, with the warm-up decay
  ``d_n = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (``tf.train.ExponentialMovingAverage``'s
  ``num_updates``), so a short run is not dominated by its random init. One fp32 copy as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

MODES = ("last_k", "ema")


def _local(t: torch.Tensor) -> torch.Tensor:
    """The tensor this process holds (a DTensor's local shard under FSDP2; the tensor itself otherwise)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


class WeightAverage:
    """A running average of named tensors (a model's trainable parameters), in fp32.

    ``device``: where the average lives (``"cpu"`` saves accelerator memory at the price of a copy per
    update; ``None`` keeps it on each tensor's device). Tensors that are DTensors (FSDP2) are averaged
    shard by shard: each process keeps the average of its own shard.
    """

    def __init__(
        self, mode: str = "last_k", *, k: int = 5, every: int = 1, decay: float = 0.999,
        device: str | torch.device | None = "cpu",
    ) -> None:  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"averaging mode {mode!r}; accepted: {', '.join(MODES)}")
        if int(k) != k or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}")
        if int(every) != every or every < 1:
            raise ValueError(f"every must be an integer >= 1 (steps between updates); got {every!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1); got {decay!r}")
        self.mode, self.k, self.every, self.decay = mode, int(k), int(every), float(decay)
        self.device = None if device is None else torch.device(device)
        self.buffers: dict[str, torch.Tensor] = {}
        self.count = 0
        self.steps: list[int] = []

    def config(self) -> dict[str, Any]:
        """What defines the average (a resumed run must match it to continue exactly)."""
        return {"mode": self.mode, "k": self.k, "every": self.every, "decay": self.decay}

    def snapshot_steps(self, max_steps: int) -> list[int]:
        """``last_k``: the steps whose weights are averaged in a run of ``max_steps`` (ascending, all >= 1);
        ``ema``: every ``every``-th step."""
        if self.mode == "ema":
            return list(range(self.every, max_steps + 1, self.every))
        return sorted(s for s in (max_steps - j * self.every for j in range(self.k)) if s >= 1)

    def wants(self, step: int, max_steps: int) -> bool:
        """Whether the weights after optimizer step ``step`` (1-based) enter the average."""
        if step < 1 or step > max_steps:
            return False
        if self.mode == "ema":
            return step % self.every == 0
        back = max_steps - step
        return back % self.every == 0 and back // self.every < self.k

    @torch.no_grad()
    def update(self, named: Iterable[tuple[str, torch.Tensor]], step: int) -> None:
        """Add the tensors' current values (the weights after step ``step``) to the average."""
        n = self.count
        d = min(self.decay, (1 + n) / (10 + n))
        for name, tensor in named:
            w = _local(tensor.detach())
            w = w.to(self.device if self.device is not None else w.device, dtype=torch.float32, copy=True)
            buf = self.buffers.get(name)
            if buf is None:
                if n:
                    raise KeyError(f"{name!r} was not averaged before (the set of averaged tensors changed)")
                self.buffers[name] = w
            elif self.mode == "last_k":
                buf.add_(w)
            else:
                buf.lerp_(w, 1.0 - d)
        self.count += 1
        self.steps.append(int(step))

    def average(self) -> dict[str, torch.Tensor]:
        """The averaged tensors (fp32, on the average's device); empty before the first update."""
        if self.mode == "ema" or not self.count:
            return dict(self.buffers)
        return {name: buf / self.count for name, buf in self.buffers.items()}

    @torch.no_grad()
    def copy_to(self, named: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Write the average into the tensors of the same names (cast to their dtype and device); returns how
        many were written. Raises if the average is empty or a name is missing."""
        if not self.count:
            raise RuntimeError("the average is empty: no snapshot step was reached")
        avg = self.average()
        written = 0
        for name, tensor in named:
            if name not in avg:
                continue
            target = _local(tensor.data)
            target.copy_(avg[name].to(device=target.device, dtype=target.dtype))
            written += 1
        if written != len(avg):
            raise KeyError(f"{len(avg) - written} averaged tensors have no counterpart in the model")
        return written

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the average exactly (buffers on CPU)."""
        return {
            "config": self.config(),
            "count": self.count,
            "steps": list(self.steps),
            "buffers": {k: v.cpu() for k, v in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; the configuration must be the same."""
        if state["config"] != self.config():
            raise ValueError(
                f"the saved average was built with {state['config']}, this one is {self.config()}; "
                "an average continued under other settings would not be the one asked for"
            )
        self.count = int(state["count"])
        self.steps = [int(s) for s in state["steps"]]
        self.buffers = {
            k: v.to(self.device, dtype=torch.float32) if self.device is not None else v.float()
            for k, v in state["buffers"].items()
        }

    def place_like(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        """With ``device=None``, move each buffer to its tensor's device (after :meth:`load_state_dict`)."""
        if self.device is not None:
            return
        for name, tensor in named:
            if name in self.buffers:
                self.buffers[name] = self.buffers[name].to(_local(tensor.detach()).device)

    def nbytes(self) -> int:
        """Memory the average holds (bytes)."""
        return sum(b.numel() * b.element_size() for b in self.buffers.values())
