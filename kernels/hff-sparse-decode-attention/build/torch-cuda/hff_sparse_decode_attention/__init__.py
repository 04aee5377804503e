"""hff-sparse-decode-attention: page-sparse attention for one decode step, in Triton (forward only).

:func:`sparse_decode` has the semantics of the hf_fundamentals reference
``hf_fundamentals.attention.sparse_decode.sparse_decode_attention`` (nothing here imports it: torch and triton
only): pages of ``page_size`` tokens summarised by the elementwise min/max of their keys (Quest, arXiv
2406.10774), a bound and a ranking score per page (Triton), the smallest set of pages whose estimated mass
``softmax(score + log count)`` reaches ``top_p`` with the sink / recent-window floors and a cap (torch: a sort and
a cumulative sum), shared by the query heads of each KV group, then attention over the kept pages read in place
with an online softmax (Triton), and the certified bound ``U / (U + Z_kept)`` on the dropped attention mass.

On CPU tensors the kernels run only under ``TRITON_INTERPRET=1`` (slow; for tests)."""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import triton

from ._decode import _decode_kernel, _score_kernel

__all__ = ["DecodeResult", "page_scores", "sparse_decode"]


class DecodeResult(NamedTuple):
    """``output`` ``[b, h_q, d]``; ``keep`` ``[b, h_kv, n_p]`` bool; ``mass_bound`` ``[b, h_q]`` (certified bound on
    the dropped attention mass); ``lse`` ``[b, h_q]`` (log partition function over the kept keys)."""

    output: torch.Tensor
    keep: torch.Tensor
    mass_bound: torch.Tensor
    lse: torch.Tensor


def _check_device(*tensors: torch.Tensor) -> None:
    if not all(t.is_cuda for t in tensors) and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "hff-sparse-decode-attention: the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 set before "
            "the kernel module is imported, for CPU tests); use the PyTorch reference on CPU"
        )


