"""Memory fidelity of (prompt, answer) items, on answer tokens only, in batches.

* ``exact_match``: share of items whose greedy continuation of the prompt equals the answer token for token.
* ``token_accuracy``: share of answer positions where the argmax under teacher forcing is the target.
* ``coverage``: share of answer tokens with probability above ``threshold`` (0.5: the MemFT line).

Greedy decoding reproduces an item exactly iff every answer token is the argmax under teacher forcing (each
step then conditions on the right prefix), so ``exact_match`` is read off the teacher-forced pass;
``decode=True`` also runs the greedy loop and reports ``exact_match_decoded`` as a check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

Item = tuple[Sequence[int], Sequence[int]]


@dataclass
class Fidelity:
    """Fidelity of a set of items (see the module docstring)."""

    items: int
    answer_tokens: int
    exact_match: float
    token_accuracy: float
    coverage: float
    answer_loss: float
    exact_match_decoded: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _batch(items: Sequence[Item], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    seqs = [list(p) + list(a) for p, a in items]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, ((prompt, _answer), seq) in enumerate(zip(items, seqs, strict=True)):
        start = width - len(seq) if left else 0
        ids[i, start : start + len(seq)] = torch.tensor(seq)
        attn[i, start : start + len(seq)] = 1
        labels[i, start + len(prompt) : start + len(seq)] = torch.tensor(seq[len(prompt) :])
    return ids, attn, labels


def _positions(attn: torch.Tensor) -> torch.Tensor:
    return (attn.cumsum(dim=1) - 1).clamp(min=0)


@torch.no_grad()
def teacher_forced(model: torch.nn.Module, items: Sequence[Item], pad_id: int, threshold: float = 0.5):
    """Per item: (answer losses, argmax-correct flags) under teacher forcing; one forward pass."""
    device = next(model.parameters()).device
    ids, attn, labels = (t.to(device) for t in _batch(items, pad_id, left=False))
    logits = model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn)).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    safe = targets.masked_fill(~mask, 0)
    losses = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")
    correct = logits.argmax(dim=-1) == safe
    return [(losses[i][mask[i]].cpu(), correct[i][mask[i]].cpu()) for i in range(len(items))]


@torch.no_grad()
def greedy_answers(model: torch.nn.Module, items: Sequence[Item], pad_id: int) -> list[list[int]]:
    """Greedy continuations of each prompt, as long as its answer (left-padded batch, no KV cache needed)."""
    device = next(model.parameters()).device
    prompts = [(p, []) for p, _ in items]
    ids, attn, _ = (t.to(device) for t in _batch(prompts, pad_id, left=True))
    steps = max(len(a) for _, a in items)
    out = []
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn)).logits[:, -1]
        nxt = logits.argmax(dim=-1, keepdim=True)
        out.append(nxt)
        ids = torch.cat([ids, nxt], dim=1)
        attn = torch.cat([attn, torch.ones_like(nxt)], dim=1)
    gen = torch.cat(out, dim=1).cpu()
    return [gen[i, : len(a)].tolist() for i, (_, a) in enumerate(items)]


def fidelity(
    model: torch.nn.Module,
    items: Sequence[Item],
    pad_id: int,
    batch_size: int = 32,
    threshold: float = 0.5,
    decode: bool = False,
) -> Fidelity:
    """Exact match, token accuracy and threshold coverage of ``items`` (token-id pairs) under ``model``."""
    if not items:
        raise ValueError("no items to score")
    if any(len(a) == 0 for _, a in items):
        raise ValueError("every item needs at least one answer token")
    was_training = model.training
    model.eval()
    cut = -math.log(threshold)
    n_tok = n_correct = n_cover = n_exact = n_decoded = 0
    loss_sum = 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        for losses, correct in teacher_forced(model, chunk, pad_id, threshold):
            n_tok += losses.numel()
            n_correct += int(correct.sum())
            n_cover += int((losses < cut).sum())
            n_exact += int(bool(correct.all()))
            loss_sum += float(losses.sum())
        if decode:
            for got, (_, answer) in zip(greedy_answers(model, chunk, pad_id), chunk, strict=True):
                n_decoded += int(got == list(answer))
    model.train(was_training)
    return Fidelity(
        items=len(items),
        answer_tokens=n_tok,
        exact_match=n_exact / len(items),
        token_accuracy=n_correct / n_tok,
        coverage=n_cover / n_tok,
        answer_loss=loss_sum / n_tok,
        exact_match_decoded=n_decoded / len(items) if decode else None,
    )
