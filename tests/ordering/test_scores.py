"""Scores: the compression heuristic and per-sample loss under a causal LM (padding-safe)."""

from __future__ import annotations

import math

import numpy as np
import torch

from hf_fundamentals.ordering.scores import compression_ratio, compression_ratios, sequence_nll


def test_compression_ratio_orders_repetitive_below_noise():
    rng = np.random.default_rng(0)
    repetitive = "the cat sat on the mat. " * 40
    prose = " ".join(f"word{i} means something else entirely" for i in range(40))
    noise = "".join(chr(c) for c in rng.integers(33, 127, 1000))
    r = compression_ratios([repetitive, prose, noise])
    assert r[0] < r[1] < r[2]
    assert compression_ratio("") == 1.0


def test_sequence_nll_matches_the_model_loss_and_ignores_padding(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.randint(3, 200, (1, 12))
    full = sequence_nll(model, ids)
    with torch.no_grad():
        want = model(input_ids=ids, labels=ids).loss
    assert math.isclose(full.item(), want.item(), rel_tol=1e-5)
    # the same row left-padded and right-padded in a batch gives the same score
    pad = torch.full((1, 4), 2)
    left = torch.cat([pad, ids], 1)
    right = torch.cat([ids, pad], 1)
    mask_left = torch.cat([torch.zeros(1, 4), torch.ones(1, 12)], 1).long()
    mask_right = mask_left.flip(1)
    got = sequence_nll(model, torch.cat([right, left]), torch.cat([mask_right, mask_left]))
    torch.testing.assert_close(got, full.expand(2), atol=1e-4, rtol=1e-4)
    empty = sequence_nll(model, ids[:, :2], torch.tensor([[1, 0]]))
    assert torch.isnan(empty).all()


class _Counting(torch.nn.Module):
    """A model wrapper that counts the rows it scores and can fail after some calls (an interrupted run)."""

    def __init__(self, model, fail_after: int | None = None) -> None:
        super().__init__()
        self.inner, self.rows, self.calls, self.fail_after = model, 0, 0, fail_after

    def forward(self, input_ids, attention_mask=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        self.rows += input_ids.shape[0]
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_model_nll_is_batched_cached_and_resumes_an_interrupted_run(tiny_llama_dir, tmp_path):
    import pytest
    from conftest import TINY_TEXTS
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_fundamentals.ordering.scores import model_nll_scores

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    texts = list(TINY_TEXTS[:10])
    one_by_one = []
    for t in texts:
        ids = torch.tensor([tok(t, truncation=True, max_length=24)["input_ids"]])
        one_by_one.append(sequence_nll(model, ids).item())
    # batched by length (padded) gives each text's own score
    batched = model_nll_scores(texts, model, tok, batch_size=4, max_length=24)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)
    # interrupted in the third chunk of 3: the first two chunks are on disk, the rerun scores only the rest
    flaky = _Counting(model, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        model_nll_scores(texts, flaky, tok, batch_size=3, max_length=24, cache_dir=tmp_path, chunk_size=3)
    (key,) = list(tmp_path.iterdir())
    assert sorted(p.name for p in key.iterdir()) == ["chunk-000000.npy", "chunk-000001.npy"]
    again = _Counting(model)
    resumed = model_nll_scores(
        texts, again, tok, batch_size=3, max_length=24, cache_dir=tmp_path, chunk_size=3
    )
    assert again.rows == 4  # chunks 2 and 3 (3 + 1 texts)
    np.testing.assert_allclose(resumed, one_by_one, rtol=1e-4, atol=1e-5)
    cached = _Counting(model)
    model_nll_scores(texts, cached, tok, batch_size=3, max_length=24, cache_dir=tmp_path, chunk_size=3)
    assert cached.rows == 0
    # other texts, another max_length or changed weights get another key
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model_nll_scores(texts, cached, tok, batch_size=3, max_length=24, cache_dir=tmp_path, chunk_size=3)
    assert cached.rows == 10 and len(list(tmp_path.iterdir())) == 2
