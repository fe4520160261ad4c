"""The collector's adaptive CPU policy: yield while keeping up, claim a fair share when behind (pure logic)."""

from __future__ import annotations

import os
import resource

import pytest

from execsight.collector.cpu_policy import AdaptivePolicy, CpuPolicy, can_leave_idle

MS = 1_000_000


def test_stays_idle_while_events_are_fresh() -> None:
    p = AdaptivePolicy()
    assert [p.update(lag * MS, t * MS) for t, lag in enumerate([0, 40, 60, 250])] == [None] * 4
    assert p.current == os.SCHED_IDLE and p.escalations == 0


def test_escalates_as_soon_as_the_lag_passes_the_threshold() -> None:
    p = AdaptivePolicy()
    assert p.update(251 * MS, 0) == os.SCHED_BATCH
    assert p.current == os.SCHED_BATCH and p.escalations == 1
    assert p.update(900 * MS, 50 * MS) is None  # already there


def test_relaxes_only_after_the_lag_stayed_low_for_the_hold_time() -> None:
    p = AdaptivePolicy(relax_hold_ns=3000 * MS)
    p.update(500 * MS, 0)
    assert p.update(10 * MS, 1000 * MS) is None  # calm from here
    assert p.update(10 * MS, 3500 * MS) is None  # 2.5 s calm
    assert p.update(10 * MS, 4000 * MS) == os.SCHED_IDLE
    assert p.current == os.SCHED_IDLE


def test_a_lag_spike_restarts_the_hold_so_the_policy_does_not_flap() -> None:
    p = AdaptivePolicy(relax_hold_ns=3000 * MS)
    p.update(500 * MS, 0)
    p.update(10 * MS, 1000 * MS)
    assert p.update(100 * MS, 3000 * MS) is None  # over relax_lag: calm period starts again
    p.update(10 * MS, 3100 * MS)
    assert p.update(10 * MS, 5000 * MS) is None
    assert p.update(10 * MS, 6100 * MS) == os.SCHED_IDLE
    assert p.update(300 * MS, 6200 * MS) == os.SCHED_BATCH
    assert p.escalations == 2


@pytest.mark.parametrize(("capeff", "nice_limit", "expected"), [
    ("000001ffffffffff", 0, True),   # root with every capability
    ("00000000a80425fb", 0, False),  # Docker's default set: no CAP_SYS_NICE, RLIMIT_NICE 0
    ("0000000000800000", 0, True),   # CAP_SYS_NICE alone
    ("0000000000000000", 20, True),  # RLIMIT_NICE allowing nice 0
    ("0000000000000000", resource.RLIM_INFINITY, True),
])
def test_leaving_idle_needs_cap_sys_nice_or_rlimit_nice(capeff: str, nice_limit: int, expected: bool) -> None:
    assert can_leave_idle(f"Name:\tx\nCapInh:\t0\nCapEff:\t{capeff}\n", nice_limit) is expected


def test_unknown_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="adaptive, batch, other"):
        CpuPolicy("fifo")
