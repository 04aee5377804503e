"""Pretraining distillation loss, chunked: ``(1 - alpha) CE + alpha T^2 KL`` (Lu & Liu, arXiv 2605.23857).

The loss of "Strong Teacher Not Needed?" (its research code, ``maxtext-distillation``): student cross-entropy on
the next token, mixed with the KL divergence from a frozen teacher at temperature ``T`` (both distributions
softened by the same ``T``), the KL summed over the target tokens (labels != ``ignore_index``), divided by the
token count and multiplied by ``T^2`` so its gradient keeps its size as ``T`` changes. ``kl="forward"`` is
KL(teacher || student), the paper's (the teacher's distribution is the target); ``"reverse"`` is
KL(student || teacher) (mode-seeking, what TRL's ``beta=1`` computes).

Memory: a full-vocabulary logit tensor is ``tokens x V`` floats (8192 tokens x 128k vocab = 4 GiB in fp32), and
a naive KD loss holds two of them (student and teacher) plus their softmaxes. Here the student and teacher pass
their *final hidden states* and their output heads; the target positions are gathered first (padding and
``ignore_index`` rows never reach a head) and projected ``chunk_size`` tokens at a time. When the student needs
gradients each chunk runs under activation checkpointing, so backward recomputes one chunk's logits at a time
instead of keeping every chunk's: at most ``chunk_size x V`` logits of each model exist at once. Passing logits
(no head) works too; the chunking then only bounds the softmax temporaries.

Exactness: with ``alpha = 0`` the returned loss *is* the CE term (no ``0 * KD`` is added, so it is bit-for-bit
the CE the chunks computed, which is the model's own causal-LM CE up to the order of the float sums). With the
teacher equal to the student both log-softmaxes are computed identically and the KL is exactly 0.

Core module: torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

KL_DIRECTIONS = ("forward", "reverse")
IGNORE_INDEX = -100


@dataclass
class KDConfig:
    """Distillation settings: the mix ``alpha``, the temperature, the KL direction and the chunk size.

    ``alpha`` in [0, 1] weighs the KD term (0: plain CE, 1: pure KD; the paper searches {0.2, ..., 1.0} and finds
    weak teachers want a low alpha). ``temperature`` > 0 softens both distributions in the KD term only (CE is
    always at T = 1); the paper and Busbridge et al. use T = 1 for language models.
    """

    alpha: float = 0.5
    temperature: float = 1.0
    kl: str = "forward"
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha weighs the KD term and must lie in [0, 1]; got {self.alpha}")
        if not float(self.temperature) > 0.0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if self.kl not in KL_DIRECTIONS:
            raise ValueError(
                f"kl {self.kl!r}; accepted: 'forward' (KL(teacher||student), the paper's) or 'reverse'"
            )
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size is a number of tokens >= 1; got {self.chunk_size!r}")


@dataclass
class LMHead:
    """An output head: ``logits = softcap(scale * proj(h))``, returned in float32.

    ``proj`` is the ``(V, H)`` weight of a linear head or any callable from ``(n, H)`` hidden states to ``(n, V)``
    logits (an ``nn.Linear``, a LoRA-wrapped head, a tied embedding's ``F.linear``). ``scale`` multiplies the
    logits (Cohere's ``logit_scale``; Granite's ``1 / logits_scaling``) and ``softcap`` applies Gemma's
    ``softcap * tanh(logits / softcap)``.
    """

    proj: torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
    bias: torch.Tensor | None = None
    scale: float = 1.0
    softcap: float | None = None

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        if isinstance(self.proj, torch.Tensor):
            logits = F.linear(hidden.to(self.proj.dtype), self.proj, self.bias)
        else:
            logits = self.proj(hidden)
            if self.bias is not None:
                logits = logits + self.bias
        logits = logits.float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _as_head(head: LMHead | torch.Tensor | Callable | None) -> LMHead | None:
    if head is None or isinstance(head, LMHead):
        return head
    return LMHead(head)


class DistillTerms(NamedTuple):
    """Sums over the target tokens of one batch (divide by a token count to get means).

    ``kd_sum`` is the KL at temperature T *without* the ``T^2`` factor; ``teacher_ce_sum`` is the teacher's own
    cross-entropy on the labels (T = 1), a free by-product that measures teacher strength.
    """

    ce_sum: torch.Tensor
    kd_sum: torch.Tensor
    teacher_ce_sum: torch.Tensor
    n_tokens: torch.Tensor


def shift_for_causal_lm(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Labels aligned with the positions that predict them, as transformers' causal-LM loss does: position i is
    scored on ``labels[i + 1]`` and the last position on nothing (``ignore_index``)."""
    return F.pad(labels, (0, 1), value=ignore_index)[..., 1:]


def _chunk_terms(
    s_rows: torch.Tensor,
    t_rows: torch.Tensor,
    targets: torch.Tensor,
    student_head: LMHead | None,
    teacher_head: LMHead | None,
    temperature: float,
    kl: str,
    vocab_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CE sum, KL sum and teacher CE sum of one chunk of target rows."""
    s_logits = student_head(s_rows) if student_head is not None else s_rows.float()
    ce = F.cross_entropy(s_logits, targets, reduction="sum")
    with torch.no_grad():
        t_logits = teacher_head(t_rows) if teacher_head is not None else t_rows.float()
    if vocab_size is not None:
        s_kd, t_kd = s_logits[:, :vocab_size], t_logits[:, :vocab_size]
    else:
        s_kd, t_kd = s_logits, t_logits
    if s_kd.shape[-1] != t_kd.shape[-1]:
        raise ValueError(
            f"the student has {s_kd.shape[-1]} logits per token and the teacher {t_kd.shape[-1]}: distillation "
            "needs one vocabulary. If both share a tokenizer but pad their heads differently, pass "
            "vocab_size=len(tokenizer)"
        )
    if temperature != 1.0:
        s_kd, t_kd = s_kd / temperature, t_kd / temperature
    log_s = F.log_softmax(s_kd, dim=-1)
    with torch.no_grad():
        log_t = F.log_softmax(t_kd, dim=-1)
        t_ce = F.cross_entropy(t_logits, targets, reduction="sum")
    if kl == "forward":  # KL(teacher || student) = sum p_t (log p_t - log p_s)
        kd = (log_t.exp() * (log_t - log_s)).sum()
    else:  # KL(student || teacher) = sum p_s (log p_s - log p_t)
        kd = (log_s.exp() * (log_s - log_t)).sum()
    return ce, kd, t_ce


def distill_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    student_head: LMHead | torch.Tensor | Callable | None = None,
    teacher_head: LMHead | torch.Tensor | Callable | None = None,
    temperature: float = 1.0,
    kl: str = "forward",
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
    shift: bool = True,
    vocab_size: int | None = None,
) -> DistillTerms:
    """Sums of CE, KL and teacher CE over the target tokens, computed ``chunk_size`` tokens at a time.

    ``student``/``teacher``: final hidden states ``(B, L, H_s)``/``(B, L, H_t)`` with their heads
    (``student_head``/``teacher_head``: an :class:`LMHead`, a ``(V, H)`` weight or a callable), or logits
    ``(B, L, V)`` without heads. ``labels`` ``(B, L)``: the input ids with ``ignore_index`` on padding and on any
    position not to be learned; with ``shift`` (the Hugging Face convention) position i is scored on
    ``labels[i + 1]``, without it on ``labels[i]`` (pre-shifted labels). The teacher's hidden width may differ
    from the student's; the vocabularies must match (``vocab_size`` compares only the first ``vocab_size``
    logits, for heads padded to different sizes).
    """
    config = KDConfig(alpha=0.0, temperature=temperature, kl=kl, chunk_size=chunk_size)  # validates
    if student.dim() != 3 or teacher.dim() != 3:
        raise ValueError(
            f"student and teacher must be (batch, length, features); got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if student.shape[:2] != teacher.shape[:2] or tuple(labels.shape) != tuple(student.shape[:2]):
        raise ValueError(
            f"student {tuple(student.shape)}, teacher {tuple(teacher.shape)} and labels {tuple(labels.shape)} "
            "must share (batch, length)"
        )
    if vocab_size is not None and vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1; got {vocab_size}")
    s_head, t_head = _as_head(student_head), _as_head(teacher_head)
    targets = shift_for_causal_lm(labels, ignore_index) if shift else labels
    flat = targets.reshape(-1)
    index = (flat != ignore_index).nonzero().squeeze(1)
    s_all = student.reshape(-1, student.shape[-1]).index_select(0, index)
    t_all = teacher.detach().reshape(-1, teacher.shape[-1]).index_select(0, index.to(teacher.device))
    t_all = t_all.to(student.device)
    y_all = flat.index_select(0, index)
    n = index.numel()
    zero = student.new_zeros((), dtype=torch.float32)
    if n == 0:  # keep the graph connected (DDP expects every step to reach the parameters)
        anchor = student.float().sum() * 0.0
        if s_head is not None and isinstance(s_head.proj, torch.Tensor) and s_head.proj.requires_grad:
            anchor = anchor + s_head.proj.float().sum() * 0.0
        return DistillTerms(anchor, anchor.detach().clone(), zero, torch.zeros((), dtype=torch.long))
    needs_grad = torch.is_grad_enabled() and (
        s_all.requires_grad
        or (s_head is not None and isinstance(s_head.proj, torch.Tensor) and s_head.proj.requires_grad)
        or (s_head is not None and isinstance(s_head.proj, torch.nn.Module))
    )
    ce_sum, kd_sum, t_ce_sum = zero, zero, zero
    for start in range(0, n, config.chunk_size):
        rows = slice(start, start + config.chunk_size)
        args = (s_all[rows], t_all[rows], y_all[rows], s_head, t_head, float(temperature), kl, vocab_size)
        if needs_grad:
            ce, kd, t_ce = checkpoint(_chunk_terms, *args, use_reentrant=False)
        else:
            ce, kd, t_ce = _chunk_terms(*args)
        ce_sum = ce_sum + ce
        kd_sum = kd_sum + kd
        t_ce_sum = t_ce_sum + t_ce.detach()
    return DistillTerms(ce_sum, kd_sum, t_ce_sum, torch.tensor(n, dtype=torch.long))


def mix_terms(ce: torch.Tensor, kd: torch.Tensor, alpha: float, temperature: float = 1.0) -> torch.Tensor:
    """``(1 - alpha) ce + alpha T^2 kd``; ``alpha = 0`` returns ``ce`` itself and ``alpha = 1`` only ``T^2 kd``."""
    if alpha == 0.0:
        return ce
    scaled = kd * (float(temperature) ** 2)
    if alpha == 1.0:
        return scaled
    return (1.0 - alpha) * ce + alpha * scaled


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    kl: str = "forward",
    chunk_size: int = 1024,
    student_head: LMHead | torch.Tensor | Callable | None = None,
    teacher_head: LMHead | torch.Tensor | Callable | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift: bool = True,
    num_items_in_batch: int | torch.Tensor | None = None,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, ce, kd)``: ``loss = (1 - alpha) ce + alpha T^2 kd`` with ``ce`` and ``kd`` per-token means.

    ``kd`` is the mean KL at temperature ``T`` (nats per token, *before* the ``T^2`` factor the loss applies).
    Means divide by ``num_items_in_batch`` when given (the Trainer's count over a whole gradient-accumulation
    window, so micro-batches add up to the window's mean) and by the batch's own target count otherwise. See
    :func:`distill_terms` for the inputs.
    """
    KDConfig(alpha=alpha, temperature=temperature, kl=kl, chunk_size=chunk_size)  # validates alpha as well
    terms = distill_terms(
        student, teacher, labels, student_head=student_head, teacher_head=teacher_head, temperature=temperature,
        kl=kl, chunk_size=chunk_size, ignore_index=ignore_index, shift=shift, vocab_size=vocab_size,
    )  # fmt: skip
    if num_items_in_batch is None:
        denom = terms.n_tokens.clamp(min=1).to(terms.ce_sum.device, torch.float32)
    elif isinstance(num_items_in_batch, torch.Tensor):
        denom = num_items_in_batch.to(terms.ce_sum.device, torch.float32)
    else:
        denom = float(num_items_in_batch)
    ce, kd = terms.ce_sum / denom, terms.kd_sum / denom
    return mix_terms(ce, kd, alpha, temperature), ce, kd
