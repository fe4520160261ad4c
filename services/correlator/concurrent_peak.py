"""Peak of the summed peak RSS of concurrently live processes, with state bounded by the live count.

Each process contributes its peak RSS over [start, end]. Exact with per-process peaks, in
O(live processes) space: time is cut into segments at the start times of live processes,
and each segment keeps the maximum of the summed peaks of the *exited* processes over it.
When a process exits, every segment from its start on gains its peak (the process was live
over all of them); its start then stops being a boundary and the two segments around it
merge (any later exit covers both or neither). The state is a JSON-able list of
[boundary_ns, max_exited_sum, live_starting_here].
"""

from __future__ import annotations

from bisect import bisect_left

Segments = list[list[int]]


def start(segs: Segments, start_ns: int) -> None:
    """A process became live at start_ns."""
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


def exit(segs: Segments, start_ns: int, peak: int) -> None:
    """A process live since start_ns exited with this peak RSS."""
    if not segs or start_ns < segs[0][0]:
        segs.insert(0, [start_ns, 0, 1])
    keys = [s[0] for s in segs]
    i = bisect_left(keys, start_ns)
    if i == len(segs) or segs[i][0] != start_ns:
        # its start was never seen: count it from the segment it falls in
        i -= 1
    else:
        segs[i][2] = max(0, segs[i][2] - 1)
    for seg in segs[i:]:
        seg[1] += peak
    if segs[i][2] == 0 and i > 0:
        prev = segs[i - 1]
        prev[1] = max(prev[1], segs[i][1])
        del segs[i]


def peak(segs: Segments, live_peaks: list[tuple[int, int]] | None = None) -> int:
    """The peak so far; live_peaks are (start_ns, current peak) of processes still live."""
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
