"""Evolution Strategies for full-parameter fine-tuning: one iteration, split across processes, and replay.

One iteration (Qiu et al., arXiv 2509.24372, as VsonicV/es-fine-tuning-paper
``countdown/es_fine-tuning_countdown_iid.py`` implements it; the seeding and exact restore are our design):

1. direction seeds from ``RNG(seed + step)`` (:func:`direction_seeds`);
2. each member ``m`` (this process: ``m ≡ rank (mod world)``) perturbs the parameters in place,
   its reward is measured, the parameters are restored exactly (:func:`perturbed`);
3. the rewards of all members are combined (in a distributed run: an ``all_reduce`` of a zero-filled vector);
4. shaping gives one coefficient per direction (:func:`es_coefficients`);
5. every process applies the same update ``θ ← θ + (α/N)·Σ_j c_j ε_j`` (no ``1/σ``: α absorbs it), one tensor
   at a time, accumulated in fp32 with each ``ε_j`` rebuilt from its seed (:func:`es_update_`).

An :class:`ESStepRecord` holds what the update needs (seeds, coefficients, α, N, noise mode), so
:func:`replay_steps` rebuilds θ_T from θ0 bit for bit (kschweig/es-awd writes the same per-iteration JSON,
``iteration_updates/iteration_XXXXXX.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from hf_fundamentals.evolution.anchored_decay import AnchoredDecay
from hf_fundamentals.evolution.master import MasterWeights, write_master_
from hf_fundamentals.evolution.noise import check_noise_mode, direction_seeds, member_direction, tensor_noise
from hf_fundamentals.evolution.perturb import perturbed
from hf_fundamentals.evolution.shaping import SHAPINGS, es_coefficients

Params = Sequence[tuple[str, torch.Tensor]]
RewardFn = Callable[[Params], float]


@dataclass
class ESConfig:
    """The core ES hyper-parameters. Defaults: N = 30, σ = 1e-3, α = σ/2 = 5e-4, z-score shaping, no mirroring
    (arXiv 2509.24372 and kschweig/es-awd); iid noise (our design); seed 42 (our choice: TrainingArguments'
    default, which the trainer glue passes in)."""

    population: int = 30
    sigma: float = 1e-3
    alpha: float | None = None
    shaping: str = "zscore"
    noise_mode: str = "iid"
    mirrored: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 2:
            raise ValueError(
                f"population must be an integer >= 2 (shaping compares members); got {self.population!r}"
            )
        if self.mirrored and self.population % 2:
            raise ValueError(
                f"mirrored sampling evaluates ± pairs, so population must be even; got {self.population}"
            )
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma (perturbation scale) must be finite and > 0; got {self.sigma}")
        if self.alpha is None:
            self.alpha = self.sigma / 2  # as VsonicV/es-at-scale and kschweig/es-awd
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha (ES learning rate) must be finite and > 0; got {self.alpha}")
        if self.shaping not in SHAPINGS:
            raise ValueError(f"shaping {self.shaping!r} is not known; accepted: {', '.join(SHAPINGS)}")
        check_noise_mode(self.noise_mode)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}")

    @property
    def directions(self) -> int:
        """Noise directions per step: ``population``, or ``population // 2`` when mirrored."""
        return self.population // 2 if self.mirrored else self.population

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for logs and the step records)."""
        return asdict(self)


@dataclass
class ESStepRecord:
    """One applied ES step, enough to replay it: seeds and coefficients per direction, α, N and the noise
    mode; plus the rewards, σ, whether fp32 master weights were used and the AWD shrink applied after it."""

    step: int
    seeds: list[int]
    coefficients: list[float]
    alpha: float
    population: int
    noise_mode: str
    sigma: float
    mirrored: bool = False
    rewards: list[float] = field(default_factory=list)
    master_weights: bool = False
    decay_kind: str = "none"
    decay_shrink: float = 0.0

    def __post_init__(self) -> None:
        if len(self.seeds) != len(self.coefficients):
            raise ValueError(f"{len(self.seeds)} seeds but {len(self.coefficients)} coefficients")
        check_noise_mode(self.noise_mode)

    @property
    def scale(self) -> float:
        """``α / N``, the factor in front of ``Σ c_j ε_j``."""
        return self.alpha / self.population

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (Python floats round-trip exactly through JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ESStepRecord:
        """Rebuild a record from :meth:`to_dict` output (e.g. a JSON step log); unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ES step record keys {sorted(unknown)}")
        return cls(**dict(data))


