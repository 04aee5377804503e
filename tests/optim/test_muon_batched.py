"""Batched Newton-Schulz (one call per shape group), Gram Newton-Schulz, cost-balanced owners, routing log."""

from __future__ import annotations

import logging

import pytest
import torch

from hf_fundamentals.optim import (
    MuonAdamW,
    balanced_owners,
    gram_newton_schulz,
    newton_schulz,
    ns_cost,
    orthogonalize,
    orthogonalize_many,
)
from hf_fundamentals.optim.newton_schulz import gram_is_cheaper, ns_flops


def _group(**over):
    group = dict(
        layout="out_in", flatten=False, split_sizes=None, split_interleave=None, mode="polar",
        ns_method="quintic", ns_steps=5, ns_dtype="float32", gram_ns="off", adjust_lr="match_rms_adamw",
        reg_eps=1e-2, reg_steps=20, ht_power=0.125,
    )  # fmt: skip
    group.update(over)
    return group


# A mix that shares shapes only after tall -> wide, across experts, fused blocks and in_out layouts:
# (out, in) logical matrices 16x40, 40x16 (tall), experts 3 x 16x40, q/k/v 16+8+8 rows of 40 (fused),
# a GPT-OSS in_out interleaved gate/up stack, a conv kernel and a 24x24 square.
MIXED = [
    ((16, 40), {}),
    ((40, 16), {}),
    ((3, 16, 40), {}),
    ((32, 40), {"split_sizes": (16, 8, 8)}),
    ((2, 40, 32), {"layout": "in_out", "split_interleave": 2}),
    ((40, 16), {"layout": "in_out"}),
    ((6, 3, 3, 3), {"flatten": True}),
    ((24, 24), {}),
]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"gram_ns": "on"},
        {"ns_method": "polar_express", "adjust_lr": "original"},
        {"mode": "regularized"},
        {"mode": "htmuon"},
    ],
    ids=["quintic", "gram", "polar_express", "regularized", "htmuon"],
)
def test_orthogonalize_many_equals_per_matrix(settings):
    g = torch.Generator().manual_seed(0)
    updates = [torch.randn(*shape, generator=g) for shape, _ in MIXED]
    groups = [_group(**settings, **over) for _, over in MIXED]
    batched, calls = orthogonalize_many(updates, groups, return_calls=True)
    for u, group, out in zip(updates, groups, batched, strict=True):
        assert out.shape == u.shape
        torch.testing.assert_close(out, orthogonalize(u, group), atol=2e-5, rtol=1e-4)
    # 16x40 (the 16x40, the tall 40x16 turned wide, three experts, q, gate and up of both in_out experts,
    # the in_out 40x16), 8x40 (k, v), 6x27 (conv), 24x24: four map calls for 15 logical matrices
    assert calls == 4


def test_optimizer_batched_equals_per_matrix_over_steps():
    """The whole optimizer, batched + foreach AdamW vs one call per parameter + a per-tensor AdamW loop."""
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(*shape, generator=g) * 0.1 for shape, _ in MIXED]
    biases = [torch.randn(7, generator=g), torch.randn(3, 5, generator=g)]
    grads = [[torch.randn_like(w) for w in weights + biases] for _ in range(4)]

    def run(batched):
        ps = [torch.nn.Parameter(w.clone()) for w in weights + biases]
        groups = [{"params": [p], "use_muon": True, **over} for p, (_, over) in zip(ps, MIXED, strict=False)]
        groups.append({"params": ps[len(MIXED) :], "use_muon": False})
        opt = MuonAdamW(
            groups, lr=0.02, weight_decay=0.1, ns_dtype="float32", batched=batched, foreach=batched
        )
        for step in grads:
            for p, grad in zip(ps, step, strict=True):
                p.grad = grad.clone()
            opt.step()
        return [p.detach() for p in ps], opt.ns_stats

    fast, fast_stats = run(True)
    slow, slow_stats = run(False)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert fast_stats["matrices"] == slow_stats["matrices"] == 15  # experts, blocks and interleaves counted
    assert fast_stats["calls"] < slow_stats["calls"]


