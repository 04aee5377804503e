"""Low-rank attention: the streaming form equals the dense φ(q)·φ(k) kernel (causal, padding, GQA, n_q != n_k),
the Taylor-2 kernel is exact as a polynomial and has a positive normaliser, approximation error shrinks with
smaller inputs (taylor2) and with larger rank (random features), chunking does not change the result, and
gradients are correct (gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch

from hf_fundamentals.attention import (
    dense_attention,
    lowrank_attention,
    lowrank_kernel_matrix,
    random_projection,
    taylor2_dim,
    taylor2_feature_map,
)


def make_inputs(b=2, h=4, h_kv=2, n_q=40, n_k=56, d=8, seed=0, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g, dtype=torch.float64) * scale
    k = torch.randn(b, h_kv, n_k, d, generator=g, dtype=torch.float64) * scale
    v = torch.randn(b, h_kv, n_k, d, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def make_padding(b, n_k, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    mask = torch.rand(b, n_k, generator=g) > 0.25
    mask[0] = True
    mask[-1, : n_k // 3] = False  # left padding on the last sequence
    return mask


def softmax_reference(q, k, v, *, scaling, causal, key_padding_mask):
    """Independent fp64 softmax attention (zeros for a query that sees no key)."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    logits = scaling * torch.einsum("bhid,bhjd->bhij", q, k)
    return masked_normalise(torch.exp(logits - logits.amax(-1, keepdim=True)), v, causal, key_padding_mask)


