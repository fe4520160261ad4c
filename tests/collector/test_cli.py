"""The command line: doctor, bad rules file, /metrics (real host; marker ebpf where root is needed)."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from services.collector.main import main

from .feed import CollectorProcess


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
