"""CLOCK_BOOTTIME -> wall clock, kept right after clock steps, with process identities that never move.

BPF stamps events with CLOCK_BOOTTIME; the epoch (CLOCK_REALTIME - CLOCK_BOOTTIME) turns them into
wall time. That offset changes whenever the system clock is stepped (NTP/chrony correcting a clock
that booted wrong, an admin, a VM resumed), so one offset measured once per boot leaves every later
event off by the step. Here the offset is a history of segments [from_boot_ns, epoch_ns]: a reading
that differs from the current epoch by more than TOLERANCE_NS opens a new segment at the boot time of
the reading. A boot instant is converted with the epoch of the segment it falls in, so

- event times are within a loop period of the wall clock once a step is seen (on the CLOCK_REALTIME
  change notification, or at the next periodic reading);
- a process's identity start time (boot epoch + start floored to a clock tick) is computed with the
  segment of its own start, which never changes once written: the same on fork, exec, exit, /proc
  seeding and after a collector restart (the history is persisted per boot_id), and equal to the
  wall time of the start as known when it started.

Pure logic and persistence here; ``ClockSetWatch`` is the kernel notification (timerfd with
TFD_TIMER_CANCEL_ON_SET), ``ClockKeeper`` ties them to the collector's loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from execsight.collector import identity
from execsight.collector.identity import TICK_NS, boot_id

log = logging.getLogger("execsight.collector.clock")

TOLERANCE_NS = 1_000_000  # a real step is seconds; reading noise is microseconds
MAX_UNCERTAINTY_NS = 1_000_000  # a reading whose two boot clock reads are further apart is not used
RECHECK_NS = 1_000_000_000  # periodic reading: catches changes the notification misses
MAX_SEGMENTS = 1000  # bounds the state file; the oldest segments (long-dead processes) go first


@dataclass(frozen=True)
class Reading:
    boot_ns: int
    epoch_ns: int  # CLOCK_REALTIME - CLOCK_BOOTTIME at boot_ns
    uncertainty_ns: int


class OffsetSource(Protocol):
    def read(self) -> Reading: ...


class KernelClocks:
    """The real clocks: best (tightest) of a few CLOCK_BOOTTIME / CLOCK_REALTIME / CLOCK_BOOTTIME reads."""

    def read(self) -> Reading:
        best: Reading | None = None
        for _ in range(5):
            a = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            r = time.time_ns()
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            if best is None or b - a < best.uncertainty_ns:
                mid = (a + b) // 2
                best = Reading(mid, r - mid, b - a)
        assert best is not None
        return best


@dataclass
class BootClock:
    """Boot instant -> wall time through the offset history (segments sorted by from_boot_ns)."""

    segments: list[tuple[int, int]]
    _keys: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a boot clock needs at least one segment")
        self.segments = sorted(self.segments)
        self._keys = [s for s, _ in self.segments]

    @classmethod
    def fixed(cls, epoch_ns: int) -> BootClock:
        return cls([(0, epoch_ns)])

    @property
    def current_epoch_ns(self) -> int:
        return self.segments[-1][1]

    def epoch_at(self, boot_ns: int) -> int:
        i = bisect_right(self._keys, boot_ns) - 1
        return self.segments[max(i, 0)][1]

    def epoch_ns(self, boot_ns: int) -> int:
        """Event time in the epoch from a CLOCK_BOOTTIME reading (bpf_ktime_get_boot_ns)."""
        return identity.epoch_ns(self.epoch_at(boot_ns), boot_ns)

    def start_time_ns(self, start_boot_ns: int) -> int:
        """Identity start time from the kernel's start_boottime (ns since boot), floored to a tick."""
        return self.start_time_from_ticks(start_boot_ns // TICK_NS)

    def start_time_from_ticks(self, ticks: int) -> int:
        """Identity start time from /proc/<pid>/stat field 22 (clock ticks since boot)."""
        return identity.start_time_from_ticks(self.epoch_at(ticks * TICK_NS), ticks)

    def observe(self, reading: Reading) -> bool:
        """Takes a reading; True when it opened a new segment (the offset moved)."""
        if reading.uncertainty_ns > MAX_UNCERTAINTY_NS:
            return False
        if abs(reading.epoch_ns - self.current_epoch_ns) <= TOLERANCE_NS:
            return False
        at = max(reading.boot_ns, self._keys[-1] + 1)  # boot instants already converted keep their segment
        self.segments.append((at, reading.epoch_ns))
        self._keys.append(at)
        if len(self.segments) > MAX_SEGMENTS:
            del self.segments[0]
            del self._keys[0]
        return True


# ---------------------------------------------------------------------- persistence


def load(state_file: Path | None, source: OffsetSource, current_boot_id: str | None = None) -> BootClock:
    """The offset history of this boot (a new one on a new boot), updated with a reading taken now.

    Also reads the file of an older collector ({boot_id, boot_epoch_ns}: one segment from boot), so
    identities of processes it reported stay the same."""
    bid = boot_id() if current_boot_id is None else current_boot_id
    now = source.read()
    clock: BootClock | None = None
    if state_file is not None and bid:
        try:
            doc = json.loads(state_file.read_text())
            if doc.get("boot_id") == bid:
                segs = doc.get("segments") or [[0, doc["boot_epoch_ns"]]]
                clock = BootClock([(int(a), int(b)) for a, b in segs])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("boot clock state unreadable: starting a new history",
                            extra={"file": str(state_file), "error": str(exc)})
    if clock is None:
        clock = BootClock.fixed(now.epoch_ns)
        save(state_file, clock, bid)
    elif clock.observe(now):
        log.warning("system clock moved since the boot offset was recorded: new offset from now on",
                    extra={"step_ms": round((clock.segments[-1][1] - clock.segments[-2][1]) / 1e6, 3)})
        save(state_file, clock, bid)
    return clock


def save(state_file: Path | None, clock: BootClock, bid: str) -> None:
    if state_file is None:
        return
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boot_id": bid, "boot_epoch_ns": clock.segments[0][1],
                                   "segments": [list(s) for s in clock.segments]}))
        tmp.replace(state_file)
    except OSError as exc:
        log.error("cannot persist the boot clock offset: identities may change on restart",
                  extra={"file": str(state_file), "error": str(exc)})


