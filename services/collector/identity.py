"""Process identity: (host_id, pid, start_time_ns), derived the same way on every path.

The kernel keeps ``task->start_boottime`` in ns; /proc/<pid>/stat exposes it in clock
ticks (floor). To make every path agree exactly (BPF at fork/exec/exit, /proc seeding,
a collector restart), the identity is the start time floored to a clock tick, plus
the boot time in the epoch that applied at that instant. Which epoch applied when is
kept by services/collector/wallclock.py (per boot_id, persisted, updated on clock steps),
so a restarted collector derives the same identities and event times follow the wall clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
TICK_NS = 1_000_000_000 // CLK_TCK


def start_time_ns(boot_epoch_ns: int, start_boot_ns: int) -> int:
    """Identity start time from the kernel's start_boottime (ns since boot)."""
    return boot_epoch_ns + (start_boot_ns // TICK_NS) * TICK_NS


def start_time_from_ticks(boot_epoch_ns: int, ticks: int) -> int:
    """Identity start time from /proc/<pid>/stat field 22 (clock ticks since boot)."""
    return boot_epoch_ns + ticks * TICK_NS


def epoch_ns(boot_epoch_ns: int, boot_ns: int) -> int:
    """Event time in the epoch from a CLOCK_BOOTTIME reading (bpf_ktime_get_boot_ns)."""
    return boot_epoch_ns + boot_ns


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def boot_ns_now() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def split_wait_status(status: int) -> tuple[int | None, int | None, bool]:
    """wait(2) status -> (exit_code, signal, core_dumped)."""
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF, None, False
    return None, sig, bool(status & 0x80)
