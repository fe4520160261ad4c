"""Event times follow the wall clock across clock steps and suspends; identities never move (pure, with a
fake clock source), and the CLOCK_REALTIME change notification is armed on the real kernel."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from execsight.collector import wallclock
from execsight.collector.assembler import Assembler
from execsight.collector.identity import TICK_NS
from execsight.collector.probes import ExitEvent, ForkEvent, KernelTotalsRaw
from execsight.collector.taskstats import TaskstatsRecord

MS = 1_000_000
S = 1_000_000_000
BOOTED_AT = 1_764_000_000 * S  # wall time of boot


@dataclass
class FakeClocks:
    """CLOCK_BOOTTIME and CLOCK_REALTIME of a pretend host; step() moves only the wall clock."""

    boot_ns: int = 3600 * S
    offset_ns: int = BOOTED_AT
    uncertainty_ns: int = 200

    def advance(self, ns: int) -> None:
        self.boot_ns += ns

    def step(self, ns: int) -> None:
        self.offset_ns += ns

    def wall(self, boot_ns: int | None = None) -> int:
        return (self.boot_ns if boot_ns is None else boot_ns) + self.offset_ns

    def read(self) -> wallclock.Reading:
        return wallclock.Reading(self.boot_ns, self.offset_ns, self.uncertainty_ns)

    def monotonic(self) -> int:
        return self.boot_ns


@dataclass
class FakeNotifier:
    pending: bool = False

    def fired(self) -> bool:
        was, self.pending = self.pending, False
        return was

    def close(self) -> None:
        pass


def keeper(clocks: FakeClocks, state: Path | None, notifier: FakeNotifier | None) -> wallclock.ClockKeeper:
    clock = wallclock.load(state, clocks, "boot-1")
    return wallclock.ClockKeeper(clock, clocks, state, notifier, boot_id="boot-1", monotonic_ns=clocks.monotonic)


def fork(pid: int, start_boot: int) -> ForkEvent:
    return ForkEvent(pid, 1, start_boot, start_boot, 0, 1, "x")


def exit_(pid: int, start_boot: int, ts: int) -> ExitEvent:
    return ExitEvent(pid, pid, 0, ts, start_boot, 1, False, "x", KernelTotalsRaw())


def ts_record(pid: int) -> TaskstatsRecord:
    return TaskstatsRecord(pid, pid, False, 16, 0, "x", 0, 1, 0, 5 * MS, 1000, 0, 1, 0, 4096, 8192,
                           10, 20, 0, 4096, 0, 1, 0, 7, 0, 0, 0)


def test_a_stepped_clock_is_followed_at_once_and_identities_keep_their_start(tmp_path: Path) -> None:
    clocks = FakeClocks()
    notifier = FakeNotifier()
    k = keeper(clocks, tmp_path / "boot.json", notifier)
    asm = Assembler("h", k.clock)
    clocks.advance(10 * MS)
    old_start = clocks.boot_ns
    asm.on_kernel(fork(10, old_start), clocks.boot_ns)
    (_, f1), = asm.drain()
    assert abs(f1["time_ns"] - clocks.wall(old_start)) < 50 * MS
    # the wall clock is stepped by +32 s (chrony correcting a clock that booted wrong): notified at once
    clocks.advance(200 * MS)
    clocks.step(32 * S)
    notifier.pending = True
    assert k.poll() and k.steps == 1
    clocks.advance(5 * MS)
    new_start = clocks.boot_ns
    asm.on_kernel(fork(11, new_start), clocks.boot_ns)
    asm.on_kernel(exit_(10, old_start, clocks.boot_ns), clocks.boot_ns)
    asm.on_kernel(exit_(11, new_start, clocks.boot_ns + MS), clocks.boot_ns)
    asm.tick(clocks.boot_ns + 10 * S)  # joins time out (no taskstats here)
    recs = {(n, r["pid"]): r for n, r in asm.drain()}
    assert abs(recs[("ProcessFork", 11)]["time_ns"] - clocks.wall(new_start)) < 50 * MS
    assert abs(recs[("ProcessExit", 10)]["time_ns"] - clocks.wall()) < 50 * MS
    # identity: the start as known when it started, the same on fork and exit
    assert recs[("ProcessExit", 10)]["start_time_ns"] == f1["start_time_ns"]
    assert recs[("ProcessExit", 11)]["start_time_ns"] == recs[("ProcessFork", 11)]["start_time_ns"]
    assert abs(recs[("ProcessFork", 11)]["start_time_ns"] - clocks.wall(new_start)) < 50 * MS


def test_a_restart_keeps_identities_and_takes_the_new_offset(tmp_path: Path) -> None:
    state = tmp_path / "boot.json"
    clocks = FakeClocks()
    k = keeper(clocks, state, None)
    asm = Assembler("h", k.clock)
    before_ticks = (clocks.boot_ns - 30 * S) // TICK_NS  # a process running since before the step
    p = asm.seed(50, 1, "sleep", before_ticks, None, "/usr/bin/sleep", ["sleep", "1d"], 0, None, {}, "/", 0)
    assert p is not None
    clocks.advance(S)
    clocks.step(-32 * S)
    clocks.advance(2 * S)
    assert k.poll()  # periodic reading (no notifier here): the 1 s recheck has passed
    after_ticks = clocks.boot_ns // TICK_NS + 1
    q = asm.seed(51, 1, "sleep", after_ticks, None, "/usr/bin/sleep", ["sleep", "1d"], 0, None, {}, "/", 0)
    assert q is not None
    # restart: a new collector loads the history of this boot
    clocks.advance(5 * S)
    again = Assembler("h", wallclock.load(state, clocks, "boot-1"))
    p2 = again.seed(50, 1, "sleep", before_ticks, None, "/usr/bin/sleep", ["sleep"], 0, None, {}, "/", 0)
    q2 = again.seed(51, 1, "sleep", after_ticks, None, "/usr/bin/sleep", ["sleep"], 0, None, {}, "/", 0)
    assert p2 is not None and q2 is not None
    assert (p2.start_ns, q2.start_ns) == (p.start_ns, q.start_ns)
    assert abs(q.start_ns - clocks.wall(after_ticks * TICK_NS)) < 50 * MS
    # a new boot starts a new history
    other = wallclock.load(state, clocks, "boot-2")
    assert len(other.segments) == 1 and other.current_epoch_ns == clocks.offset_ns


def test_the_stale_offset_of_an_older_collector_is_corrected_without_moving_its_identities(tmp_path: Path) -> None:
    """The file an older collector wrote holds one offset per boot: 32 s off once the clock was stepped."""
    state = tmp_path / "boot.json"
    clocks = FakeClocks()
    stale = clocks.offset_ns - 32 * S
    state.write_text(json.dumps({"boot_id": "boot-1", "boot_epoch_ns": stale}))
    clock = wallclock.load(state, clocks, "boot-1")
    assert clock.start_time_from_ticks(100) == stale + 100 * TICK_NS  # what the older collector reported
    assert abs(clock.epoch_ns(clocks.boot_ns + MS) - clocks.wall(clocks.boot_ns + MS)) < 50 * MS
    assert json.loads(state.read_text())["segments"][0] == [0, stale]


def test_suspend_resume_and_noisy_readings() -> None:
    clocks = FakeClocks()
    notifier = FakeNotifier()
    k = keeper(clocks, None, notifier)
    # suspended for an hour: both clocks advanced, the offset is the same: nothing to change
    clocks.advance(3600 * S)
    notifier.pending = True
    assert not k.poll()
    # resumed with the wall clock 300 ms behind (set from the RTC): followed at the next reading
    clocks.step(-300 * MS)
    clocks.advance(S)
    assert k.poll()
    assert abs(k.clock.epoch_ns(clocks.boot_ns) - clocks.wall()) < MS
    # a reading that was preempted between its two boot clock reads is not used
    clocks.step(5 * S)
    clocks.uncertainty_ns = 20 * MS
    clocks.advance(2 * S)
    assert not k.poll()
    clocks.uncertainty_ns = 200
    clocks.advance(2 * S)
    assert k.poll() and k.steps == 2


def test_history_is_bounded_and_ordered() -> None:
    clock = wallclock.BootClock.fixed(BOOTED_AT)
    for i in range(1, wallclock.MAX_SEGMENTS + 50):
        assert clock.observe(wallclock.Reading(i * S, BOOTED_AT + i * 10 * MS, 100))
    assert len(clock.segments) == wallclock.MAX_SEGMENTS
    assert clock.epoch_at(100 * S + 1) == BOOTED_AT + 100 * 10 * MS
    # a reading stamped before the newest segment cannot rewrite instants already converted
    assert clock.observe(wallclock.Reading(5 * S, BOOTED_AT, 100))
    assert clock.segments[-1][0] > clock.segments[-2][0]


def test_real_kernel_clock_readings_and_change_notification_armed() -> None:
    """Without stepping this machine's clock: the real offset source agrees with the wall clock, and
    the timerfd is armed on CLOCK_REALTIME with TFD_TIMER_ABSTIME|TFD_TIMER_CANCEL_ON_SET and quiet."""
    r = wallclock.KernelClocks().read()
    assert r.uncertainty_ns < wallclock.MAX_UNCERTAINTY_NS
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert abs(wallclock.BootClock.fixed(r.epoch_ns).epoch_ns(boot) - time.time_ns()) < MS
    w = wallclock.ClockSetWatch()
    try:
        info = dict(line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{w.fd}").read_text().splitlines())
        assert info["clockid"].strip() == "0"
        assert int(info["settime flags"].strip(), 8) == (wallclock.TFD_TIMER_ABSTIME
                                                        | wallclock.TFD_TIMER_CANCEL_ON_SET)
        assert not w.fired() and w.fired_count == 0
        assert os.get_blocking(w.fd) is False
    finally:
        w.close()


def test_taskstats_fallback_exits_use_the_same_clock() -> None:
    clocks = FakeClocks()
    k = keeper(clocks, None, None)
    clocks.step(10 * S)
    clocks.advance(2 * S)
    assert k.poll()
    asm = Assembler("h", k.clock, fallback=True)
    rec = ts_record(70)
    asm.on_taskstats(rec, clocks.boot_ns)
    asm.tick(clocks.boot_ns + S)
    exits = [r for n, r in asm.drain() if n == "ProcessExit"]
    assert exits and abs(exits[0]["time_ns"] - clocks.wall()) < 50 * MS