# ---------------------------------------------------------------------- CLOCK_REALTIME change notification


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


CLOCK_REALTIME = 0
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
_FAR_FUTURE_S = 100 * 365 * 86400


class ClockSetWatch:
    """A CLOCK_REALTIME timerfd armed far in the future with TFD_TIMER_CANCEL_ON_SET: reading it fails
    with ECANCELED once the clock was set discontinuously (settimeofday, clock_settime, an adjtimex step,
    resume from suspend). ``fired()`` never blocks."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"timerfd_create: {os.strerror(e)}")
        self.fd: int = fd
        self.fired_count = 0
        self._arm()

    def _arm(self) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec = int(time.time()) + _FAR_FUTURE_S
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET,
                                      ctypes.byref(spec), None) < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"timerfd_settime: {os.strerror(e)}")

    def fired(self) -> bool:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.ECANCELED:
                raise
            self.fired_count += 1
            self._arm()
            return True
        return False  # the far-future timer expired: not a clock change

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Notifier(Protocol):
    def fired(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class ClockKeeper:
    """Keeps a BootClock current: a reading every ``recheck_ns`` and at once when the notifier fires."""

    clock: BootClock
    source: OffsetSource
    state_file: Path | None = None
    notifier: Notifier | None = None
    recheck_ns: int = RECHECK_NS
    boot_id: str = ""
    monotonic_ns: Callable[[], int] = time.monotonic_ns
    steps: int = 0
    _next_ns: int = 0

    def poll(self) -> bool:
        """Called on every loop of the collector, before new events are converted. True when the offset moved."""
        now = self.monotonic_ns()
        notified = self.notifier is not None and self.notifier.fired()
        if not notified and now < self._next_ns:
            return False
        self._next_ns = now + self.recheck_ns
        before = self.clock.current_epoch_ns
        if not self.clock.observe(self.source.read()):
            return False
        self.steps += 1
        log.warning("system clock stepped: event times follow the new offset", extra={
            "step_ms": round((self.clock.current_epoch_ns - before) / 1e6, 3), "notified": notified})
        save(self.state_file, self.clock, self.boot_id)
        return True

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()


def keeper(state_file: Path | None, source: OffsetSource | None = None) -> ClockKeeper:
    """The collector's keeper: history loaded (and updated) for this boot, notification when available."""
    src = source or KernelClocks()
    bid = boot_id()
    clock = load(state_file, src, bid)
    notifier: Notifier | None
    try:
        notifier = ClockSetWatch()
    except (OSError, AttributeError) as exc:
        log.warning("no CLOCK_REALTIME change notification: the offset is re-read every second only",
                    extra={"error": str(exc)})
        notifier = None
    return ClockKeeper(clock, src, state_file, notifier, boot_id=bid)
