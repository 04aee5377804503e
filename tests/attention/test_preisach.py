"""Preisach attention: the sequential, parallel (cummax) and extremum-stack forms give identical relay states and
anchors (random, tied and padded drives; hypothesis), the soft relay's scan equals its loop and tends to the hard
relay as T → 0, the hysteresis properties hold (wiping-out: the stack is a sufficient statistic; rate-independence;
return-point memory), decode steps equal the full forward, gradients reach every parameter, bad input fails early,
and the parallel form is linear-time at n = 100k."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_fundamentals.attention.preisach import (
    ExtremumStack,
    PreisachAttention,
    default_thresholds,
    geometric_temperature,
    initial_preisach_state,
    preisach_attention,
    relay_states,
    relay_states_parallel,
    relay_states_sequential,
    relay_states_stack,
    relay_states_ste,
    relay_thresholds,
    soft_relay,
    soft_relay_sequential,
    value_readout,
)


def random_relays(shape, *, seed, dtype=torch.float64, spread=1.5):
    """(α, β) with α > β, thresholds of either sign."""
    g = torch.Generator().manual_seed(seed + 1000)
    alpha = spread * torch.randn(*shape, generator=g, dtype=dtype)
    beta = alpha - 1e-3 - 2.0 * torch.rand(*shape, generator=g, dtype=dtype)
    return alpha, beta


def grid_relays(lo=-3.0, hi=3.0, steps=13, dtype=torch.float64):
    """Every (α, β) with α > β on a grid over [lo, hi]²: a discretised Preisach triangle."""
    vals = torch.linspace(lo, hi, steps, dtype=dtype).tolist()
    pairs = [(a, b) for a, b in itertools.product(vals, vals) if a > b]
    return torch.tensor([p[0] for p in pairs], dtype=dtype), torch.tensor([p[1] for p in pairs], dtype=dtype)


def all_forms(u, alpha, beta, real=None):
    s1, a1 = relay_states_sequential(u, alpha, beta, real=real, return_anchors=True)
    s2, a2 = relay_states_parallel(u, alpha, beta, real=real, return_anchors=True)
    s3, a3 = relay_states_stack(u, alpha, beta, real=real, return_anchors=True)
    return (s1, a1), (s2, a2), (s3, a3)


# ------------------------------------------------------------------------------------ the three hard forms
@pytest.mark.parametrize("seed", range(12))
def test_sequential_parallel_and_stack_forms_agree(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 160, (1,), generator=g))
    u = torch.randn(2, 3, n, generator=g, dtype=torch.float64)
    if seed % 3 == 0:
        u = torch.round(u * 2) / 2  # many ties, also with thresholds on the grid
    alpha, beta = random_relays((3, 9), seed=seed)
    if seed % 3 == 0:
        alpha, beta = torch.round(alpha * 2) / 2, torch.round(beta * 2) / 2 - 0.5
    real = (torch.rand(2, 1, n, generator=g) > 0.25) if seed % 2 else None
    (s1, a1), (s2, a2), (s3, a3) = all_forms(u, alpha, beta, real)
    assert s1.shape == (2, 3, n, 9) and s1.dtype == torch.int8
    assert set(s1.unique().tolist()) <= {-1, 1}
    assert torch.equal(s1, s2) and torch.equal(s1, s3)
    assert torch.equal(a1, a2) and torch.equal(a1, a3)
    # anchors: -1 exactly where the relay is -1; otherwise a real token at or before t with drive >= alpha
    assert torch.equal(a1 < 0, s1 < 0)
    t_idx = torch.arange(n)[:, None]
    up = s1 > 0
    assert bool((a1[up] <= t_idx.expand_as(a1[0, 0])[None, None].expand_as(a1)[up]).all())
    held = torch.gather(u[..., None, :].expand(2, 3, n, n), -1, a1.clamp(min=0))  # u at the anchor, [2,3,n,9]
    assert bool((held[up] >= alpha[None, :, None, :].expand_as(held)[up]).all())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drive=st.lists(st.integers(-4, 4), min_size=1, max_size=50),
    pairs=st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 4)), min_size=1, max_size=6),
)
def test_forms_agree_on_integer_drives_with_ties(drive, pairs):
    """Integer drives and thresholds on the same lattice: every tie between a drive and a threshold occurs."""
    u = torch.tensor(drive, dtype=torch.float64)[None]
    alpha = torch.tensor([float(a) for a, _ in pairs], dtype=torch.float64)[None]
    beta = alpha - torch.tensor([float(gp) + 0.5 for _, gp in pairs], dtype=torch.float64)[None]
    (s1, a1), (s2, a2), (s3, a3) = all_forms(u, alpha, beta)
    assert torch.equal(s1, s2) and torch.equal(s1, s3)
    assert torch.equal(a1, a2) and torch.equal(a1, a3)


def test_relay_semantics_by_hand():
    """α = 1, β = −1: starts −1, up at u >= 1, holds in (−1, 1), down at u <= −1; anchor follows the up-peak."""
    u = torch.tensor([[0.0, 1.0, 0.5, 2.0, 1.5, -1.0, 0.0, 0.9, 1.0]])
    alpha, beta = torch.tensor([[1.0]]), torch.tensor([[-1.0]])
    s, a = relay_states_parallel(u, alpha, beta, return_anchors=True)
    assert s[0, :, 0].tolist() == [-1, 1, 1, 1, 1, -1, -1, -1, 1]
    assert a[0, :, 0].tolist() == [-1, 1, 1, 3, 3, -1, -1, -1, 8]


def test_relay_tiles_and_threshold_broadcast():
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 4, 300, generator=g)
    alpha, beta = random_relays((4, 10), seed=3, dtype=torch.float32)
    ref = relay_states_parallel(u, alpha, beta, return_anchors=True)
    for tile in (1, 3, 10):
        got = relay_states_parallel(u, alpha, beta, return_anchors=True, relay_tile=tile)
        assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    # thresholds [R] shared by every head broadcast like [1, 1, R]
    shared = relay_states_parallel(u, alpha[0], beta[0])
    assert torch.equal(shared, relay_states_parallel(u, alpha[0].expand(4, 10), beta[0].expand(4, 10)))


def test_extremum_stack_alternates_and_stays_small_on_monotone_runs():
    stack = ExtremumStack()
    g = torch.Generator().manual_seed(0)
    for t, x in enumerate(torch.randn(400, generator=g).tolist()):
        stack.push(t, x)
        maxima, minima = stack.values[0::2], stack.values[1::2]
        assert all(a > b for a, b in zip(maxima, maxima[1:], strict=False))  # maxima strictly decrease
        assert all(a < b for a, b in zip(minima, minima[1:], strict=False))  # minima strictly increase
        assert stack.times[-1] == t and stack.times == sorted(stack.times)
        gaps = [abs(a - b) for a, b in zip(stack.values, stack.values[1:], strict=False)]
        assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))  # contracting staircase
    depth = len(stack)
    for i in range(50):  # a monotone run only replaces the top: one slot whatever its length
        stack.push(400 + i, stack.values[-1] + (1e-3 if len(stack) % 2 == 1 else -1e-3))
        assert len(stack) <= depth + 1


# ------------------------------------------------------------------------------------------------ soft relay
def test_soft_relay_scan_equals_loop_and_stays_in_unit_interval():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, 257, generator=g, dtype=torch.float64)
    alpha, beta = random_relays((3, 5), seed=1)
    real = torch.rand(2, 1, 257, generator=g) > 0.2
    for temp in (2.0, 0.3, 0.01):
        p_scan = soft_relay(u, alpha, beta, temp, real=real)
        p_loop = soft_relay_sequential(u, alpha, beta, temp, real=real)
        torch.testing.assert_close(p_scan, p_loop, rtol=1e-10, atol=1e-12)
        assert bool(((p_scan >= 0) & (p_scan <= 1 + 1e-12)).all())  # a + c = 1 up to rounding


def test_soft_relay_tends_to_the_hard_relay_as_temperature_goes_to_zero():
    g = torch.Generator().manual_seed(2)
    # drives on the grid 0.1·k + 0.05, thresholds on 0.1·k: every drive is >= 0.05 from every threshold
    u = torch.round(torch.randn(3, 400, generator=g, dtype=torch.float64) * 15) / 10 + 0.05
    alpha = torch.round(torch.randn(3, 16, generator=g, dtype=torch.float64) * 15) / 10
    beta = alpha - torch.randint(1, 20, (3, 16), generator=g).double() / 10
    hard = relay_states_parallel(u, alpha, beta).double()
    errors = [
        (2 * soft_relay(u, alpha, beta, temp) - 1 - hard).abs().mean().item()
        for temp in (1.0, 0.1, 0.03, 0.01, 3e-3)
    ]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.1, errors
    # e^{-0.05/T} is below float64 resolution at T = 1e-3: the soft relay IS the hard relay
    assert torch.equal(2 * soft_relay(u, alpha, beta, 1e-3) - 1, hard)
    # with random drives (no margin) it is the hard relay except at the very few tokens near a threshold
    u = torch.randn(3, 400, generator=g, dtype=torch.float64)
    hard = relay_states_parallel(u, alpha, beta).double()
    assert (torch.round(2 * soft_relay(u, alpha, beta, 1e-6) - 1) != hard).double().mean() < 1e-3


def test_soft_relay_gradcheck():
    g = torch.Generator().manual_seed(4)
    u = torch.randn(1, 2, 12, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = (torch.randn(2, 3, generator=g, dtype=torch.float64)).requires_grad_()
    gap = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_()

    def fn(u, alpha, gap):
        a, b = relay_thresholds(alpha, gap)
        return soft_relay(u, a, b, 0.7)

    assert torch.autograd.gradcheck(fn, (u, alpha, gap))


def test_straight_through_forward_is_hard_and_backward_is_soft():
    g = torch.Generator().manual_seed(5)
    u = torch.randn(2, 2, 64, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    beta = (alpha.detach() - 0.5).requires_grad_()
    ste = relay_states_ste(u, alpha, beta, 0.5)
    assert torch.equal(ste.detach(), relay_states_parallel(u, alpha, beta).double())
    ste.sum().backward()
    g_ste = [x.grad.clone() for x in (u, alpha, beta)]
    for x in (u, alpha, beta):
        x.grad = None
    (2 * soft_relay(u, alpha, beta, 0.5) - 1).sum().backward()
    for a, b in zip(g_ste, (u.grad, alpha.grad, beta.grad), strict=True):
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0
    with pytest.raises(ValueError, match="relay mode"):
        relay_states(u, alpha, beta, mode="sigmoid")


# ------------------------------------------------------------------------------------- hysteresis properties
def stack_history(u_seq):
    """The extremum stack after feeding a 1-D drive list."""
    stack = ExtremumStack()
    for t, x in enumerate(u_seq):
        stack.push(t, x)
    return stack


def test_wiping_out_a_new_global_maximum_erases_the_history():
    g = torch.Generator().manual_seed(6)
    alpha, beta = grid_relays()
    for _ in range(10):
        hist = torch.randn(60, generator=g, dtype=torch.float64) * 1.5
        top = hist.max().item() + 0.1 + torch.rand(1, generator=g).item()
        full = relay_states_parallel(
            torch.cat([hist, torch.tensor([top], dtype=torch.float64)])[None], alpha[None], beta[None]
        )
        alone = relay_states_parallel(torch.tensor([[top]], dtype=torch.float64), alpha[None], beta[None])
        assert torch.equal(full[0, -1], alone[0, -1])


def test_wiping_out_the_stack_is_a_sufficient_statistic():
    """After every token, the drive reduced to its stack entries (wiped extrema removed) gives the same state for
    every relay of a dense Preisach grid, and the same stack: the minimal history of the wiping-out property."""
    g = torch.Generator().manual_seed(7)
    alpha, beta = grid_relays()
    for trial in range(3):
        u = torch.randn(120, generator=g, dtype=torch.float64) * (1.0 + trial)
        full = relay_states_parallel(u[None], alpha[None], beta[None])[0]
        stack = ExtremumStack()
        wiped_something = False
        for t, x in enumerate(u.tolist()):
            before = len(stack)
            stack.push(t, x)
            wiped_something |= len(stack) <= before
            reduced = torch.tensor(stack.values, dtype=torch.float64)
            s_red = relay_states_parallel(reduced[None], alpha[None], beta[None])[0, -1]
            assert torch.equal(s_red, full[t]), t
            assert stack_history(stack.values).values == stack.values
        assert wiped_something


def insert_tokens(u, q, v, *, seed, kind):
    """Insert repeated tokens (copies of a token right after it) or interior-monotone tokens (a drive strictly
    between two neighbours, with fresh q, v). Returns the new (u, q, v) and the new positions of the old tokens."""
    g = torch.Generator().manual_seed(seed)
    us, qs, vs, where = [], [], [], []
    n = u.shape[0]
    for t in range(n):
        where.append(len(us))
        us.append(u[t]), qs.append(q[t]), vs.append(v[t])
        if t + 1 < n and torch.rand(1, generator=g).item() < 0.6:
            for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
                if kind == "repeat":
                    us.append(u[t]), qs.append(q[t]), vs.append(v[t])
                else:
                    lam = 0.05 + 0.9 * torch.rand(1, generator=g, dtype=u.dtype)[0]
                    last = us[-1] if len(us) > where[-1] + 1 else u[t]
                    us.append(last + lam * (u[t + 1] - last))  # strictly between its neighbours, monotone
                    qs.append(torch.randn(q.shape[1:], generator=g, dtype=q.dtype))
                    vs.append(torch.randn(v.shape[1:], generator=g, dtype=v.dtype))
    return torch.stack(us), torch.stack(qs), torch.stack(vs), torch.tensor(where)


@pytest.mark.parametrize("kind", ["repeat", "interior"])
@pytest.mark.parametrize("variant", ["density", "value"])
def test_rate_independence(kind, variant):
    """Inserting repeated or interior-monotone tokens leaves the outputs at the extremum tokens (and, for the hard
    layer, at every original token) unchanged; no positional information enters."""
    torch.manual_seed(0)
    layer = PreisachAttention(1, 4, 48, variant=variant, relay_mode="hard", seed=1).double()
    with torch.no_grad():
        if variant == "value":
            layer.gate.normal_()
    g = torch.Generator().manual_seed(8)
    for trial in range(4):
        n = 80
        u = torch.randn(n, generator=g, dtype=torch.float64) * 1.5
        q = torch.randn(n, 4, generator=g, dtype=torch.float64)
        v = torch.randn(n, 4, generator=g, dtype=torch.float64)
        u2, q2, v2, where = insert_tokens(u, q, v, seed=trial, kind=kind)
        assert len(u2) > n

        def run(u_, q_, v_):
            return layer(q_[None, None], q_[None, None], v_[None, None], drive_signal=u_[None, None])[0, 0]

        out, out2 = run(u, q, v), run(u2, q2, v2)
        inner = (u[1:-1] - u[:-2]) * (u[2:] - u[1:-1]) < 0
        extremum = torch.cat([torch.tensor([True]), inner, torch.tensor([True])])
        torch.testing.assert_close(out2[where][extremum], out[extremum], rtol=0, atol=1e-12)
        torch.testing.assert_close(out2[where], out, rtol=0, atol=1e-12)


def test_return_point_memory():
    """From a reversal maximum a (after the minimum m0 below it), any excursion that stays inside (m0, a) and comes
    back to a restores every relay's state (and the output); mirrored for a reversal minimum."""
    g = torch.Generator().manual_seed(9)
    alpha, beta = grid_relays(steps=15)
    a_all, b_all = alpha[None], beta[None]
    for trial in range(8):
        hist = (torch.randn(40, generator=g, dtype=torch.float64) * 1.5).tolist()
        sign = 1.0 if trial % 2 == 0 else -1.0
        if sign > 0:  # end the history with a new minimum m0, then rise to the reversal maximum a
            m0 = min(hist) - 0.3
            top = m0 + (max(hist) - m0) * (0.3 + 0.6 * torch.rand(1, generator=g).item())
        else:  # end with a new maximum, then fall to the reversal minimum a
            m0 = max(hist) + 0.3
            top = m0 - (m0 - min(hist)) * (0.3 + 0.6 * torch.rand(1, generator=g).item())
        lo, hi = min(m0, top), max(m0, top)
        excursion = (
            lo + (hi - lo) * (0.02 + 0.96 * torch.rand(25, generator=g, dtype=torch.float64))
        ).tolist()
        seq = torch.tensor(hist + [m0, top] + excursion + [top], dtype=torch.float64)
        s = relay_states_parallel(seq[None], a_all, b_all)[0]
        at_a, back = s[len(hist) + 1], s[-1]
        assert torch.equal(at_a, back)
        # the excursion did move relays in between (the loop is not trivial)
        assert bool((s[len(hist) + 2 : -1] != at_a).any())


