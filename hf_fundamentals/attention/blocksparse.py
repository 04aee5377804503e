"""Certified block-sparse attention: exact softmax over a subset of key blocks, chosen so that the skipped blocks
provably carry at most ``eps`` of every query's attention mass, with a per-query, per-dimension error bound.

Same layout and conventions as :mod:`hf_fundamentals.attention.lowrank` (GQA by repeating k/v, causal aligned to
the end of the keys, ``key_padding_mask`` True = real, queries that see no real key get zeros).

Algorithm (Quest-style summaries, https://hanlab.mit.edu/projects/quest):

1. Keys are cut into blocks of ``block_size``. Block b keeps the per-dimension min and max of its real keys. For
   every key k of the block, ``q_i·k_i <= max(q_i·min_i, q_i·max_i)`` per dimension (a linear function of
   ``k_i`` on an interval peaks at an end), so ``ub_b(q) = s·Σ_i max(q_i·min_i, q_i·max_i) >= s·q·k``.
   It is evaluated as ``s·(q·c_b + |q|·r_b)`` with centre ``c = (max+min)/2`` and radius ``r = (max-min)/2``
   (the identity ``max(a·x, a·y) = a(x+y)/2 + |a|(y-x)/2`` for ``y >= x``), i.e. two matmuls.
2. A block with ``n_b(q)`` real keys visible to q contributes at most ``U_b(q) = n_b(q)·exp(ub_b(q))`` to
   q's normaliser. Everything is kept in log space, so no max shift is needed.
3. Queries are processed in blocks of ``block_size``; one set of key blocks is chosen per query block
   (kernel-friendly). Always kept: the sink block 0 and the local blocks, i.e. the key blocks that hold the
   positions ``i + n_k - n_q`` of the block's queries (the "diagonal"), plus, under ``causal``, the key block
   just before them (so every query sees at least ``block_size`` preceding keys exactly).
4. The remaining blocks are ordered by their heaviest normalised bound ``max_q U_b(q)/Z_kept(q)`` and added
   one at a time (their exact logits update ``Z_kept``, which only grows) until, for EVERY query of the block,
   ``p(q) = U_skip(q)/(Z_kept(q) + U_skip(q)) <= eps``, where ``U_skip`` sums the bounds of the skipped blocks.
5. The output is the exact softmax over the kept blocks. Writing the exact output as
   ``o = (Z_k·o_k + Z_s·o_s)/(Z_k + Z_s)`` gives ``o − o_k = Z_s/(Z_k+Z_s)·(o_s − o_k)``; ``Z_s/(Z_k+Z_s)``
   is increasing in ``Z_s <= U_skip``, so it is at most ``p``, and ``o_s``, ``o_k`` are convex combinations of
   visible values, so ``|o − o_k| <= p·(max_j v_j − min_j v_j)`` per output dimension, over the real keys the
   query can see. ``error_bound`` is this per-dimension bound; ``mass_bound`` is ``p``.

This reference is what the Triton kernels are tested against. The block choice runs under ``no_grad``; the
final softmax over the kept blocks is differentiable with respect to q, k and v.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from hf_fundamentals.attention.lowrank import check_inputs, compute_dtype, repeat_kv

_GREEDY_CHUNK = 8
"""Candidate blocks whose exact mass the greedy choice computes per step (it stops at the same block either way)."""

_CHUNK_ELEMENTS = 1 << 26
"""Elements of gathered keys, values and logits the final softmax holds at once (256 MB in float32)."""


class BlockSparseOutput(NamedTuple):
    """Result of :func:`blocksparse_attention`.

    ``output`` [batch, heads, n_q, d_v] in the input dtype; ``error_bound`` [batch, heads, n_q, d_v] certified
    bound on ``|output − exact|`` per query and output dimension (take ``.amax(-1)`` for a per-query bound);
    ``kept_fraction`` kept (query block, key block) pairs over pairs with at least one visible real key;
    ``mass_bound`` [batch, heads, n_q] bound on the attention mass of the skipped keys (``<= eps``);
    ``kept_blocks`` [batch, heads, n_q_blocks, n_k_blocks] bool, the blocks that were computed."""

    output: Tensor
    error_bound: Tensor
    kept_fraction: float
    mass_bound: Tensor
    kept_blocks: Tensor


def key_block_summaries(k: Tensor, block_size: int, key_real: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per key block and dimension, the min and max over its real keys: two ``[..., n_blocks, d]`` tensors
    (zeros for a block with no real key). ``k`` is ``[..., n_k, d]``, ``key_real`` ``[..., n_k]`` bool."""
    n_k, d = k.shape[-2], k.shape[-1]
    nb = math.ceil(n_k / block_size)
    pad = nb * block_size - n_k
    real = torch.ones(k.shape[:-1], dtype=torch.bool, device=k.device) if key_real is None else key_real
    kp = F.pad(k, (0, 0, 0, pad)).reshape(*k.shape[:-2], nb, block_size, d)
    rp = F.pad(real, (0, pad), value=False).reshape(*k.shape[:-2], nb, block_size, 1)
    kmin = torch.where(rp, kp, torch.full_like(kp, float("inf"))).amin(-2)
    kmax = torch.where(rp, kp, torch.full_like(kp, float("-inf"))).amax(-2)
    empty = ~rp.any(-2)
    return kmin.masked_fill(empty, 0.0), kmax.masked_fill(empty, 0.0)


