"""Per-sample scores to order by: a compression-ratio heuristic and per-sample loss under a reference causal LM.

The paper reuses scores that already exist (a quality rating, an educational score); these are for data that
has none. :func:`model_nll_scores` is the reference-model score, batched, cached per chunk and resumable. All
return one float per sample; the datasets glue
(:func:`hf_fundamentals.integrations.ordering.add_score_column`) runs them batched, cached and with a progress
bar.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's weights (names, shapes and two sums per tensor): the cache key of its scores, so
    a model trained further, or another one with the same name, never reads stale scores."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            t = p.detach().double()
            h.update(f"{name}:{tuple(p.shape)}:{float(t.sum()):.12e}:{float(t.abs().sum()):.12e}".encode())
    return h.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A hash of the texts, in order."""
    h = hashlib.sha256()
    for t in texts:
        raw = t.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little") + raw)
    return h.hexdigest()[:16]


def model_nll_scores(
    texts: Sequence[str], model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 16,
    max_length: int = 512, cache_dir: str | Path | None = None, chunk_size: int = 1024,
    device: str | torch.device | None = None, progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:  # fmt: skip
    """Each text's mean next-token loss (nats/token) under ``model``: :func:`sequence_nll`, batched, cached and
    resumable.

    Texts are tokenized with ``tokenizer`` (truncated at ``max_length`` tokens) and scored in batches of
    similar length (less padding). With ``cache_dir``, the scores of each ``chunk_size`` texts are written to
    ``cache_dir/<key>/chunk-<i>.npy`` as soon as the chunk is done, ``key`` hashing the texts, the model's
    weights and ``max_length``: a rerun reads the finished chunks and an interrupted run continues with the
    first missing one. ``progress(done, total)`` is called after each chunk. Returns float64 scores (NaN for
    a text with fewer than two tokens).
    """
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1; got {batch_size}, {chunk_size}")
    n = len(texts)
    folder = None
    if cache_dir is not None:
        key = f"nll-{texts_fingerprint(texts)}-{model_fingerprint(model)}-L{max_length}"
        folder = Path(cache_dir) / key
        folder.mkdir(parents=True, exist_ok=True)
    if getattr(tokenizer, "pad_token", "") is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(n, dtype=np.float64)
    try:
        for c, start in enumerate(range(0, n, chunk_size)):
            stop = min(n, start + chunk_size)
            path = folder / f"chunk-{c:06d}.npy" if folder is not None else None
            if path is not None and path.is_file():
                out[start:stop] = np.load(path)
            else:
                out[start:stop] = _score_chunk(texts[start:stop], model, tokenizer, batch_size, max_length,
                                               device)  # fmt: skip
                if path is not None:
                    tmp = path.with_suffix(".tmp.npy")
                    np.save(tmp, out[start:stop])
                    tmp.replace(path)  # a chunk file is complete or absent
            if progress is not None:
                progress(stop, n)
    finally:
        model.train(was_training)
    return out


def _score_chunk(texts: Sequence[str], model: torch.nn.Module, tokenizer: Any, batch_size: int,
                 max_length: int, device: torch.device) -> np.ndarray:  # fmt: skip
    ids = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    by_length = np.argsort([len(x) for x in ids], kind="stable")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = np.empty(len(texts), dtype=np.float64)
    for b in range(0, len(ids), batch_size):
        rows = by_length[b : b + batch_size]
        width = max(1, max(len(ids[i]) for i in rows))
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            batch[j, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[j, : len(ids[i])] = 1
        with torch.inference_mode():
            scores[rows] = sequence_nll(model, batch.to(device), mask.to(device)).double().cpu().numpy()
    return scores
