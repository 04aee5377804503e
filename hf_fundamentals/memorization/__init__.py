"""MemFT (threshold-weighted memorization loss), memory fidelity metrics and the LoRA memory law."""

from hf_fundamentals.memorization.fidelity import Fidelity, fidelity, greedy_answers, teacher_forced
from hf_fundamentals.memorization.memft import (
    MODES,
    MemFTConfig,
    SlidingState,
    batch_stats,
    curriculum_active_samples,
    curriculum_ratio,
    curriculum_total_steps,
    memft_loss,
    memft_weights,
    ot_weights,
    position_weights,
    sliding_weights,
    token_losses,
)
from hf_fundamentals.memorization.memory_law import (
    MemoryLawFit,
    delta_l_for_exact_match,
    fit_memory_law,
    plan_rank,
    tokens_per_rank,
)
from hf_fundamentals.memorization.retire import RetireBook

__all__ = [
    "MODES",
    "Fidelity",
    "MemFTConfig",
    "MemoryLawFit",
    "RetireBook",
    "SlidingState",
    "batch_stats",
    "curriculum_active_samples",
    "curriculum_ratio",
    "curriculum_total_steps",
    "delta_l_for_exact_match",
    "fidelity",
    "fit_memory_law",
    "greedy_answers",
    "memft_loss",
    "memft_weights",
    "ot_weights",
    "plan_rank",
    "position_weights",
    "sliding_weights",
    "teacher_forced",
    "token_losses",
    "tokens_per_rank",
]
