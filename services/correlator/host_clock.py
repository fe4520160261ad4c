"""The clock that closes a host's idle runs: no single record can move it (pure).

Runs time out when nothing of theirs happened for the run timeout, measured against the host's
time. Taking the newest event time seen made one record dated ten years ahead close every run on
the host at once. This clock is the median of the last few process-event times: one outlier
(far ahead or far behind) never moves it; two agreeing records do, so a quiet host still advances
with its next events. The boundary (validation.py) refuses times far from the wall clock besides.
"""

from __future__ import annotations

from collections import deque

WINDOW = 3  # odd: the median of the last 3 ignores any one of them


class HostClock:
    def __init__(self, start_ns: int = 0, window: int = WINDOW) -> None:
        self._times: deque[int] = deque(maxlen=window)
        self._floor = start_ns  # from the state: the latest activity of the runs loaded

    def observe(self, time_ns: int) -> None:
        self._times.append(time_ns)

    def reset(self, start_ns: int) -> None:
        self._times.clear()
        self._floor = start_ns

    def now(self) -> int:
        """The host's time (0 when nothing is known): the median of the recent event times, never
        before the floor it was loaded with until enough events have been seen to outvote it."""
        times = self._times
        if len(times) < times.maxlen:  # type: ignore[operator]
            if not times:
                return self._floor
            # too few to vote: the floor counts as one voice, so one record alone cannot move the clock
            ordered = sorted([*times, self._floor] if self._floor else times)
            return ordered[(len(ordered) - 1) // 2]
        return sorted(times)[len(times) // 2]
