"""The guideline metrics (our design, for the four guidances of arXiv 2605.30334 as microsoft/data-efficacy
``docs/demystifying_data_organization_for_enhanced_llm_training.md`` states them) separate the orders as
predicted."""

from __future__ import annotations

import numpy as np
import pytest

from hf_fundamentals.ordering import order_indices
from hf_fundamentals.ordering.guidelines import (
    RANDOM_WITHIN_BATCH_STD,
    guideline_metrics,
    longest_run,
    score_quantiles,
    zigzag_legs,
)

N = 10_000
SCORES = np.random.default_rng(0).random(N)


def report(method, **kw):
    domains = kw.pop("domains", None)
    order = order_indices(SCORES, method, domains=domains, **kw)
    return guideline_metrics(order, SCORES, 32, domains=domains)


def test_g1_boundary_sharpening_segment_l10_h10():
    r = report("segment")
    assert r.front_in_low_tail == 1.0 and r.back_in_high_tail == 1.0
    rand = report("random", seed=0)
    assert rand.front_in_low_tail < 0.2 and rand.back_in_high_tail < 0.2
    assert abs(rand.front_mean_q - 0.5) < 0.05


def test_g2_cyclic_scheduling_counts_sweeps_and_resets():
    fo, zig, cl, rnd = (
        report("folding", layers=3),
        report("zigzag", layers=3),
        report("sorting"),
        report("random"),
    )
    assert (fo.sweeps, fo.resets) == (3, 2)
    assert (zig.sweeps, zig.resets) == (3, 0)
    assert (cl.sweeps, cl.resets) == (1, 0)
    assert (rnd.sweeps, rnd.resets) == (0, 0)
    assert report("folding", layers=5).resets == 4
    assert rnd.bin_coverage > 0.85 > fo.bin_coverage > cl.bin_coverage


def test_g3_continuity_zigzag_turns_smoothly_folding_jumps():
    fo, zig = report("folding", layers=3), report("zigzag", layers=3)
    assert fo.max_batch_jump > 0.7
    assert zig.max_batch_jump < 0.05
    assert report("saw").max_batch_jump < report("stair").max_batch_jump


def test_g4_local_diversity():
    assert report("random").within_batch_std == pytest.approx(RANDOM_WITHIN_BATCH_STD, abs=0.015)
    assert report("sorting").within_batch_std < 0.005
    jit = report("sorting", window_size=1000)
    assert jit.within_batch_std == pytest.approx((1000 / N) * RANDOM_WITHIN_BATCH_STD, rel=0.15)
    assert jit.sweeps == 1  # the global trend survives the jitter


def test_domain_metrics():
    domains = np.repeat(np.arange(4), N // 4)[np.argsort(np.argsort(SCORES))]  # domain = score quartile
    plain = report("sorting", window_size=400, domains=None)
    assert plain.longest_domain_run is None
    mixed = guideline_metrics(order_indices(SCORES, "random", seed=0), SCORES, 32, domains=domains)
    assert mixed.n_domains == 4 and mixed.mean_domains_per_batch > 3.5
    sorted_report = guideline_metrics(order_indices(SCORES, "sorting"), SCORES, 32, domains=domains)
    assert sorted_report.longest_domain_run == N // 4
    assert sorted_report.mean_domains_per_batch < 1.01


def test_helpers():
    assert longest_run(np.array([1, 1, 2, 2, 2, 1])) == 3
    assert longest_run(np.array([])) == 0
    q = score_quantiles([3.0, 1.0, 2.0, 2.0])
    assert q.tolist() == [1.0, 0.0, 0.5, 0.5]
    assert zigzag_legs(np.array([0, 0.5, 1, 0, 0.5, 1.0]), 0.5) == [(0, 2), (2, 3), (3, 5)]
    with pytest.raises(ValueError, match="permutation"):
        guideline_metrics([0, 0, 1], [1.0, 2.0, 3.0])
