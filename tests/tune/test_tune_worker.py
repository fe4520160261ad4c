"""The tune worker against the real Kafka broker and PostgreSQL, fed with recorded real workloads.

Records go to the test's prefixed enriched topics (and their rows into the test's database, as the
correlator does); the worker's findings are checked in the database and on the findings topic, where
a subscriber that uses only fastavro and the .avsc files decodes every one.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import fastavro
import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from psycopg.rows import dict_row

from execsight.schemas.codec import default_codec
from execsight.settings import Settings
from execsight.tune.worker import TuneWorker

from .tune_records import HOST, insert_host, insert_run, insert_task, pipeline_runs, workload_task

pytestmark = [pytest.mark.kafka, pytest.mark.db]

AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
MIB = 1 << 20


def produce(settings: Settings, topic: str, schema: str, records: list[dict[str, Any]]) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    codec = default_codec()
    for r in records:
        p.produce(settings.topic(topic), key=r["host_id"].encode(), value=codec.encode(schema, r))
    assert p.flush(30) == 0


@contextmanager
def running_worker(settings: Settings) -> Iterator[TuneWorker]:
    worker = TuneWorker(settings, retry_interval_s=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def wait_for(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def findings(settings: Settings) -> dict[tuple[str, str | None], dict[str, Any]]:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM findings WHERE source = 'tune'").fetchall()
    return {(r["kind"], r["task"]): r for r in rows}


def subscriber_decode(settings: Settings, expected: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """What a subscriber outside this project does: fastavro + the .avsc files, header parsed by hand."""
    schemas: dict[bytes, Any] = {}
    named: dict[str, Any] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        parsed = fastavro.parse_schema(json.loads(path.read_text()), named_schemas=named)
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        schemas[fp] = parsed
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"sub-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([settings.topic("execsight.findings.tune")])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            data = msg.value() or b""
            assert data[:2] == b"\xc3\x01", "single-object marker"
            writer = schemas[data[2:10]]
            rec = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, None)
            assert isinstance(rec, dict)
            assert (msg.key() or b"").decode() == rec["finding_id"]
            out.append(rec)
    finally:
        c.close()
    return out


def test_classification_rightsizing_and_costs_through_kafka(settings: Settings) -> None:
    settings = replace(settings, findings_min_wall_s=0.0)  # the recorded workloads run ~1 s: no noise floor here
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
        tasks = [
            workload_task("io_fsync", task_id="w1", run_id="run-a", pipeline="demo"),
            workload_task("cpu_heavy", task_id="c1", run_id="run-a", pipeline="demo"),
            workload_task("helper_churn", task_id="h1", run_id="run-a", pipeline="demo"),
            workload_task("mem_small", task_id="m1", run_id="run-a", pipeline="demo"),
            workload_task("oom_killed", task_id="o1", run_id="run-a", pipeline="demo"),
        ]
        for t in tasks:
            insert_task(conn, t)
    produce(settings, "execsight.enriched.task", "EnrichedTask", tasks)
    with running_worker(settings) as worker:
        wait_for(lambda: worker.stats.tasks >= len(tasks))
    got = findings(settings)
    assert got[("io_bound", "write_fsync")]["status"] == "OPEN"
    assert got[("compute_bound", "sha_loop")]["status"] == "OPEN"
    assert got[("helper_churn", "helper_loop")]["status"] == "OPEN"
    assert ("io_bound", "sha_loop") not in got and ("compute_bound", "write_fsync") not in got
    assert ("helper_churn", "sha_loop") not in got

    over = got[("rightsize_memory", "hold_300m")]
    peak = tasks[3]["peak_rss_bytes"]
    rec = over["recommended"]["memory_bytes"]
    assert peak * 1.15 <= rec <= peak * 1.15 + 64 * MIB
    assert over["confidence"] is not None and over["confidence"] < 0.5
    ev = {e["name"]: e["value"] for e in over["evidence"]}
    assert ev["requested_memory"] == 8 << 30 and ev["observed_peak_rss"] == peak

    oom = got[("rightsize_memory", "grow_256m_limit")]
    assert oom["severity"] == "HIGH"
    assert oom["recommended"]["memory_bytes"] >= max(256 * MIB * 1.2, 256 * MIB + 100 * MIB)
    assert got[("memory_bound", "grow_256m_limit")]["status"] == "OPEN"

    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT task_id, cost_usd FROM task_costs WHERE run_id = 'run-a'").fetchall()
        costs: dict[str, float] = dict(rows)
        sources = {r[0] for r in conn.execute("SELECT price_source FROM task_costs").fetchall()}
    assert set(costs) == {"w1", "c1", "h1", "m1", "o1"} and all(v > 0 for v in costs.values())
    assert sources == {"aws:us-east-1"}

    decoded = subscriber_decode(settings, expected=len(got))
    assert {r["finding_id"] for r in decoded} == {r["finding_id"] for r in got.values()}
    for r in decoded:
        assert r["summary"] and r["status"] in {"OPEN", "RESOLVED"} and r["evidence"]


def test_regression_names_the_slow_task_and_a_normal_run_resolves_it(settings: Settings) -> None:
    runs = pipeline_runs("nightly")
    first = [r for r in runs if r[0] != "normal"]
    normal = [r for r in runs if r[0] == "normal"]
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
        for _, run, tasks in runs:
            insert_run(conn, run)
            for t in tasks:
                insert_task(conn, t)
    # phase 1: baseline runs, then the run whose sort step is slow
    produce(settings, "execsight.enriched.task", "EnrichedTask", [t for _, _, ts in first for t in ts])
    produce(settings, "execsight.enriched.run", "EnrichedRun", [run for _, run, _ in first])
    slow_id = next(run["run_id"] for label, run, _ in runs if label == "slow_sort")
    with running_worker(settings) as worker:
        wait_for(lambda: worker.stats.runs >= len(first))
        reg = findings(settings)[("regression", "sort")]
        assert reg["status"] == "OPEN" and reg["run_id"] == slow_id
        assert "sort" in reg["summary"] and "align" not in reg["summary"]
        ev = {e["name"]: e["value"] for e in reg["evidence"]}
        assert ev["sort.wall_ns.ratio"] > 3 and ev["baseline_runs"] == 5
        # phase 2: a normal run gets no regression and resolves the open one
        produce(settings, "execsight.enriched.task", "EnrichedTask", normal[0][2])
        produce(settings, "execsight.enriched.run", "EnrichedRun", [normal[0][1]])
        wait_for(lambda: worker.stats.runs >= len(runs))
    after = [r for r in findings(settings).values() if r["kind"] == "regression"]
    assert len(after) == 1 and after[0]["status"] == "RESOLVED" and after[0]["resolved_at"] is not None
    with psycopg.connect(settings.database_url) as conn:
        n_costs = conn.execute("SELECT count(*) FROM run_costs WHERE cost_usd > 0").fetchone()
    assert n_costs is not None and n_costs[0] == len(runs)
    # on the topic: one OPEN regression (the slow run) and its RESOLVED state, nothing for the other runs
    decoded = [r for r in subscriber_decode(settings, expected=10_000, timeout_s=8) if r["kind"] == "regression"]
    assert [r["status"] for r in decoded] == ["OPEN", "RESOLVED"]
    assert decoded[0]["run_id"] == slow_id and decoded[1]["run_id"] == normal[0][1]["run_id"]


def test_reclassification_resolves_and_offsets_are_committed(settings: Settings) -> None:
    settings = replace(settings, findings_min_wall_s=0.0)
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
    io_task = workload_task("io_fsync", task_id="x1", run_id="r1", pipeline="p", task="step")
    produce(settings, "execsight.enriched.task", "EnrichedTask", [io_task])
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    p.produce(settings.topic("execsight.enriched.task"), key=HOST.encode(), value=b"not avro at all")
    p.flush(10)
    with running_worker(settings) as worker:
        wait_for(lambda: worker.stats.tasks >= 1 and worker.stats.deadlettered >= 1)
        first = findings(settings)[("io_bound", "step")]
        # the same task type, now CPU-bound: io_bound resolves, compute_bound opens, detection time kept
        cpu_task = workload_task("cpu_heavy", task_id="x2", run_id="r2", pipeline="p", task="step",
                                 start_ns=io_task["end_ns"] + 10**9, end_ns=io_task["end_ns"] + 10**9 + 1_690_000_000)
        produce(settings, "execsight.enriched.task", "EnrichedTask", [cpu_task])
        wait_for(lambda: worker.stats.tasks >= 2)
        produce(settings, "execsight.enriched.task", "EnrichedTask", [io_task])  # replay: io_bound again
        wait_for(lambda: worker.stats.tasks >= 3)
    got = findings(settings)
    assert got[("compute_bound", "step")]["status"] == "RESOLVED"
    again = got[("io_bound", "step")]
    assert again["status"] == "OPEN" and again["detected_at"] == first["detected_at"]
    dl = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"dl-{uuid.uuid4().hex}",
                   "auto.offset.reset": "earliest"})
    dl.subscribe([settings.topic("execsight.deadletter")])
    msg = None
    deadline = time.monotonic() + 20
    while msg is None and time.monotonic() < deadline:
        m = dl.poll(0.5)
        msg = m if m is not None and not m.error() else None
    dl.close()
    assert msg is not None and msg.value() == b"not avro at all"
    headers: dict[str, Any] = {h[0]: h[1] for h in msg.headers() or []}
    assert b"single-object" in headers["execsight.reason"] and headers["execsight.origin"] == b"tune"
    # a restarted worker finds nothing left to do: offsets were committed after the database commit
    again_worker = TuneWorker(settings)
    again_worker.run(threading.Event(), idle_exit_s=3)
    assert again_worker.stats.messages == 0


def test_worker_waits_for_an_unreachable_database_and_loses_nothing(
    settings: Settings, database_server_url: str, migrated_template: str
) -> None:
    from urllib.parse import urlsplit, urlunsplit

    name = f"execsight_late_{uuid.uuid4().hex[:10]}"
    late = replace(settings, findings_min_wall_s=0.0,
                   database_url=urlunsplit(urlsplit(database_server_url)._replace(path=f"/{name}")))
    produce(late, "execsight.enriched.task", "EnrichedTask",
            [workload_task("io_fsync", task_id="w1", run_id="r1", pipeline="p")])
    try:
        with running_worker(late) as worker:
            wait_for(lambda: worker.stats.retries >= 2)  # the database does not exist yet
            assert worker.stats.tasks == 0
            with psycopg.connect(database_server_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
            wait_for(lambda: worker.stats.tasks == 1)
        assert findings(late)[("io_bound", "write_fsync")]["status"] == "OPEN"
    finally:
        with psycopg.connect(database_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_tagged_instances_get_one_finding_per_definition_and_tiny_tasks_none(settings: Settings) -> None:
    """Nextflow's ALIGN (s1) and ALIGN (s2): one rightsize finding about ALIGN naming both; under the default
    floor the ~1 s tasks raise nothing about how they ran, while an OOM kill is still raised."""
    base = {"pipeline": "nf", "engine": "nextflow", "requested_memory_bytes": 8 << 30, "requested_cpus": 4.0}
    s1 = workload_task("mem_small", task="ALIGN (s1)", task_id="a1", run_id="nf-1", **base)
    s2 = workload_task("mem_small", task="ALIGN (s2)", task_id="a2", run_id="nf-1", shift_ns=2 * 10**9, **base)
    churn = workload_task("helper_churn", task="CHURN (s1)", task_id="c1", run_id="nf-1", pipeline="nf",
                          engine="nextflow")
    oom = workload_task("oom_killed", task="GROW (s1)", task_id="g1", run_id="nf-1", pipeline="nf",
                        engine="nextflow")
    tasks = [s1, s2, churn, oom]
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
        for t in tasks:
            insert_task(conn, t)
    produce(settings, "execsight.enriched.task", "EnrichedTask", tasks)
    with running_worker(settings) as worker:
        wait_for(lambda: worker.stats.tasks >= len(tasks))
    got = findings(settings)
    assert {task for _, task in got} == {"ALIGN", "GROW"}, sorted(got)
    mem = got[("rightsize_memory", "ALIGN")]
    assert "ALIGN (s1)" in mem["summary"] and "ALIGN (s2)" in mem["summary"] and "2 tasks" in mem["summary"]
    assert got[("rightsize_cpu", "ALIGN")]["recommended"]["cpus"] == 1.0  # 4 requested; one thread, asleep
    assert ("helper_churn", "CHURN") not in got  # 0.85 s and a fraction of a cent: under the floor
    assert got[("memory_bound", "GROW")]["severity"] == "HIGH" and ("rightsize_memory", "GROW") in got


EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def test_worker_accepts_every_example_of_its_input_schemas(settings: Settings) -> None:
    """The contract: every EnrichedTask/EnrichedRun example is analysed, none is dead-lettered."""
    tasks = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "EnrichedTask").glob("*.json"))]
    runs = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "EnrichedRun").glob("*.json"))]
    assert tasks and runs
    with psycopg.connect(settings.database_url) as conn:
        for t in tasks:
            insert_task(conn, t)
    produce(settings, "execsight.enriched.task", "EnrichedTask", tasks)
    produce(settings, "execsight.enriched.run", "EnrichedRun", runs)
    with running_worker(settings) as worker:
        wait_for(lambda: worker.stats.messages >= len(tasks) + len(runs))
    assert worker.stats.deadlettered == 0
    assert worker.stats.tasks == len(tasks) and worker.stats.runs == len(runs)
    with psycopg.connect(settings.database_url) as conn:
        n = conn.execute("SELECT count(*) FROM task_costs").fetchone()
    assert n is not None and n[0] == len(tasks)
