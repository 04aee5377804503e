"""Page summaries, Quest upper bounds, top-p page selection and the certified dropped-mass bound, against loop
references, on random and adversarial inputs."""

from __future__ import annotations

import pytest
import torch

from hf_fundamentals.attention.sparse_decode import (
    dense_decode_attention,
    exact_dropped_mass,
    floor_pages,
    page_counts,
    page_scores,
    page_summaries,
    page_upper_bounds,
    page_upper_bounds_reference,
    select_pages,
    select_pages_reference,
    sparse_attention_at_positions,
    sparse_decode_attention,
    sparse_decode_reference,
    update_page_summaries,
)


def _inputs(seed: int, b=2, h_q=6, h_kv=2, n=203, d=16, kind="gauss"):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h_q, d, generator=g)
    k = torch.randn(b, h_kv, n, d, generator=g)
    v = torch.randn(b, h_kv, n, d, generator=g)
    if kind == "peaky":  # queries aligned with a few planted keys: near one-hot attention
        u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
        q = 4 * u + 0.2 * q
        for t in torch.randint(0, n, (3,), generator=g).tolist():
            k[:, :, t] = 6 * u
    elif kind == "scaled":  # heavy-tailed key norms: loose boxes
        k = k * torch.rand(b, h_kv, n, 1, generator=g).pow(4) * 20
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, :37] = False  # left padding in the second row
    return q, k, v, valid


def test_page_summaries_match_a_loop_and_handle_a_partial_last_page():
    k = torch.randn(1, 2, 21, 4)
    lo, hi = page_summaries(k, 8)
    assert lo.shape == (1, 2, 3, 4)
    for p in range(3):
        page = k[:, :, p * 8 : min((p + 1) * 8, 21)]
        assert torch.equal(lo[:, :, p], page.amin(2)) and torch.equal(hi[:, :, p], page.amax(2))


def test_incremental_summaries_equal_a_full_recompute():
    k = torch.randn(2, 3, 70, 8)
    lo, hi = torch.zeros(2, 3, 9, 8), torch.zeros(2, 3, 9, 8)
    start = 0
    for m in (13, 1, 1, 16, 1, 30, 1, 7):  # a prefill, decode steps and chunks crossing page borders
        update_page_summaries(lo, hi, k, start, start + m, 8)
        start += m
        ref_lo, ref_hi = page_summaries(k[:, :, :start], 8)
        n_p = ref_lo.shape[2]
        assert torch.equal(lo[:, :, :n_p], ref_lo) and torch.equal(hi[:, :, :n_p], ref_hi)


