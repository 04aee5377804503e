"""Pretraining distillation from a frozen teacher (``--hff_kd_teacher``, ``hff kd``): the ``KDTrainer`` mixin with
the chunked (1 - alpha) CE + alpha T^2 KL loss, teacher loading and the tokenizer check.

Modules: ``flags`` (``DistillFlags``), ``kd_trainer``, ``technique``. The loss is :mod:`hf_fundamentals.distill`."""

from hf_fundamentals.integrations.registry import lazy_exports

_EXPORTS = {
    "KDTrainer": "kd_trainer",
    "KDTrainerMixin": "kd_trainer",
    "backbone_of": "kd_trainer",
    "check_same_tokenizer": "kd_trainer",
    "freeze": "kd_trainer",
    "head_of": "kd_trainer",
    "head_rows": "kd_trainer",
    "kd_trainer_class": "kd_trainer",
    "load_teacher": "kd_trainer",
    "TEACHER_DTYPES": "flags",
    "DistillFlags": "flags",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
