"""The schedules an order goes with are the Trainer's own: WSD (with the decay as a share of the run) and cosine
to a floor, checked step by step on a real Trainer."""

from __future__ import annotations

import math

import order_dist_worker as worker
import pytest
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_fundamentals.ordering.schedules import wsd_scheduler_kwargs


class _LRs(TrainerCallback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.lrs.append(lr_scheduler.get_last_lr()[0])


def _lrs(tmp_path, **kw) -> list[float]:
    rec = _LRs()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=2,
                             learning_rate=1e-2, warmup_steps=4, report_to=[], use_cpu=True, save_strategy="no",
                             remove_unused_columns=False, **kw)  # fmt: skip
    Trainer(model=worker.model(), args=args, train_dataset=worker.dataset(), data_collator=worker.RecordingCollator(),
            callbacks=[rec]).train()  # fmt: skip
    return rec.lrs


def test_wsd_from_a_fraction_warms_up_stays_and_cools_down(tmp_path):
    kwargs = wsd_scheduler_kwargs(20, 0.25, decay_type="linear", min_lr_ratio=0.1)
    assert kwargs == {"num_decay_steps": 5, "decay_type": "linear", "min_lr_ratio": 0.1}
    lrs = _lrs(tmp_path, lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs=kwargs)
    assert len(lrs) == 20
    assert lrs[0] < lrs[3] < 1e-2  # warmup (4 steps)
    assert all(math.isclose(x, 1e-2) for x in lrs[4:15])  # stable: 20 - 4 - 5 = 11 steps at the peak
    decay = lrs[15:]
    assert (
        all(a > b for a, b in zip(decay, decay[1:], strict=False)) and decay[-1] > 1e-3
    )  # down, above the floor
    assert math.isclose(decay[1] - decay[2], decay[2] - decay[3], rel_tol=1e-6)  # linear


def test_cooldown_defaults_and_cosine_to_a_floor(tmp_path):
    cool = _lrs(
        tmp_path, lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs=wsd_scheduler_kwargs(20)
    )
    assert all(math.isclose(x, 1e-2) for x in cool[4:16]) and cool[-1] < 0.25e-2  # 1-sqrt cooldown to 0
    cos = _lrs(tmp_path, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})
    assert math.isclose(max(cos), 1e-2) and min(cos[4:]) >= 1e-3 - 1e-12
    progress = (19 - 4) / 16
    assert math.isclose(cos[19], 1e-3 + 0.9e-2 * 0.5 * (1 + math.cos(math.pi * progress)), rel_tol=1e-6)


def test_wsd_kwargs_refuse_what_would_not_decay():
    with pytest.raises(ValueError, match="decay_fraction"):
        wsd_scheduler_kwargs(100, 0.0)
    with pytest.raises(ValueError, match="decay_type"):
        wsd_scheduler_kwargs(100, decay_type="exp")