@pytest.mark.parametrize("kind", ["gauss", "peaky", "scaled"])
@pytest.mark.parametrize("seed", range(4))
def test_upper_bound_dominates_every_key_of_its_page(kind, seed):
    q, k, _, _ = _inputs(seed, kind=kind)
    lo, hi = page_summaries(k, 8)
    ub = page_upper_bounds(q, lo, hi, 0.25)
    assert torch.allclose(ub, page_upper_bounds_reference(q, lo, hi, 0.25), atol=1e-5)
    logits = 0.25 * torch.einsum("bhd,bhnd->bhn", q, k.repeat_interleave(3, dim=1))
    page_max = torch.nn.functional.pad(logits, (0, 5), value=float("-inf")).view(2, 6, -1, 8).amax(-1)
    assert (page_max <= ub + 1e-5).all()
    # tight on a page of one repeated key
    k2 = k.clone()
    k2[:, :, :8] = k[:, :, :1]
    lo2, hi2 = page_summaries(k2, 8)
    ub2 = page_upper_bounds(q, lo2, hi2, 0.25)
    exact0 = 0.25 * torch.einsum("bhd,bhd->bh", q, k2[:, :, 0].repeat_interleave(3, dim=1))
    assert torch.allclose(ub2[..., 0], exact0, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_scores_move_from_the_box_centre_to_the_bound(alpha):
    q, k, _, _ = _inputs(7, kind="scaled")
    lo, hi = page_summaries(k, 8)
    ub, score = page_scores(q, lo, hi, 0.25, alpha)
    assert torch.allclose(ub, page_upper_bounds(q, lo, hi, 0.25), atol=1e-4)
    centre = page_upper_bounds(q, (lo + hi) / 2, (lo + hi) / 2, 0.25)  # a zero-width box at the centre
    assert torch.allclose(score, centre + alpha * (ub - centre), atol=1e-4)


def test_floors_are_the_sink_after_padding_and_the_recent_window():
    valid = torch.ones(2, 50, dtype=torch.bool)
    valid[1, :19] = False
    fl = floor_pages(valid, 2, 50, 8, sink_pages=1, window=10)
    assert fl[0].nonzero().flatten().tolist() == [0, 5, 6]  # sink 0; tokens 40..49 on pages 5, 6
    assert fl[1].nonzero().flatten().tolist() == [2, 5, 6]  # the first real token (19) is on page 2
    counts = page_counts(valid, 2, 50, 8)
    assert counts[0].tolist() == [8, 8, 8, 8, 8, 8, 2] and counts[1, :3].tolist() == [0, 0, 5]


@pytest.mark.parametrize("top_p", [0.3, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("max_fraction", [0.2, 1.0])
@pytest.mark.parametrize("kind", ["gauss", "peaky"])
def test_batched_selection_equals_the_loop_reference_and_keeps_the_floors(top_p, max_fraction, kind):
    q, k, _, valid = _inputs(1, kind=kind)
    lo, hi = page_summaries(k, 8)
    ub = page_upper_bounds(q, lo, hi, 0.25)
    counts = page_counts(valid, 2, 203, 8)
    fl = floor_pages(valid, 2, 203, 8, sink_pages=1, window=20)
    keep = select_pages(ub, counts, fl, 2, top_p=top_p, max_fraction=max_fraction)
    assert torch.equal(
        keep, select_pages_reference(ub, counts, fl, 2, top_p=top_p, max_fraction=max_fraction)
    )
    visible = counts > 0
    assert (keep <= visible[:, None]).all()  # never a page of padding only
    assert (keep >= (fl & visible)[:, None]).all()  # the floors always
    if top_p < 1.0:
        extra = keep.sum(-1) - (fl & visible).sum(-1, keepdim=True)
        assert (extra <= torch.ceil(max_fraction * visible.sum(-1, keepdim=True))).all()  # the cap
    else:
        assert torch.equal(keep, visible[:, None].expand_as(keep))


def test_a_larger_top_p_never_reads_fewer_pages():
    q, k, _, valid = _inputs(2)
    reads = [
        sparse_decode_attention(q, k, k, key_valid=valid, page_size=8, top_p=p, window=16).pages_read
        for p in (0.5, 0.8, 0.9, 0.99, 1.0)
    ]
    assert reads == sorted(reads) and reads[-1] == 1.0 and reads[0] < 1.0


@pytest.mark.parametrize("kind", ["gauss", "peaky", "scaled"])
def test_sparse_output_is_exact_attention_over_the_kept_pages(kind):
    q, k, v, valid = _inputs(3, kind=kind)
    res = sparse_decode_attention(q, k, v, key_valid=valid, page_size=8, scaling=0.25, top_p=0.7, window=16)
    ref = sparse_decode_reference(q, k, v, res.keep, 8, key_valid=valid, scaling=0.25)
    assert torch.allclose(res.output, ref, atol=1e-5)
    full = sparse_decode_attention(q, k, v, key_valid=valid, page_size=8, scaling=0.25, top_p=1.0)
    assert torch.allclose(
        full.output, dense_decode_attention(q, k, v, key_valid=valid, scaling=0.25), atol=1e-5
    )
    assert float(full.mass_bound.max()) == 0.0


def test_buffer_with_spare_capacity_gives_the_same_result_as_exact_length_keys():
    q, k, v, valid = _inputs(4)
    cap = torch.zeros(2, 2, 256, 16)
    kb, vb = cap.clone(), cap.clone()
    kb[:, :, :203], vb[:, :, :203] = k, v
    lo, hi = torch.zeros(2, 2, 32, 16), torch.zeros(2, 2, 32, 16)
    update_page_summaries(lo, hi, kb, 0, 203, 8)
    a = sparse_decode_attention(q, kb, vb, n=203, kmin=lo, kmax=hi, key_valid=valid, page_size=8, top_p=0.8)
    b = sparse_decode_attention(q, k, v, key_valid=valid, page_size=8, top_p=0.8)
    assert torch.equal(a.keep, b.keep) and torch.allclose(a.output, b.output, atol=1e-6)


@pytest.mark.parametrize("kind", ["gauss", "peaky", "scaled"])
@pytest.mark.parametrize("seed", range(6))
def test_certified_bound_holds_on_the_dropped_mass(kind, seed):
    q, k, v, valid = _inputs(seed, kind=kind)
    for top_p, cap, alpha in ((0.5, 0.1, 1.0), (0.9, 0.3, 0.5), (0.99, 1.0, 0.0)):
        res = sparse_decode_attention(
            q, k, v, key_valid=valid, page_size=8, top_p=top_p, max_fraction=cap, window=8, alpha=alpha
        )
        exact = exact_dropped_mass(q, k, res.keep, 8, key_valid=valid)
        assert (exact <= res.mass_bound + 1e-6).all()
        assert (res.mass_bound <= 1.0).all()


def test_bound_catches_a_needle_the_cap_forces_out():
    """Adversarial: one key per query head carries almost all the mass, and a cap of one page drops it; the bound
    must then be close to 1, not a small number."""
    g = torch.Generator().manual_seed(0)
    d, n = 16, 256
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    q = (8 * u).expand(1, 2, d).clone()
    k = 0.1 * torch.randn(1, 1, n, d, generator=g)
    k[0, 0, 100] = 8 * u  # the needle, far from the sink and the window
    for j in range(8):  # a decoy page: loose box (each key spans 2 coordinates), high bound, low true logits
        k[0, 0, 20 + j] = 0
        k[0, 0, 20 + j, 2 * j : 2 * j + 2] = 6 * u[2 * j : 2 * j + 2].sign()
    res = sparse_decode_attention(
        q, k, k, page_size=8, scaling=1.0, top_p=0.99, max_fraction=1 / 32, window=8
    )
    exact = exact_dropped_mass(q, k, res.keep, 8, scaling=1.0)
    assert not res.keep[0, 0, 100 // 8]  # the cap drops the needle's page ...
    assert float(exact.min()) > 0.5  # ... which held most of the mass,
    assert (exact <= res.mass_bound + 1e-6).all()  # and the certified bound says so


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_decode_mode_pass_matches_step_by_step_decoding(alpha):
    g = torch.Generator().manual_seed(5)
    q, k, v = torch.randn(6, 203, 16, generator=g) * 2, torch.randn(2, 203, 16, generator=g), torch.randn(2, 203, 16, generator=g)  # fmt: skip
    pos = torch.arange(140, 203)
    kw = dict(page_size=8, scaling=0.25, top_p=0.8, window=10, max_fraction=0.5, alpha=alpha)
    r = sparse_attention_at_positions(q[:, pos], k, v, pos, **kw)
    for j, t in enumerate(pos.tolist()):
        s = sparse_decode_attention(q[None, :, t], k[None, :, : t + 1], v[None, :, : t + 1], **kw)
        n_p = s.keep.shape[-1]
        assert torch.equal(s.keep[0], r.keep[j, :, :n_p]) and not r.keep[j, :, n_p:].any()
        assert torch.allclose(s.output[0], r.output[:, j], atol=1e-5)
        assert torch.allclose(s.mass_bound[0], r.mass_bound[j], atol=1e-5)
    assert (r.exact_dropped <= r.mass_bound + 1e-6).all()
