"""Certified block-sparse attention: the per-query error bound and mass bound HOLD against an fp64 dense softmax on
many seeds (Gaussian, peaky/adversarial, heavy-tailed, localized inputs; causal, padding, GQA, ragged n), the
logit upper bound dominates every key, eps=0 is exact, and the certificate is not vacuous (blocks are skipped
with nonzero error on localized attention)."""

from __future__ import annotations

import math

import pytest
import torch

from hf_fundamentals.attention import blocksparse_attention, key_block_summaries, logit_upper_bound


def reference(q, k, v, *, scaling, causal, key_padding_mask):
    """Dense fp64 softmax attention and its probabilities (zeros for a query that sees no key)."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    n_q, n_k = q.shape[2], k.shape[2]
    allowed = torch.ones(n_q, n_k, dtype=torch.bool)
    if causal:
        allowed = torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None] + (n_k - n_q)
    allowed = allowed[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    logits = (scaling * q @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    m = logits.amax(-1, keepdim=True)
    w = torch.exp(logits - torch.where(torch.isfinite(m), m, 0.0))
    den = w.sum(-1, keepdim=True)
    probs = torch.where(den > 0, w / torch.where(den > 0, den, 1.0), 0.0)
    return probs @ v, probs


def gen_inputs(kind, *, seed, b=2, h=4, h_kv=2, n_q=100, n_k=130, d=16):
    """Inputs of several kinds, all fp64: gaussian, peaky (planted aligned keys, large values), heavy (Student-t),
    localized (block-diagonal attention)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    if kind == "gaussian":
        return randn(b, h, n_q, d), randn(b, h_kv, n_k, d), randn(b, h_kv, n_k, d)
    if kind == "heavy":
        t = torch.distributions.StudentT(torch.tensor(2.0, dtype=torch.float64))
        torch.manual_seed(seed)
        return t.sample((b, h, n_q, d)), t.sample((b, h_kv, n_k, d)), 10 * t.sample((b, h_kv, n_k, d))
    if kind == "peaky":
        q = 3 * randn(b, h, n_q, d)
        k = 0.3 * randn(b, h_kv, n_k, d)
        v = 100 * randn(b, h_kv, n_k, d)
        groups = h // h_kv
        for _ in range(6):  # a few far keys aligned with some query, with large norm and extreme values
            bi = int(torch.randint(b, (1,), generator=g))
            hi = int(torch.randint(h, (1,), generator=g))
            qi = int(torch.randint(n_q, (1,), generator=g))
            kj = int(torch.randint(n_k, (1,), generator=g))
            scale = float(torch.rand(1, generator=g)) * 1.5
            k[bi, hi // groups, kj] = scale * q[bi, hi, qi]
            v[bi, hi // groups, kj] = 1000 * torch.sign(randn(d))
        return q, k, v
    if kind == "localized":
        amp = 7.0
        qpos = torch.arange(n_q) + (n_k - n_q)
        e_q = torch.nn.functional.one_hot((qpos // 16) % d, d).double()
        e_k = torch.nn.functional.one_hot((torch.arange(n_k) // 16) % d, d).double()
        q = amp * e_q.expand(b, h, n_q, d) + 0.05 * randn(b, h, n_q, d)
        k = amp * e_k.expand(b, h_kv, n_k, d) + 0.05 * randn(b, h_kv, n_k, d)
        return q, k, randn(b, h_kv, n_k, d)
    raise ValueError(kind)


def gen_padding(b, n_k, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    mask = torch.rand(b, n_k, generator=g) > 0.3
    mask[0, : n_k // 2] = False  # a long left pad: whole blocks without real keys
    return mask


def check_certificate(q, k, v, *, eps, block_size, causal, mask, scaling=None):
    """Run blocksparse in the dtype of q and assert every certified claim against the fp64 reference."""
    s = 1 / math.sqrt(q.shape[-1]) if scaling is None else scaling
    res = blocksparse_attention(
        q, k, v, eps=eps, block_size=block_size, scaling=scaling, causal=causal, key_padding_mask=mask
    )
    exact, probs = reference(q, k, v, scaling=s, causal=causal, key_padding_mask=mask)
    assert res.output.shape == q.shape[:3] + (v.shape[-1],) and res.output.dtype == q.dtype
    vmax = v.double().abs().max().item()
    slack = (1e-5 if q.dtype == torch.float32 else 1e-10) * (1 + vmax)
    err = (res.output.double() - exact).abs()
    assert (err <= res.error_bound.double() + slack).all(), (err - res.error_bound).max()
    # the mass certificate: true skipped probability <= mass_bound <= eps
    assert (res.mass_bound <= eps + 1e-12).all()
    n_k = k.shape[2]
    kept_keys = res.kept_blocks.repeat_interleave(block_size, dim=3)[..., :n_k]  # [b, h, n_qb, n_k]
    kept_keys = kept_keys.repeat_interleave(block_size, dim=2)[:, :, : q.shape[2]]
    skipped_mass = (probs * ~kept_keys).sum(-1)
    assert (skipped_mass <= res.mass_bound.double() + 1e-6).all()
    return res, err


KINDS = ["gaussian", "peaky", "heavy", "localized"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 1.0])
def test_bound_holds_on_many_seeds_fp64(kind, causal, eps):
    # eps=1 skips every non-local block: the bound must still hold (it then carries all the error).
    for seed in range(5):
        q, k, v = gen_inputs(kind, seed=seed)
        mask = gen_padding(2, 130, seed) if seed % 2 else None
        check_certificate(q, k, v, eps=eps, block_size=16, causal=causal, mask=mask)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [False, True])
def test_bound_holds_fp32_ragged_shapes(kind, causal):
    for seed, (n_q, n_k, bs) in enumerate([(77, 77, 16), (50, 173, 32), (1, 99, 16), (64, 250, 64)]):
        q, k, v = gen_inputs(kind, seed=seed, n_q=n_q, n_k=n_k, h=6, h_kv=3, d=8)
        mask = gen_padding(2, n_k, seed)
        for eps in (1e-2, 0.5):
            check_certificate(
                q.float(), k.float(), v.float(), eps=eps, block_size=bs, causal=causal, mask=mask
            )


def test_bound_is_not_vacuous_on_localized_attention():
    q, k, v = gen_inputs("localized", seed=0, n_q=256, n_k=256, d=16)
    for causal in (False, True):
        res, err = check_certificate(
            q.float(), k.float(), v.float(), eps=1e-2, block_size=16, causal=causal, mask=None
        )
        assert res.kept_fraction < 0.5
        assert err.max() > 0  # something was really skipped ...
        assert res.error_bound.max() > 0 and res.mass_bound.max() > 0
        value_range = (v.amax(2) - v.amin(2)).max()
        assert res.error_bound.max() <= 1e-2 * value_range  # ... and the certificate is eps-tight


def test_eps_zero_is_exact_and_keeps_every_visible_block():
    for causal in (False, True):
        q, k, v = gen_inputs("peaky", seed=3, n_q=90, n_k=120)
        mask = gen_padding(2, 120, 3)
        res = blocksparse_attention(
            q.float(), k.float(), v.float(), eps=0.0, block_size=16, causal=causal, key_padding_mask=mask
        )
        exact, _ = reference(q, k, v, scaling=1 / 4, causal=causal, key_padding_mask=mask)
        assert res.kept_fraction == 1.0
        assert (res.mass_bound == 0).all() and (res.error_bound == 0).all()
        torch.testing.assert_close(
            res.output.double(), exact, atol=1e-5 * (1 + v.abs().max().item()), rtol=1e-5
        )


def test_upper_bound_dominates_every_key_logit():
    for seed, kind in enumerate(KINDS):
        q, k, v = gen_inputs(kind, seed=seed, n_q=60, n_k=83, h=2, h_kv=2)
        real = gen_padding(2, 83, seed)[:, None, :].expand(2, 2, 83)
        kmin, kmax = key_block_summaries(k, 16, real)
        ub = logit_upper_bound(q, kmin, kmax, 0.37)  # [b, h, n_q, n_blocks]
        logits = 0.37 * q @ k.transpose(-1, -2)
        block_of_key = torch.arange(83) // 16
        ub_per_key = ub[..., block_of_key]
        assert ((ub_per_key >= logits - 1e-9) | ~real[:, :, None, :]).all()
        # the summary is the elementwise min/max of the block's real keys
        kb = k[0, 0, 16:32][real[0, 0, 16:32]]
        if len(kb):
            torch.testing.assert_close(kmin[0, 0, 1], kb.amin(0))
            torch.testing.assert_close(kmax[0, 0, 1], kb.amax(0))
        # and it is attained when the query is a one-hot direction
        e0 = torch.zeros(1, 1, 1, q.shape[-1], dtype=torch.float64)
        e0[..., 0] = 1.0
        torch.testing.assert_close(logit_upper_bound(e0, kmin, kmax, 1.0)[0, 0, 0], kmax[0, 0, :, 0])


def test_sink_and_local_blocks_are_always_kept():
    q, k, v = gen_inputs("localized", seed=1, n_q=128, n_k=128, h=2, h_kv=2)
    for causal in (False, True):
        res = blocksparse_attention(q, k, v, eps=1.0, block_size=16, causal=causal)
        kept = res.kept_blocks[0, 0]
        assert kept[:, 0].all() and kept.diagonal().all()
        if causal:
            assert kept.diagonal(-1).all()
        assert kept.sum() < kept.numel()


def test_gradients_match_dense_when_exact():
    q, k, v = gen_inputs("gaussian", seed=2, b=1, h=2, h_kv=1, n_q=20, n_k=24, d=4)
    mask = torch.ones(1, 24, dtype=torch.bool)
    mask[0, :3] = False
    grads = []
    for use_sparse in (True, False):
        qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
        if use_sparse:
            out = blocksparse_attention(
                qq, kk, vv, eps=0.0, block_size=8, causal=True, key_padding_mask=mask
            ).output
        else:
            out = reference(qq, kk, vv, scaling=0.5, causal=True, key_padding_mask=mask)[0]
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum().backward()
        grads.append([x.grad for x in (qq, kk, vv)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_invalid_arguments_are_rejected():
    q, k, v = gen_inputs("gaussian", seed=0, n_q=10, n_k=10)
    with pytest.raises(ValueError, match="eps"):
        blocksparse_attention(q, k, v, eps=-0.1)
    with pytest.raises(ValueError, match="block_size"):
        blocksparse_attention(q, k, v, block_size=0)
