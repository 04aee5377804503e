"""The ES step: config validation, the update against a dense reference, fp32 accumulation on bf16 weights,
a toy problem, replay from θ0, and a population split across simulated ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_fundamentals.evolution import (
    AnchoredDecay,
    ESConfig,
    ESStepRecord,
    MasterWeights,
    apply_step,
    combine_rewards,
    direction_seeds,
    es_step,
    es_update_,
    evaluate_members,
    member_indices,
    member_noise,
    replay_steps,
    shape_rewards,
    tensor_noise,
    zscore,
)

BF16_ULP = 2.0**-13  # bf16 spacing on [2^-6, 2^-5), where weights of about 0.02 lie


def _params(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        ("model.layers.0.mlp.up_proj.weight", (torch.randn(8, 6, generator=g) * 0.02).to(dtype)),
        ("model.layers.1.mlp.up_proj.weight", (torch.randn(8, 6, generator=g) * 0.02).to(dtype)),
        ("model.norm.weight", torch.ones(6, dtype=dtype)),
    ]


def _clone(params):
    return [(n, p.clone()) for n, p in params]


def _quadratic_reward(target):
    def reward(params):
        return -sum(float((p.float() - target[n]).square().sum()) for n, p in params)

    return reward


# ---------------------------------------------------------------------------------------------- config


def test_config_defaults_follow_the_paper():
    cfg = ESConfig()
    assert (cfg.population, cfg.sigma, cfg.alpha, cfg.shaping, cfg.noise_mode, cfg.mirrored) == (
        30,
        1e-3,
        5e-4,
        "zscore",
        "iid",
        False,
    )
    assert ESConfig(sigma=0.1).alpha == 0.05  # alpha = sigma / 2
    assert ESConfig(population=8, mirrored=True).directions == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population": 7, "mirrored": True}, "population must be even"),
        ({"population": 1}, "population must be an integer >= 2"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"alpha": -1.0}, "alpha"),
        ({"shaping": "rank"}, "shaping 'rank'"),
        ({"noise_mode": "shared"}, "noise_mode 'shared'"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ESConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- update


@pytest.mark.parametrize("mode", ["iid", "shared_per_shape"])
def test_update_equals_the_dense_reference(mode):
    params = _params()
    theta0 = {n: p.double() for n, p in params}
    seeds = [11, 22, 33, 44]
    coefs = [0.5, -1.25, 2.0, 0.0]
    scale = 5e-4 / 4
    es_update_(params, seeds, coefs, scale, mode)
    for name, p in params:
        if mode == "shared_per_shape":  # the paper's scripts: a generator seeded with the member seed
            eps = [torch.randn(p.shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        else:
            eps = [tensor_noise(s, name, p.shape, mode=mode) for s in seeds]
        dense = torch.stack(eps).double()  # all ε_n materialized at once
        expected = theta0[name] + scale * (
            torch.tensor(coefs, dtype=torch.float64)[:, None, None] * dense.view(4, 1, -1)
        ).sum(0).view(p.shape)
        torch.testing.assert_close(p.double(), expected, rtol=0, atol=2e-7)
    if mode == "shared_per_shape":  # same shape, same noise: both layers moved by the same amount
        d0 = params[0][1].double() - theta0[params[0][0]]
        d1 = params[1][1].double() - theta0[params[1][0]]
        torch.testing.assert_close(d0, d1, rtol=0, atol=1e-8)  # fp32 rounding of θ + Δ only
        assert float(d0.abs().max()) > 1e-5


@pytest.mark.parametrize(
    ("mirrored", "shaping"), [(False, "zscore"), (True, "zscore"), (True, "centered_rank")]
)
def test_es_step_perturbs_each_member_along_its_noise_and_updates_along_the_shaped_sum(mirrored, shaping):
    cfg = ESConfig(population=6, sigma=0.01, alpha=0.02, mirrored=mirrored, shaping=shaping, seed=3)
    params = _params()
    theta0 = {n: p.clone() for n, p in params}
    seen: list[dict[str, torch.Tensor]] = []
    rng = np.random.default_rng(0)

    def reward(ps):
        seen.append({n: p.clone() for n, p in ps})
        return float(rng.normal())

    record = es_step(params, reward, cfg, step=5)
    assert record.seeds == direction_seeds(3, 5, cfg.directions)
    assert len(record.coefficients) == cfg.directions and len(record.rewards) == 6
    dense = {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in params}
    shaped = shape_rewards(record.rewards, shaping)
    for member in range(6):
        for name, p in params:
            eps = member_noise(3, 5, member, name, p.shape, population=6, mirrored=mirrored)
            # member m was evaluated at θ0 ± σ ε_m
            torch.testing.assert_close(seen[member][name], theta0[name] + 0.01 * eps, rtol=0, atol=1e-7)
            dense[name] += shaped[member] * eps.double()
    for name, p in params:  # Σ_j c_j ε_j == Σ_m ẑ_m (±ε_m): mirrored pairs fold into ẑ⁺ − ẑ⁻
        expected = theta0[name].double() + (0.02 / 6) * dense[name]
        torch.testing.assert_close(p.double(), expected, rtol=0, atol=2e-7)


def test_equal_rewards_leave_the_weights_bit_identical():
    params = _params(torch.bfloat16)
    before = [p.clone() for _, p in params]
    record = es_step(params, lambda ps: 1.0, ESConfig(population=4), step=0)
    assert record.coefficients == [0.0] * 4
    assert all(torch.equal(p, b) for (_, p), b in zip(params, before, strict=True))


def test_fp32_accumulation_keeps_the_small_bf16_step_that_naive_bf16_accumulation_loses():
    """α = 5e-4, N = 30: the step's std (~9e-5) is below the bf16 spacing at 0.02 (1.2e-4); cf. the
    fp32 accumulation in VsonicV/es-at-scale ``es_at_scale/utils/worker_extension.py``."""
    n, scale = 30, 5e-4 / 30
    seeds = direction_seeds(0, 0, n)
    coefs = zscore(np.random.default_rng(1).normal(size=n)).tolist()
    w0 = torch.full((4096,), 0.0234375, dtype=torch.bfloat16)  # 3/128: exact, mid-binade
    eps = torch.stack([tensor_noise(s, "w", w0.shape) for s in seeds]).double()
    delta = scale * (torch.tensor(coefs, dtype=torch.float64)[:, None] * eps).sum(0)
    exact = w0.double() + delta

    ours = w0.clone()
    es_update_([("w", ours)], seeds, coefs, scale)
    naive = w0.clone()  # each member's small contribution added straight into the bf16 weights
    for s, c in zip(seeds, coefs, strict=True):
        naive.add_((scale * c * tensor_noise(s, "w", naive.shape)).to(torch.bfloat16))
    ours_err, naive_err = (ours.double() - exact).abs(), (naive.double() - exact).abs()
    assert float(ours_err.max()) <= BF16_ULP / 2 + 1e-8  # the best bf16 can hold
    assert float(naive_err.max()) > BF16_ULP
    assert float(naive_err.mean()) > 1.5 * float(ours_err.mean())

    # Over steps: a consistent drift below half an ulp per step never reaches bf16 weights; a master does.
    steps = 12
    plain, mastered = w0.clone(), w0.clone()
    master = MasterWeights([("w", mastered)])
    for _ in range(steps):
        es_update_([("w", plain)], seeds, coefs, scale)
        es_update_([("w", mastered)], seeds, coefs, scale, master=master)
    target = w0.double() + steps * delta
    assert float(target.min()) > 2.0**-6 and float(target.max()) < 2.0**-5  # one binade: one ulp size
    below = delta.abs() < 0.45 * BF16_ULP
    assert below.float().mean() > 0.3
    assert torch.equal(plain[below], w0[below])  # lost, every step
    assert float((mastered.double() - target).abs().max()) <= BF16_ULP / 2 + 1e-8
    assert float((plain.double() - target).abs().max()) > 5 * BF16_ULP
    torch.testing.assert_close(master["w"].double(), target, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- toy problem


@pytest.mark.parametrize(
    "cfg",
    [
        ESConfig(population=16, sigma=0.1, alpha=0.05, seed=1),
        ESConfig(population=16, sigma=0.1, alpha=0.15, seed=1, mirrored=True, shaping="centered_rank"),
        ESConfig(population=16, sigma=0.1, alpha=0.05, seed=1, noise_mode="shared_per_shape"),
    ],
    ids=["zscore", "mirrored-rank", "shared"],
)
def test_es_raises_a_toy_reward(cfg):
    g = torch.Generator().manual_seed(0)
    params = [("layer.weight", torch.zeros(8, 4)), ("layer.bias", torch.zeros(4))]
    target = {n: torch.randn(p.shape, generator=g) * 0.5 for n, p in params}
    reward = _quadratic_reward(target)
    start = reward(params)
    history = [start]
    for step in range(30):
        es_step(params, reward, cfg, step)
        history.append(reward(params))
    assert history[-1] > 0.5 * start  # the squared distance to the target at least halved (measured: ~0.3x)
    assert np.mean(history[-5:]) > np.mean(history[:5])


# ---------------------------------------------------------------------------------------------- replay


@pytest.mark.parametrize("use_master", [False, True])
def test_replay_from_theta0_reproduces_the_trained_weights_bit_for_bit(use_master):
    params = _params(torch.bfloat16)
    theta0 = _clone(params)
    g = torch.Generator().manual_seed(4)
    target = {n: p.float() + 0.05 * torch.randn(p.shape, generator=g) for n, p in params}
    cfg = ESConfig(population=6, sigma=0.01, alpha=0.005, seed=9)
    master = MasterWeights(params) if use_master else None
    decay = AnchoredDecay(params, kind="l2", lam=20.0)
    log = [
        es_step(params, _quadratic_reward(target), cfg, t, master=master, decay=decay).to_dict()
        for t in range(5)
    ]
    assert any(not torch.equal(p, q) for (_, p), (_, q) in zip(params, theta0, strict=True))

    log = json.loads(json.dumps(log))  # what es_updates/step_XXXXXX.json holds
    replayed = _clone(theta0)
    replay_master = MasterWeights(replayed) if use_master else None
    replay_steps(replayed, log, master=replay_master, decay=AnchoredDecay(replayed, kind="l2", lam=20.0))
    for (_, p), (_, q) in zip(params, replayed, strict=True):
        assert torch.equal(p.view(torch.int16), q.view(torch.int16))

    with pytest.raises(ValueError, match="AnchoredDecay"):
        replay_steps(_clone(theta0), log, master=MasterWeights(theta0) if use_master else None)
    with pytest.raises(ValueError, match="master weights"):
        replay_steps(_clone(theta0), log, master=None if use_master else MasterWeights(theta0))


# ---------------------------------------------------------------------------------------------- split population


@pytest.mark.parametrize("mirrored", [False, True])
def test_two_simulated_ranks_reach_the_same_weights_as_one_process(mirrored):
    cfg = ESConfig(population=8, sigma=0.02, alpha=0.01, mirrored=mirrored, seed=5)
    g = torch.Generator().manual_seed(1)
    base = _params(torch.bfloat16, seed=2)
    target = {n: p.float() + 0.1 * torch.randn(p.shape, generator=g) for n, p in base}
    reward = _quadratic_reward(target)
    single, rank0, rank1 = _clone(base), _clone(base), _clone(base)
    assert member_indices(8, 0, 2) == [0, 2, 4, 6] and member_indices(8, 1, 2) == [1, 3, 5, 7]

    for step in range(3):
        full = es_step(single, reward, cfg, step)
        seeds = direction_seeds(cfg.seed, step, cfg.directions)
        part1 = evaluate_members(rank1, reward, cfg, seeds, member_indices(8, 1, 2))
        # rank 0 runs the whole step; its gather stands in for the all_reduce with rank 1
        rec0 = es_step(
            rank0,
            reward,
            cfg,
            step,
            rank=0,
            world_size=2,
            gather=lambda local, other=part1: combine_rewards([local, other], 8),
        )
        rec1 = ESStepRecord.from_dict(rec0.to_dict())  # rank 1 applies the same update from rewards + seeds
        apply_step(rank1, rec1)
        assert rec0.rewards == full.rewards and rec0.coefficients == full.coefficients
    for (_, a), (_, b), (_, c) in zip(single, rank0, rank1, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_reward_combination_and_rank_arguments_fail_early():
    with pytest.raises(ValueError, match=r"no reward for members \[3\]"):
        combine_rewards([{0: 1.0, 2: 1.0}, {1: 0.0}], 4)
    with pytest.raises(ValueError, match="more than one process"):
        combine_rewards([{0: 1.0, 1: 1.0}, {1: 0.0}], 2)
    with pytest.raises(ValueError, match="rank"):
        member_indices(4, 2, 2)
    with pytest.raises(ValueError, match="gather"):
        es_step(_params(), lambda ps: 0.0, ESConfig(population=4), 0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="reward of member 0 is nan"):
        es_step(_params(), lambda ps: float("nan"), ESConfig(population=4), 0)
