"""Retire-when-learned: stop sampling an item once it has stayed learned for ``k`` visits in a row.

Our addition to MemFT (not in the paper): an item whose every target token was above the threshold at each of
its last ``k`` training visits (teacher forcing, the weights of that step) leaves the sampling pool, so later
epochs cost fewer steps. With ``recheck`` the retired items get a forward-only check at an epoch start and
come back when any token fell to or below the threshold (other items' updates can erase them). A recheck is
due once the visits trained since the last one reach the retired count, so rechecks cost at most about a third
of the training compute (a forward is ~1/3 of forward + backward) however short the epochs get.

:class:`RetireBook` holds the decisions and the epoch plans; it is plain Python so the trainer glue can
gather visits across processes and save the whole state as JSON. An item's id is its row in the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class RetireBook:
    """Visit streaks, the retired set and the current epoch's sampling plan for ``n_items`` items.

    ``visit`` records one training visit; ``plan_epoch`` starts an epoch: the not-retired items in a
    seeded shuffle, padded (by repeating items of the same shuffle) to whole optimizer steps of ``step_items``
    so every process and accumulation window gets full batches.
    """

    def __init__(self, n_items: int, retire_after: int, seed: int = 42) -> None:
        if retire_after < 1:
            raise ValueError(f"retire_after counts visits and must be >= 1; got {retire_after}")
        if n_items < 1:
            raise ValueError("retire-when-learned needs at least one item")
        self.n_items = int(n_items)
        self.retire_after = int(retire_after)
        self.seed = int(seed)
        self.streak = np.zeros(self.n_items, dtype=np.int64)
        self.retired: set[int] = set()
        self.epoch = -1  # index of the epoch in progress (-1: none started)
        self.plan: list[int] = []
        self.steps_in_epoch = 0  # optimizer steps trained in the current plan
        self.readmitted = 0
        self.since_recheck = 0  # training visits since the last recheck
        self.resume_pending = False

    # ------------------------------------------------------------------ decisions
    def visit(self, item: int, learned: bool) -> bool:
        """One training visit of ``item``; ``learned``: every target token above threshold. True if it retires
        now. A visit to an already retired item (a padding repeat in the same epoch) keeps it retired."""
        if not 0 <= item < self.n_items:
            raise IndexError(
                f"item id {item} outside 0..{self.n_items - 1} (ids must be dataset row numbers)"
            )
        self.since_recheck += 1
        self.streak[item] = self.streak[item] + 1 if learned else 0
        if learned and self.streak[item] >= self.retire_after and item not in self.retired:
            self.retired.add(int(item))
            return True
        return False

    def visit_all(self, visits: Iterable[tuple[int, bool]]) -> list[int]:
        """Apply visits in order; returns the items retired by them."""
        return [item for item, learned in visits if self.visit(int(item), bool(learned))]

    def recheck_due(self) -> bool:
        """Retired items exist and the visits trained since the last recheck reach their count."""
        return bool(self.retired) and self.since_recheck >= len(self.retired)

    def readmit(self, items: Iterable[int]) -> list[int]:
        """Record a recheck: put the items that failed it back into sampling, their streak from zero."""
        self.since_recheck = 0
        back = sorted(int(i) for i in items if int(i) in self.retired)
        for item in back:
            self.retired.discard(item)
            self.streak[item] = 0
        self.readmitted += len(back)
        return back

    @property
    def active(self) -> list[int]:
        return [i for i in range(self.n_items) if i not in self.retired]

    @property
    def all_retired(self) -> bool:
        return len(self.retired) == self.n_items

    # ------------------------------------------------------------------ epochs
    def plan_epoch(self, step_items: int) -> list[int]:
        """Start the next epoch and return its item order (empty once every item is retired)."""
        if step_items < 1:
            raise ValueError(f"step_items must be >= 1; got {step_items}")
        self.epoch += 1
        self.steps_in_epoch = 0
        active = np.asarray(self.active, dtype=np.int64)
        if active.size == 0:
            self.plan = []
            return []
        order = np.random.default_rng([self.seed, self.epoch]).permutation(active)
        pad = -len(order) % step_items
        if pad:
            order = np.concatenate([order, np.resize(order, pad)])
        self.plan = order.tolist()
        return list(self.plan)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "retire_after": self.retire_after,
            "seed": self.seed,
            "streak": self.streak.tolist(),
            "retired": sorted(self.retired),
            "epoch": self.epoch,
            "plan": list(self.plan),
            "steps_in_epoch": self.steps_in_epoch,
            "readmitted": self.readmitted,
            "since_recheck": self.since_recheck,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved book; the next epoch start replays the saved plan (the epoch being resumed)."""
        if int(state["n_items"]) != self.n_items:
            raise ValueError(
                f"the checkpoint's retire state covers {state['n_items']} items, this dataset has {self.n_items}"
            )
        self.retire_after = int(state["retire_after"])
        self.seed = int(state["seed"])
        self.streak = np.asarray(state["streak"], dtype=np.int64)
        self.retired = {int(i) for i in state["retired"]}
        self.epoch = int(state["epoch"])
        self.plan = [int(i) for i in state["plan"]]
        self.steps_in_epoch = int(state["steps_in_epoch"])
        self.readmitted = int(state["readmitted"])
        self.since_recheck = int(state["since_recheck"])
        self.resume_pending = self.epoch >= 0
