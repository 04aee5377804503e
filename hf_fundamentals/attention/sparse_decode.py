"""Query-aware page-sparse attention for decoding (one new query per sequence), with an adaptive budget.

The KV cache is cut into pages of ``P`` consecutive tokens. Each page of each KV head keeps an elementwise
summary of its (post-RoPE) keys, ``kmin`` and ``kmax`` (Quest, Tang et al., arXiv 2406.10774 §3.2). For a query
``q`` the largest logit any key of the page can reach is bounded by

    ub(q, page) = scaling · Σ_i max(q_i·kmin_i, q_i·kmax_i)   (= scaling · (q⁺·kmax + q⁻·kmin)),

because ``q_i·k_i`` is linear in ``k_i`` and so is largest at an end of ``[kmin_i, kmax_i]``.

**Adaptive budget (top-p, Twilight, arXiv 2502.02770 §4).** Instead of Quest's fixed top-K pages, keep the
smallest set of pages whose *estimated* attention mass reaches ``p``. The estimate of a page's mass is the softmax,
over the pages, of ``score + log(count)`` (``count`` = visible keys of the page): every key of the page at the
page's score, ``est_p = count_p·exp(s_p) / Σ_r count_r·exp(s_r)``. The score is ``q·c + alpha·|q|·r`` with the
box centre ``c`` and radius ``r`` (:func:`page_scores`): ``alpha = 1`` is the bound ``ub`` (every key at the
box's best corner, which over-rates wide pages); ``alpha = 0.5`` (the backend's default) was chosen on real
SmolLM2 queries and keys of a text not used for evaluation, where it kept more true mass than the bound at the
same pages read. The query heads of one KV group (GQA) share
one page set, so that one gather serves the group: their estimates are averaged (each head's estimate sums to 1,
so the average is a distribution too). Floors are always kept and counted in the mass: the page of the first
visible token (the attention sink, StreamingLLM, arXiv 2309.17453) and the pages holding the last ``window``
visible tokens. A cap keeps at most ``ceil(max_fraction · pages)`` pages besides the floors.

**Certified diagnostic.** The estimate is only a ranking heuristic; what is certified is a bound on the attention
mass the dropped pages can hold: with ``Z_kept`` the exact partition function over the kept keys and
``U = Σ_dropped count_p·exp(ub_p) >= Z_dropped``, the dropped mass ``Z_dropped / (Z_kept + Z_dropped)`` is at
most ``U / (Z_kept + U)`` (the map ``x -> x / (Z_kept + x)`` increases). It is returned per query head, never used
to skip.

Shapes: query ``[b, h_q, d]`` (one decode step), key/value ``[b, h_kv, n, d]`` with ``h_q = g·h_kv``,
``key_valid`` ``[b, n]`` bool (False: a padding key nobody may attend to). Summaries ``[b, h_kv, n_pages, d]``.
Every batched function has a loop reference (``*_reference``) used by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")


# ------------------------------------------------------------------------------------------------ summaries
def n_pages(n: int, page_size: int) -> int:
    return -(-n // page_size)


def page_summaries(key: Tensor, page_size: int) -> tuple[Tensor, Tensor]:
    """Elementwise min and max of the keys of each page: ``[..., n, d]`` -> two ``[..., ceil(n/P), d]``.

    The last page may be partial (only its tokens count). Padding keys are summarised like any other: a superset
    of a page's real keys still bounds them, so the bound stays valid (only looser)."""
    *lead, n, d = key.shape
    n_p = n_pages(n, page_size)
    pad = n_p * page_size - n
    if pad:
        lo = torch.cat([key, key.new_full((*lead, pad, d), float("inf"))], dim=-2)
        hi = torch.cat([key, key.new_full((*lead, pad, d), NEG_INF)], dim=-2)
    else:
        lo = hi = key
    kmin = lo.reshape(*lead, n_p, page_size, d).amin(dim=-2)
    kmax = hi.reshape(*lead, n_p, page_size, d).amax(dim=-2)
    return kmin, kmax


