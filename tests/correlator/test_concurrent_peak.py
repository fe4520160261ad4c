"""The concurrent-peak summary equals a brute-force sweep and stays bounded by the live count,
also when exits arrive after later starts (as the collector publishes them)."""

from __future__ import annotations

import random

from execsight.correlator import concurrent_peak as cp


def brute(intervals: list[tuple[int, int, int]]) -> int:
    points = sorted({s for s, _, _ in intervals} | {e for _, e, _ in intervals})
    return max((sum(p for s, e, p in intervals if s <= t <= e) for t in points), default=0)


def test_matches_brute_force_on_random_trees() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        intervals = []
        for _ in range(rng.randint(1, 15)):
            s = rng.randint(0, 60)
            intervals.append((s, s + rng.randint(0, 40), rng.randint(1, 1000)))
        events = sorted([(s, 0, i) for i, (s, _, _) in enumerate(intervals)]
                        + [(e, 1, i) for i, (_, e, _) in enumerate(intervals)])
        segs: cp.Segments = []
        for _, kind, i in events:
            s, _, p = intervals[i]
            if kind == 0:
                cp.start(segs, s)
            else:
                cp.exit(segs, s, p)
        assert cp.peak(segs) == brute(intervals), intervals


def test_sequential_helpers_do_not_add_up_and_state_stays_small() -> None:
    segs: cp.Segments = []
    cp.start(segs, 0)  # a long-lived root
    t = 1
    for _ in range(100_000):  # a shell loop of short helpers, one at a time
        cp.start(segs, t)
        cp.exit(segs, t, 5 << 20)
        t += 2
        assert len(segs) <= 3
    cp.exit(segs, 0, 10 << 20)
    assert cp.peak(segs) == (10 << 20) + (5 << 20)


def test_live_processes_count_in_the_running_estimate() -> None:
    segs: cp.Segments = []
    cp.start(segs, 0)
    cp.start(segs, 5)
    cp.exit(segs, 5, 100)
    assert cp.peak(segs, [(0, 40)]) == 140


MS = 1_000_000


def _events(intervals: list[tuple[int, int, int]], exit_delay: list[int]) -> list[tuple[int, int, int]]:
    """(arrival time, kind, index): starts arrive when they happen, exits exit_delay[i] later."""
    return sorted([(s, 0, i) for i, (s, _, _) in enumerate(intervals)]
                  + [(e + exit_delay[i], 1, i) for i, (_, e, _) in enumerate(intervals)])


def _feed(state: cp.PeakState, intervals: list[tuple[int, int, int]], events: list[tuple[int, int, int]]) -> None:
    for _, kind, i in events:
        s, e, p = intervals[i]
        if kind == 0:
            cp.start(state, s)
        else:
            cp.exit(state, s, p, e)


def _random_intervals(rng: random.Random) -> list[tuple[int, int, int]]:
    out = []
    for _ in range(rng.randint(1, 15)):
        s = rng.randint(0, 600) * MS
        out.append((s, s + rng.randint(0, 400) * MS, rng.randint(1, 1000)))
    return out


def test_exits_published_late_are_put_back_in_time_order() -> None:
    """The collector holds each exit for its taskstats record: up to tens of ms behind later forks."""
    rng = random.Random(11)
    for _ in range(2000):
        intervals = _random_intervals(rng)
        events = _events(intervals, [rng.randint(0, 90) * MS for _ in intervals])
        state = cp.new()
        _feed(state, intervals, events)
        assert cp.peak(state) == brute(intervals), intervals
        assert state["late"] == 0


def test_later_than_the_horizon_is_an_upper_bound_and_the_horizon_follows() -> None:
    rng = random.Random(5)
    grew = 0
    for _ in range(1000):
        intervals = _random_intervals(rng)
        events = _events(intervals, [rng.randint(0, 3000) * MS for _ in intervals])
        state = cp.new()
        _feed(state, intervals, events)
        assert cp.peak(state) >= brute(intervals)
        grew += state["h"] > cp.MIN_HORIZON_NS
        assert state["h"] <= cp.MAX_HORIZON_NS
    assert grew > 500


def test_sequential_helpers_with_late_exits_count_one_at_a_time_in_bounded_state() -> None:
    """A shell loop of 100,000 helpers (2 ms each, 1 ms apart), each exit published 40 ms late."""
    state = cp.new()
    cp.start(state, 0)
    t = MS
    pending: list[tuple[int, int, int]] = []
    biggest = 0
    for k in range(100_000):
        cp.start(state, t)
        size = (5 << 20) + (k % 13) * 4096
        biggest = max(biggest, size)
        pending.append((t, t + 2 * MS, size))
        while pending and pending[0][1] + 40 * MS <= t:
            s, e, p = pending.pop(0)
            cp.exit(state, s, p, e)
        t += 3 * MS
        assert cp.size(state) <= 3 + 2 * (140 // 3 + 2)  # segments + the events of the last 140 ms
    for s, e, p in pending:
        cp.exit(state, s, p, e)
    cp.exit(state, 0, 10 << 20, t)
    assert cp.peak(state) == (10 << 20) + biggest
    assert state["late"] == 0


def test_live_processes_count_in_the_running_estimate_with_queued_events() -> None:
    state = cp.new()
    cp.start(state, 0)
    cp.start(state, 5)
    cp.exit(state, 5, 100, 7)
    assert cp.peak(state, [(0, 40)]) == 140
    assert cp.size(state) == 3  # nothing applied yet: all within the horizon
