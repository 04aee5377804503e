"""Low-rank (random-feature, FAVOR+) attention forward: o_i = φ(q_i)ᵀS / φ(q_i)ᵀz with S = Σ_j φ(k_j) v_jᵀ and
z = Σ_j φ(k_j), never building the n_q×n_k matrix (hf_fundamentals ``attention/lowrank.py``;
the streaming form after arXiv 2605.23751).

Feature map (the reference's ``feature_map="random"`` branch): φ(x) = exp(ωx − |x|²/2 − shift)/√r with
x = √s·q (or √s·k) and ω [r, D] given by the caller. The q shift is the per-row max over the r features; the k
shift is one max per (batch, head) over the real keys. Both cancel in the ratio, so the kernels track the k max
*online* (a running max, the state rescaled by exp(m_old − m_new) when it grows, like flash's online softmax)
instead of a pre-pass over K: the final state equals the reference's exactly (up to rounding) and K is read once.

* Non-causal, two passes. ``state``: one program per (batch·kv head, rank chunk of ``rank_chunk`` features)
  streams K, V once and writes its slice of S [r, D], z [r] and its running k max (one per chunk; the readout
  rescales the chunks to their common max). ``readout``: one program per (query block, batch·head) reads Q
  once and loops over the rank chunks (ω, S, z, chunk max), with an online per-row max for the q shift, then
  writes O. With p rank chunks, K and V are read p times (the state of one chunk must fit on chip); Q once;
  the state is read once per query block.
* Causal, one persistent program per (batch·head): query chunks of ``chunk`` rows in order; inside a chunk the
  masked product (φ(Q_c)φ(K_c)ᵀ ⊙ tril)·V_c, across chunks the running (S, z), which stay on chip: every
  visible key is read once and no state goes to slow memory. The whole state must fit on chip, so the padded
  rank × padded D is limited to ``MAX_CAUSAL_STATE`` words (``ValueError`` beyond).

Causal is aligned to the end of the keys (query i sees key j iff j <= i + offset), ``key_padding_mask`` [B, n_k]
bool True = real (φ(k) = 0 for a padded key), and a query whose denominator is 0 (it sees no real key) gets
zeros. Everything is fp32 inside. ``io`` (int64 [6]: Q, K, V, O, key mask, other = ω + state + k maxima)
counts the words every load and store moves when given."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._flash import _count

MAX_CAUSAL_STATE = 32768
"""Largest next_pow2(rank)·next_pow2(D) (≥ 16 each) the causal kernel keeps on chip (e.g. rank 256 at D 128)."""


@triton.jit
def _key_features(
    k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, offs_k, kin, om, rmask, m,
    root_s, half_s, inv_sqrt_r, IO, offs_d, dmask,
    HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    """Load a key block (rows ``offs_k``, ``kin`` = in range) and its values; return φ(k) [BK, RC] under the
    updated running k max, v [BK, DP] (fp32), the factor exp(m_old − m_new) for the state, and m_new."""
    kmask = kin[:, None] & dmask[None, :]
    k = tl.load(k_base + offs_k[:, None] * stride_kn + offs_d[None, :], mask=kmask, other=0.0).to(tl.float32)
    v = tl.load(v_base + offs_k[:, None] * stride_vn + offs_d[None, :], mask=kmask, other=0.0).to(tl.float32)
    if COUNT_IO:
        _count(IO, 1, kmask)
        _count(IO, 2, kmask)
    real = kin
    if HAS_KR:
        kr = tl.load(KR + b * stride_krb + offs_k, mask=kin, other=0)
        if COUNT_IO:
            _count(IO, 4, kin)
        real = real & (kr != 0)
    proj = tl.dot(k, tl.trans(om), input_precision="ieee") * root_s - half_s * tl.sum(k * k, 1)[:, None]
    valid = real[:, None] & rmask[None, :]
    m_new = tl.maximum(m, tl.max(tl.max(tl.where(valid, proj, float("-inf")), 1), 0))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m - m_use)  # 0 while nothing was absorbed (m = -inf)
    phi = tl.where(valid, tl.exp(proj - m_use), 0.0) * inv_sqrt_r
    return phi, v, alpha, m_new


@triton.jit
def _query_proj(q, om, rmask, root_s, half_s):
    """ωx − |x|²/2 for x = √s·q, [BQ, RC], −inf in the padded rank columns."""
    proj = tl.dot(q, tl.trans(om), input_precision="ieee") * root_s - half_s * tl.sum(q * q, 1)[:, None]
    return tl.where(rmask[None, :], proj, float("-inf"))


@triton.jit
def _state_kernel(
    K, V, OM, KR, S, Z, MK, IO,
    stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn, stride_krb,
    n_k, heads_kv, rank, n_rc, root_s, half_s, inv_sqrt_r,
    D: tl.constexpr, DP: tl.constexpr, RC: tl.constexpr, BK: tl.constexpr,
    HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    rc = tl.program_id(0)
    pid = tl.program_id(1)
    b = pid // heads_kv
    hk = pid % heads_kv
    offs_d = tl.arange(0, DP)
    dmask = offs_d < D
    offs_r = rc * RC + tl.arange(0, RC)
    rmask = offs_r < rank
    om_mask = rmask[:, None] & dmask[None, :]
    om = tl.load(OM + offs_r[:, None] * D + offs_d[None, :], mask=om_mask, other=0.0)
    if COUNT_IO:
        _count(IO, 5, om_mask)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    s_acc = tl.zeros((RC, DP), tl.float32)
    z_acc = tl.zeros((RC,), tl.float32)
    m = tl.max(tl.full((RC,), float("-inf"), tl.float32), 0)
    for start in range(0, n_k, BK):
        offs_k = start + tl.arange(0, BK)
        phi, v, alpha, m = _key_features(
            k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, offs_k, offs_k < n_k, om, rmask, m,
            root_s, half_s, inv_sqrt_r, IO, offs_d, dmask, HAS_KR, COUNT_IO,
        )  # fmt: skip
        s_acc = s_acc * alpha + tl.dot(tl.trans(phi), v, input_precision="ieee")
        z_acc = z_acc * alpha + tl.sum(phi, 0)
    tl.store(S + (pid * rank + offs_r[:, None]) * D + offs_d[None, :], s_acc, mask=om_mask)
    tl.store(Z + pid * rank + offs_r, z_acc, mask=rmask)
    tl.store(MK + pid * n_rc + rc, m)
    if COUNT_IO:
        _count(IO, 5, om_mask)
        _count(IO, 5, rmask)
        _count(IO, 5, m == m)


@triton.jit
def _readout_kernel(
    Q, Out, OM, S, Z, MK, IO,
    stride_qb, stride_qh, stride_qn, stride_ob, stride_oh, stride_on,
    n_q, heads, groups, rank, n_rc, root_s, half_s, inv_sqrt_r,
    D: tl.constexpr, DP: tl.constexpr, RC: tl.constexpr, BQ: tl.constexpr, NRCP: tl.constexpr,
    COUNT_IO: tl.constexpr,
):  # fmt: skip
    qb = tl.program_id(0)
    pid = tl.program_id(1)
    b = pid // heads
    h = pid % heads
    bhk = b * (heads // groups) + h // groups
    offs_q = qb * BQ + tl.arange(0, BQ)
    offs_d = tl.arange(0, DP)
    dmask = offs_d < D
    qmask = (offs_q < n_q)[:, None] & dmask[None, :]
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_q[:, None] * stride_qn + offs_d[None, :],
        mask=qmask,
        other=0.0,
    )
    q = q.to(tl.float32)
    offs_c = tl.arange(0, NRCP)
    mk_all = tl.load(MK + bhk * n_rc + offs_c, mask=offs_c < n_rc, other=float("-inf"))
    if COUNT_IO:
        _count(IO, 0, qmask)
        _count(IO, 5, offs_c < n_rc)
    m_k = tl.max(mk_all, 0)  # the common k shift: max over real keys and all features
    m_q = tl.full((BQ,), float("-inf"), tl.float32)
    num = tl.zeros((BQ, DP), tl.float32)
    den = tl.zeros((BQ,), tl.float32)
    for rc in range(0, n_rc):
        offs_r = rc * RC + tl.arange(0, RC)
        rmask = offs_r < rank
        om_mask = rmask[:, None] & dmask[None, :]
        om = tl.load(OM + offs_r[:, None] * D + offs_d[None, :], mask=om_mask, other=0.0)
        s_c = tl.load(S + (bhk * rank + offs_r[:, None]) * D + offs_d[None, :], mask=om_mask, other=0.0)
        z_c = tl.load(Z + bhk * rank + offs_r, mask=rmask, other=0.0)
        if COUNT_IO:
            _count(IO, 5, om_mask)
            _count(IO, 5, om_mask)
            _count(IO, 5, rmask)
        m_c = tl.sum(tl.where(offs_c == rc, mk_all, 0.0), 0)
        f = tl.where(m_c == float("-inf"), 0.0, tl.exp(m_c - tl.where(m_k == float("-inf"), 0.0, m_k)))
        proj = _query_proj(q, om, rmask, root_s, half_s)
        m_new = tl.maximum(m_q, tl.max(proj, 1))
        alpha = tl.exp(m_q - m_new)  # m_new is finite: every chunk has at least one real feature
        phi = tl.where(rmask[None, :], tl.exp(proj - m_new[:, None]), 0.0) * inv_sqrt_r
        num = num * alpha[:, None] + tl.dot(phi, s_c, input_precision="ieee") * f
        den = den * alpha + tl.sum(phi * z_c[None, :], 1) * f
        m_q = m_new
    ok = den > 0
    out = tl.where(ok[:, None], num / tl.where(ok, den, 1.0)[:, None], 0.0)
    tl.store(Out + b * stride_ob + h * stride_oh + offs_q[:, None] * stride_on + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=qmask)  # fmt: skip
    if COUNT_IO:
        _count(IO, 3, qmask)


@triton.jit
def _causal_kernel(
    Q, K, V, Out, OM, KR, IO,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on, stride_krb,
    n_q, n_k, heads, groups, rank, offset, root_s, half_s, inv_sqrt_r,
    D: tl.constexpr, DP: tl.constexpr, RP: tl.constexpr, C: tl.constexpr, BK: tl.constexpr,
    HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    b = pid // heads
    h = pid % heads
    hk = h // groups
    offs_d = tl.arange(0, DP)
    dmask = offs_d < D
    offs_r = tl.arange(0, RP)
    rmask = offs_r < rank
    om_mask = rmask[:, None] & dmask[None, :]
    om = tl.load(OM + offs_r[:, None] * D + offs_d[None, :], mask=om_mask, other=0.0)
    if COUNT_IO:
        _count(IO, 5, om_mask)
    q_base = Q + b * stride_qb + h * stride_qh
    o_base = Out + b * stride_ob + h * stride_oh
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    s_acc = tl.zeros((RP, DP), tl.float32)
    z_acc = tl.zeros((RP,), tl.float32)
    m = tl.max(tl.full((RP,), float("-inf"), tl.float32), 0)
    # keys every query sees (offset > 0: a cache before the first query): straight into the state
    lo0 = tl.minimum(tl.maximum(offset, 0), n_k)
    for start in range(0, lo0, BK):
        offs_k = start + tl.arange(0, BK)
        phi, v, alpha, m = _key_features(
            k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, offs_k, offs_k < lo0, om, rmask, m,
            root_s, half_s, inv_sqrt_r, IO, offs_d, dmask, HAS_KR, COUNT_IO,
        )  # fmt: skip
        s_acc = s_acc * alpha + tl.dot(tl.trans(phi), v, input_precision="ieee")
        z_acc = z_acc * alpha + tl.sum(phi, 0)
    for i0 in range(0, n_q, C):
        offs_q = i0 + tl.arange(0, C)
        qmask = (offs_q < n_q)[:, None] & dmask[None, :]
        q = tl.load(q_base + offs_q[:, None] * stride_qn + offs_d[None, :], mask=qmask, other=0.0).to(
            tl.float32
        )
        if COUNT_IO:
            _count(IO, 0, qmask)
        proj = _query_proj(q, om, rmask, root_s, half_s)
        phi_q = tl.where(rmask[None, :], tl.exp(proj - tl.max(proj, 1)[:, None]), 0.0) * inv_sqrt_r
        # keys [lo, hi): visible to some but not all queries of the chunk (hi - lo <= C); keys < lo are in state
        lo = tl.minimum(tl.maximum(i0 + offset, 0), n_k)
        hi = tl.minimum(tl.maximum(tl.minimum(i0 + C, n_q) + offset, 0), n_k)
        offs_k = lo + tl.arange(0, C)
        phi_k, v, alpha, m = _key_features(
            k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, offs_k, offs_k < hi, om, rmask, m,
            root_s, half_s, inv_sqrt_r, IO, offs_d, dmask, HAS_KR, COUNT_IO,
        )  # fmt: skip
        s_acc = s_acc * alpha
        z_acc = z_acc * alpha
        a = tl.dot(phi_q, tl.trans(phi_k), input_precision="ieee")
        a = tl.where(offs_k[None, :] <= offs_q[:, None] + offset, a, 0.0)
        num = tl.dot(phi_q, s_acc, input_precision="ieee") + tl.dot(a, v, input_precision="ieee")
        den = tl.sum(phi_q * z_acc[None, :], 1) + tl.sum(a, 1)
        ok = den > 0
        out = tl.where(ok[:, None], num / tl.where(ok, den, 1.0)[:, None], 0.0)
        tl.store(
            o_base + offs_q[:, None] * stride_on + offs_d[None, :], out.to(Out.dtype.element_ty), mask=qmask
        )
        if COUNT_IO:
            _count(IO, 3, qmask)
        # keys [lo, hi) are exactly the next chunk's "seen by all" keys: absorb them now (read once)
        s_acc = s_acc + tl.dot(tl.trans(phi_k), v, input_precision="ieee")
        z_acc = z_acc + tl.sum(phi_k, 0)


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(max(int(n), 1)))


def lowrank_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    omega: torch.Tensor,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    offset: int | None = None,
    chunk: int = 64,
    rank_chunk: int | None = None,
    io: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random-feature attention (module docstring), q [B, H, n_q, D], k/v [B, H_kv, n_k, D] (GQA without copying),
    ``omega`` [rank, D] (e.g. hf_fundamentals' ``random_projection(D, rank, seed=...)``), ``scale`` >= 0 the
    logit scale s. Causal aligned to the end of the keys (offset = n_k − n_q unless given); ``key_padding_mask``
    [B, n_k] bool (True = real). ``chunk`` (power of two >= 16) is the query block / causal chunk and key block;
    ``rank_chunk`` (power of two >= 16, non-causal only; default: the padded rank, capped near 8192/D) the
    features per state program. ``io`` (int64 [6]) turns on word counting (slow; for validating the I/O model).
    """
    bsz, heads, n_q, d = q.shape
    heads_kv, n_k = k.shape[1], k.shape[2]
    if v.shape[-1] != d or k.shape[-1] != d or v.shape[:3] != k.shape[:3] or k.shape[0] != bsz:
        raise ValueError(f"k/v must be [B, H_kv, n_k, D={d}]; got {tuple(k.shape)} and {tuple(v.shape)}")
    if heads % heads_kv:
        raise ValueError(f"heads ({heads}) must be a multiple of heads_kv ({heads_kv})")
    if omega.dim() != 2 or omega.shape[1] != d or omega.shape[0] < 1:
        raise ValueError(f"omega must be [rank, D={d}]; got {tuple(omega.shape)}")
    if scale < 0:
        raise ValueError(f"scale must be >= 0 (the features use √scale); got {scale}")
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two >= 16; got {chunk}")
    rank = omega.shape[0]
    dp = _pow2(d)
    if causal and _pow2(rank) * dp > MAX_CAUSAL_STATE:
        raise ValueError(
            f"the causal kernel keeps the whole state on chip: padded rank {_pow2(rank)} x padded D {dp} exceeds "
            f"MAX_CAUSAL_STATE={MAX_CAUSAL_STATE} words; use a smaller rank"
        )
    if rank_chunk is None:
        rank_chunk = min(_pow2(rank), max(16, triton.next_power_of_2(max(1, 8192 // dp))))
    if rank_chunk < 16 or rank_chunk & (rank_chunk - 1):
        raise ValueError(f"rank_chunk must be a power of two >= 16; got {rank_chunk}")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    dev = q.device
    out = torch.zeros(bsz, heads, n_q, d, device=dev, dtype=q.dtype)
    if n_q == 0 or n_k == 0:
        return out
    om = omega.to(device=dev, dtype=torch.float32).contiguous()
    kr = None if key_padding_mask is None else key_padding_mask.to(device=dev, dtype=torch.int8).contiguous()
    dummy = torch.zeros(6, dtype=torch.int64, device=dev)
    kr_arg = kr if kr is not None else dummy
    io_arg = io if io is not None else dummy
    stride_kr = kr.stride(0) if kr is not None else 0
    offset = n_k - n_q if offset is None else int(offset)
    root_s, half_s, inv_sqrt_r = math.sqrt(float(scale)), 0.5 * float(scale), 1.0 / math.sqrt(rank)
    groups = heads // heads_kv
    flags = dict(HAS_KR=kr is not None, COUNT_IO=io is not None)
    if causal:
        c = _pow2(min(chunk, n_q))
        _causal_kernel[(bsz * heads,)](
            q, k, v, out, om, kr_arg, io_arg,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2), stride_kr,
            n_q, n_k, heads, groups, rank, offset, root_s, half_s, inv_sqrt_r,
            D=d, DP=dp, RP=_pow2(rank), C=c, BK=_pow2(min(chunk, n_k)), **flags,
        )  # fmt: skip
        return out
    n_rc = triton.cdiv(rank, rank_chunk)
    state = torch.empty(bsz * heads_kv, rank, d, device=dev, dtype=torch.float32)
    norm = torch.empty(bsz * heads_kv, rank, device=dev, dtype=torch.float32)
    k_max = torch.empty(bsz * heads_kv, n_rc, device=dev, dtype=torch.float32)
    _state_kernel[(n_rc, bsz * heads_kv)](
        k, v, om, kr_arg, state, norm, k_max, io_arg,
        k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2), stride_kr,
        n_k, heads_kv, rank, n_rc, root_s, half_s, inv_sqrt_r,
        D=d, DP=dp, RC=rank_chunk, BK=_pow2(min(chunk, n_k)), **flags,
    )  # fmt: skip
    bq = _pow2(min(chunk, n_q))
    _readout_kernel[(triton.cdiv(n_q, bq), bsz * heads)](
        q, out, om, state, norm, k_max, io_arg,
        q.stride(0), q.stride(1), q.stride(2), out.stride(0), out.stride(1), out.stride(2),
        n_q, heads, groups, rank, n_rc, root_s, half_s, inv_sqrt_r,
        D=d, DP=dp, RC=rank_chunk, BQ=bq, NRCP=_pow2(n_rc), COUNT_IO=io is not None,
    )  # fmt: skip
    return out
