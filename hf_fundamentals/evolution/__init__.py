"""Evolution Strategies fine-tuning (seeded noise, exact perturb/restore, fp32 updates, replay), anchored
weight decay toward the base model, and drift measures (weight distance, KL to base)."""

from hf_fundamentals.evolution.anchored_decay import DECAY_KINDS, AnchoredDecay, anchored_decay_, check_shrink
from hf_fundamentals.evolution.drift import (
    LAYER_PATTERN,
    WeightDrift,
    drift_signals,
    kl_to_base,
    layer_group,
    sampled_kl_to_base,
    token_logprobs,
    weight_drift,
)
from hf_fundamentals.evolution.es import (
    ESConfig,
    ESStepRecord,
    apply_step,
    combine_rewards,
    es_step,
    es_update_,
    evaluate_members,
    member_indices,
    replay_steps,
)
from hf_fundamentals.evolution.master import MasterWeights
from hf_fundamentals.evolution.noise import (
    NOISE_MODES,
    direction_seeds,
    member_direction,
    member_noise,
    tensor_noise,
    tensor_seed,
)
from hf_fundamentals.evolution.perturb import RestoreFix, perturb_tensor_, perturbed, restore_tensor_
from hf_fundamentals.evolution.shaping import SHAPINGS, centered_ranks, es_coefficients, shape_rewards, zscore

__all__ = [
    "DECAY_KINDS",
    "LAYER_PATTERN",
    "NOISE_MODES",
    "SHAPINGS",
    "AnchoredDecay",
    "ESConfig",
    "ESStepRecord",
    "MasterWeights",
    "RestoreFix",
    "WeightDrift",
    "anchored_decay_",
    "apply_step",
    "centered_ranks",
    "check_shrink",
    "combine_rewards",
    "direction_seeds",
    "es_coefficients",
    "es_step",
    "es_update_",
    "evaluate_members",
    "kl_to_base",
    "layer_group",
    "drift_signals",
    "member_direction",
    "member_indices",
    "member_noise",
    "perturb_tensor_",
    "perturbed",
    "replay_steps",
    "restore_tensor_",
    "sampled_kl_to_base",
    "shape_rewards",
    "tensor_noise",
    "tensor_seed",
    "token_logprobs",
    "weight_drift",
    "zscore",
]
