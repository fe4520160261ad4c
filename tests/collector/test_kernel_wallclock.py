"""Real kernel, root: event times are wall-clock times although the persisted boot offset is 32 s stale
(the clock was stepped after it was recorded), and identities stay the same across restarts (marker: ebpf).
The machine's clock is never touched: the stale offset is what an older collector left in its state file."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from execsight.collector import procfs, wallclock
from execsight.collector.identity import TICK_NS, boot_id

from .feed import CollectorProcess, JsonlFeed, Rec

pytestmark = pytest.mark.ebpf

MS = 1_000_000
STALE_NS = 32_000_000_000


def _collector(d: Path, out: Path, name: str) -> CollectorProcess:
    c = CollectorProcess(["--output", "jsonl", str(out), "--no-imds", "--sample-interval", "1",
                          "--host-interval", "2", "--mode", "ebpf"],
                         env={"EXECSIGHT_STATE_DIR": str(d / "state")}, log_path=d / f"{name}.log")
    c.wait_started()
    return c


def _exec_of(feed: JsonlFeed, pid: int, seeded: bool) -> Rec:
    recs: list[Rec] = feed.wait_for(lambda rs: [r for r in rs if r["type"] == "ProcessExec" and r["pid"] == pid
                                                and r["seeded"] is seeded], 30)
    return recs[-1]


def _timed_child(feed: JsonlFeed) -> tuple[int, int, Rec]:
    """Runs a marked child and returns (wall time before, wall time after, its exec record)."""
    marker = uuid.uuid4().hex
    before = time.time_ns()
    subprocess.run(["sh", "-c", "exit 0", marker], check=True)
    after = time.time_ns()
    recs: list[Rec] = feed.wait_for(lambda rs: [r for r in rs if r["type"] == "ProcessExec"
                                                and r["argv"][-1:] == [marker]], 30)
    return before, after, recs[-1]


def test_stale_offset_corrected_and_identities_stable_across_restart(tmp_path: Path) -> None:
    state = tmp_path / "state" / "collector" / "boot_epoch.json"
    state.parent.mkdir(parents=True)
    real = wallclock.KernelClocks().read().epoch_ns
    state.write_text(json.dumps({"boot_id": boot_id(), "boot_epoch_ns": real - STALE_NS}))
    old = subprocess.Popen(["sleep", "300"])  # running before: reported by the older collector with the stale offset
    st = procfs.read_stat(old.pid)
    assert st is not None
    out = tmp_path / "events.jsonl"
    try:
        c = _collector(tmp_path, out, "first")
        feed = JsonlFeed(out)
        try:
            seeded = _exec_of(feed, old.pid, True)
            assert seeded["start_time_ns"] == real - STALE_NS + st.starttime_ticks * TICK_NS
            before, after, rec = _timed_child(feed)
            assert before - 50 * MS <= rec["time_ns"] <= after + 50 * MS, (rec["time_ns"] - before) / 1e9
            new = subprocess.Popen(["sleep", "300"])
            live = _exec_of(feed, new.pid, False)
            assert abs(live["start_time_ns"] - live["time_ns"]) < 20 * MS + TICK_NS
        finally:
            c.stop()
        c = _collector(tmp_path, out, "second")
        try:
            assert _exec_of(feed, old.pid, True)["start_time_ns"] == seeded["start_time_ns"]
            assert _exec_of(feed, new.pid, True)["start_time_ns"] == live["start_time_ns"]
            before, after, rec = _timed_child(feed)
            assert before - 50 * MS <= rec["time_ns"] <= after + 50 * MS
        finally:
            c.stop()
        segs = json.loads(state.read_text())["segments"]
        assert segs[0] == [0, real - STALE_NS] and len(segs) == 2
    finally:
        old.kill()
        old.wait()
        if "new" in locals():
            new.kill()
            new.wait()
