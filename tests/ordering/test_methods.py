"""The ordering methods: golden vectors (computed by us from the algorithm of microsoft/data-efficacy
``data_ordering/common.py``), reference semantics, permutations, seeds and jitter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_fundamentals.ordering import (
    METHODS,
    OrderSpec,
    cross_guidance_order,
    folding_order,
    gumbel_rank_jitter,
    order_indices,
    sorted_indices,
    window_jitter,
    zigzag_order,
)

SCORES = np.arange(20)

GOLDEN = {
    ("folding", 3): [0, 3, 6, 9, 12, 15, 18, 1, 4, 7, 10, 13, 16, 19, 2, 5, 8, 11, 14, 17],
    ("zigzag", 3): [0, 3, 6, 9, 12, 15, 18, 19, 16, 13, 10, 7, 4, 1, 2, 5, 8, 11, 14, 17],
    ("stair", None): [0, 1, 2, 3, 4, 5, 6, 9, 12, 7, 10, 13, 8, 11, 14, 15, 16, 17, 18, 19],
    ("saw", None): [0, 1, 2, 3, 4, 5, 7, 8, 6, 9, 10, 11, 13, 14, 12, 15, 16, 17, 18, 19],
}


@pytest.mark.parametrize(("method", "layers"), list(GOLDEN))
def test_golden_vectors_from_the_brief(method, layers):
    assert order_indices(SCORES, method, layers=layers).tolist() == GOLDEN[(method, layers)]


def test_golden_vectors_follow_scores_not_positions():
    """Shuffled rows with the same scores give the same *score* sequence: the order reads the scores."""
    perm = np.random.default_rng(3).permutation(20)
    scores = SCORES[perm]
    for (method, layers), want in GOLDEN.items():
        got = scores[order_indices(scores, method, layers=layers)]
        assert got.tolist() == want


def test_repo_defaults_are_resolved():
    assert OrderSpec("stair").resolved().num_sections == 2
    assert OrderSpec("stair").resolved().transition_ratio == 0.225
    assert OrderSpec("saw").resolved().layers == 2
    assert OrderSpec("folding").resolved().layers == 5
    assert OrderSpec("saw", window_size=100).label() == "SAW(K=3,L=2,rho=0.075)+JIT(100)"


# A line-by-line transcription of the reference's list semantics (data_ordering/common.py), for parity.
def _ref_sorted(scores, ascending):
    return sorted(range(len(scores)), key=lambda i: scores[i], reverse=not ascending)


def _ref_fold(seq, layers, zig):
    out = []
    for layer in range(layers):
        part = list(seq[layer::layers])
        if zig and layer % 2 == 1:
            part.reverse()
        out.extend(part)
    return out


def _ref_cross(seq, k, ratio, layers, zig):
    n = len(seq)
    if n == 0 or k == 1 or ratio == 0:
        return list(seq)
    out, cursor = [], 0
    radius = round(n * ratio)
    for split in [round(n * s / k) for s in range(1, k)]:
        a, b = max(cursor, split - radius), min(n, split + radius)
        out.extend(seq[cursor:a])
        out.extend(_ref_fold(seq[a:b], layers, zig))
        cursor = b
    out.extend(seq[cursor:n])
    return out


@settings(max_examples=150, deadline=None)
@given(
    scores=st.lists(st.integers(0, 6), min_size=0, max_size=80),  # small range: many ties
    layers=st.integers(1, 6),
    sections=st.integers(1, 5),
    ratio=st.sampled_from([0.0, 0.05, 0.075, 0.1, 0.225, 0.3, 0.5, 0.9]),
    ascending=st.booleans(),
)
def test_deterministic_methods_match_the_reference_semantics(scores, layers, sections, ratio, ascending):
    s = np.array(scores, dtype=np.int64)
    ref_sorted = _ref_sorted(scores, ascending)
    assert sorted_indices(s, ascending).tolist() == ref_sorted
    assert folding_order(sorted_indices(s, ascending), layers).tolist() == _ref_fold(
        ref_sorted, layers, False
    )
    assert zigzag_order(sorted_indices(s, ascending), layers).tolist() == _ref_fold(ref_sorted, layers, True)
    for mode, zig in (("folding", False), ("zigzag", True)):
        got = cross_guidance_order(sorted_indices(s, ascending), sections, ratio, layers, mode)
        assert got.tolist() == _ref_cross(ref_sorted, sections, ratio, layers, zig)


@settings(max_examples=120, deadline=None)
@given(
    scores=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=300),
    method=st.sampled_from(METHODS),
    window=st.integers(0, 40),
    tau=st.sampled_from([0.0, 0.5, 5.0]),
    seed=st.integers(0, 2**31 - 1),
    ascending=st.booleans(),
    n_domains=st.integers(0, 4),
)
def test_every_method_returns_a_permutation(scores, method, window, tau, seed, ascending, n_domains):
    s = np.array(scores, dtype=np.float64)
    domains = None if n_domains == 0 else [i % n_domains for i in range(len(scores))]
    order = order_indices(s, method, window_size=window, gumbel_tau=tau, seed=seed, ascending=ascending,
                          domains=domains)  # fmt: skip
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(len(scores)))


def test_ties_keep_dataset_order_in_both_directions():
    scores = np.array([2, 1, 2, 1, 2])
    assert sorted_indices(scores, True).tolist() == [1, 3, 0, 2, 4]
    assert sorted_indices(scores, False).tolist() == [0, 2, 4, 1, 3]
    assert order_indices(scores, "sorting", ascending=False).tolist() == [0, 2, 4, 1, 3]


def test_seeded_and_deterministic():
    s = np.random.default_rng(0).random(500)
    for method in ("random", "segment"):
        a, b = order_indices(s, method, seed=1), order_indices(s, method, seed=1)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, order_indices(s, method, seed=2))
    a = order_indices(s, "saw", window_size=50, seed=5)
    assert np.array_equal(a, order_indices(s, "saw", window_size=50, seed=5))
    assert not np.array_equal(a, order_indices(s, "saw", window_size=50, seed=6))


@pytest.mark.parametrize("window", [0, 1])
def test_window_of_one_or_less_changes_nothing(window):
    s = np.random.default_rng(0).random(100)
    assert np.array_equal(order_indices(s, "saw", window_size=window), order_indices(s, "saw"))
    assert np.array_equal(window_jitter(np.arange(10), window), np.arange(10))


def test_window_jitter_only_moves_samples_inside_their_window():
    base = np.arange(1000)[::-1].copy()
    out = window_jitter(base, 64, seed=0)
    assert not np.array_equal(out, base)
    for start in range(0, 1000, 64):
        assert set(out[start : start + 64].tolist()) == set(base[start : start + 64].tolist())


def test_domain_aware_jitter_interleaves_domains_within_windows():
    n = 4000
    s = np.arange(n, dtype=float)
    domains = (np.arange(n) // 100) % 4  # score-sorted order: runs of 100 per domain, 4 domains per window
    plain = order_indices(s, "sorting", window_size=400, seed=0)
    mixed = order_indices(s, "sorting", window_size=400, seed=0, domains=domains)
    for start in range(0, n, 400):  # the same samples per window, only rearranged
        assert set(plain[start : start + 400]) == set(mixed[start : start + 400])

    def longest(labels):
        best = run = 1
        for a, b in zip(labels[:-1], labels[1:], strict=True):
            run = run + 1 if a == b else 1
            best = max(best, run)
        return best

    # windows with four domains in equal shares rotate through them; plain jitter leaves runs of several
    assert longest(domains[mixed].tolist()) <= 2
    assert longest(domains[plain].tolist()) >= 6


def test_gumbel_jitter_loosens_but_keeps_the_trend():
    order = np.arange(5000)
    jittered = gumbel_rank_jitter(order, tau=20.0, seed=0)
    assert not np.array_equal(jittered, order)
    assert np.corrcoef(jittered, order)[0, 1] > 0.99
    assert np.array_equal(gumbel_rank_jitter(order, 0.0), order)


def test_segment_blocks_hold_the_score_tails():
    s = np.random.default_rng(0).random(1000)
    order = order_indices(s, "segment")  # l10-h10
    rank = np.argsort(np.argsort(s))
    assert (rank[order[:100]] < 100).all()
    assert (rank[order[-100:]] >= 900).all()
    # both blocks from the high end: the front and back share the top 20% between them
    both_high = order_indices(s, "segment", seg_front_is_high=True, seg_back_is_high=True)
    assert (rank[both_high[:100]] >= 800).all() and (rank[both_high[-100:]] >= 800).all()
    # percentages adding up to more than 100 are rescaled, the result is still a permutation
    big = order_indices(s, "segment", seg_low_pct=70, seg_high_pct=60)
    assert sorted(big.tolist()) == list(range(1000))


def test_bad_input_fails_with_the_argument_named():
    with pytest.raises(ValueError, match="order method 'sawtooth'"):
        order_indices(SCORES, "sawtooth")
    with pytest.raises(ValueError, match="layers must be an integer >= 1"):
        order_indices(SCORES, "folding", layers=0)
    with pytest.raises(ValueError, match=r"2 NaN/inf values \(first at index 1"):
        order_indices([0.1, float("nan"), 0.3, float("inf")], "saw")
    with pytest.raises(ValueError, match="1-D"):
        order_indices(np.zeros((2, 3)), "saw")
    with pytest.raises(TypeError, match="numbers"):
        order_indices(["a", "b"], "saw")
    with pytest.raises(ValueError, match="domains has 3 labels but there are 20 samples"):
        order_indices(SCORES, "saw", window_size=4, domains=[0, 1, 2])
    with pytest.raises(ValueError, match="transition_ratio must be >= 0"):
        OrderSpec("saw", transition_ratio=-0.1)
