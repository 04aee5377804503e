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
