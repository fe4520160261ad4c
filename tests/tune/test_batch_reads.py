"""The tune worker's batched reads give the same results as analysing one record at a time (real PostgreSQL).

A batch shares its reads (histories, samples, open findings, first detections) and writes its task costs
and findings once. Analysing every record, a record must still see what the records before it in the same
batch did (a finding opened by one task and gone in the next task of its type is resolved within the
batch); as the worker runs, each definition's last task decides, so such a finding is never opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from execsight.settings import Settings
from execsight.tune.worker import TuneWorker
from tests.conftest import clone_database, drop_database

from .tune_records import enriched_run, insert_host, insert_run, insert_task, pipeline_runs, workload_task

pytestmark = pytest.mark.db
NOW = 1_800_000_000 * 10**9


def _records() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for _, run, tasks in pipeline_runs("nightly"):  # five baselines, a regression, a normal run
        out += [("EnrichedTask", t) for t in tasks] + [("EnrichedRun", run)]
    # one task type that changes character from task to task: findings open and resolve in one batch
    shapes = ["io_fsync", "cpu_heavy", "io_fsync", "helper_churn", "mem_small", "io_fsync"]
    flaky = [workload_task(w, task_id=f"f{i}", run_id=f"flaky-{i}", pipeline="flaky", task="step",
                           shift_ns=i * 10**12) for i, w in enumerate(shapes)]
    out += [("EnrichedTask", t) for t in flaky]
    out += [("EnrichedRun", enriched_run(str(t["run_id"]), "flaky", [t])) for t in flaky]
    return out


@pytest.fixture()
def second_database(database_server_url: str, migrated_template: str) -> Iterator[str]:
    name = f"execsight_b_{uuid.uuid4().hex[:12]}"
    clone_database(database_server_url, migrated_template, name)
    yield urlunsplit(urlsplit(database_server_url)._replace(path=f"/{name}"))
    drop_database(database_server_url, name)


def _load(url: str, recs: list[tuple[str, dict[str, Any]]]) -> None:
    with psycopg.connect(url) as conn:
        insert_host(conn)
        for kind, r in recs:
            if kind == "EnrichedRun":
                insert_run(conn, r)
        for kind, r in recs:
            if kind == "EnrichedTask":
                insert_task(conn, r)


def _state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        findings = conn.execute("SELECT finding_id, kind, status, severity, summary, recommendation, detected_at, "
                                "resolved_at IS NOT NULL, run_id, last_run_id FROM findings ORDER BY 1").fetchall()
        costs = conn.execute("SELECT run_id, task_id, cost_usd, waste_usd FROM task_costs ORDER BY 1, 2").fetchall()
        runs = conn.execute("SELECT run_id, cost_usd, waste_usd FROM run_costs ORDER BY 1").fetchall()
    return findings, costs + runs


@pytest.mark.parametrize("every_record", [True, False], ids=["every-record", "net"])
def test_one_batch_stores_what_record_by_record_analysis_stores(
    settings: Settings, database_url: str, second_database: str, every_record: bool
) -> None:
    """every-record: the batch analyses each record, seeing what the records before it did: the same
    rows as one record per batch. net (the worker as it runs): each definition's last task and each
    pipeline's last run decide; what the others would have opened and the last resolved again inside the
    batch is never opened."""
    recs = _records()
    settings = replace(settings, findings_min_wall_s=0.0)  # the records are short tasks: no noise floor here
    # a database written while the history database is empty, then the runs' rows (as the correlator)
    one_by_one = TuneWorker(settings, clock=lambda: NOW)
    batched = TuneWorker(replace(settings, database_url=second_database), clock=lambda: NOW,
                         every_record=every_record)
    _load(database_url, recs)
    _load(second_database, recs)
    try:
        published_one: dict[str, dict[str, Any]] = {}
        for rec in recs:
            for f in one_by_one.analyse([rec]):
                published_one[f["finding_id"]] = f
        published_batch = {f["finding_id"]: f for f in batched.analyse(recs)}
    finally:
        one_by_one.close()
        batched.close()
    findings_one, costs_one = _state(database_url)
    findings_batch, costs_batch = _state(second_database)
    assert costs_batch == costs_one
    with psycopg.connect(second_database) as conn:
        flaky = {k: (st, summary.split(":")[0]) for k, st, summary in conn.execute(
            "SELECT kind, status, summary FROM findings WHERE pipeline = 'flaky' AND kind <> 'regression'")}
        regressions: dict[str, str] = dict(
            conn.execute("SELECT pipeline, status FROM findings WHERE kind = 'regression'").fetchall())
    assert flaky["io_bound"][0] == "OPEN"  # the last task was I/O-bound again
    if every_record:
        assert findings_batch == findings_one
        # each change of character resolved the previous class finding of the type, inside the one batch too
        assert flaky["compute_bound"] == ("RESOLVED", "resolved in run flaky-2")
        assert flaky["helper_churn"] == ("RESOLVED", "resolved in run flaky-4")
        assert flaky["idle_stalled"] == ("RESOLVED", "resolved in run flaky-5")
        assert regressions["nightly"] == "RESOLVED"  # opened by the regressed run, resolved by the normal one
        # what is published is the last state of each finding, the same either way
        assert {k: (v["status"], v["summary"]) for k, v in published_batch.items()} == {
            k: (v["status"], v["summary"]) for k, v in published_one.items()}
    else:
        assert [f for f in findings_batch if f[2] == "OPEN"] == [f for f in findings_one if f[2] == "OPEN"]
        # the classes of flaky-1 to flaky-4 and the nightly regression were resolved within the batch: not opened
        assert {k for k in flaky if not k.startswith("rightsize")} == {"io_bound"} and regressions == {}
        gone = {f[0] for f in findings_one} - {f[0] for f in findings_batch}
        assert {f[1] for f in findings_one if f[0] in gone} >= {"compute_bound", "helper_churn", "regression"}
        assert all(f[2] == "RESOLVED" for f in findings_one if f[0] in gone)
        assert {k: (v["status"], v["summary"]) for k, v in published_batch.items()} == {
            k: (v["status"], v["summary"]) for k, v in published_one.items() if k not in gone}
    # and the batch asked the database far fewer questions
    assert batched.stats.queries * 4 < one_by_one.stats.queries, (batched.stats.queries, one_by_one.stats.queries)


@pytest.mark.parametrize("engine", ["explicit", "generic"])
def test_only_runs_of_a_named_or_engine_pipeline_are_compared_with_earlier_runs(
    settings: Settings, database_url: str, engine: str
) -> None:
    """The nightly runs with a slow one: a regression when the pipeline is one (named, or an engine's);
    none when they are generic runs, whose "pipeline" is only their program (an unrelated `make` was once
    reported as a 90x regression of the last one)."""
    recs: list[tuple[str, dict[str, Any]]] = []
    for label, run, tasks in pipeline_runs("nightly"):
        if label != "normal":
            recs += [("EnrichedTask", t) for t in tasks] + [("EnrichedRun", {**run, "engine": engine})]
    _load(database_url, recs)
    worker = TuneWorker(settings, clock=lambda: NOW)
    try:
        for rec in recs:  # one at a time: every run is checked
            worker.analyse([rec])
    finally:
        worker.close()
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT status, task FROM findings WHERE kind = 'regression'").fetchall()
    assert found == ([("OPEN", "sort")] if engine == "explicit" else [])