@pytest.mark.parametrize("method", ["quintic", "polar_express"])
@pytest.mark.parametrize("shape", [(32, 64), (48, 200), (300, 60), (4, 16, 128)])
def test_gram_newton_schulz_equals_plain_in_fp32(method, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    plain = newton_schulz(x, method, 5, torch.float32)
    torch.testing.assert_close(gram_newton_schulz(x, method, 5, torch.float32), plain, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(
        newton_schulz(x, method, 5, torch.float32, gram=True), plain, atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize("shape", [(64, 128), (64, 512), (512, 64)])
def test_gram_newton_schulz_is_as_close_to_the_svd_polar_factor(shape):
    """Against U V^T from an SVD: the Gram form is as accurate as plain NS, and Polar Express x8 gets close."""
    g = torch.Generator().manual_seed(3)
    cases = {
        "gaussian": torch.randn(*shape, generator=g),
        # a gradient-like spectrum: rank-8 signal plus small noise (condition number about 1e3)
        "low-rank+noise": torch.randn(shape[0], 8, generator=g) @ torch.randn(8, shape[1], generator=g)
        + 0.01 * torch.randn(*shape, generator=g),
    }
    for name, x in cases.items():
        u, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
        polar = (u @ vh).float()
        for method, steps in (("quintic", 5), ("polar_express", 8)):
            plain = (newton_schulz(x, method, steps, torch.float32) - polar).norm() / polar.norm()
            gram = (gram_newton_schulz(x, method, steps, torch.float32) - polar).norm() / polar.norm()
            assert abs(float(gram) - float(plain)) < 1e-3, (name, method, float(gram), float(plain))
        if name == "gaussian":
            assert float(gram) < 0.08  # Polar Express x8: within 8% of U V^T (quintic x5 stays ~20% off)
            s = torch.linalg.svdvals(gram_newton_schulz(x, "polar_express", 8, torch.float32))
            assert 0.95 < float(s.min()) and float(s.max()) < 1.1


def test_gram_is_used_only_where_it_saves_flops():
    """At 5 steps with one restart the Gram form is cheaper above aspect 2.5; below it the plain iteration runs."""
    assert not gram_is_cheaper(192, 480, 5) and gram_is_cheaper(192, 481, 5)
    assert gram_is_cheaper(481, 192, 5)  # orientation does not matter
    assert ns_flops(64, 512, 5, gram=True) < ns_flops(64, 512, 5)
    g = torch.Generator().manual_seed(4)
    near_square = torch.randn(40, 100, generator=g)  # aspect 2.5: plain, bitwise
    assert torch.equal(
        newton_schulz(near_square, gram=True, dtype=torch.float32),
        newton_schulz(near_square, dtype=torch.float32),
    )
    wide = torch.randn(20, 60, generator=g)
    assert not torch.equal(
        newton_schulz(wide, gram=True, dtype=torch.float32), newton_schulz(wide, dtype=torch.float32)
    )


@pytest.mark.parametrize("method,steps", [("quintic", 10), ("polar_express", 8)])
def test_gram_restart_keeps_long_schedules_accurate(method, steps):
    """Without restarts, fp32 Gram NS drifts by 1e-1 (PE x8) or overflows (quintic x10) on ill-conditioned input."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(64, 8, generator=g) @ torch.randn(8, 512, generator=g) + 1e-3 * torch.randn(
        64, 512, generator=g
    )
    ref = newton_schulz(x.double(), method, steps, torch.float64)
    gram = gram_newton_schulz(x, method, steps, torch.float32).double()
    assert float((gram - ref).norm() / ref.norm()) < 1e-3


def test_gram_auto_follows_the_ns_dtype():
    from hf_fundamentals.optim.muon import _map_key

    cpu = torch.device("cpu")
    assert _map_key(_group(gram_ns="auto", ns_dtype="float32"), cpu)[-1] is True
    assert _map_key(_group(gram_ns="auto", ns_dtype="bfloat16"), cpu)[-1] is False
    assert _map_key(_group(gram_ns="on", ns_dtype="bfloat16"), cpu)[-1] is True
    assert _map_key(_group(gram_ns="off", ns_dtype="float32"), cpu)[-1] is False


def test_balanced_owners_longest_first_to_least_loaded():
    assert balanced_owners([], 2) == []
    assert balanced_owners([5.0], 3) == [0]
    assert balanced_owners([10, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1]
    assert balanced_owners([3, 3, 2, 2, 2], 2) == [0, 1, 0, 1, 0]  # LPT: loads 7 and 5
    costs = [float(c) for c in torch.randint(1, 100, (40,), generator=torch.Generator().manual_seed(5))]
    for world in (2, 3, 8):
        owners = balanced_owners(costs, world)
        loads = [sum(c for c, o in zip(costs, owners, strict=True) if o == r) for r in range(world)]
        assert max(loads) - min(loads) <= max(costs)  # LPT never leaves a gap above the largest item
        assert owners == balanced_owners(list(costs), world)  # deterministic: every rank agrees


def test_ns_cost_counts_logical_blocks():
    base = ns_cost((16, 40), _group())
    assert ns_cost((40, 16), _group()) == base  # orientation does not change the cost
    assert ns_cost((3, 16, 40), _group()) == 3 * base
    assert ns_cost((40, 16), _group(layout="in_out")) == base
    fused = ns_cost((32, 40), _group(split_sizes=(16, 8, 8)))
    assert fused == base + 2 * ns_cost((8, 40), _group())


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def test_routing_log_line_at_the_first_step_only(caplog):
    model = _model()
    opt = MuonAdamW(
        [
            {"params": [model[0].weight, model[2].weight], "use_muon": True, "role": "hidden"},
            {"params": [model[0].bias, model[2].bias], "use_muon": False, "role": "bias"},
        ],
        lr=0.01,
    )
    x = torch.randn(5, 8)
    with caplog.at_level(logging.INFO, logger="hf_fundamentals.optim"):
        for _ in range(2):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    lines = [r.getMessage() for r in caplog.records if r.name == "hf_fundamentals.optim"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "Muon 2 tensors / 192 values (hidden)" in line  # 16*8 + 4*16
    assert "AdamW 2 tensors / 20 values (bias)" in line
    assert "scaled x0.8" in line  # match_rms_adamw: 0.2*sqrt(16) for both matrices
    assert "2 shape groups batched" in line  # 8x16 and 4x16 (wide)
    assert "quintic x5" in line


def test_routing_log_warns_when_nothing_goes_to_muon(caplog):
    model = _model()
    opt = MuonAdamW([{"params": list(model.parameters()), "use_muon": False}], lr=0.01)
    model(torch.randn(2, 8)).sum().backward()
    with caplog.at_level(logging.INFO, logger="hf_fundamentals.optim"):
        opt.step()
    (record,) = [r for r in caplog.records if r.name == "hf_fundamentals.optim"]
    assert record.levelno == logging.WARNING
    assert "Muon 0 tensors" in record.getMessage()


def test_zero3_partitioned_parameters_are_refused():
    """deepspeed.zero.Init leaves an empty placeholder with ds_* attributes; Muon would silently be SGD."""
    p = torch.nn.Parameter(torch.empty(0))
    p.ds_id, p.ds_status, p.ds_shape = 3, "NOT_AVAILABLE", (64, 32)
    with pytest.raises(RuntimeError, match=r"shape \(64, 32\) is partitioned by DeepSpeed ZeRO.*zero.Init"):
        MuonAdamW([{"params": [p], "use_muon": True}])
    q = torch.nn.Parameter(torch.empty(0, 4))  # an empty matrix without ds_* attributes
    with pytest.raises(RuntimeError, match="DeepSpeed ZeRO"):
        MuonAdamW([{"params": [q], "use_muon": True}])
    # a partition swapped in after construction is refused at the step too
    w = torch.nn.Parameter(torch.randn(4, 4))
    opt = MuonAdamW([{"params": [w], "use_muon": True}])
    p.grad = torch.empty(0)
    opt.param_groups[0]["params"] = [p]
    with pytest.raises(RuntimeError, match="DeepSpeed ZeRO"):
        opt.step()