# -------------------------------------------------------------------------------------------- layer outputs
def make_qkv(b=2, h=4, h_kv=2, n=50, d=8, d_v=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, h_kv, n, d, generator=g, dtype=dtype)
    v = torch.randn(b, h_kv, n, d_v, generator=g, dtype=dtype)
    return q, k, v


def naive_layer(layer, q, k, v, mask=None):
    """The layer's formula written out token by token with the sequential relays (fp64)."""
    b, h, n, d = q.shape
    groups = h // k.shape[1]
    kk, vv = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    u = torch.einsum("bhnd,hd->bhn", kk, layer.drive.double()) / math.sqrt(d)
    alpha, beta = (x.double() for x in layer.thresholds())
    real = None if mask is None else mask[:, None, :]
    s, anc = relay_states_sequential(u, alpha, beta, real=real, return_anchors=True)
    mu = layer.density.double()
    out = torch.zeros(b, h, n, mu.shape[-1], dtype=torch.float64)
    for bi, hi, t in itertools.product(range(b), range(h), range(n)):
        if mask is not None and not mask[bi, t]:
            continue
        if layer.variant == "density":
            out[bi, hi, t] = (s[bi, hi, t].double()[:, None] * mu[hi]).sum(0)
        else:
            gate = torch.sigmoid(layer.gate.double()[hi] @ q[bi, hi, t])
            num = torch.zeros(mu.shape[-1], dtype=torch.float64)
            for m in range(mu.shape[1]):
                if s[bi, hi, t, m] > 0:
                    num += gate[m] * mu[hi, m] * vv[bi, hi, anc[bi, hi, t, m]]
            out[bi, hi, t] = num / ((s[bi, hi, t] > 0).double().sum() + layer.eps)
    return out


