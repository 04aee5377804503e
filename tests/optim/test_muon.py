"""MuonAdamW: parity with torch.optim.Muon, per-expert and per-block equivalences, decay, state, errors."""

from __future__ import annotations

import copy

import pytest
import torch

from hf_fundamentals.optim import MuonAdamW, lr_adjustment, orthogonalize
from hf_fundamentals.optim.newton_schulz import newton_schulz


def _grads(shape, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(steps)]


def _run(param, grads, **group):
    p = torch.nn.Parameter(param.clone())
    opt = MuonAdamW(
        [{"params": [p], "use_muon": True, **group}], lr=0.02, weight_decay=0.1, ns_dtype="float32"
    )
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.fixture
def fp32_torch_muon(monkeypatch):
    """torch.optim.Muon with its Newton-Schulz run in fp32 (it hard-codes bf16) to compare logic exactly."""
    import torch.optim._muon as tm

    def ns_fp32(grad, ns_coefficients, ns_steps, eps):
        return newton_schulz(grad, "quintic", ns_steps, torch.float32)

    monkeypatch.setattr(tm, "_zeropower_via_newtonschulz", ns_fp32)


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_parity_with_torch_muon_fp32(fp32_torch_muon, adjust, shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    grads = _grads(shape, 6)
    ref = torch.nn.Parameter(w.clone())
    topt = torch.optim.Muon([ref], lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust)
    for g in grads:
        ref.grad = g.clone()
        topt.step()
    ours = _run(w, grads, adjust_lr=adjust)
    torch.testing.assert_close(ours, ref.detach(), atol=1e-6, rtol=1e-5)


def test_parity_with_torch_muon_bf16_default():
    """In the default bf16 mode we differ only by normalizing in fp32 before the cast."""
    shape = (32, 48)
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    grads = _grads(shape, 5, seed=3)
    ref = torch.nn.Parameter(w.clone())
    topt = torch.optim.Muon([ref], lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
    p = torch.nn.Parameter(w.clone())
    opt = MuonAdamW(
        [{"params": [p], "use_muon": True}],
        lr=0.02,
        weight_decay=0.1,
        adjust_lr="original",
        ns_dtype="bfloat16",
    )
    for g in grads:
        ref.grad, p.grad = g.clone(), g.clone()
        topt.step()
        opt.step()
    assert (p - ref).abs().max() < 0.02 * 5 * 0.02  # a few percent of the total step


def test_expert_stack_equals_loop_of_matrices():
    experts = torch.randn(4, 12, 20, generator=torch.Generator().manual_seed(4))
    grads = _grads((4, 12, 20), 4, seed=5)
    stacked = _run(experts, grads)
    looped = torch.stack([_run(experts[e], [g[e] for g in grads]) for e in range(4)])
    torch.testing.assert_close(stacked, looped, atol=1e-6, rtol=1e-5)


def test_lr_adjustment_reads_last_two_dims():
    # torch's _adjust_lr reads shape[:2], i.e. (experts, out) for a 3-D stack; ours uses each expert's (out, in)
    u = torch.randn(8, 12, 20, generator=torch.Generator().manual_seed(6))
    group = dict(
        layout="out_in",
        flatten=False,
        split_sizes=None,
        split_interleave=None,
        mode="polar",
        ns_method="quintic",
        ns_steps=5,
        ns_dtype="float32",
        adjust_lr="match_rms_adamw",
    )
    out = orthogonalize(u, group)
    torch.testing.assert_close(out, newton_schulz(u, dtype=torch.float32) * 0.2 * 20**0.5)
    assert lr_adjustment("original", 40, 10) == 2.0
    assert lr_adjustment("original", 10, 40) == 1.0
    assert lr_adjustment("spectral_norm", 10, 40) == 0.5
    assert lr_adjustment("none", 10, 40) == 1.0
    with pytest.raises(ValueError, match="match_rms_adamw"):
        lr_adjustment("rms", 1, 1)


@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original", "spectral_norm"])
def test_split_blocks_equal_separate_parameters(adjust):
    sizes = (16, 8, 8)
    w = torch.randn(32, 20, generator=torch.Generator().manual_seed(7))
    grads = _grads((32, 20), 4, seed=8)
    fused = _run(w, grads, split_sizes=sizes, adjust_lr=adjust)
    parts = [
        _run(block, [g for g in torch.split(torch.stack(grads), sizes, dim=1)[i]], adjust_lr=adjust)
        for i, block in enumerate(torch.split(w, sizes, dim=0))
    ]
    torch.testing.assert_close(fused, torch.cat(parts), atol=1e-6, rtol=1e-5)


def test_interleaved_gate_up_in_out_experts_equal_separate_matrices():
    """GPT-OSS layout: [E, in, 2I] with gate = [..., ::2] and up = [..., 1::2]."""
    w = torch.randn(3, 10, 12, generator=torch.Generator().manual_seed(9))
    grads = _grads((3, 10, 12), 3, seed=10)
    fused = _run(w, grads, layout="in_out", split_interleave=2)
    for k in range(2):
        sep = _run(w[..., k::2].mT, [g[..., k::2].mT for g in grads])  # (out, in) per expert
        torch.testing.assert_close(fused[..., k::2], sep.mT, atol=1e-6, rtol=1e-5)


def test_in_out_layout_equals_transposed_param():
    w = torch.randn(10, 30, generator=torch.Generator().manual_seed(11))
    grads = _grads((10, 30), 3, seed=12)
    a = _run(w, grads, layout="in_out", adjust_lr="spectral_norm")
    b = _run(w.T, [g.T for g in grads], adjust_lr="spectral_norm")
    torch.testing.assert_close(a, b.T, atol=1e-6, rtol=1e-5)


def test_conv_kernel_flattened():
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(13))
    grads = _grads(w.shape, 2, seed=14)
    a = _run(w, grads, flatten=True)
    b = _run(w.reshape(6, -1), [g.reshape(6, -1) for g in grads])
    torch.testing.assert_close(a, b.reshape(w.shape), atol=1e-6, rtol=1e-5)


def test_weight_decay_uses_unadjusted_lr():
    p = torch.nn.Parameter(torch.ones(8, 16))
    a = torch.nn.Parameter(torch.ones(5))
    opt = MuonAdamW(
        [{"params": [p], "use_muon": True}, {"params": [a], "use_muon": False}],
        lr=0.1,
        weight_decay=0.5,
        adjust_lr="match_rms_adamw",
    )
    p.grad, a.grad = torch.zeros_like(p), torch.zeros_like(a)
    opt.step()  # zero gradient: the only change is decay by lr * wd, whatever the shape adjustment
    torch.testing.assert_close(p.detach(), torch.full((8, 16), 0.95))
    torch.testing.assert_close(a.detach(), torch.full((5,), 0.95))


def test_adamw_part_matches_torch_adamw():
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(15))
    grads = _grads((7, 5), 5, seed=16)
    ref = torch.nn.Parameter(w.clone())
    topt = torch.optim.AdamW([ref], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    p = torch.nn.Parameter(w.clone())
    opt = MuonAdamW([{"params": [p], "use_muon": False}], lr=0.01, weight_decay=0.1)
    for g in grads:
        ref.grad, p.grad = g.clone(), g.clone()
        topt.step()
        opt.step()
    torch.testing.assert_close(p.detach(), ref.detach(), atol=1e-6, rtol=1e-5)


def test_grad_untouched_and_fp32_state_for_bf16_params():
    p = torch.nn.Parameter(torch.randn(8, 12).bfloat16())
    b = torch.nn.Parameter(torch.randn(12).bfloat16())
    opt = MuonAdamW([{"params": [p], "use_muon": True}, {"params": [b], "use_muon": False}], lr=0.01)
    g = torch.randn(8, 12).bfloat16()
    p.grad, b.grad = g.clone(), torch.randn(12).bfloat16()
    before = p.grad.clone()
    opt.step()
    assert torch.equal(p.grad, before)
    assert opt.state[p]["momentum_buffer"].dtype == torch.float32
    assert opt.state[b]["exp_avg"].dtype == torch.float32
    assert p.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["polar", "regularized", "htmuon"])
