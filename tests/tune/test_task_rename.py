"""A task the correlator renamed after it completed (rename_completed): first published under its id (a
Nextflow task named by its hash until its .command.run header came), then under its real name. Tune must
count it once: the hash-named findings are superseded, the history holds one instance per task id."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from execsight.settings import Settings

from .test_tune_worker import produce, running_worker, wait_for
from .tune_records import insert_host, insert_task, workload_task

pytestmark = [pytest.mark.kafka, pytest.mark.db]

BASE = {"pipeline": "nf", "engine": "nextflow", "run_id": "nf-r1", "requested_memory_bytes": 8 << 30,
        "requested_cpus": 4.0}


def _findings(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM findings WHERE source = 'tune'").fetchall()
    return {(r["kind"], r["task"]): r for r in rows}


def _rename(settings: Settings, task_id: str, name: str) -> None:
    with psycopg.connect(settings.database_url) as conn:  # what the correlator's upsert of the row does
        conn.execute("UPDATE tasks SET task = %s WHERE run_id = 'nf-r1' AND task_id = %s", (name, task_id))


def test_a_task_renamed_after_it_completed_counts_once(settings: Settings) -> None:
    settings = replace(settings, findings_min_wall_s=0.0)
    first = workload_task("mem_small", task="ab/123456", task_id="ab/123456", **BASE)
    second = workload_task("mem_small", task="cd/789abc", task_id="cd/789abc", shift_ns=2 * 10**9, **BASE)
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
        insert_task(conn, first)
        insert_task(conn, second)
    with running_worker(settings) as worker:
        # 1. the hash-named record is analysed before the name comes: findings about "ab/123456"
        produce(settings, "execsight.enriched.task", "EnrichedTask", [first])
        wait_for(lambda: worker.stats.tasks >= 1)
        before = _findings(settings)
        assert before[("rightsize_memory", "ab/123456")]["status"] == "OPEN"
        # 2. renamed: the row and then the record with the real name; the hash-named findings are superseded
        _rename(settings, "ab/123456", "ALIGN (s1)")
        produce(settings, "execsight.enriched.task", "EnrichedTask", [{**first, "task": "ALIGN (s1)"}])
        wait_for(lambda: worker.stats.tasks >= 2)
        got = _findings(settings)
        old = got[("rightsize_memory", "ab/123456")]
        assert old["status"] == "RESOLVED" and old["resolved_at"] is not None and "renamed" in old["summary"]
        assert all(f["status"] == "RESOLVED" for (_, task), f in got.items() if task == "ab/123456")
        mem = got[("rightsize_memory", "ALIGN")]
        assert mem["status"] == "OPEN"
        assert {e["name"]: e["value"] for e in mem["evidence"]}["runs"] == 1
        # 3. both records of the second task arrive after its row was renamed: the hash-named one is not
        # analysed at all, and ALIGN's history holds two instances (s1, s2), not four
        _rename(settings, "cd/789abc", "ALIGN (s2)")
        produce(settings, "execsight.enriched.task", "EnrichedTask", [second, {**second, "task": "ALIGN (s2)"}])
        wait_for(lambda: worker.stats.messages >= 4)
        assert worker.stats.superseded == 1 and worker.stats.tasks == 4
    got = _findings(settings)
    assert not any(task == "cd/789abc" for _, task in got), sorted(got)
    ev = {e["name"]: e["value"] for e in got[("rightsize_memory", "ALIGN")]["evidence"]}
    assert ev["runs"] == 2
    assert "ALIGN (s1)" in got[("rightsize_memory", "ALIGN")]["summary"]
    assert "ALIGN (s2)" in got[("rightsize_memory", "ALIGN")]["summary"]
    with psycopg.connect(settings.database_url) as conn:
        costs = conn.execute("SELECT task_id FROM task_costs ORDER BY 1").fetchall()
    assert [c[0] for c in costs] == ["ab/123456", "cd/789abc"]
