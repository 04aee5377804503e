"""Anchored weight decay: l2 and l1 closed forms, exact no-op at λ = 0, the αλ ≥ 1 guard, parameter
selection, master weights, and bounded drift under an ES random walk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_fundamentals.evolution import AnchoredDecay, ESConfig, MasterWeights, anchored_decay_, es_step


def _params(dtype: torch.dtype = torch.float32) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("model.embed_tokens.weight", torch.randn(10, 4, generator=g).to(dtype)),
        ("model.layers.0.mlp.up_proj.weight", torch.randn(6, 4, generator=g).to(dtype)),
        ("model.layers.0.input_layernorm.weight", torch.ones(4, dtype=dtype)),
        ("lm_head.weight", torch.randn(10, 4, generator=g).to(dtype)),
    ]


def _drift(params, scale=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in params:
            p.add_((scale * torch.randn(p.shape, generator=g)).to(p.dtype))


def test_l2_is_the_closed_form_contraction_toward_the_anchor():
    params = _params()
    theta0 = {n: p.double() for n, p in params}
    decay = AnchoredDecay(params, kind="l2", lam=10.0)
    _drift(params)
    theta = {n: p.double() for n, p in params}
    stats = decay.step(params, lr=5e-4)  # s = α·λ = 0.005: the paper's 0.995 per iteration
    assert stats["shrink"] == pytest.approx(0.005)
    for name, p in params:
        expected = theta0[name] + (1 - 0.005) * (theta[name] - theta0[name])
        torch.testing.assert_close(p.double(), expected, rtol=0, atol=1e-6)
    assert stats["deviation_after"] == pytest.approx(0.995 * stats["deviation_before"], rel=1e-6)
    assert decay.deviation_norm(params) == pytest.approx(stats["deviation_after"], rel=1e-9)


def test_l1_is_the_soft_threshold_of_the_difference():
    params = _params()
    theta0 = {n: p.clone() for n, p in params}
    decay = AnchoredDecay(params, kind="l1", lam=0.01)
    _drift(params)
    diff = {n: p.double() - theta0[n].double() for n, p in params}
    shrink = 0.2  # a large threshold so that both branches occur
    decay.apply(params, shrink)
    inside = outside = 0
    for name, p in params:
        d = diff[name]
        small = d.abs() <= shrink
        inside, outside = inside + int(small.sum()), outside + int((~small).sum())
        assert torch.equal(p[small], theta0[name][small])  # snapped back to θ0 exactly
        expected = theta0[name].double() + torch.sign(d) * (d.abs() - shrink)
        torch.testing.assert_close(p.double()[~small], expected[~small], rtol=0, atol=1e-6)
    assert inside > 10 and outside > 10


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("kind", ["l2", "l1", "none"])
def test_lambda_zero_and_kind_none_are_exact_no_ops(dtype, kind):
    params = _params(dtype)
    decay = AnchoredDecay(params, kind=kind, lam=0.0 if kind != "none" else 10.0)
    _drift(params)
    before = [p.clone() for _, p in params]
    stats = decay.step(params, lr=5e-4)
    assert stats["deviation_after"] == stats["deviation_before"] > 0
    bits = {2: torch.int16, 4: torch.int32}[before[0].element_size()]
    for (_, p), b in zip(params, before, strict=True):
        assert torch.equal(p.view(bits), b.view(bits))


def test_l2_shrink_of_one_or_more_raises_with_the_numbers():
    params = _params()
    decay = AnchoredDecay(params, kind="l2", lam=10.0)
    with pytest.raises(ValueError, match=r"shrink = lr \* lambda < 1.*got 1\.0.*lr=0\.1, lambda=10\.0"):
        decay.step(params, lr=0.1)
    with pytest.raises(ValueError, match="< 1"):
        decay.apply(params, 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        decay.apply(params, -0.1)
    assert decay.shrink_for(0.0999) == pytest.approx(0.999)
    # l1 is a threshold, not a contraction: shrink >= 1 is legal there
    AnchoredDecay(params, kind="l1", lam=10.0).step(params, lr=0.2)
    # and es_step refuses before spending any evaluation
    calls = []
    with pytest.raises(ValueError, match="lambda=10.0"):
        es_step(
            params,
            lambda ps: calls.append(1) or 0.0,
            ESConfig(population=2, sigma=0.2, alpha=0.1),
            0,
            decay=decay,
        )
    assert calls == []


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="kind 'l3'"):
        AnchoredDecay(_params(), kind="l3")
    with pytest.raises(ValueError, match="lambda"):
        AnchoredDecay(_params(), lam=-1.0)
    with pytest.raises(ValueError, match="selected no parameter"):
        AnchoredDecay(_params(), include=r"^nothing")
    with pytest.raises(ValueError, match="shape"):
        anchored_decay_(torch.zeros(3), torch.zeros(4), 0.1)


def test_anchor_is_an_fp32_cpu_snapshot_and_selection_follows_the_regexes():
    params = _params(torch.bfloat16)
    decay = AnchoredDecay(params, include=r"layers\.|lm_head", exclude=r"layernorm")
    assert sorted(decay.anchor) == ["lm_head.weight", "model.layers.0.mlp.up_proj.weight"]
    for name, a in decay.anchor.items():
        assert a.dtype == torch.float32 and a.device.type == "cpu"
        assert torch.equal(a, dict(params)[name].float())
    _drift(params)
    assert torch.equal(
        decay.anchor["lm_head.weight"], AnchoredDecay(_params(torch.bfloat16)).anchor["lm_head.weight"]
    )
    before = {n: p.clone() for n, p in params}
    decay.step(params, lr=0.05)
    for name, p in params:
        changed = not torch.equal(p, before[name])
        assert changed == (name in decay.anchor), name


def test_decay_on_master_weights_writes_the_rounded_master_back():
    params = _params(torch.bfloat16)
    master = MasterWeights(params)
    decay = AnchoredDecay(params, lam=10.0)
    with torch.no_grad():
        for name in master:
            master[name].add_(1e-3)
    master.write_to(params)
    decay.step(params, lr=0.01, master=master)  # s = 0.1
    for name, p in params:
        expected = decay.anchor[name] + 0.9 * 1e-3
        torch.testing.assert_close(master[name], expected, rtol=0, atol=1e-7)
        assert torch.equal(p, master[name].to(torch.bfloat16))


def test_awd_bounds_the_random_walk_that_grows_like_sqrt_t_without_it():
    """ES on a reward that ignores the weights is a pure random walk (per step, per element variance α²/N):
    ‖θ − θ0‖ grows like √t. AWD l2 with s = αλ makes it an AR(1) process with a stationary spread of
    α²/N · (1−s)² / (1 − (1−s)²) per element (the random-walk drift of arXiv 2605.30148)."""
    cfg = ESConfig(population=4, sigma=0.5, alpha=0.1, seed=0)
    lam = 0.5  # s = 0.05: relaxes in ~10 steps
    norms: dict[str, dict[int, float]] = {}
    for label in ("plain", "awd"):
        params = [("w", torch.zeros(40, 50))]
        decay = AnchoredDecay(params, lam=lam) if label == "awd" else None
        rng = np.random.default_rng(0)
        norms[label] = {}
        for step in range(1, 401):
            es_step(params, lambda ps, rng=rng: float(rng.normal()), cfg, step, decay=decay)
            if step in (100, 400):
                norms[label][step] = float(params[0][1].norm())
    per_step = cfg.alpha**2 / cfg.population * 2000  # expected squared norm added per step
    s = cfg.alpha * lam
    stationary = math.sqrt(per_step * (1 - s) ** 2 / (1 - (1 - s) ** 2))
    plain, awd = norms["plain"], norms["awd"]
    assert plain[400] / plain[100] == pytest.approx(2.0, rel=0.1)  # √(400/100)
    assert plain[400] == pytest.approx(math.sqrt(400 * per_step), rel=0.1)
    assert awd[400] / awd[100] == pytest.approx(1.0, rel=0.1)  # bounded
    assert awd[400] == pytest.approx(stationary, rel=0.1)
    assert awd[400] < 0.25 * plain[400]