def update_page_summaries(
    kmin: Tensor, kmax: Tensor, key_buffer: Tensor, start: int, end: int, page_size: int
) -> None:
    """Refresh, in place, the summaries of the pages touched by tokens ``start..end-1`` of ``key_buffer``
    ``[b, h, >= end, d]`` (already written there). ``kmin``/``kmax`` ``[b, h, >= ceil(end/P), d]``.

    A decode step touches one page: its summary is recomputed from its <= P keys (O(P·d), not O(n·d))."""
    p0, p1 = start // page_size, n_pages(end, page_size)
    lo, hi = page_summaries(key_buffer[:, :, p0 * page_size : end], page_size)
    kmin[:, :, p0:p1] = lo
    kmax[:, :, p0:p1] = hi


def page_upper_bounds(query: Tensor, kmin: Tensor, kmax: Tensor, scaling: float) -> Tensor:
    """``ub[b, h_q, page] = scaling · Σ_i max(q_i·kmin_i, q_i·kmax_i)``, the largest logit a key of the page can
    reach (Quest's criticality score). query ``[b, h_q, d]``, summaries ``[b, h_kv, n_p, d]`` (GQA: query head
    ``h`` reads KV head ``h // g``). Two matmuls: ``q⁺·kmax + q⁻·kmin``."""
    b, h_q, d = query.shape
    h_kv = kmin.shape[1]
    q = query.reshape(b, h_kv, h_q // h_kv, d)
    ub = q.clamp(min=0) @ kmax.transpose(-1, -2) + q.clamp(max=0) @ kmin.transpose(-1, -2)
    return (scaling * ub).reshape(b, h_q, -1)


def page_scores(
    query: Tensor, kmin: Tensor, kmax: Tensor, scaling: float, alpha: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``(ub, score)``, both ``[b, h_q, n_p]``: the bound of :func:`page_upper_bounds` and the ranking score
    ``scaling · (q·c + alpha·|q|·r)`` with the box centre ``c = (kmax + kmin) / 2`` and radius
    ``r = (kmax − kmin) / 2``. ``alpha = 1`` is the bound itself (Quest's score, ``q·c + |q|·r``); smaller values
    move the estimate from the corner of the box towards its centre, which the bound over-rates by the radius
    term for wide (heterogeneous) pages. The score only ranks and estimates; the certified quantity uses ``ub``."""
    if alpha == 1.0:
        ub = page_upper_bounds(query, kmin, kmax, scaling)
        return ub, ub
    b, h_q, d = query.shape
    h_kv = kmin.shape[1]
    q = query.reshape(b, h_kv, h_q // h_kv, d)
    qc = q @ ((kmax + kmin) * (0.5 * scaling)).transpose(-1, -2)
    qr = q.abs() @ ((kmax - kmin) * (0.5 * scaling)).transpose(-1, -2)
    return (qc + qr).reshape(b, h_q, -1), torch.add(qc, qr, alpha=alpha).reshape(b, h_q, -1)


def page_upper_bounds_reference(query: Tensor, kmin: Tensor, kmax: Tensor, scaling: float) -> Tensor:
    """Loop reference of :func:`page_upper_bounds` (the elementwise max of the two products)."""
    b, h_q, _ = query.shape
    g = h_q // kmin.shape[1]
    out = torch.empty(b, h_q, kmin.shape[2], dtype=query.dtype)
    for i in range(b):
        for h in range(h_q):
            q = query[i, h]
            out[i, h] = scaling * torch.maximum(q * kmin[i, h // g], q * kmax[i, h // g]).sum(-1)
    return out


# ------------------------------------------------------------------------------------------------ selection
def page_counts(key_valid: Tensor | None, b: int, n: int, page_size: int, device=None) -> Tensor:
    """Visible keys per page, ``[b, n_pages]`` float (the last page may be partial; padding keys do not count)."""
    n_p = n_pages(n, page_size)
    if key_valid is None:
        counts = torch.full((b, n_p), float(page_size), device=device)
        counts[:, -1] = n - (n_p - 1) * page_size
        return counts
    valid = key_valid.to(torch.float32)
    pad = n_p * page_size - n
    if pad:
        valid = torch.nn.functional.pad(valid, (0, pad))
    return valid.reshape(b, n_p, page_size).sum(-1)


def floor_pages(
    key_valid: Tensor | None, b: int, n: int, page_size: int, sink_pages: int, window: int, device=None
) -> Tensor:
    """Pages always kept, ``[b, n_pages]`` bool: ``sink_pages`` pages from the one holding the first visible key
    (the sink), and the pages holding the last ``window`` visible keys (recency)."""
    n_p = n_pages(n, page_size)
    if key_valid is None:  # every key visible: two slices
        fl = torch.zeros(b, n_p, dtype=torch.bool, device=device)
        fl[:, :sink_pages] = True
        fl[:, max(n - max(window, 1), 0) // page_size :] = True
        return fl
    else:
        pos = torch.arange(n, device=key_valid.device)
        first = torch.where(key_valid, pos, n).amin(-1).clamp(max=n - 1)
        last = torch.where(key_valid, pos, -1).amax(-1).clamp(min=0)
    page = torch.arange(n_p, device=first.device)[None, :]
    p_first, p_last = (first // page_size)[:, None], (last // page_size)[:, None]
    sink = (page >= p_first) & (page < p_first + sink_pages)
    p_win = ((last - max(window, 1) + 1).clamp(min=0) // page_size)[:, None]
    recent = (page >= p_win) & (page <= p_last)
    return sink | recent


def estimated_page_mass(ub: Tensor, counts: Tensor) -> Tensor:
    """Estimated attention mass per page, ``softmax_pages(ub + log count)``: ``ub`` ``[b, h_q, n_p]``,
    ``counts`` ``[b, n_p]``. Pages without a visible key get 0."""
    logw = ub + counts.log()[:, None, :]  # log 0 = -inf
    return torch.softmax(logw, dim=-1).nan_to_num(0.0)


def _select_order(
    logw: Tensor, visible: Tensor, floors: Tensor, n_kv_heads: int, top_p: float, max_fraction: float
) -> tuple[Tensor, Tensor]:
    """``(order, n_keep)``: pages of each KV group, ``[b, h_kv, n_p]``, floors first then by decreasing estimated
    mass (invisible pages last), and how many of them are kept, ``[b, h_kv]``. The kept pages are always a prefix
    of ``order`` (the cumulative estimate and the rank only grow along it), so a gather needs no second sort."""
    b, h_q, n_p = logw.shape
    if top_p >= 1.0:
        order = torch.argsort((~visible).to(torch.int8), dim=-1, stable=True)[:, None].expand(
            b, n_kv_heads, n_p
        )
        return order, visible.sum(-1, keepdim=True).expand(b, n_kv_heads)
    est = torch.softmax(logw, dim=-1).reshape(b, n_kv_heads, h_q // n_kv_heads, n_p).mean(2)
    fl = (floors & visible)[:, None, :]
    # floors first (key 2 + est > any non-floor key), then by estimate; invisible pages last
    key = torch.where(fl, est + 2.0, est).masked_fill(~visible[:, None, :], -1.0)
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    est_sorted = est.gather(-1, order)
    before = torch.cumsum(est_sorted, -1) - est_sorted  # estimated mass kept before this page
    n_floor = fl.sum(-1)  # [b, 1]
    n_vis = visible.sum(-1, keepdim=True)  # [b, 1]
    cap = torch.ceil(max_fraction * n_vis.to(torch.float32)).long()
    # non-floor pages kept while the estimate kept before them is < top_p, up to the cap and the visible ones
    n_mass = (before < top_p).sum(-1)  # a prefix: ``before`` grows along ``order``
    n_keep = torch.maximum(n_floor, torch.minimum(torch.minimum(n_mass, n_floor + cap), n_vis))
    return order, n_keep


def _keep_mask(order: Tensor, n_keep: Tensor) -> Tensor:
    rank_ok = torch.arange(order.shape[-1], device=order.device) < n_keep[..., None]
    return torch.zeros(order.shape, dtype=torch.bool, device=order.device).scatter_(-1, order, rank_ok)


def select_pages(
    ub: Tensor,
    counts: Tensor,
    floors: Tensor,
    n_kv_heads: int,
    *,
    top_p: float,
    max_fraction: float = 1.0,
) -> Tensor:
    """Pages to read, ``keep [b, h_kv, n_p]`` bool, from per-page scores ``ub`` ``[b, h_q, n_p]`` (the bound, or
    the ``score`` of :func:`page_scores`): per KV group, the floors, then pages in decreasing order of the
    group-averaged estimated mass until the kept estimate reaches ``top_p`` (the page that crosses it is kept), at
    most ``ceil(max_fraction · visible pages)`` non-floor pages. ``top_p >= 1`` keeps every visible page."""
    logw = ub + counts.log()[:, None, :]  # log 0 = -inf: pages without a visible key
    order, n_keep = _select_order(logw, counts > 0, floors, n_kv_heads, top_p, max_fraction)
    return _keep_mask(order, n_keep)


def select_pages_reference(
    ub: Tensor, counts: Tensor, floors: Tensor, n_kv_heads: int, *, top_p: float, max_fraction: float = 1.0
) -> Tensor:
    """Loop reference of :func:`select_pages` (Python lists, one group at a time)."""
    b, h_q, n_p = ub.shape
    g = h_q // n_kv_heads
    keep = torch.zeros(b, n_kv_heads, n_p, dtype=torch.bool)
    for i in range(b):
        vis = [p for p in range(n_p) if counts[i, p] > 0]
        for kh in range(n_kv_heads):
            if top_p >= 1.0:
                keep[i, kh, vis] = True
                continue
            est = torch.zeros(n_p, dtype=torch.float64)
            for h in range(kh * g, (kh + 1) * g):
                w = [
                    math.exp(float(ub[i, h, p])) * float(counts[i, p]) if counts[i, p] > 0 else 0.0
                    for p in range(n_p)
                ]
                z = sum(w)
                est += torch.tensor([x / z for x in w], dtype=torch.float64) / g
            fl = [p for p in vis if floors[i, p]]
            rest = sorted((p for p in vis if not floors[i, p]), key=lambda p: (-float(est[p]), p))
            mass = float(est[fl].sum()) if fl else 0.0
            cap = math.ceil(max_fraction * len(vis))
            chosen = list(fl)
            for r, p in enumerate(rest):
                if mass >= top_p or r >= cap:
                    break
                chosen.append(p)
                mass += float(est[p])
            keep[i, kh, chosen] = True
    return keep


# ---------------------------------------------------------------------------------------------- attention
@dataclass
class SparseDecodeOutput:
    """``output`` ``[b, h_q, d]``; ``keep`` ``[b, h_kv, n_p]`` the pages read; ``mass_bound`` ``[b, h_q]``, the
    certified bound on the attention mass of the dropped pages; ``pages_read`` kept / visible pages (mean over
    batch and KV heads, a float); ``lse_kept`` ``[b, h_q]`` log partition function over the kept keys."""

    output: Tensor
    keep: Tensor
    mass_bound: Tensor
    pages_read: float
    lse_kept: Tensor


def _paged(x: Tensor, n: int, page_size: int) -> Tensor:
    """``x [b, h, n_cap, d]`` (first ``n`` rows real) as ``[b·h·n_cap/P, P·d]`` pages; copies only when needed."""
    b, h, n_cap, d = x.shape
    if n_cap % page_size or not x.is_contiguous():
        n_p = n_pages(n, page_size)
        x = torch.nn.functional.pad(x[:, :, :n], (0, 0, 0, n_p * page_size - n)).contiguous()
    return x.view(-1, page_size * d)


def _gather(pages: Tensor, flat: Tensor, workspace: dict | None, name: str) -> Tensor:
    if workspace is None:
        return pages.index_select(0, flat)
    buf = workspace.get(name)
    if buf is None or buf.dtype != pages.dtype or buf.device != pages.device:
        buf = workspace[name] = pages.new_empty(0)
    return torch.index_select(pages, 0, flat, out=buf.resize_(0))  # resized in place: the storage is reused


def sparse_decode_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    n: int | None = None,
    kmin: Tensor | None = None,
    kmax: Tensor | None = None,
    key_valid: Tensor | None = None,
    page_size: int = 16,
    scaling: float | None = None,
    top_p: float = 0.95,
    sink_pages: int = 1,
    window: int = 64,
    max_fraction: float = 1.0,
    alpha: float = 1.0,
    workspace: dict | None = None,
) -> SparseDecodeOutput:
    """One decode step of page-sparse attention (see the module docstring). K: the kept pages are gathered
    (``index_select``) for the logits; V is never copied: the output is ``embedding_bag`` over the kept rows with
    the probabilities as weights (half the memory traffic of a gather then a matmul, measured on CPU).

    ``key``/``value`` ``[b, h_kv, n_cap, d]`` hold ``n`` real tokens (default ``n_cap``); when ``n_cap`` is a
    multiple of ``page_size`` and the tensors are contiguous (the sparse cache's buffers), pages are gathered
    straight from them with one ``index_select`` per tensor. ``kmin``/``kmax`` ``[b, h_kv, >= n_pages, d]``:
    the page summaries (computed here from the keys when omitted). ``workspace``: a dict kept by the caller
    between steps, holding the gather buffers (a fresh multi-MB tensor per step costs page faults on CPU).
    Batched torch only: no loop over heads or pages."""
    b, h_q, d = query.shape
    h_kv, n_cap = key.shape[1], key.shape[2]
    n = n_cap if n is None else n
    scaling = d**-0.5 if scaling is None else scaling
    n_p = n_pages(n, page_size)
    if kmin is None or kmax is None:
        kmin, kmax = page_summaries(key[:, :, :n], page_size)
    kmin, kmax = kmin[:, :, :n_p], kmax[:, :, :n_p]
    if key_valid is not None:
        key_valid = key_valid[:, :n]
    counts = page_counts(key_valid, b, n, page_size, device=query.device)
    floors = floor_pages(key_valid, b, n, page_size, sink_pages, window, device=query.device)
    ub, score = page_scores(query.float(), kmin.float(), kmax.float(), scaling, alpha)  # [b, h_q, n_p]
    log_c = counts.log()[:, None, :]  # log 0 = -inf: pages without a visible key
    logw = ub + log_c
    visible = counts > 0
    order, n_keep = _select_order(score + log_c, visible, floors, h_kv, top_p, max_fraction)

    # gather the kept pages of each (batch, kv head), a prefix of ``order``; ragged groups pad to the largest
    n_sel = int(n_keep.max())
    idx = order[..., :n_sel]  # [b, h_kv, n_sel]
    n_p_cap = (n_cap // page_size) if (n_cap % page_size == 0 and key.is_contiguous()) else n_p
    base = (torch.arange(b * h_kv, device=query.device) * n_p_cap).view(b, h_kv, 1)
    flat = (base + idx).reshape(-1)
    k_pages = _paged(key, n, page_size)
    k_sel = _gather(k_pages, flat, workspace, "k").view(b, h_kv, n_sel * page_size, d)
    pos = idx[..., None] * page_size + torch.arange(page_size, device=query.device)  # [b, h_kv, n_sel, P]
    ok = pos < n
    if bool((n_keep < n_sel).any()):
        ok &= (torch.arange(n_sel, device=query.device) < n_keep[..., None])[..., None]
    if key_valid is not None:
        ok &= key_valid.gather(1, pos.clamp(max=n - 1).reshape(b, -1)).view(ok.shape)

    g = h_q // h_kv
    q = query.reshape(b, h_kv, g, d)
    logits = (q @ k_sel.transpose(-1, -2)).float().mul_(scaling)  # [b, h_kv, g, S]
    logits.masked_fill_(~ok.view(b, h_kv, 1, -1), NEG_INF)
    lse = torch.logsumexp(logits, -1, keepdim=True)  # finite: the floors hold a visible key
    probs = logits.sub_(lse).exp_()  # masked keys: exp(-inf) = 0
    # V: a weighted sum of the kept rows read in place (embedding_bag), not a gathered copy then a matmul
    v_pages = _paged(value, n, page_size)
    v_rows = v_pages.view(-1, value.shape[-1])
    rows_per_head = v_pages.shape[0] // (b * h_kv) * page_size
    row = (torch.arange(b * h_kv, device=query.device) * rows_per_head).view(b, h_kv, 1) + pos.view(
        b, h_kv, -1
    )
    row = row[:, :, None].expand(b, h_kv, g, row.shape[-1]).reshape(b * h_q, -1)
    out = torch.nn.functional.embedding_bag(
        row, v_rows, per_sample_weights=probs.reshape(b * h_q, -1).to(v_rows.dtype), mode="sum"
    ).reshape(b, h_q, -1)

    keep = _keep_mask(order, n_keep)  # [b, h_kv, n_p]
    lse_q = lse.reshape(b, h_q)
    dropped = logw.view(b, h_kv, g, n_p).masked_fill(keep[:, :, None], NEG_INF).reshape(b, h_q, n_p)
    mass_bound = torch.sigmoid(
        torch.logsumexp(dropped, -1) - lse_q
    )  # U / (U + Z_kept); 0 when nothing dropped
    pages_read = float((n_keep.float() / visible.sum(-1, keepdim=True)).mean())
    return SparseDecodeOutput(out.to(query.dtype), keep, mass_bound, pages_read, lse_q)


@dataclass
class PositionsOutput:
    """:func:`sparse_attention_at_positions`: ``output`` ``[h_q, m, d]``, ``keep`` ``[m, h_kv, n_p]``,
    ``mass_bound`` and ``exact_dropped`` ``[m, h_q]`` (the certified bound and the true dropped mass),
    ``pages_read`` ``[m]`` (kept / visible pages, mean over KV heads)."""

    output: Tensor
    keep: Tensor
    mass_bound: Tensor
    exact_dropped: Tensor
    pages_read: Tensor


def sparse_attention_at_positions(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    positions: Tensor,
    *,
    page_size: int = 16,
    scaling: float | None = None,
    top_p: float = 0.95,
    sink_pages: int = 1,
    window: int = 64,
    max_fraction: float = 1.0,
    alpha: float = 1.0,
) -> PositionsOutput:
    """Decode-mode attention for many queries in one pass (one sequence, no padding): query ``[h_q, m, d]`` at
    token ``positions`` ``[m]`` attends, over keys ``[h_kv, n, d]`` with index ``<= position``, exactly as
    :func:`sparse_decode_attention` would at that decode step: the same summaries (complete pages, and the
    current page summarised up to the query's own token), the same selection, floors and cap.

    This is how decode-mode perplexity is measured without n sequential decode steps; the tests check it
    against the step-by-step function."""
    h_q, m, d = query.shape
    h_kv, n, _ = key.shape
    scaling = d**-0.5 if scaling is None else scaling
    n_p = n_pages(n, page_size)
    pad = n_p * page_size - n
    kp = torch.nn.functional.pad(key.float(), (0, 0, 0, pad)).view(h_kv, n_p, page_size, d)
    kmin, kmax = page_summaries(key.float(), page_size)  # complete pages (the last may be partial)
    pre_min = kp.cummin(dim=2).values.reshape(h_kv, -1, d)[:, :n]  # the page of token t summarised up to t
    pre_max = kp.cummax(dim=2).values.reshape(h_kv, -1, d)[:, :n]
    q = query.float()
    qm = q.transpose(0, 1)  # [m, h_q, d]: the queries as a batch
    ub, score = page_scores(
        qm, kmin[None].expand(m, -1, -1, -1), kmax[None].expand(m, -1, -1, -1), scaling, alpha
    )
    g = h_q // h_kv
    own_min, own_max = (
        pre_min[:, positions].transpose(0, 1),
        pre_max[:, positions].transpose(0, 1),
    )  # [m, h_kv, d]
    own_ub, own_score = page_scores(
        qm, own_min[:, :, None], own_max[:, :, None], scaling, alpha
    )  # [m, h_q, 1]
    own_page = positions.view(m, 1, 1).expand(m, h_q, 1) // page_size
    ub.scatter_(-1, own_page, own_ub)
    score.scatter_(-1, own_page, own_score)
    page = torch.arange(n_p, device=query.device)
    tok = page[None, :] * page_size  # first token of each page
    counts = ((positions[:, None] - tok + 1).clamp(min=0, max=page_size)).to(torch.float32)  # [m, n_p]
    valid = torch.arange(n, device=query.device)[None, :] <= positions[:, None]  # [m, n]
    floors = floor_pages(valid, m, n, page_size, sink_pages, window, device=query.device)
    ub = ub.masked_fill(counts[:, None, :] == 0, NEG_INF)
    keep = select_pages(score, counts, floors, h_kv, top_p=top_p, max_fraction=max_fraction)  # [m, h_kv, n_p]

    tok_keep = keep.repeat_interleave(page_size, dim=-1)[..., :n] & valid[:, None, :]  # [m, h_kv, n]
    logits = scaling * torch.einsum("hmd,hnd->hmn", q, key.float().repeat_interleave(g, dim=0))
    logits = logits.masked_fill(~valid[None], NEG_INF)
    mask_q = tok_keep.repeat_interleave(g, dim=1).transpose(0, 1)  # [h_q, m, n]
    p_exact = torch.softmax(logits, -1)
    exact_dropped = (p_exact * (~mask_q)).sum(-1).T  # [m, h_q]
    kept_logits = logits.masked_fill(~mask_q, NEG_INF)
    lse = torch.logsumexp(kept_logits, -1)  # [h_q, m]
    out = torch.softmax(kept_logits, -1) @ value.float().repeat_interleave(g, dim=0)
    keep_q = keep.repeat_interleave(g, dim=1)  # [m, h_q, n_p]
    log_u = torch.logsumexp((ub + counts.log()[:, None, :]).masked_fill(keep_q, NEG_INF), -1)  # [m, h_q]
    mass_bound = torch.sigmoid(log_u - lse.T).nan_to_num(0.0)
    pages_read = keep.sum(-1).float().mean(-1) / (counts > 0).sum(-1).float()
    return PositionsOutput(out.to(query.dtype), keep, mass_bound, exact_dropped, pages_read)


def dense_decode_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    key_valid: Tensor | None = None,
    scaling: float | None = None,
) -> Tensor:
    """Exact attention of one query per head over every visible key: the reference (``[b, h_q, d]``)."""
    b, h_q, d = query.shape
    g = h_q // key.shape[1]
    scaling = d**-0.5 if scaling is None else scaling
    k = key.repeat_interleave(g, dim=1).float()
    v = value.repeat_interleave(g, dim=1).float()
    logits = scaling * torch.einsum("bhd,bhnd->bhn", query.float(), k)
    if key_valid is not None:
        logits = logits.masked_fill(~key_valid[:, None, :], NEG_INF)
    return torch.einsum("bhn,bhnd->bhd", torch.softmax(logits, -1), v).to(query.dtype)


def exact_dropped_mass(
    query: Tensor, key: Tensor, keep: Tensor, page_size: int, *, key_valid: Tensor | None = None,
    scaling: float | None = None,
) -> Tensor:  # fmt: skip
    """The true attention mass, ``[b, h_q]``, that exact attention puts on the pages ``keep`` drops (the
    quantity :attr:`SparseDecodeOutput.mass_bound` bounds)."""
    b, h_q, d = query.shape
    n = key.shape[2]
    g = h_q // key.shape[1]
    scaling = d**-0.5 if scaling is None else scaling
    logits = scaling * torch.einsum("bhd,bhnd->bhn", query.float(), key.repeat_interleave(g, dim=1).float())
    if key_valid is not None:
        logits = logits.masked_fill(~key_valid[:, None, :], NEG_INF)
    p = torch.softmax(logits, -1)
    dropped = ~keep.repeat_interleave(g, dim=1).repeat_interleave(page_size, dim=-1)[..., :n]
    return (p * dropped).sum(-1)


def sparse_decode_reference(
    query: Tensor, key: Tensor, value: Tensor, keep: Tensor, page_size: int, *, key_valid: Tensor | None = None,
    scaling: float | None = None,
) -> Tensor:  # fmt: skip
    """Loop reference: exact softmax over the visible keys of the kept pages, one (batch, head) at a time."""
    b, h_q, d = query.shape
    n = key.shape[2]
    g = h_q // key.shape[1]
    scaling = d**-0.5 if scaling is None else scaling
    out = torch.zeros(b, h_q, d)
    for i in range(b):
        for h in range(h_q):
            toks = [
                t for p in range(keep.shape[-1]) if keep[i, h // g, p]
                for t in range(p * page_size, min((p + 1) * page_size, n))
                if key_valid is None or key_valid[i, t]
            ]  # fmt: skip
            if not toks:
                continue
            k, v = key[i, h // g, toks].float(), value[i, h // g, toks].float()
            out[i, h] = torch.softmax(scaling * k @ query[i, h].float(), -1) @ v
    return out


__all__ = [
    "PositionsOutput",
    "SparseDecodeOutput",
    "dense_decode_attention",
    "estimated_page_mass",
    "exact_dropped_mass",
    "floor_pages",
    "n_pages",
    "page_counts",
    "page_scores",
    "page_summaries",
    "page_upper_bounds",
    "page_upper_bounds_reference",
    "select_pages",
    "select_pages_reference",
    "sparse_attention_at_positions",
    "sparse_decode_attention",
    "sparse_decode_reference",
    "update_page_summaries",
]
