"""Pretraining distillation from (possibly weak) teachers (arXiv 2605.23857): the chunked CE + T²·KL loss, and a
teacher-choice tool relating distillation gain to teacher strength."""

from hf_fundamentals.distill.kd_loss import (
    IGNORE_INDEX,
    KL_DIRECTIONS,
    DistillTerms,
    KDConfig,
    LMHead,
    distill_loss,
    distill_terms,
    mix_terms,
    shift_for_causal_lm,
)
from hf_fundamentals.distill.teacher_choice import (
    GAIN_MODELS,
    TeacherChoice,
    fit_teacher_gain,
    suggest_alpha,
    teacher_gap,
)

__all__ = [
    "IGNORE_INDEX",
    "KL_DIRECTIONS",
    "GAIN_MODELS",
    "DistillTerms",
    "KDConfig",
    "LMHead",
    "TeacherChoice",
    "distill_loss",
    "distill_terms",
    "fit_teacher_gain",
    "mix_terms",
    "shift_for_causal_lm",
    "suggest_alpha",
    "teacher_gap",
]
