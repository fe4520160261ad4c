"""The concurrent-peak summary equals a brute-force sweep and stays bounded by the live count."""

from __future__ import annotations

import random

from services.correlator import concurrent_peak as cp


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
