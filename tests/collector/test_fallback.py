"""Fallback mode (taskstats + /proc, no eBPF) reports the same burst (marker: ebpf: needs root)."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest

from .feed import CollectorProcess, JsonlFeed, Rec, burst_script

pytestmark = pytest.mark.ebpf


def test_fallback_reports_burst_exec_exit_and_accounting(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    c = CollectorProcess(["--output", "jsonl", str(out), "--mode", "fallback", "--no-imds"],
                         env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state")}, log_path=tmp_path / "collector.log")
    try:
        c.wait_started()
        log = (tmp_path / "collector.log").read_text()
        assert "FALLBACK mode" in log and "taskstats + /proc" in log
        n = 2000
        driver = subprocess.Popen(["sh", "-c", burst_script(n, f"fb{uuid.uuid4().hex[:6]}")])
        assert driver.wait(120) == 0
        feed = JsonlFeed(out)

        def exits(rs: list[Rec]) -> list[Rec] | None:
            pids = {r["pid"] for r in rs if r["type"] == "ProcessExec" and r["ppid"] == driver.pid}
            got = [r for r in rs if r["type"] == "ProcessExit" and r["pid"] in pids]
            return got if len(got) >= n else None

        got = feed.wait_for(exits, 60)
    finally:
        c.stop()
    assert len(got) == n
    assert Counter(r["exit_code"] for r in got) == dict.fromkeys(range(5), n // 5)
    assert all(r["accounting"] is not None and r["accounting"]["elapsed_ns"] > 0 for r in got)
    assert all(r["source"] == "TASKSTATS" and r["kernel"] is None for r in got)
    execs = {(r["pid"], r["start_time_ns"]) for r in feed.of("ProcessExec") if r["ppid"] == driver.pid}
    assert {(r["pid"], r["start_time_ns"]) for r in got} <= execs
    status = list(feed.of("CollectorStatus"))[-1]
    assert status["mode"] == "FALLBACK"