def test_state_dict_resume_is_exact(mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3))
    data = [(torch.randn(4, 6), torch.randn(4, 3)) for _ in range(6)]

    def make(m):
        return MuonAdamW(
            [
                {"params": [m[0].weight, m[2].weight], "use_muon": True},
                {"params": [m[0].bias, m[2].bias], "use_muon": False, "weight_decay": 0.0},
            ],
            lr=0.01,
            weight_decay=0.1,
            mode=mode,
        )

    def train(m, opt, batches):
        for x, y in batches:
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    full = copy.deepcopy(model)
    opt_full = make(full)
    train(full, opt_full, data)

    half = copy.deepcopy(model)
    opt_half = make(half)
    train(half, opt_half, data[:3])
    state = copy.deepcopy(opt_half.state_dict())
    resumed = copy.deepcopy(half)
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(state)
    train(resumed, opt_resumed, data[3:])
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_modes_train_a_regression():
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    target = x @ torch.randn(16, 8)
    for mode in ("polar", "regularized", "htmuon"):
        w = torch.nn.Parameter(torch.zeros(8, 16))
        opt = MuonAdamW([{"params": [w], "use_muon": True}], lr=0.05, mode=mode, adjust_lr="original")
        first = None
        for _ in range(60):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(x @ w.T, target)
            first = first if first is not None else loss.item()
            loss.backward()
            opt.step()
        assert loss.item() < 0.2 * first, mode


