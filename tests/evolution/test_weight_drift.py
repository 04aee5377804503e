"""Drift measures: global/relative/per-layer weight distance to θ0 and KL to the base model."""

from __future__ import annotations

import math

import pytest
import torch

from hf_fundamentals.evolution import (
    AnchoredDecay,
    kl_to_base,
    layer_group,
    sampled_kl_to_base,
    token_logprobs,
    weight_drift,
)

NAMES = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.1.mlp.up_proj.weight",
    "lm_head.weight",
]


def test_layer_groups():
    assert [layer_group(n) for n in NAMES] == [
        "model.embed_tokens",
        "layers.0",
        "layers.0",
        "layers.1",
        "lm_head",
    ]
    assert layer_group("transformer.h.11.attn.c_attn.weight", r"\bh\.\d+") == "h.11"
    assert layer_group("bias") == "bias"


def test_weight_drift_on_known_deltas():
    anchor = {n: torch.ones(2, 2) for n in NAMES}  # ‖θ0‖ = sqrt(5 · 4) = sqrt(20)
    deltas = {NAMES[0]: 0.0, NAMES[1]: 1.0, NAMES[2]: 2.0, NAMES[3]: 0.5, NAMES[4]: -3.0}
    params = [(n, (anchor[n] + deltas[n]).to(torch.bfloat16)) for n in NAMES]
    drift = weight_drift(params, anchor)
    sq = {n: 4 * d**2 for n, d in deltas.items()}  # four elements per tensor
    assert drift.global_norm == pytest.approx(math.sqrt(sum(sq.values())))
    assert drift.anchor_norm == pytest.approx(math.sqrt(20))
    assert drift.relative == pytest.approx(drift.global_norm / math.sqrt(20))
    assert drift.per_layer == pytest.approx(
        {
            "model.embed_tokens": 0.0,
            "layers.0": math.sqrt(sq[NAMES[1]] + sq[NAMES[2]]),
            "layers.1": math.sqrt(sq[NAMES[3]]),
            "lm_head": math.sqrt(sq[NAMES[4]]),
        }
    )
    assert drift.max_abs == 3.0
    assert drift.mean_abs == pytest.approx((0 + 1 + 2 + 0.5 + 3) / 5)
    assert drift.largest_change == "lm_head.weight"
    assert set(drift.to_dict()) >= {"global_norm", "relative", "per_layer"}


def test_weight_drift_uses_the_awd_anchor_and_rejects_unanchored_parameters():
    params = [(n, torch.randn(3, 3, generator=torch.Generator().manual_seed(i))) for i, n in enumerate(NAMES)]
    decay = AnchoredDecay(params)
    assert weight_drift(params, decay.anchor).global_norm == 0.0
    with torch.no_grad():
        params[2][1].add_(0.5)
    assert weight_drift(params, decay.anchor).global_norm == pytest.approx(
        decay.deviation_norm(params), rel=1e-9
    )
    with pytest.raises(ValueError, match="'extra.weight' has no anchor"):
        weight_drift(params + [("extra.weight", torch.zeros(1))], decay.anchor)


def test_kl_matches_a_hand_computed_two_token_case_and_ignores_masked_positions():
    p0, p = torch.tensor([0.8, 0.2]), torch.tensor([0.5, 0.5])
    kl_a = float((p0 * (p0 / p).log()).sum())  # 0.1927
    base = torch.zeros(2, 3, 2)
    cur = torch.zeros(2, 3, 2)
    base[0, 0], cur[0, 0] = p0.log(), p.log()  # KL = kl_a
    base[0, 1], cur[0, 1] = p.log(), p.log() + 7.0  # same distribution after softmax: KL = 0
    base[1, 0], cur[1, 0] = p0.log(), p.log()  # KL = kl_a
    base[0, 2], cur[0, 2] = torch.tensor([9.0, -9.0]), torch.tensor([-9.0, 9.0])  # masked out: huge KL
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(kl_to_base(base, base, mask)) == pytest.approx(0.0, abs=1e-7)
    # token-weighted: (kl_a + 0 + kl_a) / 3; per sequence: mean(kl_a / 2, kl_a)
    assert float(kl_to_base(base, cur, mask)) == pytest.approx(2 * kl_a / 3, rel=1e-5)
    assert float(kl_to_base(base, cur, mask, reduction="sequence")) == pytest.approx(0.75 * kl_a, rel=1e-5)
    per_token = kl_to_base(base, cur, mask, reduction="none")
    assert per_token.shape == (2, 3) and float(per_token[0, 2]) == 0.0
    with pytest.raises(ValueError, match="no token"):
        kl_to_base(base, cur, torch.zeros(2, 3, dtype=torch.bool))


def test_sampled_kl_on_base_samples_estimates_the_exact_kl():
    g = torch.Generator().manual_seed(0)
    base_logits = torch.randn(1, 1, 5, generator=g).expand(4, 2000, 5).contiguous()
    logits = base_logits + 0.7 * torch.randn(1, 1, 5, generator=g)
    tokens = torch.multinomial(
        torch.softmax(base_logits[0, 0], -1), 4 * 2000, replacement=True, generator=g
    ).view(4, 2000)
    mask = torch.ones(4, 2000, dtype=torch.bool)
    lp0, lp = token_logprobs(base_logits, tokens), token_logprobs(logits, tokens)
    torch.testing.assert_close(lp0, torch.log_softmax(base_logits, -1).gather(-1, tokens[..., None])[..., 0])
    exact = float(kl_to_base(base_logits, logits, mask))
    estimate = float(sampled_kl_to_base(lp0, lp, mask))
    assert exact > 0.05
    assert estimate == pytest.approx(exact, rel=0.1)  # measured: within 3% over seeds
