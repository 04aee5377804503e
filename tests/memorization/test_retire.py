"""RetireBook: streaks, the never-below-threshold rule, padded seeded plans, re-admission and state."""

from __future__ import annotations

import pytest

from hf_fundamentals.memorization import MemFTConfig, RetireBook


def test_an_item_retires_only_after_k_learned_visits_in_a_row():
    book = RetireBook(3, retire_after=3)
    trace = [True, True, False, True, True]  # the miss resets the streak
    assert [book.visit(0, learned) for learned in trace] == [False] * 5
    assert book.visit(0, True) is True
    assert book.retired == {0}
    assert book.visit(0, True) is False  # already retired (a padding repeat)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_no_item_retires_with_a_miss_in_its_last_k_visits(k):
    import numpy as np

    rng = np.random.default_rng(k)
    book, history = RetireBook(5, retire_after=k), {i: [] for i in range(5)}
    for _ in range(200):
        item, learned = int(rng.integers(5)), bool(rng.random() < 0.8)
        if item in book.retired:
            continue
        history[item].append(learned)
        if book.visit(item, learned):
            assert len(history[item]) >= k and all(history[item][-k:])
    for item in range(5):
        if item not in book.retired:
            assert not (len(history[item]) >= k and all(history[item][-k:]))


def test_plans_skip_retired_items_and_pad_to_whole_steps():
    book = RetireBook(10, retire_after=1, seed=7)
    first = book.plan_epoch(step_items=4)
    assert len(first) == 12 and sorted(set(first)) == list(range(10))
    book.visit_all([(i, True) for i in (0, 1, 2, 3, 4, 5, 6)])
    second = book.plan_epoch(step_items=4)
    assert len(second) == 4 and set(second) == {7, 8, 9}
    assert RetireBook(10, 1, seed=7).plan_epoch(4) == first  # seeded by (seed, epoch)
    book.visit_all([(7, True), (8, True), (9, True)])
    assert book.all_retired and book.plan_epoch(4) == []


def test_recheck_schedule_and_readmission():
    book = RetireBook(6, retire_after=1)
    book.visit_all([(0, True), (1, True), (2, False)])
    assert book.retired == {0, 1} and book.recheck_due()  # 3 visits >= 2 retired
    assert book.readmit([1, 5]) == [1]  # 5 was never retired
    assert book.retired == {0} and book.streak[1] == 0 and book.readmitted == 1
    assert not book.recheck_due()  # nothing trained since the recheck
    book.visit(3, False)
    assert book.recheck_due()


def test_state_round_trip_replays_the_current_plan():
    book = RetireBook(9, retire_after=2, seed=1)
    book.plan_epoch(3)
    book.visit_all([(4, True), (4, True), (2, True)])
    book.steps_in_epoch = 1
    other = RetireBook(9, retire_after=2)
    other.load_state_dict(book.state_dict())
    assert other.state_dict() == book.state_dict() and other.resume_pending
    with pytest.raises(ValueError, match="covers 9 items"):
        RetireBook(8, 2).load_state_dict(book.state_dict())


def test_config_guards():
    with pytest.raises(ValueError, match="must be >= 1"):
        RetireBook(3, retire_after=0)
    with pytest.raises(ValueError, match="sw_curriculum"):
        MemFTConfig("sw_curriculum", retire_after=2)
    assert (
        MemFTConfig("ot", hysteresis_high=0.6).learned_loss_threshold
        < MemFTConfig("ot").learned_loss_threshold
    )
