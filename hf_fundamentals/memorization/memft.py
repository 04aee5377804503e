"""MemFT per-token weighting (arXiv 2605.30260, zjunlp/ParametricMemoryLaw ``MemFTModelTrainer``).

A target token whose probability under teacher forcing is above 0.5 is the argmax, so greedy decoding
reproduces an item once all its tokens cross 0.5. MemFT puts the loss on the tokens still below that line:

* ``ot``: weight 1 on tokens with loss > -ln(threshold), 0 otherwise; the loss is the mean over active tokens,
  falling back to the plain mean when none is active.
* ``ot_zero_bp``: the same, but no token active means no gradient at all.
* ``sw_sliding`` (long passages): a soft threshold ``sigmoid(scale (l - tau))`` times a window that starts at
  the first wrongly predicted token (the anchor), decays as ``exp(-d/20)`` inside ``window * expansion`` tokens
  and is ``floor`` beyond; the window widens by ``expansion_step`` per step (up to ``max_expansion``) once the
  anchor has been stuck for ``patience`` steps.
* ``sw_curriculum`` (many short items): OT-zero-bp loss over a growing prefix of a once-shuffled item list
  (:func:`curriculum_active_samples`).

Everything here works on per-token losses; the trainer glue decides how micro-batches are normalized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

MODES = ("sft", "ot", "ot_zero_bp", "sw_sliding", "sw_curriculum")
SLIDING_EMPTY = 1e-5  # the reference's "no weight left" cut for the sliding variant


@dataclass
class MemFTConfig:
    """MemFT settings; defaults are the reference's (threshold 0.5, scale 10, window 50, tau 20, floor 0.01, ...)."""

    mode: str = "ot"
    threshold: float = 0.5
    position_decay_lambda: float | None = None
    sliding_scale: float = 10.0
    window: int = 50
    sliding_tau: float = 20.0
    floor: float = 0.01
    patience: int = 3
    expansion_step: float = 0.5
    max_expansion: float = 4.0
    curriculum_ratios: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0)
    curriculum_epoch_boundaries: Sequence[int] = (20, 40, 60, 80, 200)
    skip_empty_steps: bool = False
    hysteresis_high: float | None = None
    retire_after: int = 0
    retire_recheck: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"MemFT mode {self.mode!r}; accepted: {', '.join(MODES)}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1); got {self.threshold}")
        if self.hysteresis_high is not None and not self.threshold < self.hysteresis_high < 1.0:
            raise ValueError(
                f"hysteresis_high must lie between threshold ({self.threshold}) and 1; got {self.hysteresis_high}"
            )
        if len(self.curriculum_ratios) != len(self.curriculum_epoch_boundaries):
            raise ValueError("curriculum_ratios and curriculum_epoch_boundaries must have the same length")
        if self.retire_after < 0:
            raise ValueError(f"retire_after counts visits (0 = off); got {self.retire_after}")
        if self.retire_after and self.mode == "sw_curriculum":
            raise ValueError(
                "retire_after does not combine with sw_curriculum (both decide which items are sampled)"
            )

    @property
    def loss_threshold(self) -> float:
        """-ln(threshold): a token is learned when its loss is at or below this."""
        return -math.log(self.threshold)

    @property
    def learned_loss_threshold(self) -> float:
        """The loss at or below which a token counts as learned for retiring an item: -ln(hysteresis_high)
        when hysteresis is on (an item retires only once clear of the band), else -ln(threshold)."""
        return -math.log(self.hysteresis_high if self.hysteresis_high is not None else self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_losses(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token next-token loss ``[B, T-1]`` (0 where the label is -100), the target mask, and greedy correctness."""
    shift_logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    safe = targets.masked_fill(~mask, 0)
    losses = F.cross_entropy(shift_logits.transpose(1, 2), safe, reduction="none") * mask
    with torch.no_grad():
        correct = (shift_logits.argmax(dim=-1) == safe) & mask
    return losses, mask, correct


def position_weights(hard: torch.Tensor, lam: float) -> torch.Tensor:
    """Reference position decay: the k-th hard token of a row gets exp(-lam * k / max(n_hard - 1, 1))."""
    ranks = torch.cumsum(hard.long(), dim=1).float() - 1.0
    denom = (hard.sum(dim=1, keepdim=True) - 1).clamp(min=1).float()
    return torch.where(hard, torch.exp(-lam * (ranks / denom).clamp(0, 1)), torch.zeros_like(ranks))


def ot_weights(
    losses: torch.Tensor,
    mask: torch.Tensor,
    config: MemFTConfig,
    previously_active: torch.Tensor | None = None,
) -> torch.Tensor:
    """OT weights: 1 on tokens below the probability threshold (with hysteresis: also on tokens that were active
    and are still below ``hysteresis_high``), optionally decayed by hard-token rank."""
    with torch.no_grad():
        hard = (losses > config.loss_threshold) & mask
        if config.hysteresis_high is not None and previously_active is not None:
            hard = hard | (previously_active & (losses > -math.log(config.hysteresis_high)) & mask)
        if config.position_decay_lambda:
            return position_weights(hard, float(config.position_decay_lambda))
        return hard.float()


class SlidingState:
    """Per-row anchor, patience and window expansion of the sliding variant (per batch slot, as the reference)."""

    def __init__(self) -> None:
        self.patience: torch.Tensor | None = None
        self.expansion: torch.Tensor | None = None
        self.last_anchor: torch.Tensor | None = None

    def update(self, anchors: torch.Tensor, has_error: torch.Tensor, config: MemFTConfig) -> torch.Tensor:
        """Advance one step; returns each row's window expansion factor."""
        n = anchors.shape[0]
        if self.patience is None or self.patience.shape[0] != n:
            self.patience = torch.zeros(n, device=anchors.device)
            self.expansion = torch.ones(n, device=anchors.device)
            self.last_anchor = torch.full((n,), -1, device=anchors.device, dtype=anchors.dtype)
        stuck = (anchors == self.last_anchor) & has_error
        self.patience = torch.where(stuck, self.patience + 1, torch.zeros_like(self.patience))
        self.expansion = torch.where(
            self.patience >= config.patience,
            (self.expansion + config.expansion_step).clamp(max=config.max_expansion),
            torch.ones_like(self.expansion),
        )
        self.last_anchor = torch.where(has_error, anchors, torch.full_like(anchors, -1))
        return self.expansion

    def state_dict(self) -> dict[str, Any]:
        return {k: None if v is None else v.tolist() for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            dtype = torch.long if key == "last_anchor" else torch.float32
            setattr(self, key, None if value is None else torch.tensor(value, dtype=dtype))


def sliding_weights(
    losses: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor, state: SlidingState, config: MemFTConfig
) -> torch.Tensor:
    """SW-sliding weights (see the module docstring); updates ``state``."""
    with torch.no_grad():
        wrong = mask & ~correct
        has_error = wrong.any(dim=1)
        anchors = wrong.float().argmax(dim=1)  # first wrong position (0 when none: unused then)
        base = torch.sigmoid(config.sliding_scale * (losses - config.loss_threshold)) * mask
        expansion = state.update(anchors, has_error, config)
        pos = torch.arange(losses.shape[1], device=losses.device).unsqueeze(0)
        rel = (pos - anchors.unsqueeze(1)).float()
        decay = torch.exp(-rel.clamp(min=0) / config.sliding_tau)
        inside = rel < (config.window * expansion).unsqueeze(1)
        window = torch.where(inside, decay, torch.full_like(decay, config.floor))
        window = torch.where(has_error.unsqueeze(1), window, torch.ones_like(window))
        return base * window


def curriculum_ratio(epoch: int, config: MemFTConfig) -> float:
    """The prefix ratio in force at ``epoch`` (the first boundary above it; the last ratio after all)."""
    for ratio, boundary in zip(config.curriculum_ratios, config.curriculum_epoch_boundaries, strict=True):
        if epoch < boundary:
            return float(ratio)
    return float(config.curriculum_ratios[-1])


def curriculum_active_samples(epoch: int, n_samples: int, batch_size: int, config: MemFTConfig) -> int:
    """Items trained in ``epoch``: ``floor(n * ratio)`` rounded down to whole batches, at least one batch,
    at most the whole batches of the dataset (the last partial batch is dropped), as the reference."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    complete = (n_samples // batch_size) * batch_size
    if complete < batch_size:
        raise ValueError(
            f"the curriculum needs at least one full batch: {n_samples} items, batch {batch_size}"
        )
    active = (int(n_samples * curriculum_ratio(epoch, config)) // batch_size) * batch_size
    return min(complete, max(batch_size, active))


def curriculum_total_steps(n_samples: int, batch_size: int, epochs: int, config: MemFTConfig) -> int:
    """Optimizer steps of a curriculum run of ``epochs`` epochs (batch = items per optimizer step)."""
    return sum(
        curriculum_active_samples(e, n_samples, batch_size, config) // batch_size for e in range(epochs)
    )


def memft_weights(
    losses: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    config: MemFTConfig,
    sliding_state: SlidingState | None = None,
    previously_active: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-token weights of ``config.mode`` (``sft``: every target token weighs 1)."""
    if config.mode == "sft":
        return mask.float()
    if config.mode == "sw_sliding":
        if sliding_state is None:
            raise ValueError("mode 'sw_sliding' needs a SlidingState")
        return sliding_weights(losses, mask, correct, sliding_state, config)
    return ot_weights(losses, mask, config, previously_active)


def empty_weight_cut(config: MemFTConfig) -> float:
    """Total weight at or below which a batch counts as having no active token."""
    return SLIDING_EMPTY if config.mode == "sw_sliding" else 0.0


def falls_back_to_mean(config: MemFTConfig) -> bool:
    """Whether an empty batch trains on the plain mean loss (``ot``, ``sw_sliding``) or on nothing."""
    return config.mode in ("ot", "sw_sliding")


def memft_loss(
    losses: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, config: MemFTConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch's MemFT loss ``sum(w l) / sum(w)`` with the mode's fallback, and its statistics."""
    total = weights.sum()
    n_targets = mask.sum()
    if float(total) > empty_weight_cut(config):
        loss = (losses * weights).sum() / total
    elif falls_back_to_mean(config):
        loss = losses.sum() / n_targets.clamp(min=1)
    else:
        loss = (losses * 0.0).sum()  # keeps the graph, carries no gradient
    stats = batch_stats(losses, mask, weights, config)
    return loss, stats


def batch_stats(
    losses: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, config: MemFTConfig
) -> dict[str, float]:
    """Active-token ratio, threshold coverage (share of targets with p > threshold) and mean target loss."""
    n = max(int(mask.sum()), 1)
    with torch.no_grad():
        cut = config.floor + 0.01 if config.mode == "sw_sliding" else 0.0
        return {
            "active_ratio": float(((weights > cut) & mask).sum()) / n,
            "coverage": float(((losses < config.loss_threshold) & mask).sum()) / n,
            "target_loss": float((losses * mask).sum()) / n,
        }