def logit_upper_bound(q: Tensor, kmin: Tensor, kmax: Tensor, scaling: float) -> Tensor:
    """``ub_b(q) = s·Σ_i max(q_i·min_bi, q_i·max_bi)`` for every query and key block: ``[..., n_q, n_blocks]``,
    computed as ``s·(q·centre + |q|·radius)`` (exact identity, two matmuls)."""
    centre = 0.5 * (kmax + kmin)
    radius = 0.5 * (kmax - kmin)
    return scaling * (q @ centre.transpose(-1, -2) + q.abs() @ radius.transpose(-1, -2))


def _value_range(v: Tensor, key_real: Tensor, causal: bool, n_q: int) -> Tensor:
    """Per query and dimension, max − min of v over the real keys the query can see (0 if it sees none)."""
    n_k = v.shape[-2]
    real = key_real[..., None]
    vmax = torch.where(real, v, torch.full_like(v, float("-inf")))
    vmin = torch.where(real, v, torch.full_like(v, float("inf")))
    if causal:
        vmax = torch.cummax(vmax, dim=-2).values
        vmin = torch.cummin(vmin, dim=-2).values
        last = torch.arange(n_q, device=v.device) + (n_k - n_q)  # last visible key of query i
        idx = last.clamp(0, max(n_k - 1, 0))
        vmax, vmin = vmax[..., idx, :], vmin[..., idx, :]
        sees = (last >= 0)[:, None]
        vmax = torch.where(sees, vmax, torch.full_like(vmax, float("-inf")))
    else:
        vmax = vmax.amax(-2, keepdim=True).expand(*v.shape[:-2], n_q, v.shape[-1])
        vmin = vmin.amin(-2, keepdim=True).expand(*v.shape[:-2], n_q, v.shape[-1])
    rng = vmax - vmin
    return torch.where(torch.isfinite(rng), rng, torch.zeros_like(rng))


def blocksparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    eps: float = 1e-3,
    block_size: int = 64,
    scaling: float | None = None,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> BlockSparseOutput:
    """Exact softmax attention over the key blocks that cannot be certified negligible: every query's skipped
    attention mass is provably ``<= eps`` and ``|output − exact| <= error_bound`` (see the module docstring)."""
    check_inputs(q, k, v, key_padding_mask)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; got {block_size!r}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1]; got {eps}")
    b, h, n_q, d = q.shape
    n_k, d_v = k.shape[2], v.shape[-1]
    cdt = compute_dtype(q.dtype)
    dev = q.device
    s = 1.0 / math.sqrt(d) if scaling is None else float(scaling)
    bs = block_size
    if n_q == 0 or n_k == 0:
        nqb, nkb = math.ceil(n_q / bs), math.ceil(n_k / bs)
        zeros = torch.zeros(b, h, n_q, d_v, dtype=cdt, device=dev)
        return BlockSparseOutput(
            zeros.to(q.dtype),
            zeros,
            1.0,
            zeros[..., 0],
            torch.zeros(b, h, nqb, nkb, dtype=torch.bool, device=dev),
        )

    qf = q.to(cdt)
    kf = repeat_kv(k.to(cdt), h)
    vf = repeat_kv(v.to(cdt), h)
    if key_padding_mask is None:
        real = torch.ones(b, h, n_k, dtype=torch.bool, device=dev)
    else:
        real = key_padding_mask.to(dev)[:, None, :].expand(b, h, n_k)
    offset = n_k - n_q
    nqb, nkb = math.ceil(n_q / bs), math.ceil(n_k / bs)
    groups = b * h * nqb

    qp = F.pad(qf, (0, 0, 0, nqb * bs - n_q))
    kp = F.pad(kf, (0, 0, 0, nkb * bs - n_k))
    vp = F.pad(vf, (0, 0, 0, nkb * bs - n_k))
    rp = F.pad(real, (0, nkb * bs - n_k), value=False)
    q_g = qp.reshape(groups, bs, d)  # one row per (batch, head, query block)
    k_bh = kp.reshape(b * h, nkb, bs, d)
    v_bh = vp.reshape(b * h, nkb, bs, d_v)
    r_bh = rp.reshape(b * h, nkb, bs)
    bh_of_g = torch.arange(groups, device=dev) // nqb
    qb_of_g = torch.arange(groups, device=dev) % nqb
    qpos = torch.arange(nqb * bs, device=dev).reshape(nqb, bs)
    kpos = torch.arange(nkb * bs, device=dev).reshape(nkb, bs)
    qpos_g = qpos[qb_of_g]  # [G, bs]
    q_real_g = qpos_g < n_q

    def visible(gi: Tensor, kidx: Tensor) -> Tensor:
        """[A, bs(q), ..., bs(k)] mask: key real and (if causal) not in the future; kidx is [A] or [A, m]."""
        kr = r_bh[bh_of_g[gi][:, None], kidx.reshape(len(gi), -1)]  # [A, m, bs]
        vis = kr.reshape(len(gi), 1, -1)
        if causal:
            kp_ = kpos[kidx.reshape(len(gi), -1)].reshape(len(gi), 1, -1)
            vis = vis & (kp_ <= qpos_g[gi][:, :, None] + offset)
        return vis

    with torch.no_grad():
        kmin, kmax = key_block_summaries(kf, bs, real)
        ub = logit_upper_bound(qp, kmin, kmax, s)  # [b, h, nqb*bs, nkb]
        # n_b(i): real keys of block b visible to query i, from a prefix count of real keys.
        csum = F.pad(torch.cumsum(rp.to(torch.int64), dim=-1), (1, 0))  # [b, h, nkb*bs + 1]
        start = torch.arange(nkb, device=dev) * bs
        if causal:
            hi = (qpos.reshape(-1, 1) + offset + 1).clamp(min=start, max=start + bs)  # [nqb*bs, nkb]
        else:
            hi = (start + bs).expand(nqb * bs, nkb)
        count = csum[..., hi] - csum[..., start].unsqueeze(-2)
        log_u = torch.where(count > 0, torch.log(count.clamp(min=1).to(cdt)) + ub, float("-inf"))
        log_u = log_u.reshape(groups, bs, nkb).masked_fill(~q_real_g[..., None], float("-inf"))
        nonempty = (log_u > float("-inf")).any(1)  # [G, nkb]: some real query of the block sees a real key

        # Always-kept blocks: the sink and the local ("diagonal") blocks (+ the one before them if causal).
        first = qb_of_g * bs + offset
        last = torch.clamp((qb_of_g + 1) * bs, max=n_q) - 1 + offset
        lo_blk = torch.div(first, bs, rounding_mode="floor") - int(causal)
        hi_blk = torch.div(last, bs, rounding_mode="floor")
        blk = torch.arange(nkb, device=dev)
        kept = (blk[None, :] >= lo_blk[:, None]) & (blk[None, :] <= hi_blk[:, None])
        kept[:, 0] = True

        log_z = torch.full((groups, bs), float("-inf"), dtype=cdt, device=dev)

        def absorb(gi: Tensor, kidx: Tensor) -> None:
            """Add the exact mass of key block kidx[a] to the normaliser of query block gi[a]."""
            logits = s * q_g[gi] @ k_bh[bh_of_g[gi], kidx].transpose(-1, -2)
            logits = logits.masked_fill(~visible(gi, kidx), float("-inf"))
            log_z[gi] = torch.logaddexp(log_z[gi], torch.logsumexp(logits, dim=-1))

        for kb in range(nkb):
            gi = torch.nonzero(kept[:, kb]).flatten()
            if len(gi):
                absorb(gi, torch.full_like(gi, kb))

        thr = (
            math.log(eps) - math.log1p(-eps)
            if 0.0 < eps < 1.0
            else (float("-inf") if eps == 0 else float("inf"))
        )

        def skipped(kept: Tensor) -> Tensor:
            """log U_skip per query: log-sum of the bounds of the blocks not kept."""
            return torch.logsumexp(log_u.masked_fill(kept[:, None, :], float("-inf")), dim=-1)

        gap = log_u - log_z[..., None]
        score = torch.where(log_u == float("-inf"), torch.full_like(gap, float("-inf")), gap).amax(1)
        score = score.masked_fill(kept | ~nonempty, float("-inf"))
        order = torch.argsort(score, dim=-1, descending=True, stable=True)
        n_cand = (score > float("-inf")).sum(-1)
        # Greedy: keep candidates in score order until every real query has U_skip/(Z_kept + U_skip) <= eps.
        # U_skip after the first t candidates are kept is a suffix log-sum of the ordered bounds (one pass);
        # Z_kept grows by the exact mass of each block taken, computed _GREEDY_CHUNK blocks at a time.
        pos = torch.arange(nkb + 1, device=dev)
        is_cand = pos[None, :nkb] < n_cand[:, None]
        ordered_u = torch.gather(log_u, 2, order[:, None, :].expand(-1, bs, -1))
        ordered_u = ordered_u.masked_fill(~is_cand[:, None, :], float("-inf"))
        suffix = torch.flip(torch.logcumsumexp(torch.flip(ordered_u, [-1]), dim=-1), [-1])
        suffix = F.pad(suffix, (0, 1), value=float("-inf"))  # [G, bs, nkb + 1]: U_skip after t candidates
        order_pad = F.pad(order, (0, 1), value=0)
        n_take = torch.zeros(groups, dtype=torch.long, device=dev)
        active = torch.ones(groups, dtype=torch.bool, device=dev)
        for s0 in range(0, nkb + 1, _GREEDY_CHUNK):
            gi = torch.nonzero(active).flatten()
            if not len(gi):
                break
            cols = pos[s0 : s0 + _GREEDY_CHUNK]
            cidx = order_pad[gi][:, cols]  # [A, c]
            valid = cols[None, :] < n_cand[gi][:, None]
            logits = s * q_g[gi] @ k_bh[bh_of_g[gi][:, None], cidx].reshape(len(gi), -1, d).transpose(-1, -2)
            vis = visible(gi, cidx) & valid.repeat_interleave(bs, dim=1)[:, None, :]
            mass = torch.logsumexp(logits.masked_fill(~vis, float("-inf")).reshape(len(gi), bs, -1, bs), -1)
            after = torch.logaddexp(log_z[gi][..., None], torch.logcumsumexp(mass, dim=-1))  # Z after block j
            before = torch.cat([log_z[gi][..., None], after[..., :-1]], dim=-1)  # Z before block j is taken
            u_at = suffix[gi][..., cols]
            ok = ((u_at == float("-inf")) | (u_at - before <= thr) | ~q_real_g[gi][..., None]).all(
                1
            )  # [A, c]
            found = ok.any(-1)
            first = torch.argmax(ok.to(torch.int8), dim=-1)
            done, rest = gi[found], gi[~found]
            n_take[done] = s0 + first[found]
            log_z[done] = torch.gather(before[found], 2, first[found][:, None, None].expand(-1, bs, 1))[
                ..., 0
            ]
            log_z[rest] = after[~found][..., -1]
            n_take[rest] = s0 + len(cols)
            active[done] = False
        kept |= torch.zeros_like(kept).scatter(1, order, pos[None, :nkb] < n_take[:, None])

    # Exact (differentiable) softmax over the kept blocks of each query block, in chunks of query blocks so the
    # gathered keys and the logits stay within about _CHUNK_ELEMENTS elements.
    n_kept = int(kept.sum(-1).max())
    sel = torch.argsort(kept.to(torch.int8), dim=-1, descending=True, stable=True)[:, :n_kept]  # [G, m]
    sel_ok = torch.gather(kept, 1, sel)
    per_group = n_kept * bs * (d + d_v + bs)
    step = max(1, _CHUNK_ELEMENTS // max(per_group, 1))
    outs, log_zs = [], []
    for lo in range(0, groups, step):
        g = torch.arange(lo, min(lo + step, groups), device=dev)
        keys = k_bh[bh_of_g[g][:, None], sel[g]].reshape(len(g), n_kept * bs, d)
        vals = v_bh[bh_of_g[g][:, None], sel[g]].reshape(len(g), n_kept * bs, d_v)
        mask = visible(g, sel[g]) & sel_ok[g].repeat_interleave(bs, dim=1)[:, None, :]
        logits = (s * q_g[g] @ keys.transpose(-1, -2)).masked_fill(~mask, float("-inf"))
        m = logits.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
        w = torch.exp(logits - m)
        den = w.sum(-1, keepdim=True)
        outs.append((w @ vals) / torch.where(den > 0, den, torch.ones_like(den)))
        with torch.no_grad():
            log_zs.append(torch.logsumexp(logits.detach(), dim=-1))
    out = torch.cat(outs).reshape(b, h, nqb * bs, d_v)[:, :, :n_q]

    with torch.no_grad():
        log_z_final = torch.cat(log_zs)
        log_r = skipped(kept)
        p = torch.where(log_r == float("-inf"), torch.zeros_like(log_r), torch.sigmoid(log_r - log_z_final))
        p = p.reshape(b, h, nqb * bs)[:, :, :n_q]
        error_bound = p[..., None] * _value_range(vf, real, causal, n_q)
        n_pairs = int(nonempty.sum())
        kept_fraction = float((kept & nonempty).sum()) / n_pairs if n_pairs else 1.0
    return BlockSparseOutput(out.to(q.dtype), error_bound, kept_fraction, p, kept.reshape(b, h, nqb, nkb))
