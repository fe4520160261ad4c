"""`execsight run -- <plain shell script>` is one task (issue 13, the lead's review): real collector, Kafka,
correlator, database and tune worker, as in test_demo_e2e.

Before, every child of CMD was a task of its own (a loop of 20 md5sum made 20 tasks) and the shell's own
time went to the program it exec'd last. A plain command is one task named after it; its processes keep
their own tools, and a pyenv shim's plumbing (pyenv-version-name, pyenv-hooks, ...) counts as `pyenv`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from execsight.settings import Settings

from .test_demo_e2e import _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]

SHIM = Path.home() / ".pyenv" / "shims" / "python3"
LOOP = ("for i in $(seq 20); do md5sum /etc/hostname > /dev/null; done; "
        "{python} -c 'import hashlib; [hashlib.sha256(bytes(1000000)).digest() for _ in range(200)]'; "
        "touch f; rm f")


def test_a_shell_script_under_execsight_run_is_one_task(settings: Settings, tmp_path: Path) -> None:
    python = str(SHIM) if SHIM.exists() else (shutil.which("python3") or sys.executable)
    run_id = f"rt-loop-{settings.topic_prefix.strip('.')}"
    report_path = tmp_path / "report.json"
    with running_services(settings, tmp_path / "logs"):
        res = subprocess.run(
            [sys.executable, "-m", "execsight.cli", "run", "--pipeline", "rt-loop", "--run-id", run_id,
             "--timeout", "90", "--json", str(report_path), "--", "bash", "-c", LOOP.format(python=python)],
            env={**_service_env(settings), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=tmp_path,
            capture_output=True, text=True, timeout=300, check=False,
        )
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(report_path.read_text())
    assert doc["complete"], (doc["note"], res.stderr[-3000:])

    dsn = settings.database_url
    tasks = _rows(dsn, "SELECT task_id, task, engine, status, process_count FROM tasks WHERE run_id = %s", run_id)
    assert [(t["task"], t["engine"], t["status"]) for t in tasks] == [("rt-loop", "explicit", "SUCCEEDED")]
    procs = _rows(dsn, "SELECT pid, exe, tool, task_id FROM processes WHERE run_id = %s", run_id)
    assert {p["task_id"] for p in procs} == {tasks[0]["task_id"]}
    assert sum(1 for p in procs if p["exe"].endswith("/md5sum")) == 20
    assert tasks[0]["process_count"] == len(procs) >= 24  # bash, seq, 20 md5sum, python, touch (+ shim's)
    tools = {p["tool"] for p in procs if p["tool"]}
    assert not {t for t in tools if t.startswith("pyenv-")}, tools
    if SHIM.exists():
        assert "pyenv" in tools
    report = doc["report"]
    assert [t["task"] for t in report["tasks"]] == ["rt-loop"]
