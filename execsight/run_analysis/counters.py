"""Kernel delay counters that cannot be true (pure).

Delays (run-queue, block I/O) are summed per thread, so a task's total may exceed its wall
time times its processes when they are multi-threaded (``bwa mem -t 8`` waits for cores on
eight threads at once). The kernel also reports values that no thread count explains, e.g. a
block-I/O delay equal to the time since boot (hundreds of times the wall time). A delay above
the wall time x processes x ``MAX_THREADS_PER_PROCESS`` is taken as such a value and dropped.
"""

from __future__ import annotations

MAX_THREADS_PER_PROCESS = 64


def plausible_delay(delay_ns: float, wall_ns: float, processes: float) -> bool:
    return delay_ns <= wall_ns * max(1.0, processes) * MAX_THREADS_PER_PROCESS
