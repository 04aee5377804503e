"""Exact flash-style attention forward (FlashAttention-2 tiling): the I/O baseline the approximate kernels are
measured against. One program per (query block, batch·head); K and V are streamed past the query block with an
online softmax. Optional instrumentation counts the words every load and store moves (``io``, int64 [6]:
Q, K, V, O, key mask, other)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

IO_SLOTS = ("Q", "K", "V", "O", "key_mask", "other")


@triton.jit
def _count(io_ptr, slot: tl.constexpr, mask):
    """Add the number of True elements of ``mask`` (the words a masked load or store moves) to ``io[slot]``."""
    n = tl.sum(mask.to(tl.int64))
    tl.atomic_add(io_ptr + slot, n)


@triton.jit
def _flash_fwd_kernel(
    Q, K, V, Out, KR, IO,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_on,
    stride_krb,
    n_q, n_k, heads, groups, scale, offset,
    D: tl.constexpr, DP: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    pid_q = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    hk = h // groups
    offs_q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, DP)
    dmask = offs_d[None, :] < D
    qmask = (offs_q[:, None] < n_q) & dmask
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_q[:, None] * stride_qn + offs_d[None, :],
        mask=qmask,
        other=0.0,
    )
    if COUNT_IO:
        _count(IO, 0, qmask)
    m_i = tl.full((BLOCK_Q,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_Q,), tl.float32)
    acc = tl.zeros((BLOCK_Q, DP), tl.float32)
    hi = n_k
    if CAUSAL:
        hi = tl.minimum(n_k, tl.maximum((pid_q + 1) * BLOCK_Q + offset, 0))
        hi = tl.minimum(hi, n_q + offset)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    for start in range(0, hi, BLOCK_K):
        offs_k = start + tl.arange(0, BLOCK_K)
        kin = offs_k < n_k
        kmask = kin[:, None] & dmask
        k = tl.load(k_base + offs_k[:, None] * stride_kn + offs_d[None, :], mask=kmask, other=0.0)
        v = tl.load(v_base + offs_k[:, None] * stride_vn + offs_d[None, :], mask=kmask, other=0.0)
        if COUNT_IO:
            _count(IO, 1, kmask)
            _count(IO, 2, kmask)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        valid = kin[None, :] & (offs_q[:, None] < n_q)
        if HAS_KR:
            kr = tl.load(KR + b * stride_krb + offs_k, mask=kin, other=0)
            if COUNT_IO:
                _count(IO, 4, kin)
            valid = valid & (kr[None, :] != 0)
        if CAUSAL:
            valid = valid & (offs_k[None, :] <= offs_q[:, None] + offset)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_q[:, None] * stride_on + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=qmask)
    if COUNT_IO:
        _count(IO, 3, qmask)


def _block(n: int, want: int) -> int:
    """A power-of-two tile size of at least 16 (tl.dot's minimum) and at most ``want``."""
    return max(16, min(want, triton.next_power_of_2(max(n, 1))))


def flash_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    offset: int | None = None,
    block_q: int = 64,
    block_k: int = 64,
    io: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact softmax attention, q [B, H, n_q, D], k/v [B, H_kv, n_k, D] (GQA without copying), causal aligned
    to the end of the keys (query i sees key j iff j <= i + offset, offset = n_k − n_q unless given),
    ``key_padding_mask`` [B, n_k] bool (True = real). Queries that see no real key get
    zeros. ``io`` (int64 [6]) turns on word counting (slow; for validating the I/O model)."""
    bsz, heads, n_q, d = q.shape
    n_k = k.shape[2]
    if v.shape[-1] != d:
        raise ValueError(f"value head dim {v.shape[-1]} must equal the query head dim {d}")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    out = torch.empty(bsz, heads, n_q, v.shape[-1], device=q.device, dtype=q.dtype)
    if n_q == 0:
        return out
    kr = None if key_padding_mask is None else key_padding_mask.to(torch.int8).contiguous()
    bq, bk = _block(n_q, block_q), _block(n_k, block_k)
    grid = (triton.cdiv(n_q, bq), bsz * heads)
    dummy = torch.zeros(6, dtype=torch.int64, device=q.device)
    _flash_fwd_kernel[grid](
        q, k, v, out, kr if kr is not None else dummy, io if io is not None else dummy,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        kr.stride(0) if kr is not None else 0,
        n_q, n_k, heads, heads // k.shape[1], float(scale), n_k - n_q if offset is None else int(offset),
        D=d, DP=max(16, triton.next_power_of_2(d)), BLOCK_Q=bq, BLOCK_K=bk,
        CAUSAL=bool(causal), HAS_KR=kr is not None, COUNT_IO=io is not None,
    )  # fmt: skip
    return out