def page_scores(
    query: torch.Tensor, kmin: torch.Tensor, kmax: torch.Tensor, scaling: float, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ub, score)`` ``[b, h_q, n_p]`` float32 from query ``[b, h_q, d]`` and summaries ``[b, h_kv, n_p, d]``."""
    _check_device(query, kmin, kmax)
    b, h_q, d = query.shape
    h_kv, n_p = kmin.shape[1], kmin.shape[2]
    kmin, kmax, query = kmin.contiguous(), kmax.contiguous(), query.contiguous()
    ub = torch.empty(b, h_q, n_p, device=query.device, dtype=torch.float32)
    sc = torch.empty_like(ub)
    block_p = 64
    _score_kernel[(b * h_q, triton.cdiv(n_p, block_p))](
        query, kmin, kmax, ub, sc, n_p, float(scaling), float(alpha),
        query.stride(0), query.stride(1), kmin.stride(0), kmin.stride(1), kmin.stride(2), ub.stride(0), ub.stride(1),
        H_Q=h_q, G=h_q // h_kv, D=d, BLOCK_P=block_p, BLOCK_D=triton.next_power_of_2(d),
    )  # fmt: skip
    return ub, sc


def _counts_and_floors(key_valid, b, n, page_size, sink_pages, window, device):
    n_p = -(-n // page_size)
    pad = n_p * page_size - n
    if key_valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=device)
    else:
        valid = key_valid[:, :n].to(torch.bool)
    counts = torch.nn.functional.pad(valid.float(), (0, pad)).view(b, n_p, page_size).sum(-1)
    pos = torch.arange(n, device=device)
    first = torch.where(valid, pos, n).amin(-1).clamp(max=n - 1)
    last = torch.where(valid, pos, -1).amax(-1).clamp(min=0)
    page = torch.arange(n_p, device=device)[None, :]
    p_first, p_last = (first // page_size)[:, None], (last // page_size)[:, None]
    p_win = ((last - max(window, 1) + 1).clamp(min=0) // page_size)[:, None]
    floors = ((page >= p_first) & (page < p_first + sink_pages)) | ((page >= p_win) & (page <= p_last))
    return counts, floors


def _select(score, counts, floors, h_kv, top_p, max_fraction):
    """``(order, n_keep)``: floors first, then pages by decreasing group-mean estimated mass; kept = a prefix."""
    b, h_q, n_p = score.shape
    visible = counts > 0
    if top_p >= 1.0:
        order = torch.argsort((~visible).to(torch.int8), dim=-1, stable=True)[:, None].expand(b, h_kv, n_p)
        return order, visible.sum(-1, keepdim=True).expand(b, h_kv)
    est = torch.softmax(score + counts.log()[:, None], -1).view(b, h_kv, h_q // h_kv, n_p).mean(2)
    fl = (floors & visible)[:, None]
    key = torch.where(fl, est + 2.0, est).masked_fill(~visible[:, None], -1.0)
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    est_sorted = est.gather(-1, order)
    before = torch.cumsum(est_sorted, -1) - est_sorted
    n_floor, n_vis = fl.sum(-1), visible.sum(-1, keepdim=True)
    cap = torch.ceil(max_fraction * n_vis.float()).long()
    n_mass = (before < top_p).sum(-1)
    return order, torch.maximum(n_floor, torch.minimum(torch.minimum(n_mass, n_floor + cap), n_vis))


def sparse_decode(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kmin: torch.Tensor,
    kmax: torch.Tensor,
    *,
    n: int | None = None,
    key_valid: torch.Tensor | None = None,
    page_size: int = 16,
    scaling: float | None = None,
    top_p: float = 0.99,
    sink_pages: int = 1,
    window: int = 64,
    max_fraction: float = 0.24,
    alpha: float = 0.5,
) -> DecodeResult:
    """One decode step: query ``[b, h_q, d]``, key/value ``[b, h_kv, >= n, d]`` (a cache buffer: only the first
    ``n`` tokens are read), page summaries ``kmin``/``kmax`` ``[b, h_kv, >= ceil(n/P), d]``, ``key_valid``
    ``[b, n]`` (False: padding). ``page_size`` must be a power of two (a Triton block)."""
    _check_device(query, key, value)
    if page_size & (page_size - 1):
        raise ValueError(f"page_size must be a power of two; got {page_size}")
    b, h_q, d = query.shape
    h_kv = key.shape[1]
    n = key.shape[2] if n is None else n
    n_p = -(-n // page_size)
    scaling = d**-0.5 if scaling is None else scaling
    ub, score = page_scores(query, kmin[:, :, :n_p], kmax[:, :, :n_p], scaling, alpha)
    counts, floors = _counts_and_floors(key_valid, b, n, page_size, sink_pages, window, query.device)
    order, n_keep = _select(score, counts, floors, h_kv, top_p, max_fraction)
    idx = order.to(torch.int32).contiguous()
    n_keep32 = n_keep.to(torch.int32).contiguous()
    out = torch.empty(b, h_q, d, device=query.device, dtype=torch.float32)
    lse = torch.empty(b, h_q, device=query.device, dtype=torch.float32)
    valid = key_valid[:, :n].to(torch.int8).contiguous() if key_valid is not None else n_keep32
    q = query.contiguous()
    _decode_kernel[(b * h_kv,)](
        q, key, value, idx, n_keep32, valid, out, lse, n, float(scaling),
        q.stride(0), q.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), idx.stride(0), idx.stride(1),
        out.stride(0), out.stride(1), lse.stride(0), valid.stride(0) if key_valid is not None else 0,
        H_KV=h_kv, G=h_q // h_kv, P=page_size, D=d, BLOCK_G=max(triton.next_power_of_2(h_q // h_kv), 1),
        BLOCK_D=triton.next_power_of_2(d), HAS_VALID=key_valid is not None,
    )  # fmt: skip
    rank_ok = torch.arange(n_p, device=query.device) < n_keep[..., None]
    keep = torch.zeros(b, h_kv, n_p, dtype=torch.bool, device=query.device).scatter_(-1, order, rank_ok)
    logw = (ub + counts.log()[:, None]).view(b, h_kv, h_q // h_kv, n_p)
    dropped = logw.masked_fill(keep[:, :, None], -math.inf).view(b, h_q, n_p)
    mass_bound = torch.sigmoid(torch.logsumexp(dropped, -1) - lse)
    return DecodeResult(out.to(query.dtype), keep, mass_bound, lse)
