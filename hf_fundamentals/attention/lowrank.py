"""Low-rank (kernelised) attention: feature maps φ with φ(q)·φ(k) ≈ exp(s·q·k), and the streaming two-pass
form that never builds the n×n matrix (our reconstruction of the Alman–Song low-rank method, arXiv 2302.13214,
made I/O-efficient as arXiv 2605.23751 proposes).

Layout follows transformers: q ``[batch, heads, n_q, d]``, k and v ``[batch, heads_kv, n_k, d]`` with
``heads % heads_kv == 0`` (grouped-query attention; k/v are repeated per group like ``repeat_kv``).

Conventions shared with :mod:`hf_fundamentals.attention.blocksparse`:

* ``causal`` aligns the queries to the END of the keys: query ``i`` sees key ``j`` iff ``j <= i + n_k - n_q``.
* ``key_padding_mask`` ``[batch, n_k]`` bool, True = real token; a padded key is never attended to.
* A query that sees no real key (all padded, or ``n_q > n_k`` under ``causal``) gets an all-zero output row.
* Everything is computed in float32 (float64 when the inputs are float64) and returned in the input dtype.

The state pass builds ``S = Σ_j φ(k_j) v_jᵀ`` and ``z = Σ_j φ(k_j)`` chunk by chunk; the readout is
``o_i = φ(q_i)ᵀS / φ(q_i)ᵀz``. The causal form is the chunked linear-attention form: inside a chunk the masked
product ``(φ(Q_c)φ(K_c)ᵀ ⊙ tril)·V_c``, across chunks the running ``(S, z)``. All of it is differentiable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FEATURE_MAPS = ("taylor2", "random")


# --------------------------------------------------------------------------------------------- shared helpers
def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The internal precision: float64 for float64 inputs (so gradcheck works), float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_inputs(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> None:
    """Raise ``ValueError`` unless q/k/v/mask have the transformers layout described in the module docstring."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be 4-D [batch, heads, n, d]; got {q.shape}, {k.shape}, {v.shape}")
    b, h, _, d = q.shape
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(f"k and v must agree on [batch, heads_kv, n_k]; got {k.shape} and {v.shape}")
    if k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k must be [batch={b}, heads_kv, n_k, d={d}]; got {k.shape}")
    if h % k.shape[1] != 0:
        raise ValueError(f"heads ({h}) must be a multiple of heads_kv ({k.shape[1]})")
    if key_padding_mask is not None:
        if key_padding_mask.shape != (b, k.shape[2]) or key_padding_mask.dtype != torch.bool:
            raise ValueError(
                f"key_padding_mask must be bool [batch={b}, n_k={k.shape[2]}]; got "
                f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )


