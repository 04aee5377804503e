"""Certified block-sparse attention forward in four kernels plus one sort on the host.

1. ``summaries``: per key block (of ``block`` keys) the centre c = (max+min)/2 and radius r = (max−min)/2 of
   every dimension over its real keys, and the count of real keys. For every key k of the block,
   ``s·q·k <= ub_b(q) = s·(q·c_b + |q|·r_b)``.
2. ``local``: per query, the exact log-normaliser ``log Z_loc`` over the always-kept blocks (the sink block 0
   and the blocks holding the query block's own positions, plus the one before them when causal).
3. ``score``: per query tile (``tile_blocks`` query blocks) and key block, the block score
   ``w_b = max_q n_b·exp(ub_b(q)) / Z_loc(q)`` over the tile's queries, streaming the summaries once per tile.
4. host: per query block, the candidate blocks sorted by ``w``; the lightest ones are skipped while their sum
   ``S = Σ_skip w_b <= eps/(1−eps)``.
5. ``forward``: exact online softmax over the kept blocks, and per query the certified skipped-mass bound
   ``p = S·Z_loc/(Z_kept + S·Z_loc)``: the skipped blocks hold at most ``S·Z_loc(q)`` of unnormalised mass and
   ``Z_kept >= Z_loc``, so ``p <= S/(1+S) <= eps``, and ``|out − exact| <= p·(max v − min v)`` per dimension.

Everything is fp32 inside; ``io`` (int64 [6]: Q, K, V, O, summaries/scores/lists, Z_loc/bounds) counts the words
each kernel loads and stores when given."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ._flash import _count


@triton.jit
def _summary_kernel(
    K, KR, C, R, CNT, IO,
    stride_kb, stride_kh, stride_kn, stride_krb,
    n_k, heads_kv, n_kb,
    D: tl.constexpr, DP: tl.constexpr, BLOCK: tl.constexpr, HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    kb = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads_kv
    hk = pid_bh % heads_kv
    offs_k = kb * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, DP)
    kin = offs_k < n_k
    kmask = kin[:, None] & (offs_d[None, :] < D)
    k = tl.load(
        K + b * stride_kb + hk * stride_kh + offs_k[:, None] * stride_kn + offs_d[None, :],
        mask=kmask,
        other=0.0,
    )
    if COUNT_IO:
        _count(IO, 1, kmask)
    real = kin
    if HAS_KR:
        kr = tl.load(KR + b * stride_krb + offs_k, mask=kin, other=0)
        if COUNT_IO:
            _count(IO, 4, kin)
        real = real & (kr != 0)
    k = k.to(tl.float32)
    kmax = tl.max(tl.where(real[:, None], k, float("-inf")), 0)
    kmin = tl.min(tl.where(real[:, None], k, float("inf")), 0)
    cnt = tl.sum(real.to(tl.int32), 0)
    centre = tl.where(cnt > 0, 0.5 * (kmax + kmin), 0.0)
    radius = tl.where(cnt > 0, 0.5 * (kmax - kmin), 0.0)
    base = pid_bh * n_kb + kb
    dm = offs_d < D
    tl.store(C + base * D + offs_d, centre, mask=dm)
    tl.store(R + base * D + offs_d, radius, mask=dm)
    tl.store(CNT + base, cnt)
    if COUNT_IO:
        _count(IO, 4, dm)
        _count(IO, 4, dm)
        _count(IO, 4, cnt >= 0)


@triton.jit
def _always_kept(qb, n_q, n_kb, offset, BLOCK: tl.constexpr, CAUSAL: tl.constexpr):
    """First and last key block of the local band of query block ``qb`` (the sink block 0 is kept besides)."""
    first = qb * BLOCK + offset
    last = tl.minimum((qb + 1) * BLOCK, n_q) - 1 + offset
    lo = tl.maximum(first, 0) // BLOCK
    if CAUSAL:
        lo = lo - 1
    hi = tl.minimum(tl.maximum(last, 0) // BLOCK, n_kb - 1)
    if last < 0:
        hi = -1
    return tl.maximum(lo, 0), hi


@triton.jit
def _absorb(q, offs_q, kb, k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, n_q, n_k, offset, scale,
            m_i, l_i, acc, IO, offs_d, dmask,
            BLOCK: tl.constexpr, CAUSAL: tl.constexpr, HAS_KR: tl.constexpr, WITH_V: tl.constexpr,
            COUNT_IO: tl.constexpr):  # fmt: skip
    """Online-softmax update of (m, l, acc) with key block ``kb`` (acc untouched unless WITH_V)."""
    offs_k = kb * BLOCK + tl.arange(0, BLOCK)
    kin = offs_k < n_k
    kmask = kin[:, None] & dmask
    k = tl.load(k_base + offs_k[:, None] * stride_kn + offs_d[None, :], mask=kmask, other=0.0)
    if COUNT_IO:
        _count(IO, 1, kmask)
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
    if WITH_V:
        v = tl.load(v_base + offs_k[:, None] * stride_vn + offs_d[None, :], mask=kmask, other=0.0)
        if COUNT_IO:
            _count(IO, 2, kmask)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    return m_new, l_i, acc


@triton.jit
def _local_kernel(
    Q, K, KR, LZ, IO,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_krb,
    n_q, n_k, heads, groups, n_kb, scale, offset,
    D: tl.constexpr, DP: tl.constexpr, BLOCK: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    qb = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    hk = h // groups
    offs_q = qb * BLOCK + tl.arange(0, BLOCK)
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
    k_base = K + b * stride_kb + hk * stride_kh
    m_i = tl.full((BLOCK,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, DP), tl.float32)
    lo, hi = _always_kept(qb, n_q, n_kb, offset, BLOCK, CAUSAL)
    if lo > 0:  # the sink block, unless the band already holds it
        m_i, l_i, acc = _absorb(q, offs_q, 0, k_base, k_base, KR, b, stride_kn, stride_kn, stride_krb, n_q, n_k,
                                offset, scale, m_i, l_i, acc, IO, offs_d, dmask,
                                BLOCK, CAUSAL, HAS_KR, False, COUNT_IO)  # fmt: skip
    for kb in range(lo, hi + 1):
        m_i, l_i, acc = _absorb(q, offs_q, kb, k_base, k_base, KR, b, stride_kn, stride_kn, stride_krb, n_q, n_k,
                                offset, scale, m_i, l_i, acc, IO, offs_d, dmask,
                                BLOCK, CAUSAL, HAS_KR, False, COUNT_IO)  # fmt: skip
    lz = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
    qin = offs_q < n_q
    tl.store(LZ + pid_bh * n_q + offs_q, lz, mask=qin)
    if COUNT_IO:
        _count(IO, 5, qin)


@triton.jit
def _score_kernel(
    Q, LZ, C, R, CNT, W, IO,
    stride_qb, stride_qh, stride_qn,
    n_q, heads, groups, n_qb, n_kb, scale, offset,
    D: tl.constexpr, DP: tl.constexpr, BLOCK: tl.constexpr, TILE: tl.constexpr, KC: tl.constexpr,
    CAUSAL: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    tile = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    bhk = b * (heads // groups) + h // groups
    ROWS: tl.constexpr = TILE * BLOCK
    offs_q = tile * ROWS + tl.arange(0, ROWS)
    offs_d = tl.arange(0, DP)
    dmask = offs_d[None, :] < D
    qin = offs_q < n_q
    qmask = qin[:, None] & dmask
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_q[:, None] * stride_qn + offs_d[None, :],
        mask=qmask,
        other=0.0,
    )
    lz = tl.load(LZ + pid_bh * n_q + offs_q, mask=qin, other=float("-inf"))
    if COUNT_IO:
        _count(IO, 0, qmask)
        _count(IO, 5, qin)
    q = q.to(tl.float32)
    qa = tl.abs(q)
    # per query block of the tile: the band of always-kept blocks (their scores are not needed)
    qbs = tile * TILE + tl.arange(0, TILE)
    first = qbs * BLOCK + offset
    last = tl.minimum((qbs + 1) * BLOCK, n_q) - 1 + offset
    band_lo = tl.maximum(first, 0) // BLOCK
    if CAUSAL:
        band_lo = band_lo - 1
    band_hi = tl.where(last < 0, -1, tl.maximum(last, 0) // BLOCK)
    for c0 in range(0, n_kb, KC):
        offs_c = c0 + tl.arange(0, KC)
        cin = offs_c < n_kb
        cmask = cin[:, None] & dmask
        sbase = (bhk * n_kb + offs_c)[:, None] * D + offs_d[None, :]
        cen = tl.load(C + sbase, mask=cmask, other=0.0)
        rad = tl.load(R + sbase, mask=cmask, other=0.0)
        cnt = tl.load(CNT + bhk * n_kb + offs_c, mask=cin, other=0)
        if COUNT_IO:
            _count(IO, 4, cmask)
            _count(IO, 4, cmask)
            _count(IO, 4, cin)
        ub = (
            tl.dot(q, tl.trans(cen), input_precision="ieee")
            + tl.dot(qa, tl.trans(rad), input_precision="ieee")
        ) * scale
        logw = tl.log(tl.where(cnt > 0, cnt, 1).to(tl.float32))[None, :] + ub - lz[:, None]
        ok = qin[:, None] & (cnt > 0)[None, :]
        logw = tl.where(ok, logw, float("-inf"))
        w = tl.max(tl.reshape(logw, (TILE, BLOCK, KC)), 1)  # [TILE, KC]
        band = (offs_c[None, :] >= band_lo[:, None]) & (offs_c[None, :] <= band_hi[:, None])
        band = band | (offs_c[None, :] == 0)
        if CAUSAL:
            future = offs_c[None, :] > band_hi[:, None]
            w = tl.where(future, float("-inf"), w)
        w = tl.where(band, float("-inf"), w)
        wmask = (qbs < n_qb)[:, None] & cin[None, :]
        tl.store(W + (pid_bh * n_qb + qbs)[:, None] * n_kb + offs_c[None, :], w, mask=wmask)
        if COUNT_IO:
            _count(IO, 4, wmask)


@triton.jit
def _sparse_fwd_kernel(
    Q, K, V, Out, KR, LIST, NLIST, LOGS, LZ, P, IO,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on, stride_krb,
    n_q, n_k, heads, groups, n_qb, max_list, scale, offset,
    D: tl.constexpr, DP: tl.constexpr, BLOCK: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KR: tl.constexpr, COUNT_IO: tl.constexpr,
):  # fmt: skip
    qb = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    hk = h // groups
    offs_q = qb * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, DP)
    dmask = offs_d[None, :] < D
    qin = offs_q < n_q
    qmask = qin[:, None] & dmask
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_q[:, None] * stride_qn + offs_d[None, :],
        mask=qmask,
        other=0.0,
    )
    if COUNT_IO:
        _count(IO, 0, qmask)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    m_i = tl.full((BLOCK,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, DP), tl.float32)
    g = pid_bh * n_qb + qb
    n_list = tl.load(NLIST + g)
    if COUNT_IO:
        _count(IO, 4, n_list >= 0)
    for i in range(0, n_list):
        kb = tl.load(LIST + g * max_list + i)
        if COUNT_IO:
            _count(IO, 4, kb >= 0)
        m_i, l_i, acc = _absorb(q, offs_q, kb, k_base, v_base, KR, b, stride_kn, stride_vn, stride_krb, n_q, n_k,
                                offset, scale, m_i, l_i, acc, IO, offs_d, dmask,
                                BLOCK, CAUSAL, HAS_KR, True, COUNT_IO)  # fmt: skip
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + b * stride_ob + h * stride_oh + offs_q[:, None] * stride_on + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=qmask)  # fmt: skip
    # certified skipped mass: p = S·Z_loc / (Z_kept + S·Z_loc), S = exp(log_s) (0 when nothing was skipped)
    log_s = tl.load(LOGS + g)
    lz_loc = tl.load(LZ + pid_bh * n_q + offs_q, mask=qin, other=float("-inf"))
    lz = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
    a = log_s + lz_loc
    p = tl.where(a == float("-inf"), 0.0, tl.sigmoid(a - lz))
    p = tl.where(lz == float("-inf"), tl.where(a == float("-inf"), 0.0, 1.0), p)
    tl.store(P + pid_bh * n_q + offs_q, p, mask=qin)
    if COUNT_IO:
        _count(IO, 3, qmask)
        _count(IO, 4, log_s == log_s)
        _count(IO, 5, qin)
        _count(IO, 5, qin)


class SparseResult(NamedTuple):
    """Output of :func:`blocksparse_forward`: ``output`` [B, H, n_q, D]; ``mass_bound`` [B, H, n_q] certified
    skipped attention mass (``<= eps``); ``kept`` [B, H, n_q_blocks, n_k_blocks] bool; ``kept_fraction`` kept
    (query block, key block) pairs over the pairs with a visible real key."""

    output: torch.Tensor
    mass_bound: torch.Tensor
    kept: torch.Tensor
    kept_fraction: float


def _band(n_q: int, n_k: int, block: int, causal: bool, offset: int, device) -> torch.Tensor:
    """[n_qb, n_kb] bool: the always-kept blocks (sink + local band), as the kernels define them."""
    n_qb, n_kb = triton.cdiv(n_q, block), triton.cdiv(n_k, block)
    qb = torch.arange(n_qb, device=device)
    first = qb * block + offset
    last = torch.clamp((qb + 1) * block, max=n_q) - 1 + offset
    lo = (first.clamp(min=0) // block - int(causal)).clamp(min=0)
    hi = torch.where(last < 0, torch.full_like(last, -1), (last.clamp(min=0) // block).clamp(max=n_kb - 1))
    kb = torch.arange(n_kb, device=device)
    band = (kb[None, :] >= lo[:, None]) & (kb[None, :] <= hi[:, None])
    band[:, 0] = True
    return band


def select_blocks(logw: torch.Tensor, band: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Host step: ``logw`` [G, n_qb, n_kb] block scores (−inf = not visible or always kept). Skip the lightest
    candidates while ``Σ_skip w <= eps/(1−eps)``. Returns ``kept`` [G, n_qb, n_kb] bool and ``log S`` [G, n_qb]."""
    budget = (
        math.log(eps) - math.log1p(-eps) if 0.0 < eps < 1.0 else (float("-inf") if eps <= 0 else float("inf"))
    )
    cand = logw > float("-inf")
    ordered, order = torch.sort(logw.masked_fill(~cand, float("inf")), dim=-1)  # lightest first
    finite = torch.isfinite(ordered)
    cum = torch.logcumsumexp(ordered.masked_fill(~finite, float("-inf")), dim=-1)
    skip_sorted = finite & (cum <= budget)
    skip = torch.zeros_like(cand).scatter(-1, order, skip_sorted)
    log_s = torch.logsumexp(logw.masked_fill(~skip, float("-inf")), dim=-1)
    kept = (cand & ~skip) | band
    return kept, log_s


