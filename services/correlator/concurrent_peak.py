"""Peak of the summed peak RSS of concurrently live processes, with state bounded by the live count.

Each process contributes its peak RSS over [start, end] (event times: fork or first exec, exit).
Exact with per-process peaks, in O(live processes) space, when events are applied in time
order: time is cut into segments at the start times of live processes, and each segment keeps
the maximum of the summed peaks of the *exited* processes over it. When a process exits, every
segment from its start on gains its peak (the process was live over all of them); its start then
stops being a boundary and the two segments around it merge (any later exit covers both or neither).

Events do not arrive in time order: the collector publishes an exit only once its taskstats record
has arrived (tens of ms, up to its join timeout), after the forks of the processes that came next.
Applied as they come, one short process after another would all look concurrent. So events wait
in a small reorder queue and are applied in time order once they are older than a horizon behind
the newest event seen; the horizon follows the lateness of exits seen so far (bounded). An event
older than what was already applied is still applied, as an upper bound, and counted in ``late``.
Reading the peak applies the queue to a copy, so a completed task's peak is exact.

The state is JSON-able (a changelog holds it as is):
  s: segments [boundary_ns, max_exited_sum, live_starting_here]
  q: pending events [time_ns, kind (0 start, 1 exit), start_ns, peak], sorted
  w: newest event time seen; f: time of the last applied event; h: horizon (ns); late: count
A plain list is the state of an older version (segments only, applied in arrival order).
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right, insort
from typing import TypedDict

Segments = list[list[int]]

MIN_HORIZON_NS = 100_000_000  # typical taskstats lag is tens of ms
MAX_HORIZON_NS = 5_000_000_000  # beyond the collector's 2 s join timeout: bounds the queue
START, EXIT = 0, 1


class PeakState(TypedDict):
    s: Segments
    q: list[list[int]]
    w: int
    f: int
    h: int
    late: int


def new() -> PeakState:
    return {"s": [], "q": [], "w": 0, "f": 0, "h": MIN_HORIZON_NS, "late": 0}


def start(state: PeakState | Segments, start_ns: int) -> None:
    """A process became live at start_ns."""
    if isinstance(state, list):
        _seg_start(state, start_ns)
        return
    _queue(state, [start_ns, START, start_ns, 0])


def exit(state: PeakState | Segments, start_ns: int, peak: int, end_ns: int | None = None) -> None:
    """A process live since start_ns exited at end_ns (None: now, as far as this state knows) with this peak."""
    if isinstance(state, list):
        _seg_exit(state, start_ns, peak, None)
        return
    end = max(start_ns, state["w"] if end_ns is None else end_ns)
    lateness = state["w"] - end
    if lateness > 0:
        state["h"] = min(MAX_HORIZON_NS, max(state["h"], 2 * lateness))
    _queue(state, [end, EXIT, start_ns, peak])


def peak(state: PeakState | Segments, live_peaks: list[tuple[int, int]] | None = None) -> int:
    """The peak so far; live_peaks are (start_ns, current peak) of processes still live."""
    if isinstance(state, list):
        segs = state
    else:
        segs = copy.deepcopy(state["s"])
        for ev in state["q"]:
            _apply(segs, ev)
    if not segs:
        return sum(p for _, p in live_peaks or [])
    best = 0
    live = sorted(live_peaks or [])
    j = 0
    acc = 0
    for seg in segs:
        while j < len(live) and live[j][0] <= seg[0]:
            acc += live[j][1]
            j += 1
        best = max(best, seg[1] + acc)
    return best


def size(state: PeakState | Segments) -> int:
    """Rows held: segments plus queued events."""
    return len(state) if isinstance(state, list) else len(state["s"]) + len(state["q"])


# ---------------------------------------------------------------------- internals


def _queue(state: PeakState, ev: list[int]) -> None:
    t = ev[0]
    if t < state["f"]:
        # behind what was already applied: apply now, as an upper bound
        state["late"] += 1
        _apply(state["s"], ev)
        return
    insort(state["q"], ev)
    state["w"] = max(state["w"], t)
    cut = state["w"] - state["h"]
    q = state["q"]
    n = 0
    while n < len(q) and q[n][0] <= cut:
        _apply(state["s"], q[n])
        state["f"] = q[n][0]
        n += 1
    if n:
        del q[:n]


def _apply(segs: Segments, ev: list[int]) -> None:
    if ev[1] == START:
        _seg_start(segs, ev[2])
    else:
        _seg_exit(segs, ev[2], ev[3], ev[0])


def _seg_start(segs: Segments, start_ns: int) -> None:
    if segs and segs[-1][0] == start_ns:
        segs[-1][2] += 1
        return
    if not segs or start_ns > segs[-1][0]:
        segs.append([start_ns, 0, 1])
        return
    keys = [s[0] for s in segs]
    i = bisect_left(keys, start_ns)
    if i < len(segs) and segs[i][0] == start_ns:
        segs[i][2] += 1
        return
    # late event: split the segment it falls in, keeping its maximum on both sides (an upper bound)
    inherited = segs[i - 1][1] if i > 0 else 0
    segs.insert(i, [start_ns, inherited, 1])


def _seg_exit(segs: Segments, start_ns: int, peak: int, end_ns: int | None) -> None:
    """In time order every segment from start_ns on is before end_ns; a late exit (end_ns before later
    boundaries) covers only the segments that begin by end_ns (the last one in part: an upper bound)."""
    if not segs or start_ns < segs[0][0]:
        segs.insert(0, [start_ns, 0, 1])
    keys = [s[0] for s in segs]
    i = bisect_left(keys, start_ns)
    if i == len(segs) or segs[i][0] != start_ns:
        # its start was never seen: count it from the segment it falls in
        i -= 1
    else:
        segs[i][2] = max(0, segs[i][2] - 1)
    stop = len(segs) if end_ns is None else max(i + 1, bisect_right(keys, end_ns))
    for seg in segs[i:stop]:
        seg[1] += peak
    if segs[i][2] == 0 and i > 0:
        prev = segs[i - 1]
        prev[1] = max(prev[1], segs[i][1])
        del segs[i]
