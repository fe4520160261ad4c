"""Real cwltool and miniwdl runs on this machine, recognised by a test-owned collector and correlator:
the CWL steps and the WDL calls become tasks (issue 14, engines).

cwltool runs with --no-container. miniwdl has no container-less backend: it runs with its singularity
backend, whose CLI is tests/fixtures/engines/fake_singularity (the call's binds in a private mount
namespace, the command on the host: needs root, as the collector does). miniwdl itself, its call
directories and its `<cli> exec ... /bin/sh -c '... ../command'` process tree are the real ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from execsight.settings import REPO_ROOT, Settings

from .test_demo_e2e import _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "engines"
ARRIVAL_S = 90.0


def _engine(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    if not exe.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
        return found
    return str(exe)


def _wait_tasks(dsn: str, engine: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + ARRIVAL_S
    while True:
        rows = _rows(dsn, "SELECT t.*, r.pipeline AS run_pipeline FROM tasks t JOIN runs r USING (run_id)"
                          " WHERE t.engine = %s", engine)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def test_cwltool_steps_and_miniwdl_calls_are_tasks(settings: Settings, tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i % 97}\n" for i in range(5000)))
    env = {k: v for k, v in _service_env(settings).items() if not k.startswith("EXECSIGHT_")}
    cwl_dir, wdl_dir = tmp_path / "cwl", tmp_path / "wdl"
    cwl_dir.mkdir()
    wdl_dir.mkdir()
    with running_services(settings, tmp_path / "logs"):
        cwl = subprocess.run(
            [_engine("cwltool"), "--no-container", "--outdir", str(cwl_dir / "out"), str(FIXTURES / "sort_count.cwl"),
             "--lines", str(lines)],
            cwd=cwl_dir, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert cwl.returncode == 0, cwl.stderr[-3000:]
        wdl = subprocess.run(
            [_engine("miniwdl"), "run", "--cfg", str(FIXTURES / "miniwdl.cfg"), "--dir", str(wdl_dir),
             str(FIXTURES / "sort_count.wdl"), f"lines={lines}"],
            cwd=wdl_dir, env={**env, "MINIWDL__SINGULARITY__EXE": json.dumps([str(FIXTURES / "fake_singularity")])},
            capture_output=True, text=True, timeout=300, check=False)
        assert wdl.returncode == 0, wdl.stderr[-3000:]
        assert (cwl_dir / "out" / "count.txt").read_text().split()[0] == "5000"
        assert json.loads(wdl.stdout)["outputs"]["sort_count.counted"]
        dsn = settings.database_url
        cwl_tasks = _wait_tasks(dsn, "cwl", 3)
        wdl_tasks = _wait_tasks(dsn, "wdl", 3)

    # one task per CWL step, named by the step's program, all in one run of the workflow
    assert sorted(t["task"] for t in cwl_tasks) == ["gzip", "sort", "wc"], cwl_tasks
    assert len({t["run_id"] for t in cwl_tasks}) == 1
    assert {t["run_pipeline"] for t in cwl_tasks} == {"sort_count"}
    assert all(t["status"] == "SUCCEEDED" and t["process_count"] >= 1 for t in cwl_tasks), cwl_tasks
    # one task per WDL call, named by the call, its command's processes inside it
    assert sorted(t["task"] for t in wdl_tasks) == ["compress", "count", "sort_lines"], wdl_tasks
    assert len({t["run_id"] for t in wdl_tasks}) == 1
    assert {t["run_pipeline"] for t in wdl_tasks} == {"sort_count"}
    tools = {t["task"]: set(t["tools"]) for t in wdl_tasks}
    assert any(x.startswith("sort") for x in tools["sort_lines"]), tools
    assert any(x.startswith("gzip") for x in tools["compress"]), tools  # (wc, a coreutil, stays unnamed)
    # the call's command processes (sh, bash ../command, the tool) are counted in the call's task
    assert all(t["process_count"] >= 3 for t in wdl_tasks), wdl_tasks
