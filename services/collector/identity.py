"""Process identity: (host_id, pid, start_time_ns), derived the same way on every path.

The kernel keeps ``task->start_boottime`` in ns; /proc/<pid>/stat exposes it in clock
ticks (floor). To make every path agree exactly (BPF at fork/exec/exit, /proc seeding,
a collector restart), the identity is the start time floored to a clock tick, plus
the boot time in the epoch. The boot epoch is measured once per boot and persisted
(keyed by boot_id), so a restarted collector derives the same identities.
"""

from __future__ import annotations

import json
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


def measure_boot_epoch_ns() -> int:
    """CLOCK_REALTIME - CLOCK_BOOTTIME, best of a few tight readings."""
    best: tuple[int, int] | None = None
    for _ in range(5):
        a = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        r = time.time_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    assert best is not None
    return best[1]


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def load_boot_epoch_ns(state_file: Path | None) -> int:
    """The persisted boot epoch for this boot, measured and stored on first use."""
    bid = boot_id()
    if state_file is not None:
        try:
            doc = json.loads(state_file.read_text())
            if doc.get("boot_id") == bid and bid:
                return int(doc["boot_epoch_ns"])
        except (OSError, ValueError, KeyError):
            pass
    value = measure_boot_epoch_ns()
    if state_file is not None:
        try:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"boot_id": bid, "boot_epoch_ns": value}))
            tmp.replace(state_file)
        except OSError:
            pass
    return value


def boot_ns_now() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def split_wait_status(status: int) -> tuple[int | None, int | None, bool]:
    """wait(2) status -> (exit_code, signal, core_dumped)."""
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF, None, False
    return None, sig, bool(status & 0x80)