def blocksparse_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    eps: float = 1e-3,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    offset: int | None = None,
    block: int = 64,
    tile_blocks: int = 4,
    key_chunk: int = 32,
    io: torch.Tensor | None = None,
) -> SparseResult:
    """Certified block-sparse attention (module docstring), same layout and conventions as
    :func:`~._flash.flash_forward`. ``block`` is the query and key block size, ``tile_blocks`` the query blocks
    per scoring program (the summaries are streamed once per tile), ``key_chunk`` the key blocks scored at once."""
    bsz, heads, n_q, d = q.shape
    heads_kv, n_k = k.shape[1], k.shape[2]
    if v.shape[-1] != d:
        raise ValueError(f"value head dim {v.shape[-1]} must equal the query head dim {d}")
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16; got {block}")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    dev = q.device
    n_qb, n_kb = triton.cdiv(n_q, block), triton.cdiv(n_k, block)
    out = torch.zeros(bsz, heads, n_q, d, device=dev, dtype=q.dtype)
    p = torch.zeros(bsz, heads, n_q, device=dev, dtype=torch.float32)
    if n_q == 0 or n_k == 0:
        return SparseResult(out, p, torch.zeros(bsz, heads, n_qb, n_kb, dtype=torch.bool, device=dev), 1.0)
    kr = None if key_padding_mask is None else key_padding_mask.to(torch.int8).contiguous()
    dummy = torch.zeros(6, dtype=torch.int64, device=dev)
    kr_arg = kr if kr is not None else dummy
    io_arg = io if io is not None else dummy
    stride_kr = kr.stride(0) if kr is not None else 0
    dp = max(16, triton.next_power_of_2(d))
    offset = n_k - n_q if offset is None else int(offset)
    flags = dict(CAUSAL=bool(causal), HAS_KR=kr is not None, COUNT_IO=io is not None)

    centre = torch.empty(bsz * heads_kv, n_kb, d, device=dev, dtype=torch.float32)
    radius = torch.empty_like(centre)
    count = torch.empty(bsz * heads_kv, n_kb, device=dev, dtype=torch.int32)
    _summary_kernel[(n_kb, bsz * heads_kv)](
        k, kr_arg, centre, radius, count, io_arg,
        k.stride(0), k.stride(1), k.stride(2), stride_kr, n_k, heads_kv, n_kb,
        D=d, DP=dp, BLOCK=block, HAS_KR=kr is not None, COUNT_IO=io is not None,
    )  # fmt: skip

    log_z_loc = torch.empty(bsz * heads, n_q, device=dev, dtype=torch.float32)
    _local_kernel[(n_qb, bsz * heads)](
        q, k, kr_arg, log_z_loc, io_arg,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2), stride_kr,
        n_q, n_k, heads, heads // heads_kv, n_kb, float(scale), offset,
        D=d, DP=dp, BLOCK=block, **flags,
    )  # fmt: skip

    tile = max(1, min(tile_blocks, triton.next_power_of_2(n_qb)))
    tile = 1 << (tile.bit_length() - 1)
    kc = max(16, min(key_chunk, triton.next_power_of_2(n_kb)))
    logw = torch.empty(bsz * heads, n_qb, n_kb, device=dev, dtype=torch.float32)
    _score_kernel[(triton.cdiv(n_qb, tile), bsz * heads)](
        q, log_z_loc, centre, radius, count, logw, io_arg,
        q.stride(0), q.stride(1), q.stride(2),
        n_q, heads, heads // heads_kv, n_qb, n_kb, float(scale), offset,
        D=d, DP=dp, BLOCK=block, TILE=tile, KC=kc, CAUSAL=bool(causal), COUNT_IO=io is not None,
    )  # fmt: skip

    band = _band(n_q, n_k, block, causal, offset, dev)
    kept, log_s = select_blocks(logw, band.expand_as(logw), eps)
    # a block with no visible real key adds nothing: drop it from the list (it stays "kept" for bookkeeping
    # only if it is in the band)
    n_list = kept.sum(-1).to(torch.int32)
    max_list = int(n_list.max())
    lists = (
        torch.argsort((~kept).to(torch.int8), dim=-1, stable=True)[..., :max_list]
        .to(torch.int32)
        .contiguous()
    )
    _sparse_fwd_kernel[(n_qb, bsz * heads)](
        q, k, v, out, kr_arg, lists, n_list.contiguous(), log_s.contiguous(), log_z_loc, p, io_arg,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2), stride_kr,
        n_q, n_k, heads, heads // heads_kv, n_qb, max_list, float(scale), offset,
        D=d, DP=dp, BLOCK=block, **flags,
    )  # fmt: skip
    visible = (logw > float("-inf")) | band
    kept_fraction = float((kept & visible).sum()) / max(int(visible.sum()), 1)
    return SparseResult(out, p.reshape(bsz, heads, n_q), kept.reshape(bsz, heads, n_qb, n_kb), kept_fraction)
