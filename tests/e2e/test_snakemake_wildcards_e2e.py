"""A real Snakemake 8 run without execsight labels, under a test-owned collector and correlator: the jobs
of one rule are told apart by their wildcards, `sort_lines (sample=A)` and `sort_lines (sample=B)`,
and tune's process definition stays the rule (issue 14).

Snakemake 8 runs a shell job as `bash -c 'set -euo pipefail;  sort in/A.txt | gzip -c > sorted/A.txt.gz'`:
no wildcard is in its argv or environment; the correlator matches the command against the rule's shell
template and the file names it finds against the rule's input/output patterns.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from execsight.run_analysis.process_definition import definition_of
from execsight.settings import REPO_ROOT, Settings

from .test_demo_e2e import _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]
SNAKEFILE = REPO_ROOT / "tests" / "fixtures" / "engines" / "Snakefile"
ARRIVAL_S = 90.0


def _wait_tasks(dsn: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + ARRIVAL_S
    while True:
        rows = _rows(dsn, "SELECT * FROM tasks WHERE engine = 'snakemake'")
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def test_snakemake_jobs_named_by_rule_and_wildcards(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for sample, n in (("A", 300), ("B", 500)):
        (tmp_path / "in" / f"{sample}.txt").write_text("".join(f"{i % 7}\n" for i in range(n)))
    env = {k: v for k, v in _service_env(settings).items() if not k.startswith("EXECSIGHT_")}
    snakemake = Path(sys.executable).with_name("snakemake")
    with running_services(settings, tmp_path / "logs"):
        res = subprocess.run([str(snakemake), "-s", str(SNAKEFILE), "-d", str(tmp_path), "-c", "1"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (tmp_path / "counts" / "B.txt").read_text().strip() == "500"
        tasks = _wait_tasks(settings.database_url, 4)

    assert sorted(t["task"] for t in tasks) == ["count (sample=A)", "count (sample=B)", "sort_lines (sample=A)",
                                                "sort_lines (sample=B)"], tasks
    assert {definition_of(t["task"], "snakemake") for t in tasks} == {"sort_lines", "count"}
    assert len({t["run_id"] for t in tasks}) == 1
    assert all(t["status"] == "SUCCEEDED" and t["process_count"] >= 3 for t in tasks), tasks