def test_errors_name_the_problem():
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="use_muon"):
        MuonAdamW([{"params": [p]}])
    with pytest.raises(ValueError, match="explicit use_muon"):
        MuonAdamW([p])
    with pytest.raises(RuntimeError, match="flattened parameter"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.randn(16))], "use_muon": True}])
    zero3 = torch.nn.Parameter(torch.randn(4, 4))
    zero3.ds_shape = (4, 4)
    with pytest.raises(RuntimeError, match="DeepSpeed ZeRO"):
        MuonAdamW([{"params": [zero3], "use_muon": True}])
    with pytest.raises(ValueError, match="ns_method"):
        MuonAdamW([{"params": [p], "use_muon": True, "ns_method": "cubic"}])
    with pytest.raises(ValueError, match="lr \\* weight_decay"):
        MuonAdamW([{"params": [p], "use_muon": True}], lr=1.0, weight_decay=2.0)
    with pytest.raises(ValueError, match="split_sizes"):
        opt = MuonAdamW([{"params": [p], "use_muon": True, "split_sizes": (3, 3)}])
        p.grad = torch.randn(4, 4)
        opt.step()


def test_parameter_flattened_after_construction_is_refused_at_step():
    """FSDP1 / ZeRO swap in flat 1-D tensors after the optimizer exists; the step must refuse, not train SGD."""
    p = torch.nn.Parameter(torch.randn(4, 4))
    opt = MuonAdamW([{"params": [p], "use_muon": True}])
    flat = torch.nn.Parameter(torch.randn(16))
    flat.grad = torch.randn(16)
    opt.param_groups[0]["params"] = [flat]
    with pytest.raises(RuntimeError, match="FSDP2"):
        opt.step()


def test_auto_ns_dtype_is_fp32_on_cpu():
    from hf_fundamentals.optim.muon import ns_dtype_for

    assert ns_dtype_for("auto", torch.device("cpu")) == torch.float32
    assert ns_dtype_for("auto", torch.device("cuda")) == torch.bfloat16
    assert ns_dtype_for("bfloat16", torch.device("cpu")) == torch.bfloat16
