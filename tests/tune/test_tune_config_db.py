"""`execsight tune config` against a real PostgreSQL: it reads the pipeline's history from the tasks table,
sizes each process definition over all its tagged instances and runs, and prints config that parses."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from execsight.tune import store
from execsight.tune.config_command import main as tune_config

from .test_config_export import parse_nextflow_config
from .tune_records import enriched_run, insert_host, insert_run, insert_task, workload_task

pytestmark = [pytest.mark.db]

MIB = 1 << 20


def _nextflow_history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Three runs of a Nextflow pipeline (local executor: no requests), two samples each, and a stray task
    whose name only looks like the definition (MAKEXREF vs MAKE_REF: LIKE's `_` must not match it)."""
    tasks, runs = [], []
    for r in range(3):
        run_id = f"nf-{r}"
        shift = r * 600 * 10**9
        ts = [workload_task("mem_small", task=f"ALIGN (s{i})", task_id=f"{run_id}-a{i}", run_id=run_id,
                            pipeline="nfp", engine="nextflow", requested_cpus=None, requested_memory_bytes=None,
                            peak_rss_bytes=(300 + 100 * r + 10 * i) * MIB, shift_ns=shift + i * 10**9)
              for i in (1, 2)]
        ts.append(workload_task("cpu_heavy", task="MAKE_REF", task_id=f"{run_id}-m", run_id=run_id, pipeline="nfp",
                                engine="nextflow", shift_ns=shift))
        ts.append(workload_task("cpu_heavy", task="MAKEXREF (s1)", task_id=f"{run_id}-x", run_id=run_id,
                                pipeline="nfp", engine="nextflow", shift_ns=shift))
        tasks += ts
        runs.append(enriched_run(run_id, "nfp", ts))
    return tasks, runs


def test_tune_config_reads_history_per_definition_and_prints_valid_config(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks, runs = _nextflow_history()
    with psycopg.connect(database_url) as conn:
        insert_host(conn)
        for run in runs:
            insert_run(conn, run)
        for t in tasks:
            insert_task(conn, t)
    with psycopg.connect(database_url) as conn:
        hist = store.definition_history(conn, "nfp", "ALIGN")
        assert [h["task"] for h in hist] == ["ALIGN (s1)", "ALIGN (s2)"] * 3  # oldest first, all runs
        assert {h["task"] for h in store.definition_history(conn, "nfp", "MAKE_REF")} == {"MAKE_REF"}
        assert store.definition_history(conn, None, "ALIGN") == []

    monkeypatch.setenv("EXECSIGHT_DATABASE_URL", database_url)
    assert tune_config(["--pipeline", "nfp", "--format", "nextflow"]) == 0
    out = capsys.readouterr().out
    scopes = parse_nextflow_config(out)["process"]
    assert set(scopes) == {"withName:ALIGN", "withName:MAKE_REF", "withName:MAKEXREF"}
    # sized over the six ALIGN instances of three runs: the largest peak (510 MiB) + 15%, on a 64 MiB step
    assert scopes["withName:ALIGN"]["memory"] == "640 MB"
    assert "6 tasks in 3 runs" in out and "requests unknown" in out

    assert tune_config(["--pipeline", "nfp", "--format", "snakemake", "--runs", "1"]) == 0
    smk = capsys.readouterr().out
    assert "MAKE_REF:" in smk and "2 tasks in 1 run;" in smk  # only the latest run

    assert tune_config(["--pipeline", "no-such-pipeline"]) == 1
    assert "no task recorded for pipeline 'no-such-pipeline'" in capsys.readouterr().err