@pytest.mark.parametrize("variant", ["density", "value"])
def test_layer_matches_its_formula_with_gqa_and_padding(variant):
    layer = PreisachAttention(4, 8, 12, variant=variant, relay_mode="hard", seed=3).double()
    with torch.no_grad():
        if variant == "value":
            layer.gate.normal_(generator=torch.Generator().manual_seed(0))
    q, k, v = make_qkv(seed=1)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, :7] = False  # left padding
    mask[0, 20:23] = False
    for msk in (None, mask):
        got = layer(q, k, v, key_padding_mask=msk)
        torch.testing.assert_close(got, naive_layer(layer, q, k, v, msk), rtol=1e-12, atol=1e-12)
    # the STE forward is the hard forward
    layer.relay_mode = "ste"
    torch.testing.assert_close(layer(q, k, v, key_padding_mask=mask), naive_layer(layer, q, k, v, mask))


def test_queries_align_to_the_end_of_the_keys():
    layer = PreisachAttention(4, 8, 12, variant="value", relay_mode="hard", seed=4).double()
    q, k, v = make_qkv(seed=2)
    full = layer(q, k, v)
    torch.testing.assert_close(layer(q[:, :, -5:], k, v), full[:, :, -5:])


@pytest.mark.parametrize("variant", ["density", "value"])
def test_decode_steps_equal_the_full_forward(variant):
    layer = PreisachAttention(4, 8, 16, variant=variant, relay_mode="ste", seed=5).double()
    with torch.no_grad():
        if variant == "value":
            layer.gate.normal_(generator=torch.Generator().manual_seed(1))
    q, k, v = make_qkv(n=60, seed=3)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[1, :9] = False
    full = layer(q, k, v, key_padding_mask=mask)
    # from the empty state, one token at a time
    state = layer.initial_state(2, dtype=torch.float64)
    stepped, state = layer.step(state, q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(stepped, full, rtol=1e-12, atol=1e-12)
    assert state.length == 60
    # prefill 35 tokens in parallel, then decode the rest
    out_pre, pstate = layer(
        q[:, :, :35], k[:, :, :35], v[:, :, :35], key_padding_mask=mask[:, :35], return_state=True
    )
    torch.testing.assert_close(out_pre, full[:, :, :35])
    for name in ("up", "anchor", "anchor_drive"):
        torch.testing.assert_close(
            getattr(pstate.relays, name), getattr(_state_after(layer, q, k, v, mask, 35).relays, name)
        )
    rest, _ = layer.step(pstate, q[:, :, 35:], k[:, :, 35:], v[:, :, 35:], key_padding_mask=mask[:, 35:])
    torch.testing.assert_close(rest, full[:, :, 35:], rtol=1e-12, atol=1e-12)
    # the state does not grow with the sequence
    sizes = {t.numel() for t in (state.relays.up, state.relays.anchor, state.relays.anchor_drive)}
    assert sizes == {2 * 4 * 16}
    if variant == "value":
        assert state.anchor_value.shape == (2, 4, 16, 8)


def _state_after(layer, q, k, v, mask, n):
    state = layer.initial_state(q.shape[0], dtype=q.dtype)
    _, state = layer.step(state, q[:, :, :n], k[:, :, :n], v[:, :, :n], key_padding_mask=mask[:, :n])
    return state


@pytest.mark.parametrize("variant", ["density", "value"])
@pytest.mark.parametrize("mode", ["ste", "soft"])
def test_gradients_reach_every_parameter(variant, mode):
    layer = PreisachAttention(4, 8, 16, variant=variant, relay_mode=mode, temperature=0.5, seed=6)
    with torch.no_grad():
        if variant == "value":
            layer.gate.normal_(generator=torch.Generator().manual_seed(2))
    q, k, v = (x.float().requires_grad_() for x in make_qkv(n=40, seed=4))
    out = layer(q, k, v)
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    ((out - target) ** 2).mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    for name, x in zip("qkv", (q, k, v), strict=True):
        if variant == "density" and name in "qv":
            continue  # the density read-out uses neither the query nor the value
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


def test_value_readout_custom_backward_gradcheck():
    """The value read-out has a hand-written backward (one relay at a time): check it against finite differences,
    with anchors that repeat, point anywhere in the past, or are −1."""
    g = torch.Generator().manual_seed(13)
    b, h, n, r_count, d_v = 2, 2, 7, 3, 3
    anchors = torch.randint(-1, n, (b, h, n, r_count), generator=g)
    weights = torch.rand(b, h, n, r_count, generator=g, dtype=torch.float64).requires_grad_()
    gate = torch.rand(b, h, n, r_count, generator=g, dtype=torch.float64).requires_grad_()
    value = torch.randn(b, h, n, d_v, generator=g, dtype=torch.float64, requires_grad=True)
    density = torch.randn(h, r_count, d_v, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(w, gt, v, mu):
        return value_readout(w, anchors, v, mu, gate=gt, eps=1e-3)

    assert torch.autograd.gradcheck(fn, (weights, gate, value, density))


def test_a_few_steps_of_training_reduce_the_loss():
    """The thresholds are trainable: fit a relay layer (drive given) to the output of another one."""
    g = torch.Generator().manual_seed(10)
    u = torch.randn(4, 1, 200, generator=g)
    q = torch.zeros(4, 1, 200, 4)
    teacher = PreisachAttention(1, 4, 8, relay_mode="hard", seed=11)
    with torch.no_grad():
        target = teacher(q, q, q, drive_signal=u)
    student = PreisachAttention(1, 4, 8, relay_mode="ste", temperature=0.3, seed=12)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    losses = []
    for step in range(60):
        student.temperature = geometric_temperature(step, 60, start=0.5, end=0.05)
        loss = ((student(q, q, q, drive_signal=u) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------------------------- contracts
def test_bad_input_fails_early_with_a_message():
    layer = PreisachAttention(4, 8, 6)
    q, k, v = make_qkv(dtype=torch.float32)
    with pytest.raises(ValueError, match="causal by construction"):
        layer(q, k, v, causal=False)
    with pytest.raises(ValueError, match="4-D"):
        layer(q[0], k, v)
    with pytest.raises(ValueError, match="multiple of heads_kv"):
        layer(q[:, :3], k, v)
    with pytest.raises(ValueError, match="n_q"):
        layer(torch.cat([q, q], 2), k, v)
    with pytest.raises(ValueError, match="key_padding_mask"):
        layer(q, k, v, key_padding_mask=torch.ones(2, 50))
    with pytest.raises(ValueError, match="drive_signal"):
        layer(q, k, v, drive_signal=torch.zeros(2, 4, 49))
    with pytest.raises(ValueError, match="variant"):
        PreisachAttention(4, 8, variant="softmax")
    with pytest.raises(ValueError, match="relay_mode"):
        PreisachAttention(4, 8, relay_mode="gumbel")
    with pytest.raises(ValueError, match="temperature"):
        PreisachAttention(4, 8, temperature=0.0)
    with pytest.raises(ValueError, match="num_relays"):
        PreisachAttention(4, 8, 0)
    with pytest.raises(ValueError, match="density must be"):
        preisach_attention(
            q, k, v, drive=layer.drive, alpha=layer.alpha, gap=layer.gap, density=layer.density[:, :3]
        )
    with pytest.raises(ValueError, match="broadcast"):
        relay_states_parallel(torch.zeros(2, 4, 5), torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="temperature"):
        soft_relay(torch.zeros(1, 5), torch.zeros(1, 2), torch.zeros(1, 2), 0.0)
    state = initial_preisach_state(2, 4, 6)
    with pytest.raises(ValueError, match="anchor_value"):
        PreisachAttention(4, 8, 6, variant="value").step(state, q[:, :, :1], k[:, :, :1], v[:, :, :1])


def test_thresholds_and_schedule():
    alpha, gap = default_thresholds(3, 64, seed=1)
    a, b = relay_thresholds(alpha, gap)
    assert (
        bool((a - b >= 0.05 - 1e-5).all())
        and bool((b >= -2.0 - 1e-5).all())
        and bool((a <= 2.0 + 1e-5).all())
    )
    assert torch.equal(alpha, default_thresholds(3, 64, seed=1)[0])
    assert geometric_temperature(0, 10) == 1.0 and math.isclose(geometric_temperature(10, 10), 0.01)
    assert math.isclose(geometric_temperature(5, 10, start=1.0, end=0.01), 0.1)
    layer = PreisachAttention(2, 4, 8, variant="value")
    assert {n for n, _ in layer.named_parameters()} == {"drive", "alpha", "gap", "density", "gate"}
    assert "gate" not in dict(PreisachAttention(2, 4, 8).named_parameters())


def test_parallel_form_is_linear_time_at_100k_tokens():
    """n = 100k, 32 relays: states and anchors in well under a few seconds on one core. An n×n buffer would be
    10¹⁰ entries (40 GB in float32); the form only ever holds relay tiles of about 4M (relay, token) pairs."""
    g = torch.Generator().manual_seed(11)
    n = 100_000
    u = torch.cumsum(torch.randn(1, 1, n, generator=g), -1) / 100  # a random walk: a deep extremum stack
    alpha, beta = random_relays((1, 32), seed=11, dtype=torch.float32)
    relay_states_parallel(u[..., :1000], alpha, beta, return_anchors=True)  # warm-up
    t0 = time.perf_counter()
    s, a = relay_states_parallel(u, alpha, beta, return_anchors=True)
    elapsed = time.perf_counter() - t0
    assert s.shape == (1, 1, n, 32) and a.shape == (1, 1, n, 32)
    assert elapsed < 3.0, f"parallel form took {elapsed:.2f}s at n={n}"
    # linear scaling: 4x the tokens costs far less than 16x the time
    t0 = time.perf_counter()
    relay_states_parallel(u[..., : n // 4], alpha, beta, return_anchors=True)
    quarter = time.perf_counter() - t0
    assert elapsed < 10 * max(quarter, 1e-3)
    # spot-check exactness against the stack form on a window of the same walk
    s_ref = relay_states_stack(u[..., :3000], alpha, beta)
    assert torch.equal(s_ref, s[..., :3000, :])
