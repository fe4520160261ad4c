"""The demo's tool table (issue 14): every process of a real demo run is named in the per-tool view.

Real collector, Kafka, correlator and database (services started as in test_demo_e2e.py), the
Snakemake demo at the small scale. In process_tools every process of the run has a tool, or is
shown as '<executable> (unidentified executable)'; the per-tool costs the dashboard reads
(services/ui/queries.run_tool_costs) count every process and every second of CPU, and split each
task's cost over its tools without losing any.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from execsight.settings import Settings

from .test_demo_e2e import ARRIVAL_S, _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]


def test_every_demo_process_has_a_tool_or_an_unidentified_executable_row(settings: Settings, tmp_path: Path) -> None:
    run_id = f"e2e-tools-{settings.topic_prefix.strip('.')}"
    with running_services(settings, tmp_path / "logs"):
        proc = subprocess.run(
            [sys.executable, "-m", "execsight.cli", "demo", "--scale", "small", "--run-id", run_id,
             "--workdir", str(tmp_path / "runs"), "--wait", str(ARRIVAL_S)],
            env=_service_env(settings), capture_output=True, text=True, timeout=900, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        dsn = settings.database_url
        procs = _rows(dsn, "SELECT pid, start_time_ns, tool, cpu_ns FROM processes WHERE run_id = %s", run_id)
        rows = _rows(dsn, "SELECT pid, start_time_ns, tool, tool_label, tool_method, tool_package, executable, exe, "
                          "comm, cpu_ns FROM process_tools WHERE run_id = %s", run_id)

        # every process is in the view, once
        assert len(procs) >= 20
        assert sorted((r["pid"], r["start_time_ns"]) for r in rows) == sorted(
            (p["pid"], p["start_time_ns"]) for p in procs)
        named = [r for r in rows if r["tool"]]
        unnamed = [r for r in rows if not r["tool"]]
        for r in named:
            assert r["tool_label"] == r["tool"] and r["tool_method"] in ("rule", "program", "package"), r
        for r in unnamed:
            assert r["executable"], r
            assert r["tool_label"] == f"{r['executable']} (unidentified executable)", r
            assert r["tool_method"] is None
        # the demo's tools are named; its shell plumbing is not
        labels = {r["tool_label"] for r in rows}
        assert any(t.startswith("bwa mem") for t in labels) and any(t.startswith("samtools") for t in labels), labels
        assert any(r["executable"] in ("cut", "sh", "bash", "cat") for r in unnamed), labels

        # per-tool totals cover every process and all CPU time, and keep each task's cost
        from execsight.ui import queries
        from execsight.ui.db import connect

        with connect(dsn) as conn:
            costs = queries.run_tool_costs(conn, run_id)
        assert set(costs["tool"]) == labels
        assert int(costs["processes"].sum()) == len(procs)
        assert int(costs["cpu_ns"].sum()) == sum(p["cpu_ns"] or 0 for p in procs)
        tasks = _rows(dsn, "SELECT coalesce(sum(t.cost_usd), 0)::float8 AS cost FROM task_overview t "
                           "WHERE t.run_id = %s AND EXISTS (SELECT 1 FROM processes p "
                           "WHERE p.run_id = t.run_id AND p.task_id = t.task_id)", run_id)
        assert math.isclose(float(costs["cost_usd"].sum()), tasks[0]["cost"], rel_tol=1e-6, abs_tol=1e-12)