def member_indices(population: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The members one process evaluates: ``rank, rank + world, ...`` (seed k → rank k mod world, as
    VsonicV/es-fine-tuning-paper)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must lie in 0..world_size-1 with world_size >= 1; got rank={rank}, world_size={world_size}"
        )
    return list(range(rank, population, world_size))


def evaluate_members(
    params: Params,
    reward_fn: RewardFn,
    config: ESConfig,
    seeds: Sequence[int],
    members: Iterable[int],
    master: MasterWeights | None = None,
) -> dict[int, float]:
    """Reward of each listed member: perturb in place, call ``reward_fn(params)``, restore exactly."""
    if len(seeds) != config.directions:
        raise ValueError(f"expected {config.directions} direction seeds for this config; got {len(seeds)}")
    rewards: dict[int, float] = {}
    for member in members:
        if not 0 <= member < config.population:
            raise ValueError(f"member {member} outside 0..{config.population - 1}")
        direction, sign = member_direction(member, config.mirrored)
        with perturbed(
            params, seeds[direction], config.sigma, sign=sign, mode=config.noise_mode, master=master
        ):
            reward = float(reward_fn(params))
        if not math.isfinite(reward):
            raise ValueError(f"reward of member {member} is {reward}; rewards must be finite")
        rewards[member] = reward
    return rewards


def combine_rewards(parts: Iterable[Mapping[int, float]], population: int) -> np.ndarray:
    """Merge per-process ``{member: reward}`` dicts into the full reward vector; every member exactly once."""
    out = np.full(population, np.nan)
    for part in parts:
        for member, reward in part.items():
            if not 0 <= member < population:
                raise ValueError(f"member {member} outside 0..{population - 1}")
            if not np.isnan(out[member]):
                raise ValueError(f"member {member} was evaluated by more than one process")
            out[member] = reward
    missing = np.flatnonzero(np.isnan(out)).tolist()
    if missing:
        raise ValueError(f"no reward for members {missing}")
    return out


def es_update_(
    params: Params,
    seeds: Sequence[int],
    coefficients: Sequence[float],
    scale: float,
    noise_mode: str = "iid",
    master: MasterWeights | None = None,
) -> None:
    """``θ ← θ + scale·Σ_j c_j ε_j``, one tensor at a time: ``Σ c_j ε_j`` accumulated in fp32 (each ``ε_j``
    rebuilt from its seed), then added once; into the fp32 master when given, else in fp32 and rounded once to
    the parameter dtype. Accumulating in the weights' own bf16 loses the small step (cf. VsonicV/es-at-scale
    ``es_at_scale/utils/worker_extension.py``)."""
    if len(seeds) != len(coefficients):
        raise ValueError(f"{len(seeds)} seeds but {len(coefficients)} coefficients")
    coefficients = [float(c) for c in coefficients]
    if not all(math.isfinite(c) for c in coefficients):
        raise ValueError(f"coefficients must be finite; got {coefficients}")
    with torch.no_grad():
        for name, param in params:
            acc = torch.zeros(param.shape, dtype=torch.float32, device=param.device)
            for seed, coef in zip(seeds, coefficients, strict=True):
                if coef != 0.0:
                    acc.add_(
                        tensor_noise(seed, name, param.shape, mode=noise_mode, device=param.device),
                        alpha=coef,
                    )
            if master is not None:
                target = master[name]
                target.add_(acc.to(target.device), alpha=scale)
                write_master_(param, target)
            else:
                param.copy_(torch.add(param.float(), acc, alpha=scale).to(param.dtype))


