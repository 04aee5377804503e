"""Reward shaping (z-score, centered rank, none), the zero-variance guard and mirrored coefficients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_fundamentals.evolution import centered_ranks, es_coefficients, shape_rewards, zscore


def test_zscore_uses_the_population_std_and_the_paper_epsilon():
    z = zscore([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(1.25)  # ddof 0, as numpy in the reference scripts
    expected = [(r - 2.5) / (std + 1e-8) for r in (1.0, 2.0, 3.0, 4.0)]
    np.testing.assert_allclose(z, expected, rtol=1e-12)
    assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("method", ["zscore", "centered_rank"])
def test_equal_rewards_give_zero_coefficients_not_nan(method):
    for value in (0.0, 0.1, -3.7, 1e12):
        out = shape_rewards([value] * 7, method)
        assert np.all(out == 0.0), (method, value, out)
    assert np.all(es_coefficients([0.3] * 6, method, mirrored=True) == 0.0)


def test_none_keeps_raw_rewards():
    np.testing.assert_array_equal(shape_rewards([0.5, 0.5, 2.0], "none"), [0.5, 0.5, 2.0])


def test_centered_ranks_match_openai_es_and_average_ties():
    np.testing.assert_allclose(centered_ranks([10.0, 30.0, 20.0]), [-0.5, 0.5, 0.0])
    rng = np.random.default_rng(0)
    r = rng.normal(size=9)
    openai = np.empty(9)
    openai[np.argsort(r)] = np.arange(9)
    np.testing.assert_allclose(centered_ranks(r), openai / 8 - 0.5)
    # ties share the average of their ranks
    np.testing.assert_allclose(centered_ranks([1.0, 1.0, 2.0, 3.0]), np.array([0.5, 0.5, 2, 3]) / 3 - 0.5)
    # invariant to a monotone transform of the rewards (z-score is not)
    np.testing.assert_allclose(centered_ranks(np.exp(r)), centered_ranks(r))
    assert not np.allclose(zscore(np.exp(r)), zscore(r))


def test_mirrored_coefficients_are_z_plus_minus_z_minus_over_all_evaluations():
    rewards = [0.9, 0.1, 0.4, 0.6, 0.5, 0.5]  # (+, −) pairs for directions 0, 1, 2
    z = (np.array(rewards) - np.mean(rewards)) / (np.std(rewards) + 1e-8)
    c = es_coefficients(rewards, "zscore", mirrored=True)
    np.testing.assert_allclose(c, [z[0] - z[1], z[2] - z[3], z[4] - z[5]], rtol=1e-12)
    assert c[0] > 0 > c[1] and c[2] == 0.0
    np.testing.assert_allclose(es_coefficients(rewards, "zscore"), z, rtol=1e-12)


def test_bad_rewards_fail_early():
    with pytest.raises(ValueError, match=r"members \[1\]"):
        zscore([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="even"):
        es_coefficients([1.0, 2.0, 3.0], mirrored=True)
    with pytest.raises(ValueError, match="'rank'"):
        shape_rewards([1.0, 2.0], "rank")
    with pytest.raises(ValueError, match="non-empty"):
        zscore([])
