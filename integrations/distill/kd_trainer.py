"""Pretraining distillation in the Trainer: ``KDTrainer`` (or ``kd_trainer_class(SFTTrainer)``), frozen teacher.

The loss is :func:`hf_fundamentals.distill.distill_loss`, ``(1 - alpha) CE + alpha T^2 KL``, on raw or packed
text: the student's labels are its own input ids (padding and anything else at -100 is skipped by both terms),
and the teacher scores the same tokens. Student and teacher each return their final hidden states (the backbone,
``model.base_model``), and the chunked loss projects them through their own output heads a chunk of tokens at a
time, so no full-vocabulary logit tensor is built for either model. Logged per logging step: ``ce`` (student
CE), ``kd`` (mean KL at temperature T, nats per token, *before* the ``T^2`` factor), ``teacher_ce`` (the
teacher's CE on the same tokens, its strength for :func:`~hf_fundamentals.distill.fit_teacher_gain`), and their
``eval_`` twins in evaluation.

Why not TRL's trainers (TRL 1.16, read in ``trl/trainer/distillation_trainer.py`` and
``trl/experimental/gkd/gkd_trainer.py``): ``DistillationTrainer`` is on-policy (it generates completions from
prompt-only conversational data) and ``GKDTrainer`` mixes on-policy batches into chat SFT; both optimize only a
generalized JSD (no CE term, no ``T^2``), over completion tokens. Paper B's recipe is offline KD on the
pretraining stream with a CE mix, which subclassing those would have to undo. So this is a mixin on
transformers' ``Trainer`` that also mixes into TRL's ``SFTTrainer`` (its tokenization and packing of raw text;
``hff kd`` does that), overriding only ``compute_loss`` and ``log``. Two ideas are taken from TRL's
``DistillationTrainer``: the chunked hidden-state projection, and running the student's loss inside the wrapper's
``forward`` ("forward redirection") so DDP/FSDP see the head's use.

Guards (fail early, name the problem): teacher and student tokenizers must be the same (vocabulary, special
tokens, and the ids of a probe text); the heads' vocabulary sizes must match (or, with one tokenizer, be cut to
``len(tokenizer)``); on the first batch each model's chunked head must reproduce its own ``forward`` logits
(catches architectures that post-process logits in a way ``LMHead`` does not model); SFT's ``loss_type`` other
than ``nll``, label smoothing and MoE router aux losses are refused rather than dropped. DeepSpeed is refused (the
frozen teacher is not sharded there); FSDP wraps the teacher with ``prepare_model(evaluation_mode=True)``, as TRL
does, but is untested here.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from hf_fundamentals.distill import KDConfig, LMHead, distill_terms, mix_terms
from hf_fundamentals.integrations.distill.flags import TEACHER_DTYPES

logger = logging.getLogger(__name__)

PROBE_TEXT = "Distillation probe: Ünïcode, numbers 12345 and 3.14, code `x = f(y)`,\n\ttabs and  spaces."
_NOT_MODEL_INPUTS = ("labels", "shift_labels", "completion_mask", "assistant_masks", "num_items_in_batch",
                     "return_loss", "use_cache")  # fmt: skip


# ---------------------------------------------------------------------------------------------- model anatomy
def _text_tokenizer(processing_class: Any) -> Any:
    return getattr(processing_class, "tokenizer", processing_class)


def check_same_tokenizer(student_tokenizer: Any, teacher_tokenizer: Any) -> None:
    """Raise ValueError unless the two tokenizers map text to the same ids (vocabulary, special tokens, a probe)."""
    s, t = _text_tokenizer(student_tokenizer), _text_tokenizer(teacher_tokenizer)
    vs, vt = s.get_vocab(), t.get_vocab()
    if vs != vt:
        only_s = sorted(set(vs.items()) - set(vt.items()), key=lambda kv: kv[1])[:3]
        only_t = sorted(set(vt.items()) - set(vs.items()), key=lambda kv: kv[1])[:3]
        raise ValueError(
            f"teacher and student tokenizers differ: vocabularies of {len(vt)} and {len(vs)} tokens "
            f"(student only: {only_s}; teacher only: {only_t}). Logit distillation needs one tokenizer: pick a "
            "teacher from the student's family (same tokenizer), or a cross-tokenizer method such as TRL's GOLD"
        )
    for name in ("bos_token_id", "eos_token_id", "unk_token_id"):
        a, b = getattr(s, name, None), getattr(t, name, None)
        if a != b:
            raise ValueError(f"teacher and student tokenizers differ in {name}: teacher {b}, student {a}")
    ids_s, ids_t = s(PROBE_TEXT)["input_ids"], t(PROBE_TEXT)["input_ids"]
    if ids_s != ids_t:
        raise ValueError(
            "teacher and student tokenizers share a vocabulary but split text differently (probe ids "
            f"{ids_t[:12]}... vs {ids_s[:12]}...): different normalizer, pre-tokenizer or special-token rules"
        )


def _causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` inside a PEFT wrapper (LoRA layers included), or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def backbone_of(model: Any) -> Any:
    """The module that returns the final (normed) hidden states: ``model.base_model`` of a causal LM."""
    causal = _causal_lm(model)
    backbone = getattr(causal, "base_model", None)
    if backbone is None or backbone is causal:
        raise ValueError(
            f"{type(causal).__name__} exposes no separate backbone (base_model); the chunked distillation loss "
            "needs a causal LM whose head is applied to base_model's last_hidden_state"
        )
    return backbone


def head_of(model: Any) -> LMHead:
    """The output head as an :class:`LMHead`: the head module plus the config's logit scale and softcap."""
    causal = _causal_lm(model)
    module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if module is None:
        module = causal.get_output_embeddings()
    if module is None:
        raise ValueError(
            f"{type(causal).__name__} has no output embeddings (get_output_embeddings() is None)"
        )
    config = causal.config.get_text_config() if hasattr(causal.config, "get_text_config") else causal.config
    scale = getattr(config, "logit_scale", None)
    if scale is None and getattr(config, "logits_scaling", None):
        scale = 1.0 / config.logits_scaling
    return LMHead(module, scale=float(scale) if scale is not None else 1.0,
                  softcap=getattr(config, "final_logit_softcapping", None))  # fmt: skip