def apply_step(
    params: Params,
    record: ESStepRecord,
    master: MasterWeights | None = None,
    decay: AnchoredDecay | None = None,
) -> None:
    """Apply a recorded step (the update, then its AWD shrink); what :func:`es_step` does after evaluating."""
    if record.master_weights != (master is not None):
        need = "needs" if record.master_weights else "was taken without"
        raise ValueError(f"step {record.step} {need} fp32 master weights; pass master= accordingly")
    if record.decay_kind != "none" and record.decay_shrink > 0 and decay is None:
        raise ValueError(
            f"step {record.step} applied anchored decay ({record.decay_kind}, shrink {record.decay_shrink}); "
            "pass the AnchoredDecay built from θ0"
        )
    es_update_(params, record.seeds, record.coefficients, record.scale, record.noise_mode, master)
    if decay is not None and record.decay_kind != "none" and record.decay_shrink > 0:
        if decay.kind != record.decay_kind:
            raise ValueError(
                f"step {record.step} used {record.decay_kind} decay; the decay given is {decay.kind}"
            )
        decay.apply(params, record.decay_shrink, master=master)


def es_step(
    params: Params,
    reward_fn: RewardFn,
    config: ESConfig,
    step: int,
    *,
    master: MasterWeights | None = None,
    decay: AnchoredDecay | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[dict[int, float]], Sequence[float]] | None = None,
) -> ESStepRecord:
    """One whole ES iteration on named tensors; returns the record (rewards, seeds, coefficients).

    With ``world_size > 1`` this process evaluates only members ``rank::world_size`` and ``gather`` must turn
    its ``{member: reward}`` dict into the full reward vector (e.g. an ``all_reduce`` of a zero-filled
    vector); the update needs only rewards and seeds, so every process applies the same one. ``decay``
    applies AWD with shrink ``α·λ`` after the update (arXiv 2605.30148).
    """
    params = list(params)
    decay_on = decay is not None and decay.kind != "none" and decay.lam > 0
    shrink = decay.shrink_for(config.alpha) if decay_on else 0.0  # type: ignore[union-attr,arg-type]
    seeds = direction_seeds(config.seed, step, config.directions)
    members = member_indices(config.population, rank, world_size)
    if world_size > 1 and gather is None:
        raise ValueError("world_size > 1 needs gather= to combine the rewards of all processes")
    local = evaluate_members(params, reward_fn, config, seeds, members, master)
    if gather is not None and world_size > 1:
        rewards = np.asarray(gather(local), dtype=np.float64)
        if rewards.shape != (config.population,):
            raise ValueError(
                f"gather returned {rewards.shape[0] if rewards.ndim else 0} rewards; expected {config.population}"
            )
    else:
        rewards = combine_rewards([local], config.population)
    coefficients = es_coefficients(rewards, config.shaping, config.mirrored)
    record = ESStepRecord(
        step=step,
        seeds=seeds,
        coefficients=[float(c) for c in coefficients],
        alpha=float(config.alpha),  # type: ignore[arg-type]
        population=config.population,
        noise_mode=config.noise_mode,
        sigma=config.sigma,
        mirrored=config.mirrored,
        rewards=[float(r) for r in rewards],
        master_weights=master is not None,
        decay_kind=decay.kind if decay_on else "none",  # type: ignore[union-attr]
        decay_shrink=shrink,
    )
    apply_step(params, record, master=master, decay=decay)
    return record


def replay_steps(
    params: Params,
    records: Iterable[ESStepRecord | Mapping[str, Any]],
    master: MasterWeights | None = None,
    decay: AnchoredDecay | None = None,
) -> None:
    """Rebuild θ_T in place from θ0 by reapplying logged steps in order; bit-exact with the training run on
    the same device (the update is deterministic and restores were exact). ``master``/``decay`` must be built
    from θ0 exactly as in training."""
    for record in records:
        rec = record if isinstance(record, ESStepRecord) else ESStepRecord.from_dict(record)
        apply_step(params, rec, master=master, decay=decay)
