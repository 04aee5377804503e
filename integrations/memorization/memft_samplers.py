"""The samplers MemFT's trainer uses: the sliding-window curriculum's growing prefix and retire-when-learned's
shrinking item set."""

from __future__ import annotations

import torch

from hf_fundamentals.memorization.memft import (
    MemFTConfig,
    curriculum_active_samples,
)
from hf_fundamentals.memorization.retire import RetireBook


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


class RetireSampler(torch.utils.data.Sampler[int]):
    """Each epoch: the items not retired, shuffled, padded to whole optimizer steps (see ``RetireBook``).

    ``on_epoch_start`` runs before a new plan is drawn (the trainer's recheck of retired items). A resumed
    epoch replays the saved plan, so the Trainer's skip of the batches already trained lands on the same items.
    ``len`` is the full dataset padded to whole steps: the Trainer plans its epochs from it, and retired items
    only make epochs shorter.
    """

    def __init__(self, book: RetireBook, step_items: int, on_epoch_start=None) -> None:
        self.book = book
        self.step_items = int(step_items)
        self.on_epoch_start = on_epoch_start

    def __iter__(self):
        if self.book.resume_pending:
            self.book.resume_pending = False
            plan = list(self.book.plan)
        else:
            if self.on_epoch_start is not None:
                self.on_epoch_start()
            plan = self.book.plan_epoch(self.step_items)
        yield from plan

    def __len__(self) -> int:
        return self.book.n_items + (-self.book.n_items % self.step_items)
