"""A Nextflow-shaped retry under a test-owned collector and correlator: two attempts of one task (issue 14).

Nextflow retries a failed task in a new work dir (a new hash) under the same name; a cached task starts
no process. The work dirs are laid out with deploy/demo/nextflow_wrapper (the real .command.run and
.command.sh shapes) and run as Nextflow's local executor runs them: `/bin/bash -ue .command.run` in the
work dir. Attempt 1 fails (exit 3), attempt 2 sorts and gzips its input; a third dir is a cached task.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from execsight.deploy.demo import nextflow_wrapper as wrapper
from execsight.settings import Settings

from .test_demo_e2e import _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]
ARRIVAL_S = 90.0


def _lay_out(work: Path, session: str, process: str, tag: str, script: str, attempt: int, data: Path) -> Path:
    digest = wrapper.task_hash(session, process, tag, script, [str(data), str(attempt)])
    wd = wrapper.task_dir(work, digest)
    wd.mkdir(parents=True)
    (wd / ".command.sh").write_text(wrapper.render_command_sh(script))
    (wd / ".command.run").write_text(wrapper.render_command_run(wrapper.task_name(process, tag), wd,
                                                                {"in.txt": data}, ["out.txt.gz"]))
    return wd


def _attempts(dsn: str, task: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + ARRIVAL_S
    while True:
        rows = _rows(dsn, "SELECT * FROM task_attempts WHERE task = %s ORDER BY attempt", task)
        if len(rows) >= 2 or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def test_a_retry_is_two_attempts_of_one_task_and_a_cached_task_is_not_executed(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("".join(f"{i % 13}\n" for i in range(2000)))
    work, session = tmp_path / "work", str(uuid.uuid4())
    first = _lay_out(work, session, "SORTZIP", "s1", "exit 3", 1, data)
    second = _lay_out(work, session, "SORTZIP", "s1", "sort in.txt | gzip -c > out.txt.gz", 2, data)
    cached = _lay_out(work, session, "CACHED", "s1", "sort in.txt > never.txt", 1, data)
    (cached / ".exitcode").write_text("0")  # what a finished earlier run left; -resume does not start it
    env = {k: v for k, v in _service_env(settings).items() if not k.startswith("EXECSIGHT_")}
    with running_services(settings, tmp_path / "logs"):
        codes = [subprocess.run(wrapper.launch_argv(), cwd=wd, env=env, timeout=120, check=False).returncode
                 for wd in (first, second)]
        assert codes == [3, 0]
        assert (second / "out.txt.gz").stat().st_size > 0
        rows = _attempts(settings.database_url, "SORTZIP (s1)")
        cached_rows = _rows(settings.database_url, "SELECT * FROM tasks WHERE task LIKE 'CACHED%%'")

    assert [(r["attempt"], r["attempts"], r["status"], r["exit_code"]) for r in rows] == [
        (1, 2, "FAILED", 3), (2, 2, "SUCCEEDED", 0)], rows
    assert {(r["process"], r["tag"]) for r in rows} == {("SORTZIP", "s1")}
    assert [r["task_id"] for r in rows] == [f"{d.parent.name}/{d.name}" for d in (first, second)]
    assert len({r["run_id"] for r in rows}) == 1
    assert cached_rows == []
