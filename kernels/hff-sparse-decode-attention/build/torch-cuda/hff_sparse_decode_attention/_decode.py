"""Triton kernels of page-sparse decode attention: page scoring, and attention over the kept pages with an online
softmax (the pages are read in place through their indices: no gathered copy of K/V)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _score_kernel(
    Q, KMIN, KMAX, UB, SC,
    n_p, scaling, alpha,
    sq_b, sq_h, sm_b, sm_h, sm_p, su_b, su_h,
    H_Q: tl.constexpr, G: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """One program per (batch·query head, tile of BLOCK_P pages): the bound ``ub = scaling·(q·c + |q|·r)`` and the
    ranking score ``scaling·(q·c + alpha·|q|·r)`` (box centre c, radius r) of every page of the tile."""
    pid = tl.program_id(0)
    b = pid // H_Q
    h = pid % H_Q
    kh = h // G
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_d = tl.arange(0, BLOCK_D)
    pm = offs_p < n_p
    dm = offs_d < D
    q = tl.load(Q + b * sq_b + h * sq_h + offs_d, mask=dm, other=0.0).to(tl.float32)
    ptr = b * sm_b + kh * sm_h + offs_p[:, None] * sm_p + offs_d[None, :]
    lo = tl.load(KMIN + ptr, mask=pm[:, None] & dm[None, :], other=0.0).to(tl.float32)
    hi = tl.load(KMAX + ptr, mask=pm[:, None] & dm[None, :], other=0.0).to(tl.float32)
    qc = tl.sum(q[None, :] * ((hi + lo) * 0.5), axis=1)
    qr = tl.sum(tl.abs(q)[None, :] * ((hi - lo) * 0.5), axis=1)
    tl.store(UB + b * su_b + h * su_h + offs_p, scaling * (qc + qr), mask=pm)
    tl.store(SC + b * su_b + h * su_h + offs_p, scaling * (qc + alpha * qr), mask=pm)


@triton.jit
def _decode_kernel(
    Q, K, V, IDX, NKEEP, VALID, OUT, LSE,
    n, scaling,
    sq_b, sq_h, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, si_b, si_h, so_b, so_h, sl_b, sval_b,
    H_KV: tl.constexpr, G: tl.constexpr, P: tl.constexpr, D: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, HAS_VALID: tl.constexpr,
):  # fmt: skip
    """One program per (batch, KV head): its G query heads loop over the group's kept pages (indices in IDX,
    count in NKEEP), reading each page of K and V where it lies, with an online softmax (FlashAttention's
    rescaling, arXiv 2205.14135 §3.1). Writes the output and the log partition function over the kept keys."""
    pid = tl.program_id(0)
    b = pid // H_KV
    kh = pid % H_KV
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_p = tl.arange(0, P)
    gm = offs_g < G
    dm = offs_d < D
    heads = kh * G + offs_g
    q = tl.load(
        Q + b * sq_b + heads[:, None] * sq_h + offs_d[None, :], mask=gm[:, None] & dm[None, :], other=0.0
    )
    q = q.to(tl.float32)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    n_keep = tl.load(NKEEP + b * H_KV + kh)
    for s in range(0, n_keep):
        page = tl.load(IDX + b * si_b + kh * si_h + s)
        pos = page * P + offs_p
        ok = pos < n
        if HAS_VALID:
            ok = ok & (tl.load(VALID + b * sval_b + pos, mask=ok, other=0) != 0)
        km = ok[:, None] & dm[None, :]
        k = tl.load(K + b * sk_b + kh * sk_h + pos[:, None] * sk_n + offs_d[None, :], mask=km, other=0.0)
        v = tl.load(V + b * sv_b + kh * sv_h + pos[:, None] * sv_n + offs_d[None, :], mask=km, other=0.0)
        logits = tl.sum(q[:, None, :] * k.to(tl.float32)[None, :, :], axis=2) * scaling  # [BLOCK_G, P]
        logits = tl.where(ok[None, :], logits, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(logits, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a page of padding only: nothing to add yet
        p = tl.exp(logits - m_safe[:, None])
        corr = tl.exp(m_i - m_safe)
        acc = acc * corr[:, None] + tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
        l_i = l_i * corr + tl.sum(p, axis=1)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(OUT + b * so_b + heads[:, None] * so_h + offs_d[None, :], out, mask=gm[:, None] & dm[None, :])
    tl.store(LSE + b * sl_b + heads, m_i + tl.log(l_i), mask=gm)