def head_rows(model: Any) -> int:
    """Logits per token of ``model``'s head."""
    weight = getattr(_causal_lm(model).get_output_embeddings(), "weight", None)
    return int(weight.shape[0]) if weight is not None else int(_causal_lm(model).config.vocab_size)


def _redirect(wrapper: Any, module: Any, method: Any, *args: Any) -> Any:
    """Run ``method(*args)`` inside ``wrapper``'s forward (DDP/FSDP hooks fire), as TRL's _ForwardRedirection."""
    if wrapper is module:
        return method(*args)
    original = module.forward

    def inner(*_a: Any, **_k: Any) -> Any:
        module.forward = original
        return method(*args)

    module.forward = inner
    try:
        return wrapper()
    finally:
        module.forward = original


def _hidden(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    return backbone_of(model)(**inputs, use_cache=False, return_dict=True).last_hidden_state


def load_teacher(
    name_or_path: str,
    *,
    student: Any = None,
    dtype: str = "auto",
    revision: str | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """``(teacher, tokenizer)`` frozen for distillation; ``dtype='auto'`` takes the student's parameter dtype."""
    from hf_fundamentals.integrations.hub import load_model

    if dtype not in TEACHER_DTYPES:
        raise ValueError(f"teacher dtype {dtype!r}; accepted: {', '.join(TEACHER_DTYPES)}")
    kwargs = {k: v for k, v in (init_kwargs or {}).items() if k not in ("revision", "dtype", "torch_dtype")}
    trust = bool(kwargs.pop("trust_remote_code", False) or False)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if dtype == "auto":
        torch_dtype = next(student.parameters()).dtype if student is not None else None
    else:
        torch_dtype = getattr(torch, dtype)
    teacher, tokenizer = load_model(
        name_or_path, dtype=torch_dtype, revision=revision, trust_remote_code=trust, **kwargs
    )
    return freeze(teacher), tokenizer


def freeze(teacher: Any) -> Any:
    """Eval mode (no dropout) and no gradients."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


# ---------------------------------------------------------------------------------------------- the trainer
class KDTrainerMixin:
    """Distil a frozen teacher into the trained model: ``class T(KDTrainerMixin, Trainer)`` or ``SFTTrainer``.

    ``teacher_model``: a model, or a path / Hub id / 'embedded' loaded with the run's ``model_init_kwargs`` (TRL
    configs) at ``teacher_dtype`` ('auto': the student's dtype) and ``teacher_revision``. ``kd``: a
    :class:`~hf_fundamentals.distill.KDConfig` (alpha, temperature, kl, chunk_size). ``teacher_processing_class``:
    the teacher's tokenizer when ``teacher_model`` is a model (loaded with it otherwise); it must equal the
    student's.
    """

    def __init__(
        self,
        *args: Any,
        teacher_model: Any = None,
        kd: KDConfig | None = None,
        teacher_processing_class: Any = None,
        teacher_dtype: str = "auto",
        teacher_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        if teacher_model is None:
            raise ValueError("a distillation trainer needs teacher_model (a model, a path or a Hub id)")
        super().__init__(*args, **kwargs)
        self.kd = kd or KDConfig()
        self._kd_refuse_unsupported()
        if isinstance(teacher_model, str):
            teacher_model, loaded_tok = load_teacher(
                teacher_model, student=self.accelerator.unwrap_model(self.model), dtype=teacher_dtype,
                revision=teacher_revision, init_kwargs=getattr(self.args, "model_init_kwargs", None),
            )  # fmt: skip
            teacher_processing_class = teacher_processing_class or loaded_tok
        else:
            freeze(teacher_model)
        self.kd_vocab_size = self._kd_check_vocab(teacher_model, teacher_processing_class)
        if self.is_deepspeed_enabled:
            raise ValueError(
                "the distillation trainer does not place a teacher under DeepSpeed; use DDP or FSDP (accelerate)"
            )
        if self.is_fsdp_enabled:
            self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        else:
            self.teacher_model = teacher_model.to(self.args.device)
        self.model_accepts_loss_kwargs = True  # have the Trainer count num_items_in_batch over the GA window
        self._kd_sums = {mode: torch.zeros(4, dtype=torch.float64) for mode in ("train", "eval")}
        self._kd_probed = False

    # ------------------------------------------------------------------ checks
    def _kd_refuse_unsupported(self) -> None:
        loss_type = getattr(self.args, "loss_type", "nll")
        if loss_type not in (None, "nll"):
            raise ValueError(
                f"loss_type={loss_type!r}: the distillation loss replaces the token loss; use 'nll'"
            )
        if getattr(self.args, "label_smoothing_factor", 0.0):
            raise ValueError("label_smoothing_factor > 0 cannot be combined with the distillation loss")
        config = getattr(_causal_lm(self.accelerator.unwrap_model(self.model)), "config", None)
        if getattr(config, "output_router_logits", False):
            raise ValueError(
                "the student adds a MoE router aux loss (output_router_logits=True), which the distillation loss "
                "does not include; set output_router_logits=False to distil without it"
            )

    def _kd_check_vocab(self, teacher: Any, teacher_tokenizer: Any) -> int | None:
        """Check one tokenizer and one vocabulary; returns the KD vocabulary cut (None: the full heads)."""
        student_tokenizer = self.processing_class
        student = self.accelerator.unwrap_model(self.model)
        if student_tokenizer is not None and teacher_tokenizer is not None:
            check_same_tokenizer(student_tokenizer, teacher_tokenizer)
            checked = True
        else:
            checked = False
            warnings.warn(
                "distillation: no tokenizer for the "
                f"{'student' if student_tokenizer is None else 'teacher'}, so tokenizer identity is not checked "
                "(only the vocabulary sizes); pass processing_class / teacher_processing_class to check it",
                stacklevel=3,
            )
        rows_s, rows_t = head_rows(student), head_rows(teacher)
        if rows_s == rows_t:
            return None
        n_tok = len(_text_tokenizer(student_tokenizer)) if checked else None
        if n_tok is None or n_tok > min(rows_s, rows_t):
            raise ValueError(
                f"the student's head has {rows_s} logits per token and the teacher's {rows_t}"
                + ("" if checked else " and no tokenizer is given to say which rows are real tokens")
                + ": logit distillation needs one vocabulary"
            )
        return n_tok  # one tokenizer, heads padded differently: compare the real tokens' logits

    def _kd_probe(self, wrapper: Any, model_inputs: dict[str, Any]) -> None:
        """Once: each model's chunked head must reproduce its own forward's logits on a few tokens."""
        self._kd_probed = True
        if self.is_fsdp_enabled:
            return  # unwrapped FSDP modules hold shards; the check would need a gathered forward
        ids = model_inputs.get("input_ids")
        if ids is None:
            return
        probe = {"input_ids": ids[:1, :16]}
        for key in ("attention_mask", "position_ids"):
            if model_inputs.get(key) is not None and model_inputs[key].dim() == 2:
                probe[key] = model_inputs[key][:1, :16]
        for name, model in (
            ("student", self.accelerator.unwrap_model(wrapper)),
            ("teacher", self.teacher_model),
        ):
            model = self.accelerator.unwrap_model(model)
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad(), self.accelerator.autocast():
                    full = model(**probe, use_cache=False).logits.float()
                    mine = head_of(model)(_hidden(model, probe))
            finally:
                model.train(was_training)
            err = float((full - mine).abs().max()) / max(float(full.abs().max()), 1e-6)
            if full.shape != mine.shape or err > 2e-2:
                raise ValueError(
                    f"the {name} ({type(_causal_lm(model)).__name__}) computes logits its head does not reproduce "
                    f"(relative difference {err:.3g}): its forward post-processes logits in a way the chunked "
                    "distillation loss does not model (supported: a linear head, logit_scale, logits_scaling, "
                    "final_logit_softcapping)"
                )

    # ------------------------------------------------------------------ loss
    def _kd_student_terms(self, model: Any, model_inputs: dict[str, Any], teacher_hidden: torch.Tensor,
                          labels: torch.Tensor, shift: bool):  # fmt: skip
        hidden = _hidden(model, model_inputs)
        return distill_terms(
            hidden, teacher_hidden, labels, student_head=head_of(model), teacher_head=head_of(self.teacher_model),
            temperature=self.kd.temperature, kl=self.kd.kl, chunk_size=self.kd.chunk_size, shift=shift,
            vocab_size=self.kd_vocab_size,
        )  # fmt: skip

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels, shift = inputs.get("shift_labels"), False
        if labels is None:
            labels, shift = inputs.get("labels"), True
        if labels is None:
            raise ValueError(
                "the distillation trainer needs labels in each batch (the input ids for pretraining text, -100 on "
                "padding); use a language-modeling collator"
            )
        model_inputs = {k: v for k, v in inputs.items() if k not in _NOT_MODEL_INPUTS}
        if not self._kd_probed:
            self._kd_probe(model, model_inputs)
        with torch.no_grad(), self.accelerator.autocast():
            teacher_hidden = _redirect(
                self.teacher_model, self.accelerator.unwrap_model(self.teacher_model), _hidden,
                self.accelerator.unwrap_model(self.teacher_model), model_inputs,
            )  # fmt: skip
        unwrapped = self.accelerator.unwrap_model(model)
        with self.accelerator.autocast():
            terms = _redirect(model, unwrapped, self._kd_student_terms, unwrapped, model_inputs, teacher_hidden,
                              labels, shift)  # fmt: skip
        if num_items_in_batch is not None:
            denom = torch.as_tensor(num_items_in_batch, device=terms.ce_sum.device, dtype=torch.float32)
        else:
            denom = terms.n_tokens.to(terms.ce_sum.device, torch.float32).clamp(min=1)
        ce, kd = terms.ce_sum / denom, terms.kd_sum / denom
        loss = mix_terms(ce, kd, self.kd.alpha, self.kd.temperature)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # as Trainer.compute_loss: the count spans all processes and DDP averages gradients
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        # the loss is normalized over the whole accumulation window when the Trainer gave its token count
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        mode = "train" if model.training else "eval"
        self._kd_sums[mode] += torch.stack(
            [terms.ce_sum.detach().double().cpu(), terms.kd_sum.detach().double().cpu(),
             terms.teacher_ce_sum.detach().double().cpu(), terms.n_tokens.double().cpu()]
        )  # fmt: skip
        return (loss, {"loss": loss}) if return_outputs else loss

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train" if "loss" in logs else None
        if mode is not None:
            sums = self._kd_sums[mode].to(self.args.device)
            if self.accelerator.num_processes > 1:
                sums = self.accelerator.reduce(sums, reduction="sum")
            ce_sum, kd_sum, t_sum, n = sums.tolist()
            if n > 0:
                prefix = "eval_" if mode == "eval" else ""
                logs[f"{prefix}ce"] = round(ce_sum / n, 6)
                logs[f"{prefix}kd"] = round(kd_sum / n, 6)
                logs[f"{prefix}teacher_ce"] = round(t_sum / n, 6)
            self._kd_sums[mode].zero_()
        return super().log(logs, *args, **kwargs)


def kd_trainer_class(base: type) -> type:
    """``base`` (``Trainer``, ``SFTTrainer``, a subclass) with :class:`KDTrainerMixin` mixed in."""
    if issubclass(base, KDTrainerMixin):
        return base
    return type(f"KD{base.__name__}", (KDTrainerMixin, base), {})


def _trainer_base() -> type:
    from transformers import Trainer

    return Trainer


class KDTrainer(KDTrainerMixin, _trainer_base()):
    """transformers ``Trainer`` + :class:`KDTrainerMixin`: pretraining distillation from a frozen teacher."""
