"""Per-sample scores to order by: a compression-ratio heuristic and per-sample loss under a reference causal LM.

The paper reuses scores that already exist (a quality rating, an educational score); these two are for data
that has none. Both return one float per sample; the datasets glue
(:func:`hf_fundamentals.integrations.ordering.add_score_column`) runs them batched, cached and with a progress
bar.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import torch


def compression_ratio(text: str, level: int = 9) -> float:
    """zlib-compressed size / raw size of the UTF-8 text: low for repetitive text, high for noisy or dense text.

    Empty text gives 1.0. As a quality proxy it is two-sided (boilerplate compresses very well, garbage very
    badly); ordering by it *descending* puts the noisiest text first and the most regular last.
    """
    raw = text.encode("utf-8")
    if not raw:
        return 1.0
    return len(zlib.compress(raw, level)) / len(raw)


def compression_ratios(texts: Iterable[str], level: int = 9) -> list[float]:
    """:func:`compression_ratio` of each text."""
    return [compression_ratio(t, level) for t in texts]


@torch.no_grad()
def sequence_nll(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token negative log-likelihood (nats/token) of each row under ``model``; exp() is its perplexity.

    Only real tokens count (``attention_mask`` 1, either padding side); a row with fewer than two real tokens
    gets NaN, which the ordering refuses until it is filled or dropped.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    mask = (attention_mask[:, 1:] * attention_mask[:, :-1]).to(logits.dtype)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    counts = mask.sum(dim=1)
    out = (nll * mask).sum(dim=1) / counts.clamp_min(1)
    return torch.where(counts > 0, out, torch.full_like(out, float("nan")))
