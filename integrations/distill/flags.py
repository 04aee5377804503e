"""``--hff_kd_teacher`` and the ``--kd_*`` flags (pretraining distillation from a frozen teacher, arXiv
2605.23857)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_fundamentals.integrations.registry import FlagGroup

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class DistillFlags(FlagGroup):
    """Distil a frozen (possibly weak) teacher into the trained model: (1 - alpha) CE + alpha T^2 KL."""

    switch = "hff_kd_teacher"
    switch_hint = "add --hff_kd_teacher PATH_OR_ID (or drop the KD flags)"

    hff_kd_teacher: str | None = field(
        default=None,
        metadata={
            "help": "Pretraining distillation (arXiv 2605.23857): distil this frozen teacher (a path, Hub id or "
            "'embedded'; same tokenizer as the student) into the trained model with the loss "
            "(1 - kd_alpha) CE + kd_alpha T^2 KL, computed chunk by chunk; logs ce, kd and teacher_ce. "
            "Small, undertrained teachers can help a larger student."
        },
    )
    kd_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the KD term in [0, 1] (0: plain CE, 1: pure KD); the paper finds weak teachers "
            "want a low alpha (0.2-0.4) and stronger ones 0.6-1.0."
        },
    )
    kd_temperature: float = field(
        default=1.0,
        metadata={"help": "Softmax temperature of the KD term (CE stays at T = 1); the paper's is 1."},
    )
    kd_kl: str = field(
        default="forward",
        metadata={
            "help": "'forward': KL(teacher || student), the paper's; 'reverse': KL(student || teacher)."
        },
    )
    kd_chunk_size: int = field(
        default=1024,
        metadata={
            "help": "Tokens projected to full-vocabulary logits at a time (bounds the logits' memory)."
        },
    )
    kd_teacher_revision: str | None = field(
        default=None, metadata={"help": "Hub revision of the teacher (e.g. an early-checkpoint branch)."}
    )
    kd_teacher_dtype: str = field(
        default="auto",
        metadata={"help": "Teacher dtype: 'auto' (the student's), 'float32', 'bfloat16' or 'float16'."},
    )

    def check_flags(self) -> None:
        if self.hff_kd_teacher is None:
            return
        self.kd_config()  # bad values fail now, before any model loads
        if self.kd_teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(
                f"--kd_teacher_dtype {self.kd_teacher_dtype!r}; accepted: {', '.join(TEACHER_DTYPES)}"
            )

    def kd_config(self):
        """The :class:`~hf_fundamentals.distill.KDConfig` of these flags (None without --hff_kd_teacher)."""
        if self.hff_kd_teacher is None:
            return None
        from hf_fundamentals.distill import KDConfig

        try:
            return KDConfig(
                alpha=self.kd_alpha,
                temperature=self.kd_temperature,
                kl=self.kd_kl,
                chunk_size=self.kd_chunk_size,
            )
        except ValueError as err:
            raise ValueError(f"--kd_* flags: {err}") from err
