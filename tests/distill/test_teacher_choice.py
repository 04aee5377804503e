"""The teacher-choice tool on synthetic data: a known saturation point is recovered inside its interval, a
monotone gain reports none, the broken line finds its break, and too few teachers fail clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_fundamentals.distill import fit_teacher_gain, suggest_alpha, teacher_gap


def synthetic(gain_of_gap, n: int = 12, noise: float = 0.002, seed: int = 0, student_loss: float = 2.0):
    rng = np.random.default_rng(seed)
    gaps = np.linspace(-0.3, 0.6, n)
    teacher_loss = student_loss / np.exp(gaps)
    gain = gain_of_gap(gaps) + rng.normal(0, noise, n)
    return teacher_loss, gain


def test_gap_is_log_ratio():
    assert teacher_gap(1.0, math.e) == pytest.approx(1.0)
    np.testing.assert_allclose(teacher_gap([2.0, 4.0], 2.0), [0.0, -math.log(2)])
    with pytest.raises(ValueError, match="> 0"):
        teacher_gap([0.0], 1.0)


def test_quadratic_saturation_is_recovered_with_an_interval():
    vertex = 0.25
    teacher_loss, gain = synthetic(lambda g: 0.05 - 0.4 * (g - vertex) ** 2)
    choice = fit_teacher_gain(teacher_loss, 2.0, gain, model="quadratic", n_bootstrap=300, seed=1)
    assert choice.model == "quadratic"
    assert choice.g_star == pytest.approx(vertex, abs=0.03)
    lo, hi = choice.interval
    assert lo <= choice.g_star <= hi and hi - lo < 0.2
    assert lo - 0.02 <= vertex <= hi + 0.02  # a percentile interval of a noisy estimate, not an exact cover
    assert choice.saturating_share > 0.9
    assert choice.teacher_loss_star == pytest.approx(2.0 / math.exp(choice.g_star))
    assert choice.teacher_loss_interval[0] <= choice.teacher_loss_star <= choice.teacher_loss_interval[1]
    assert choice.r2 > 0.9
    np.testing.assert_allclose(choice.predict(vertex), 0.05, atol=0.01)
    assert "saturates" in choice.summary() and "not the paper's" in choice.summary()
    assert choice.to_dict()["g_star"] == choice.g_star


def test_monotone_gain_reports_no_saturation():
    teacher_loss, gain = synthetic(lambda g: 0.01 + 0.1 * g)
    choice = fit_teacher_gain(teacher_loss, 2.0, gain, model="quadratic", n_bootstrap=200)
    assert choice.g_star is None and choice.teacher_loss_star is None
    assert choice.saturating_share < 0.5 and choice.interval is None
    assert "no saturation" in choice.summary()


def test_broken_line_finds_the_break():
    brk = 0.2
    teacher_loss, gain = synthetic(lambda g: np.where(g < brk, 0.2 * (g - brk), -0.15 * (g - brk)), n=16)
    choice = fit_teacher_gain(teacher_loss, 2.0, gain, model="hinge", n_bootstrap=200)
    assert choice.model == "hinge"
    assert choice.g_star == pytest.approx(brk, abs=0.04)
    assert choice.interval[0] - 0.02 <= brk <= choice.interval[1] + 0.02
    auto = fit_teacher_gain(teacher_loss, 2.0, gain, model="auto", n_bootstrap=0)
    assert auto.model == "hinge" and set(auto.aic) == {"quadratic", "hinge"}


def test_per_teacher_student_losses_are_accepted():
    teacher_loss, gain = synthetic(lambda g: 0.05 - 0.4 * (g - 0.2) ** 2)
    students = np.full(teacher_loss.shape, 2.0)
    a = fit_teacher_gain(teacher_loss, students, gain, n_bootstrap=0)
    b = fit_teacher_gain(teacher_loss, 2.0, gain, n_bootstrap=0)
    assert a.g_star == pytest.approx(b.g_star)


def test_bootstrap_is_reproducible_by_seed():
    teacher_loss, gain = synthetic(lambda g: 0.05 - 0.4 * (g - 0.25) ** 2, noise=0.01)
    a = fit_teacher_gain(teacher_loss, 2.0, gain, n_bootstrap=100, seed=3)
    b = fit_teacher_gain(teacher_loss, 2.0, gain, n_bootstrap=100, seed=3)
    assert a.interval == b.interval


def test_too_few_teachers_and_bad_input_fail_clearly():
    with pytest.raises(ValueError, match="at least 4 teachers"):
        fit_teacher_gain([1.0, 2.0, 3.0], 2.0, [0.1, 0.2, 0.1])
    with pytest.raises(ValueError, match="at least 5 teachers"):
        fit_teacher_gain([1.0, 2.0, 3.0, 4.0], 2.0, [0.1, 0.2, 0.1, 0.0], model="hinge")
    with pytest.raises(ValueError, match="one gain per teacher"):
        fit_teacher_gain([1.0, 2.0, 3.0, 4.0], 2.0, [0.1, 0.2])
    with pytest.raises(ValueError, match="accepted: quadratic, hinge, auto"):
        fit_teacher_gain([1.0, 2.0, 3.0, 4.0], 2.0, [0.1, 0.2, 0.1, 0.0], model="cubic")
    with pytest.raises(ValueError, match="distinct"):
        fit_teacher_gain([1.0, 1.0, 1.0, 2.0], 2.0, [0.1, 0.2, 0.1, 0.0])


def test_alpha_rule_of_thumb():
    assert suggest_alpha(-0.1) == (0.2, 0.4)
    assert suggest_alpha(0.3) == (0.6, 1.0)