def repeat_kv(x: Tensor, heads: int) -> Tensor:
    """Expand ``[batch, heads_kv, n, d]`` to ``[batch, heads, n, d]``: query head h uses kv head h // groups."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def visibility_mask(
    n_q: int, n_k: int, *, causal: bool, key_padding_mask: Tensor | None, device: torch.device
) -> Tensor | None:
    """Bool ``[batch or 1, 1, n_q, n_k]`` (True = query may attend to key), or None when everything is visible."""
    mask = None
    if causal:
        i = torch.arange(n_q, device=device)[:, None]
        j = torch.arange(n_k, device=device)[None, :]
        mask = (j <= i + (n_k - n_q))[None, None]
    if key_padding_mask is not None:
        pad = key_padding_mask.to(device)[:, None, None, :]
        mask = pad if mask is None else mask & pad
    return mask


def dense_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scaling: float | None = None,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """Exact softmax attention, materialising the n_q×n_k matrix: the reference every approximation is checked
    against (same conventions as the approximate functions; fully masked rows give zeros)."""
    check_inputs(q, k, v, key_padding_mask)
    cdt = compute_dtype(q.dtype)
    s = 1.0 / math.sqrt(q.shape[-1]) if scaling is None else float(scaling)
    qf, kf, vf = q.to(cdt), repeat_kv(k.to(cdt), q.shape[1]), repeat_kv(v.to(cdt), q.shape[1])
    logits = s * qf @ kf.transpose(-1, -2)
    mask = visibility_mask(
        q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask, device=q.device
    )
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    m = logits.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(logits - m)
    den = w.sum(-1, keepdim=True)
    out = (w @ vf) / torch.where(den > 0, den, torch.ones_like(den))
    return out.to(q.dtype)


# ----------------------------------------------------------------------------------------------- feature maps
def taylor2_dim(d: int) -> int:
    """Rank of the degree-2 Taylor map: 1 + d + d(d+1)/2 (constant, linear, upper-triangular quadratic terms)."""
    return 1 + d + d * (d + 1) // 2


def taylor2_feature_map(x: Tensor) -> Tensor:
    """φ(x) = [1, x, x_i·x_j (i<j), x_i²/√2] so that φ(u)·φ(w) = 1 + u·w + (u·w)²/2 exactly; pass x = √s·q."""
    d = x.shape[-1]
    iu, ju = torch.triu_indices(d, d, device=x.device)
    quad = x[..., iu] * x[..., ju]
    diag_scale = torch.ones(iu.shape, dtype=x.dtype, device=x.device).masked_fill(
        iu == ju, 1.0 / math.sqrt(2.0)
    )
    ones = torch.ones(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device)
    return torch.cat([ones, x, quad * diag_scale], dim=-1)


def random_projection(
    d: int,
    rank: int,
    *,
    seed: int = 0,
    orthogonal: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """ω ∈ R^{rank×d}, rows ~ N(0, I) from a seeded CPU generator; ``orthogonal`` uses blocks of d orthogonal rows
    with chi-distributed norms (Performer's ORF), which keeps each row's marginal N(0, I)."""
    if rank < 1 or d < 1:
        raise ValueError(f"rank and d must be >= 1; got rank={rank}, d={d}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    if not orthogonal:
        omega = torch.randn(rank, d, generator=gen, dtype=torch.float64)
    else:
        blocks = []
        for _ in range(math.ceil(rank / d)):
            g = torch.randn(d, d, generator=gen, dtype=torch.float64)
            qmat, rmat = torch.linalg.qr(g)
            qmat = qmat * torch.sign(torch.diagonal(rmat))[None, :]  # Haar-distributed orthogonal matrix
            norms = torch.randn(d, d, generator=gen, dtype=torch.float64).norm(dim=1)
            blocks.append(qmat.T * norms[:, None])
        omega = torch.cat(blocks, dim=0)[:rank]
    return omega.to(dtype=dtype, device=device)


def positive_random_feature_map(x: Tensor, omega: Tensor, *, log_shift: Tensor | None = None) -> Tensor:
    """FAVOR+ φ(x) = exp(ωᵀx − |x|²/2 − shift)/√r (pass x = √s·q), unbiased for exp(u·w) up to the shift.

    ``log_shift`` (broadcast against ``[..., n, 1]``) is subtracted in the exponent for stability; any shift
    that is constant per query row, or constant over all keys of a (batch, head), cancels in the readout ratio.
    """
    proj = x @ omega.T - 0.5 * (x * x).sum(-1, keepdim=True)
    if log_shift is not None:
        proj = proj - log_shift
    return torch.exp(proj) / math.sqrt(omega.shape[0])


def _feature_maps(
    qs: Tensor,
    ks: Tensor,
    key_real: Tensor | None,
    feature_map: str,
    rank: int | None,
    seed: int,
    orthogonal: bool,
) -> tuple[Tensor, Tensor]:
    """φ(q) and φ(k) for already √s-scaled q, k; padded keys get φ(k) = 0."""
    if feature_map == "taylor2":
        phi_q, phi_k = taylor2_feature_map(qs), taylor2_feature_map(ks)
    elif feature_map == "random":
        r = 256 if rank is None else int(rank)
        omega = random_projection(
            qs.shape[-1], r, seed=seed, orthogonal=orthogonal, dtype=qs.dtype, device=qs.device
        )
        # q side: per-row max (cancels in the ratio); k side: one max per (batch, head) over real keys.
        q_exp = qs @ omega.T - 0.5 * (qs * qs).sum(-1, keepdim=True)
        q_shift = q_exp.amax(-1, keepdim=True).detach()
        k_exp = ks @ omega.T - 0.5 * (ks * ks).sum(-1, keepdim=True)
        if key_real is not None:
            k_exp_real = k_exp.masked_fill(~key_real[..., None], float("-inf"))
        else:
            k_exp_real = k_exp
        k_shift = k_exp_real.detach().amax(dim=(-2, -1), keepdim=True)
        k_shift = torch.where(torch.isfinite(k_shift), k_shift, torch.zeros_like(k_shift))
        phi_q = positive_random_feature_map(qs, omega, log_shift=q_shift)
        phi_k = positive_random_feature_map(ks, omega, log_shift=k_shift)
    else:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}; got {feature_map!r}")
    if key_real is not None:
        phi_k = phi_k * key_real[..., None].to(phi_k.dtype)
    return phi_q, phi_k


def _safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den, and 0 where den == 0 (a query that sees no real key)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


# ---------------------------------------------------------------------------------------------- the algorithm
def lowrank_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: str = "taylor2",
    rank: int | None = None,
    scaling: float | None = None,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    chunk_size: int = 256,
    seed: int = 0,
    orthogonal: bool = False,
) -> Tensor:
    """Approximate attention o_i = φ(q_i)ᵀS / φ(q_i)ᵀz with S, z streamed over keys in chunks of ``chunk_size``.

    ``feature_map`` is "taylor2" (exact degree-2 Taylor kernel, rank 1 + d + d(d+1)/2, ``rank`` ignored) or
    "random" (positive random features, ``rank`` features, default 256, drawn from ``seed``)."""
    check_inputs(q, k, v, key_padding_mask)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    if feature_map == "taylor2" and rank is not None and rank != taylor2_dim(q.shape[-1]):
        raise ValueError(f"taylor2 has fixed rank {taylor2_dim(q.shape[-1])}; got rank={rank}")
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    cdt = compute_dtype(q.dtype)
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    if s < 0:
        raise ValueError(f"scaling must be >= 0 (the feature maps use √s); got {s}")
    root_s = math.sqrt(s)
    qs = q.to(cdt) * root_s
    ks = repeat_kv(k.to(cdt), h) * root_s
    vf = repeat_kv(v.to(cdt), h)
    key_real = (
        None if key_padding_mask is None else key_padding_mask.to(q.device)[:, None, :].expand(b, h, n_k)
    )
    phi_q, phi_k = _feature_maps(qs, ks, key_real, feature_map, rank, seed, orthogonal)
    r = phi_q.shape[-1]
    state = torch.zeros(b, h, r, v.shape[-1], dtype=cdt, device=q.device)
    norm = torch.zeros(b, h, r, dtype=cdt, device=q.device)

    def absorb(state: Tensor, norm: Tensor, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """Add keys [lo, hi) to the running (S, z), chunk by chunk."""
        for c0 in range(lo, hi, chunk_size):
            c1 = min(c0 + chunk_size, hi)
            pk = phi_k[:, :, c0:c1]
            state = state + pk.transpose(-1, -2) @ vf[:, :, c0:c1]
            norm = norm + pk.sum(-2)
        return state, norm

    outs = []
    if not causal:
        state, norm = absorb(state, norm, 0, n_k)
        for i0 in range(0, n_q, chunk_size):
            pq = phi_q[:, :, i0 : i0 + chunk_size]
            outs.append(_safe_divide(pq @ state, (pq @ norm[..., None])))
    else:
        offset = n_k - n_q
        done = 0  # keys [0, done) are in the running state
        for i0 in range(0, n_q, chunk_size):
            i1 = min(i0 + chunk_size, n_q)
            lo = min(max(i0 + offset, 0), n_k)  # keys < lo are visible to every query of this chunk
            hi = min(max(i1 + offset, 0), n_k)  # keys >= hi are visible to none
            state, norm = absorb(state, norm, done, lo)
            done = max(done, lo)
            pq = phi_q[:, :, i0:i1]
            num = pq @ state
            den = pq @ norm[..., None]
            if hi > lo:
                qi = torch.arange(i0, i1, device=q.device)[:, None]
                kj = torch.arange(lo, hi, device=q.device)[None, :]
                tril = (kj <= qi + offset).to(cdt)
                a = (pq @ phi_k[:, :, lo:hi].transpose(-1, -2)) * tril
                num = num + a @ vf[:, :, lo:hi]
                den = den + a.sum(-1, keepdim=True)
            outs.append(_safe_divide(num, den))
    if not outs:
        return q.new_zeros(b, h, 0, v.shape[-1])
    return torch.cat(outs, dim=2).to(q.dtype)


def lowrank_kernel_matrix(
    q: Tensor,
    k: Tensor,
    *,
    feature_map: str = "taylor2",
    rank: int | None = None,
    scaling: float | None = None,
    seed: int = 0,
    orthogonal: bool = False,
) -> Tensor:
    """The dense ``[batch, heads, n_q, n_k]`` matrix φ(q_i)·φ(k_j) (unshifted features): for tests on small n only."""
    cdt = compute_dtype(q.dtype)
    d = q.shape[-1]
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    qs = q.to(cdt) * math.sqrt(s)
    ks = repeat_kv(k.to(cdt), q.shape[1]) * math.sqrt(s)
    if feature_map == "taylor2":
        pq, pk = taylor2_feature_map(qs), taylor2_feature_map(ks)
    elif feature_map == "random":
        omega = random_projection(
            d,
            256 if rank is None else int(rank),
            seed=seed,
            orthogonal=orthogonal,
            dtype=cdt,
            device=q.device,
        )
        pq, pk = positive_random_feature_map(qs, omega), positive_random_feature_map(ks, omega)
    else:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}; got {feature_map!r}")
    return pq @ pk.transpose(-1, -2)
