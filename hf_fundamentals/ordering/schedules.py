"""Learning-rate schedules that go with a training order, as transformers' own ``lr_scheduler_type`` values.

transformers already has what an order needs: ``warmup_stable_decay`` (WSD: warmup, constant, decay; with
``decay_type="1-sqrt"`` it is the constant-with-cooldown schedule of Hagele et al., arXiv 2405.18392, Sec. 3)
and ``cosine_with_min_lr`` (cosine to a floor, as the ordering paper's 6e-4 -> 6e-5). What it lacks is the
decay length as a share of the run: ``get_wsd_schedule`` takes ``num_decay_steps`` in steps.
:func:`wsd_scheduler_kwargs` computes it, for ``TrainingArguments(lr_scheduler_type="warmup_stable_decay",
lr_scheduler_kwargs=...)``.
"""

from __future__ import annotations

from typing import Any

DECAY_TYPES = ("linear", "cosine", "1-sqrt")


def wsd_scheduler_kwargs(
    max_steps: int, decay_fraction: float = 0.2, *, decay_type: str = "1-sqrt", min_lr_ratio: float = 0.0
) -> dict[str, Any]:
    """``lr_scheduler_kwargs`` for ``lr_scheduler_type="warmup_stable_decay"`` that decay over the last
    ``decay_fraction`` of a ``max_steps`` run to ``min_lr_ratio`` times the peak (the warmup is the Trainer's
    ``warmup_steps``/``warmup_ratio``; the stable phase is the rest).

    The defaults are the cooldown of arXiv 2405.18392 (20% of the run, ``1-sqrt`` to zero). For a moderate
    decay, which arXiv 2511.18903 pairs with a curriculum and checkpoint averaging, raise ``min_lr_ratio``.
    """
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1; got {max_steps!r}")
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1]; got {decay_fraction!r}")
    if decay_type not in DECAY_TYPES:
        raise ValueError(f"decay_type {decay_type!r}; accepted: {', '.join(DECAY_TYPES)}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1]; got {min_lr_ratio!r}")
    return {
        "num_decay_steps": max(1, round(decay_fraction * max_steps)),
        "decay_type": decay_type,
        "min_lr_ratio": float(min_lr_ratio),
    }
