"""The command line: doctor, bad rules file, /metrics (real host; marker ebpf where root is needed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from execsight.collector.main import main

from .feed import CollectorProcess, JsonlFeed


def test_bad_rules_file_is_refused_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("exclude:\n  exe: ['(']\n")
    assert main(["--rules", str(f), "--output", "jsonl", "-"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:2:" in err and "bad regular expression" in err


@pytest.mark.ebpf
def test_doctor_reports_each_requirement(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    for name in ("privileges", "btf", "kernel headers", "tracefs", "tracepoint sched/sched_process_exec",
                 "taskstats", "bcc"):
        assert name in out
    assert code == 0 and "verdict: eBPF mode available" in out


@pytest.mark.ebpf
def test_metrics_endpoint_exposes_losses_rates_and_spool(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = CollectorProcess(["--output", "jsonl", str(tmp_path / "e.jsonl"), "--mode", "fallback", "--no-imds",
                          "--metrics-port", str(port), "--host-interval", "0.5"],
                         env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state")}, log_path=tmp_path / "c.log")
    try:
        c.wait_started()
        time.sleep(1.5)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        assert c.stop() == 0
    assert 'execsight_collector_lost_events_total{buffer="taskstats"}' in body
    assert 'execsight_collector_events_total{type="HostSample"}' in body
    assert "execsight_collector_events_per_second" in body
    assert "execsight_collector_spool_bytes" in body


@pytest.mark.ebpf
def test_edited_rules_file_applies_to_the_next_exec_and_a_broken_edit_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "reloadprobe"
    shutil.copy("/bin/true", binary)
    rules = tmp_path / "rules.yaml"
    rules.write_text("ignore_self: true\n")
    out = tmp_path / "e.jsonl"
    c = CollectorProcess(["--output", "jsonl", str(out), "--mode", "ebpf", "--no-imds", "--metrics-port", "0",
                          "--rules", str(rules)],
                         env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state")}, log_path=tmp_path / "c.log")
    feed = JsonlFeed(out)

    def run(tag: str) -> int:
        p = subprocess.run([str(binary), tag], check=True)
        assert p.returncode == 0
        time.sleep(1.0)
        return len([r for r in feed.of("ProcessExec") if r["argv"] == [str(binary), tag]])

    def wait_log(text: str, after: int) -> None:
        deadline = time.monotonic() + 10
        while text not in (tmp_path / "c.log").read_text()[after:]:
            assert time.monotonic() < deadline, (tmp_path / "c.log").read_text()[-2000:]
            time.sleep(0.1)

    try:
        c.wait_started()
        assert run("before") == 1
        mark = len((tmp_path / "c.log").read_text())
        rules.write_text("exclude:\n  exe: ['/reloadprobe$']\n")
        wait_log("collector rules reloaded", mark)
        assert run("excluded") == 0
        mark = len((tmp_path / "c.log").read_text())
        rules.write_text("exclude:\n  exe: ['(']\n")  # broken: refused, the exclusion stays in force
        wait_log("collector rules rejected", mark)
        log_tail = (tmp_path / "c.log").read_text()[mark:]
        assert f"{rules}:2:" in log_tail and "bad regular expression" in log_tail
        assert run("still-excluded") == 0
        rules.write_text("ignore_self: true\n")
        wait_log("collector rules reloaded", mark)
        assert run("after") == 1
    finally:
        assert c.stop() == 0
