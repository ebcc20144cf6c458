import random

from hypothesis import given, strategies as st

from shoal.replay_window import REJECT_AFTER_MESSAGES, WINDOW_SIZE, ReplayWindow


def test_in_order_accepted_once():
    w = ReplayWindow()
    for i in range(10000):
        assert w.check(i)
    for i in range(10000 - 100, 10000):
        assert not w.check(i)


def test_window_is_at_least_2048():
    assert WINDOW_SIZE >= 2048
    w = ReplayWindow()
    assert w.check(5000)
    assert w.check(5000 - WINDOW_SIZE)
    assert not w.check(5000 - WINDOW_SIZE - 1)  # too old


def test_reordered_within_window():
    w = ReplayWindow()
    order = list(range(3000))
    random.Random(1).shuffle(order)
    # a random permutation of 3000 counters never reorders by more than the window
    assert all(w.check(c) for c in order)
    assert not any(w.check(c) for c in range(3000))


def test_big_jump_clears_old_bits():
    w = ReplayWindow()
    assert w.check(1)
    assert w.check(1_000_000)
    assert not w.check(1)
    # counters just inside the new window are fresh even though their ring slots were used
    assert w.check(1_000_000 - 64)
    assert not w.check(1_000_000)


def test_reject_after_messages():
    assert not ReplayWindow().check(REJECT_AFTER_MESSAGES)


@given(st.lists(st.integers(min_value=0, max_value=20000), max_size=300))
def test_matches_reference_model(counters):
    """Against a set-based model: accept iff new and within the window of the highest seen."""
    w = ReplayWindow()
    seen: set[int] = set()
    highest = 0
    for c in counters:
        expect = c not in seen and not (c < highest and highest - c > WINDOW_SIZE)
        assert w.check(c) == expect, c
        if expect:
            seen.add(c)
            highest = max(highest, c)
