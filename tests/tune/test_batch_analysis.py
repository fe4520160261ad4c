"""Batch analysis gives what per-record analysis gives.

The reference is the worker's per-record path (``TuneWorker(per_record=True)``: analyze_task over each
task's merged history, one run at a time, as before batch analysis); the batched path shares the
definition's history, right-sizing and samples over a batch and keeps samples across batches. Both
get the same task stream, in the same batches, in databases with the same rows; the findings they
store and publish and the costs they write must be the same. Rows the correlator writes between
batches (a task row rewritten, samples added) must be seen by the batched path as by the reference.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from execsight.pricing import HostRate
from execsight.settings import Settings
from execsight.tune import store
from execsight.tune.batch_analysis import DefinitionBatch
from execsight.tune.task_analysis import analyze_task, merge_history
from execsight.tune.worker import TuneWorker
from tests.conftest import clone_database, drop_database

from .tune_records import enriched_run, insert_host, insert_run, insert_task, pipeline_runs, workload_task

NOW = 1_800_000_000 * 10**9
RATE = HostRate(0.192, "aws:us-east-1")
Record = dict[str, Any]


def _stream() -> list[tuple[str, Record]]:
    """Recorded workloads: the nightly pipeline (baselines, a regression, a normal run), a definition that
    changes character, Nextflow-tagged instances over several runs, and 6 types x 8 runs with history."""
    out: list[tuple[str, Record]] = []
    for _, run, tasks in pipeline_runs("nightly"):
        out += [("EnrichedTask", t) for t in tasks] + [("EnrichedRun", run)]
    shapes = ["io_fsync", "cpu_heavy", "io_fsync", "helper_churn", "mem_small", "io_fsync"]
    for i, w in enumerate(shapes):
        t = workload_task(w, task_id=f"f{i}", run_id=f"flaky-{i}", pipeline="flaky", task="step", shift_ns=i * 10**12)
        out += [("EnrichedTask", t), ("EnrichedRun", enriched_run(str(t["run_id"]), "flaky", [t]))]
    names = ["mem_small", "cpu_heavy", "io_fsync", "helper_churn", "oom_killed", "mem_small"]
    for r in range(8):
        run_id = f"nf-{r}"
        ts = [workload_task(names[(i + r) % len(names)] if i == 5 else names[i], task=f"STEP{i % 3} (s{i})",
                            engine="nextflow", task_id=f"{run_id}-{i}", run_id=run_id, pipeline="nf",
                            requested_memory_bytes=4 << 30, requested_cpus=2.0, shift_ns=(r * 10 + i) * 10**10)
              for i in range(6)]
        out += [("EnrichedTask", t) for t in ts] + [("EnrichedRun", enriched_run(run_id, "nf", ts))]
    return out


def _samples(task: Record, n: int = 4) -> list[tuple[Any, ...]]:
    step = max(1, (int(task["end_ns"]) - int(task["start_ns"])) // n)
    return [(task["host_id"], task["root_pid"], task["root_start_time_ns"], (int(task["start_ns"]) + k * step) / 1e9,
             step, int(task["cpu_ns"]) // n * (k + 1) % max(1, step), int(task["runq_ns"]) // n, k * 1000,
             task["peak_rss_bytes"], 1 + k % 3, task["run_id"], task["task_id"]) for k in range(n)]


def _load(url: str, recs: list[tuple[str, Record]]) -> None:
    with psycopg.connect(url) as conn:
        insert_host(conn)
        for kind, r in recs:
            if kind == "EnrichedRun":
                insert_run(conn, r)
        rows = []
        for kind, r in recs:
            if kind == "EnrichedTask":
                insert_task(conn, r)
                rows += _samples(r)
        add_samples(conn, rows)


def add_samples(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, runq_ns, "
            "blocked_ns, rss_bytes, threads, run_id, task_id) VALUES (%s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, "
            "%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


def _state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        findings = conn.execute(
            "SELECT finding_id, kind, status, severity, summary, recommendation, evidence::text, recommended::text, "
            "detected_at, resolved_at IS NOT NULL, run_id, task, confidence, estimated_savings_usd "
            "FROM findings ORDER BY 1").fetchall()
        costs = conn.execute("SELECT run_id, task_id, cost_usd, waste_usd FROM task_costs ORDER BY 1, 2").fetchall()
        runs = conn.execute("SELECT run_id, cost_usd, waste_usd FROM run_costs ORDER BY 1").fetchall()
    return findings, costs + runs


def _open_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT finding_id FROM findings WHERE status = 'OPEN'")}


@pytest.fixture()
def scratch_databases(database_server_url: str, migrated_template: str) -> Iterator[list[str]]:
    """Two more migrated databases (the test's own is the first of three)."""
    names = [f"execsight_ba_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for name in names:
        clone_database(database_server_url, migrated_template, name)
    yield [urlunsplit(urlsplit(database_server_url)._replace(path=f"/{name}")) for name in names]
    for name in names:
        drop_database(database_server_url, name)


@pytest.mark.db
def test_batched_path_stores_and_publishes_what_the_per_record_path_does(
    settings: Settings, database_url: str, scratch_databases: list[str]
) -> None:
    """Three workers on the same stream, in the same batches: the per-record reference; the batched path
    analysing every record (shared reads and analysis must not change a thing: equal to the reference);
    and the worker as it runs, analysing each definition's last task and each pipeline's last run of a
    batch (TuneWorker.decisive_tasks): the same costs, the same open findings, the same resolved ones,
    less only findings that the reference opened and resolved again within one batch (never committed
    open, so never seen by a user or subscriber as open)."""
    recs = _stream()
    settings = replace(settings, findings_min_wall_s=0.0)  # recorded tasks are short: no noise floor here
    urls = [database_url, *scratch_databases]
    workers = [TuneWorker(settings, clock=lambda: NOW, per_record=True),
               TuneWorker(replace(settings, database_url=urls[1]), clock=lambda: NOW, every_record=True),
               TuneWorker(replace(settings, database_url=urls[2]), clock=lambda: NOW)]
    for url in urls:
        _load(url, recs)
    published: list[dict[str, Any]] = [{}, {}, {}]
    committed_open: set[str] = set()  # every id the reference left open at the end of a batch
    try:
        half = len(recs) // 2
        for size, part in ((7, recs[:half]), (len(recs), recs[half:])):
            for i in range(0, len(part), size):
                for worker, out in zip(workers, published, strict=True):
                    out.update({f["finding_id"]: f for f in worker.analyse(part[i:i + size])})
                committed_open |= _open_ids(urls[0])
            # between batches the correlator rewrites a task row and adds samples: every path must see them
            for url in urls:
                with psycopg.connect(url) as conn:
                    conn.execute("UPDATE tasks SET peak_rss_bytes = peak_rss_bytes * 3, requested_cpus = 1 "
                                 "WHERE run_id = 'nf-1'")
                    for t in (r for k, r in recs if k == "EnrichedTask" and r["run_id"] in ("nf-2", "nf-3")):
                        # later samples: more threads, and intervals in which nothing ran (idle)
                        add_samples(conn, [(*row[:3], row[3] + 0.5, 10**9, 0, 0, 0, row[8], 8, *row[10:])
                                           for row in _samples(t)])
        again = [r for r in recs if r[1]["run_id"] == "nf-3"]  # a replay after the rows changed
        for worker, out in zip(workers, published, strict=True):
            out.update({f["finding_id"]: f for f in worker.analyse(again)})
        committed_open |= _open_ids(urls[0])
    finally:
        for worker in workers:
            worker.close()
    (ref_findings, ref_costs), (every_findings, every_costs), (net_findings, net_costs) = (_state(u) for u in urls)
    assert len(ref_findings) > 20 and {r[2] for r in ref_findings} == {"OPEN", "RESOLVED"}
    assert every_findings == ref_findings
    assert every_costs == ref_costs
    assert published[1] == published[0]

    assert net_costs == ref_costs
    ref, net = {r[0]: r for r in ref_findings}, {r[0]: r for r in net_findings}
    assert [r for r in net_findings if r[2] == "OPEN"] == [r for r in ref_findings if r[2] == "OPEN"]
    assert set(net) <= set(ref) and all(net[i][:3] == ref[i][:3] for i in net)  # same kind, same status
    transient = set(ref) - set(net)
    assert transient, "the stream should have findings opened and resolved within one batch"
    assert all(ref[i][2] == "RESOLVED" for i in transient) and not transient & committed_open
    assert {i for i, f in published[2].items() if f["status"] == "OPEN"} == \
        {i for i, f in published[0].items() if f["status"] == "OPEN"}
    assert all(published[2][i] == published[0][i] for i in published[2] if published[2][i]["status"] == "OPEN")
    assert set(published[2]) == set(published[0]) - transient
    # fewer questions: all share reads within a batch; the batched paths also across batches
    assert workers[2].stats.queries <= workers[1].stats.queries < workers[0].stats.queries, \
        [w.stats.queries for w in workers]


def test_definition_batch_matches_analyze_task_for_every_task() -> None:
    """Pure: DefinitionBatch.analyze == analyze_task over the merged history, tagged instances of several
    runs, tasks in the history or not, messages that differ from their stored rows."""
    history: list[Record] = []
    samples: dict[tuple[str, str], list[Record]] = {}
    shapes = ["mem_small", "cpu_heavy", "io_fsync", "helper_churn", "oom_killed"]
    for r in range(12):
        for i in range(3):
            t = workload_task(shapes[(r + i) % len(shapes)], task=f"ALIGN (s{i})", engine="nextflow",
                              task_id=f"r{r}-{i}", run_id=f"r{r}", pipeline="nf", requested_cpus=4.0,
                              requested_memory_bytes=8 << 30, shift_ns=(r * 3 + i) * 10**10)
            history.append(t)
            samples[(f"r{r}", f"r{r}-{i}")] = [
                {"time": k, "interval_ns": 10**9, "cpu_ns": (k * 37 + r) % 10**9, "runq_ns": k * 10**7 * i,
                 "blocked_ns": 0, "threads": 1 + i, "rss_bytes": 1} for k in range(3 + r % 4)]
    history.append(workload_task("mem_small", task="ALIGNER", engine="nextflow", task_id="other", run_id="r0",
                                 pipeline="nf"))  # another definition: left out
    batch = DefinitionBatch("ALIGN", history, lambda k: samples.get(k, []))
    tasks: list[Record] = [dict(history[-5]), dict(history[4], peak_rss_bytes=3 << 30), dict(history[7], start_ns=0),
             workload_task("cpu_heavy", task="ALIGN (s9)", engine="nextflow", task_id="new", run_id="r11",
                           pipeline="nf", shift_ns=40 * 10**10),
             workload_task("io_fsync", task="ALIGN (s1)", engine="nextflow", task_id="x", run_id=None, pipeline="nf")]
    # new instances (not in the history read) at the start, in the middle and at the end of it, with and
    # without requests and samples, OOM-killed or not: right-sized from the folded history
    for n, shape in enumerate(shapes * 2):
        req = {"requested_cpus": 8.0, "requested_memory_bytes": 1 << 30} if n % 2 else {}
        t = workload_task(shape, task=f"ALIGN (s{n})", engine="nextflow", task_id=f"n{n}", run_id=f"r{n % 13}",
                          pipeline="nf", shift_ns=(n * 4 - 2) * 10**10, **req)
        if n % 3 == 0:
            samples[(f"r{n % 13}", f"n{n}")] = [{"time": 0, "interval_ns": 10**9, "cpu_ns": 9 * 10**8, "runq_ns": 0,
                                                 "blocked_ns": 0, "threads": 2, "rss_bytes": 1}]
        tasks.append(t)
    for task in tasks:
        runs = merge_history(history, task)
        keys = [(str(t["run_id"]), str(t["task_id"])) for t in runs if t.get("run_id")]
        want = analyze_task(task, history, RATE, 4, 16 << 30, {k: samples.get(k, []) for k in keys}, 12.0, NOW)
        got = batch.analyze(task, RATE, 4, 16 << 30, 12.0, NOW)
        assert got == want, task["task_id"]
    assert any(f["kind"] == "rightsize_cpu" for f in want.findings)


def _process(conn: psycopg.Connection[Any], pid: int, start_s: float, end_s: float | None, cpu_s: float, comm: str,
             tool: str | None, run_id: str | None = None, task_id: str | None = None, task: str | None = None) -> None:
    conn.execute(
        "INSERT INTO processes (host_id, pid, start_time_ns, start_time, end_time, ppid, comm, cpu_ns, run_id, "
        "task_id, task, tool) VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s), 1, %s, %s, %s, %s, %s, %s)",
        ("tune-test-host", pid, int(start_s * 1e9), start_s, end_s, comm, int(cpu_s * 1e9), run_id, task_id, task,
         tool))


@pytest.mark.db
def test_contended_finding_names_what_ran_beside_it_on_the_host(settings: Settings, database_url: str) -> None:
    """Two overlapping tasks on one host (and a daemon): the contended one's finding names the other task
    and its tool, and the daemons, by the CPU they used while it ran; its own processes are not named."""
    t0 = float(int(time.time()) - 3600)  # recent: samples older than the retention would be dropped meanwhile
    waits = workload_task("cpu_heavy", task="align", task_id="a1", run_id="ra", pipeline="p", start_ns=int(t0 * 1e9),
                          end_ns=int((t0 + 60) * 1e9), wall_ns=60 * 10**9, cpu_ns=20 * 10**9, runq_ns=30 * 10**9,
                          blkio_ns=0, process_count=1, short_lived_count=0, short_lived_wall_ns=0)
    beside = workload_task("cpu_heavy", task="sort", task_id="b1", run_id="rb", pipeline="q",
                           start_ns=int((t0 - 30) * 1e9), end_ns=int((t0 + 90) * 1e9))
    with psycopg.connect(database_url) as conn:
        insert_host(conn)
        insert_task(conn, waits)
        insert_task(conn, beside)
        _process(conn, 100, t0, t0 + 60, 20, "bwa", "bwa", "ra", "a1", "align")                 # its own
        _process(conn, 200, t0 - 30, t0 + 90, 120, "sort", "gnu-sort", "rb", "b1", "sort")     # 60 s of 120 inside
        _process(conn, 300, t0 - 3600, t0 + 3600, 72, "backupd", None)                         # 0.6 s inside
        _process(conn, 400, t0 + 100, t0 + 200, 50, "late", "late", "rb", "b1", "sort")        # after it: not named
        # still running (no CPU total in its row yet): its samples say 3 s inside the interval, 9 s after it
        _process(conn, 500, t0 - 7200, None, 0, "postgres", None)
        add_samples(conn, [("tune-test-host", 500, int((t0 - 7200) * 1e9), t0 + at, 10**9, cpu, 0, 0, 1 << 20, 1,
                            None, None) for at, cpu in ((10, 10**9), (20, 10**9), (30, 10**9), (120, 9 * 10**9))])
        _process(conn, 600, t0 + 1, t0 + 2, 0.01, "tinyd", None)                                # 0.01 s: not named
    named: list[dict[str, Any]] = []
    for per_record in (True, False):
        worker = TuneWorker(settings, clock=lambda: NOW, per_record=per_record)
        try:
            found = {f["kind"]: f for f in worker.analyse([("EnrichedTask", waits)])}
        finally:
            worker.close()
        named.append(found["contended"])
    f = named[1]
    assert named[0] == f  # both paths name the same competitors
    assert "competing on the host: sort (gnu-sort, run rb) 60.0 s CPU, postgres 3.0 s CPU, backupd 0.6 s CPU" \
        in f["summary"], f["summary"]
    assert "Running with it on the host: sort (gnu-sort, run rb)" in f["recommendation"]
    ev = {e["name"]: e["value"] for e in f["evidence"]}
    assert ev["competitor:sort (gnu-sort, run rb)"] == pytest.approx(60.0)
    assert ev["competitor:backupd"] == pytest.approx(0.6)
    assert not any("bwa" in k or "late" in k for k in ev)
    with psycopg.connect(database_url) as conn:  # alone, the tiny one is below the floor: nothing is named
        conn.execute("DELETE FROM processes WHERE pid <> 600")
        assert store.host_competitors(conn, [("tune-test-host", int(t0 * 1e9), int((t0 + 60) * 1e9), ())]) == [[]]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT summary FROM findings WHERE kind = 'contended'").fetchone()
    assert stored is not None and "sort (gnu-sort, run rb)" in stored[0]