def masked_normalise(weights, v, causal, key_padding_mask):
    n_q, n_k = weights.shape[-2:]
    allowed = torch.ones(n_q, n_k, dtype=torch.bool)
    if causal:
        allowed = torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None] + (n_k - n_q)
    allowed = allowed[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    weights = weights * allowed
    den = weights.sum(-1, keepdim=True)
    return torch.where(den > 0, weights @ v / torch.where(den > 0, den, 1.0), 0.0)


def kernel_reference(q, k, v, *, causal, key_padding_mask, **fm):
    """Normalised dense kernel attention with the explicit n_q×n_k matrix φ(q_i)·φ(k_j), in fp64."""
    kmat = lowrank_kernel_matrix(q.double(), k.double(), **fm)
    v = v.double().repeat_interleave(q.shape[1] // k.shape[1], 1)
    return masked_normalise(kmat, v, causal, key_padding_mask)


FEATURE_MAPS = [
    {"feature_map": "taylor2"},
    {"feature_map": "random", "rank": 48, "seed": 3},
    {"feature_map": "random", "rank": 40, "seed": 1, "orthogonal": True},
]


@pytest.mark.parametrize("fm", FEATURE_MAPS, ids=["taylor2", "random", "random-orthogonal"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize(
    "shape", [(4, 2, 40, 56), (2, 2, 37, 37), (2, 1, 50, 20)], ids=["gqa", "mha", "nq>nk"]
)
def test_streaming_form_equals_dense_kernel(fm, causal, padded, shape):
    h, h_kv, n_q, n_k = shape
    q, k, v = make_inputs(h=h, h_kv=h_kv, n_q=n_q, n_k=n_k, scale=0.7)
    mask = make_padding(2, n_k) if padded else None
    out = lowrank_attention(q, k, v, causal=causal, key_padding_mask=mask, chunk_size=16, **fm)
    ref = kernel_reference(q, k, v, causal=causal, key_padding_mask=mask, **fm)
    assert out.dtype == q.dtype and out.shape == q.shape
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


def test_dense_attention_matches_independent_reference():
    q, k, v = make_inputs(n_q=30, n_k=45)
    mask = make_padding(2, 45)
    for causal in (False, True):
        ref = softmax_reference(q, k, v, scaling=0.3, causal=causal, key_padding_mask=mask)
        out = dense_attention(q, k, v, scaling=0.3, causal=causal, key_padding_mask=mask)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_taylor2_inner_product_is_the_degree2_polynomial():
    g = torch.Generator().manual_seed(5)
    u, w = (
        torch.randn(20, 7, generator=g, dtype=torch.float64),
        torch.randn(20, 7, generator=g, dtype=torch.float64),
    )
    pu, pw = taylor2_feature_map(u), taylor2_feature_map(w)
    assert pu.shape[-1] == taylor2_dim(7) == 1 + 7 + 28
    t = (u * w).sum(-1)
    torch.testing.assert_close((pu * pw).sum(-1), 1 + t + t * t / 2, atol=1e-12, rtol=1e-12)


def test_taylor2_normaliser_never_vanishes():
    # Keys anti-aligned with the queries at many norms: s·q·k sweeps [-25, 0], where exp would be tiny but
    # 1 + t + t²/2 >= 1/2; the output must stay a convex combination of the values.
    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 2, 32, 8, generator=g)
    k = -q * torch.linspace(0.1, 6.0, 32)[None, None, :, None]
    v = torch.randn(1, 2, 32, 8, generator=g)
    kmat = lowrank_kernel_matrix(q.double(), k.double(), scaling=1.0)
    assert kmat.min() >= 0.5 - 1e-9
    t_diag = (q.double() * k.double()).sum(-1)
    assert t_diag.max() < 0 and t_diag.min() < -20  # the anti-aligned pairs really sweep negative t
    torch.testing.assert_close(kmat.diagonal(dim1=-2, dim2=-1), 1 + t_diag + t_diag**2 / 2)
    for causal in (False, True):
        out = lowrank_attention(q, k, v, scaling=1.0, causal=causal, chunk_size=8)
        assert torch.isfinite(out).all()
        assert (out <= v.amax(2, keepdim=True) + 1e-5).all() and (out >= v.amin(2, keepdim=True) - 1e-5).all()


def taylor_error_bound(t_max: float) -> float:
    """Output error <= range(v)·δ/(1−δ), δ = max over |t| <= t_max of |1 − (1 + t + t²/2)e^{−t}|: weights
    w_j(1+δ_j) with |δ_j| <= δ move the normalised weights by p_j(δ_j − δ̄)/(1+δ̄), |δ_j − δ̄| <= 2δ, and
    Σ_j (p̃_j − p_j)(v_j − c) with c the midpoint of the values is at most 2δ·(range/2)/(1−δ)."""
    ts = torch.linspace(-t_max, t_max, 2001, dtype=torch.float64)
    delta = (1 - (1 + ts + ts * ts / 2) * torch.exp(-ts)).abs().max().item()
    return delta / (1 - delta)


@pytest.mark.parametrize("causal", [False, True])
def test_taylor2_error_small_for_small_inputs_and_shrinks(causal):
    q, k, v = make_inputs(n_q=64, n_k=64, d=16, seed=7)
    s = 1 / math.sqrt(16)
    errors = []
    for t_max in (0.5, 0.25, 0.125):
        # rows of norm rho with s·rho² = t_max, so |s·q·k| <= t_max (Cauchy–Schwarz)
        rho = math.sqrt(t_max / s)
        qn = q / q.norm(dim=-1, keepdim=True) * rho
        kn = k / k.norm(dim=-1, keepdim=True) * rho
        out = lowrank_attention(qn, kn, v, causal=causal, chunk_size=20)
        exact = softmax_reference(qn, kn, v, scaling=s, causal=causal, key_padding_mask=None)
        err = (out.double() - exact).abs().max().item()
        value_range = (v.amax(2) - v.amin(2)).max().item()
        assert err <= taylor_error_bound(t_max) * value_range + 1e-5
        errors.append(err)
    assert errors[1] < errors[0] / 2 and errors[2] < errors[1] / 2


def test_random_features_error_decreases_with_rank():
    q, k, v = make_inputs(b=1, h=2, h_kv=2, n_q=64, n_k=64, d=8, seed=11, scale=0.8)
    exact = softmax_reference(q, k, v, scaling=1 / math.sqrt(8), causal=False, key_padding_mask=None)
    ranks = (8, 32, 128, 512)
    mean_err = []
    for rank in ranks:
        errs = [
            (lowrank_attention(q, k, v, feature_map="random", rank=rank, seed=seed).double() - exact)
            .abs()
            .mean()
            for seed in range(4)
        ]
        mean_err.append(torch.stack(errs).mean().item())
    assert all(b < a for a, b in zip(mean_err, mean_err[1:], strict=False)), mean_err
    assert mean_err[-1] < mean_err[0] / 3  # Monte Carlo: error ~ 1/sqrt(rank), 64x the rank


@pytest.mark.parametrize("fm", FEATURE_MAPS[:2], ids=["taylor2", "random"])
@pytest.mark.parametrize("causal", [False, True])
def test_chunk_size_invariance(fm, causal):
    q, k, v = make_inputs(n_q=45, n_k=70, seed=4)
    mask = make_padding(2, 70, seed=4)
    outs = [
        lowrank_attention(q, k, v, causal=causal, key_padding_mask=mask, chunk_size=c, **fm)
        for c in (1, 7, 64, 500)
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=1e-5)


def test_queries_without_visible_keys_get_zeros():
    q, k, v = make_inputs(n_q=30, n_k=10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1] = False
    out = lowrank_attention(q, k, v, causal=True, key_padding_mask=mask, chunk_size=8)
    assert (out[:, :, :20] == 0).all()  # causal with n_q > n_k: the first 20 queries see no key
    assert (out[1] == 0).all() and out[0, :, 20:].abs().sum() > 0


@pytest.mark.parametrize("fm", [{"feature_map": "taylor2"}, {"feature_map": "random", "rank": 6}])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(fm, causal):
    q, k, v = make_inputs(b=1, h=2, h_kv=1, n_q=5, n_k=6, d=3, seed=9, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True, True, True]])
    q, k, v = (x.clone().requires_grad_(True) for x in (q, k, v))

    def fn(q, k, v):
        return lowrank_attention(q, k, v, causal=causal, key_padding_mask=mask, chunk_size=2, **fm)

    assert torch.autograd.gradcheck(fn, (q, k, v), atol=1e-6, rtol=1e-4)


def test_fp32_backward_gives_finite_gradients():
    q, k, v = make_inputs(n_q=33, n_k=33)
    q.requires_grad_(True)
    k.requires_grad_(True)
    v.requires_grad_(True)
    lowrank_attention(
        q, k, v, causal=True, feature_map="random", rank=32, chunk_size=8
    ).square().sum().backward()
    for x in (q, k, v):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_orthogonal_projection_rows_are_orthogonal_within_a_block():
    omega = random_projection(6, 12, seed=0, orthogonal=True, dtype=torch.float64)
    gram = omega[:6] @ omega[:6].T
    off = gram - torch.diag(torch.diagonal(gram))
    assert off.abs().max() < 1e-10 and omega.shape == (12, 6)
    torch.testing.assert_close(random_projection(6, 12, seed=3), random_projection(6, 12, seed=3))


def test_invalid_arguments_are_rejected():
    q, k, v = make_inputs(h=3, h_kv=2)
    with pytest.raises(ValueError, match="multiple"):
        lowrank_attention(q, k, v)
    q, k, v = make_inputs()
    with pytest.raises(ValueError, match="feature_map"):
        lowrank_attention(q, k, v, feature_map="cosine")
    with pytest.raises(ValueError, match="chunk_size"):
        lowrank_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match="key_padding_mask"):
        lowrank_attention(q, k, v, key_padding_mask=torch.ones(2, 3, dtype=torch.bool))
