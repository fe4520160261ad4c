"""The correlator worker against real Kafka and PostgreSQL (a child process, as in production)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from execsight.schemas.codec import default_codec
from execsight.schemas.topics import DEADLETTER, ENRICHED_RUN, ENRICHED_TASK
from execsight.settings import Settings

from . import fixture_streams
from .correlator_events import MS, Host, S, host_sample
from .worker_process import WorkerProcess, consume_all, produce, query, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.db]


@pytest.fixture()
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(settings, tmp_path / "worker.log", env={"EXECSIGHT_RUN_TIMEOUT_S": "3"})
    yield w
    w.stop()


def _exits(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for k, r in events if k == "ProcessExit"]


def test_recorded_pipelines_become_runs_tasks_and_tools(settings: Settings, worker: WorkerProcess) -> None:
    streams = {name: fixture_streams.load(name, host_id=f"fx-{name}") for name in ("nextflow", "snakemake",
                                                                                    "explicit")}
    # the host goes on running things after the recording ends (the inactivity timeout sees time pass)
    later = Host("fx-snakemake", t=max(r["time_ns"] for _, r in streams["snakemake"]) + 10 * S, next_pid=90000)
    later.exit(later.seed(90000, ["true"]), "true")
    heartbeat = later.events
    worker.start()
    produce(settings, [e for events in streams.values() for e in events] + heartbeat)
    dsn = settings.database_url
    # every process identity seen in the recordings has exactly one row
    identities = {(r["host_id"], r["pid"], r["start_time_ns"]) for ev in [*streams.values(), later.events]
                  for k, r in ev if k.startswith("Process") and k != "ProcessSample"}
    wait_for(lambda: query(dsn, "SELECT count(*) FROM processes")[0][0], lambda n: n >= len(identities))
    wait_for(lambda: query(dsn, "SELECT count(*) FROM tasks")[0][0], lambda n: n >= 3 + 9 + 5)
    # the Snakemake root's exit is not in its recording: the run is closed by the inactivity timeout
    wait_for(lambda: query(dsn, "SELECT count(*) FROM runs WHERE status <> 'RUNNING'")[0][0], lambda n: n == 3)
    assert query(dsn, "SELECT count(*) FROM processes")[0][0] == len(identities)

    runs = {r[0]: r for r in query(dsn, "SELECT engine, pipeline, status, task_count, process_count, cpu_ns, run_id"
                                         " FROM runs")}
    assert runs["nextflow"][1:4] == ("hello", "SUCCEEDED", 3)
    assert runs["explicit"][1:3] == ("explicit-demo", "SUCCEEDED")
    assert runs["snakemake"][1:4] == ("smk", "TIMED_OUT", 9)
    # totals: the run's CPU is the BPF on-CPU time of every exited process of the recording
    for engine, name in (("nextflow", "nextflow"), ("explicit", "explicit")):
        exits = _exits(streams[name])
        assert runs[engine][5] == sum(e["kernel"]["on_cpu_ns"] for e in exits)
        assert runs[engine][4] == len({(r["pid"], r["start_time_ns"]) for k, r in streams[name]
                                       if k in ("ProcessFork", "ProcessExec")})

    tasks = query(dsn, "SELECT r.engine, t.task, t.tool, t.tools, t.status, t.process_count, t.cpu_ns, t.run_id,"
                       " t.task_id, t.peak_rss_bytes FROM tasks t JOIN runs r USING (run_id)")
    by_engine: dict[str, Counter[str]] = {}
    for row in tasks:
        by_engine.setdefault(row[0], Counter())[row[1]] += 1
    assert by_engine["nextflow"] == Counter({"INDEX (ref)": 1, "GZIP (ref)": 1, "STATS (ref)": 1})
    assert by_engine["snakemake"] == Counter({  # jobs of one rule told apart by their wildcards
        "reference": 1, "index": 1, "reads (s=s1)": 1, "reads (s=s2)": 1, "align (s=s1)": 1, "align (s=s2)": 1,
        "stats (s=s1)": 1, "stats (s=s2)": 1, "summary": 1})
    assert {"index", "faidx", "compress", "check"} <= set(by_engine["explicit"])
    for _, _, _, _, status, count, cpu, run_id, task_id, peak in tasks:
        assert status == "SUCCEEDED" and peak > 0
        rows = query(dsn, "SELECT count(*), coalesce(sum(cpu_ns), 0) FROM processes WHERE run_id = %s AND task_id = %s",
                     (run_id, task_id))
        assert rows[0] == (count, cpu)
    align = [t for t in tasks if t[1].startswith("align (")]
    assert len(align) == 2 and all(t[2] == "bwa mem" and {"bwa mem", "samtools sort"} <= set(t[3]) for t in align)
    tools = {r[0] for r in query(dsn, "SELECT tool FROM tools")}
    assert {"bwa mem", "bwa index", "samtools sort", "samtools faidx", "samtools flagstat", "gzip"} <= tools
    assert query(dsn, "SELECT count(*) FROM hosts WHERE host_id LIKE 'fx-%%' AND cpu_count > 0")[0][0] == 3
    assert query(dsn, "SELECT count(*) FROM host_samples")[0][0] > 0
    assert query(dsn, "SELECT count(*) FROM process_samples WHERE run_id IS NOT NULL")[0][0] > 0

    # the enriched topics carry the same tasks and the run events, Avro from schemas/
    codec = default_codec()
    task_msgs = [codec.decode(m.value()) for m in consume_all(settings, ENRICHED_TASK, len(tasks))]
    assert {(r["run_id"], r["task_id"]) for _, r in task_msgs} == {(t[7], t[8]) for t in tasks}
    run_msgs = [codec.decode(m.value())[1] for m in consume_all(settings, ENRICHED_RUN, 6)]
    events = Counter((r["engine"], r["event"], r["status"]) for r in run_msgs)
    assert events[("nextflow", "COMPLETED", "SUCCEEDED")] == 1 and events[("snakemake", "STARTED", "RUNNING")] == 1
    assert events[("snakemake", "COMPLETED", "TIMED_OUT")] == 1


def test_poison_message_goes_to_dead_letter_and_processing_continues(settings: Settings,
                                                                      worker: WorkerProcess) -> None:
    worker.start()
    h = Host("poison-host")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    first = h.spawn(sh, ["gzip", "-t", "a.gz"])
    h.exit(first, "gzip")
    misplaced = default_codec().encode("HostSample", host_sample("poison-host", h.t)[1])  # valid, wrong topic
    garbage = [b"\x00garbage", b"\xc3\x01" + b"\x00" * 8 + b"body", misplaced]
    produce(settings, h.events, extra=garbage)
    h.events.clear()
    second = h.spawn(sh, ["samtools", "faidx", "ref.fa"])
    h.exit(second, "samtools")
    produce(settings, h.events)
    dsn = settings.database_url
    wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'poison-host' AND end_time IS NOT NULL")
             [0][0], lambda n: n == 2)
    dead = consume_all(settings, DEADLETTER, 3)
    assert len(dead) == 3
    reasons = []
    for msg in dead:
        headers = dict(msg.headers())
        assert headers["execsight.origin"] == b"correlator"
        assert headers["execsight.topic"] == settings.topic("execsight.raw.process").encode()
        assert int(headers["execsight.offset"]) >= 0
        reasons.append(headers["execsight.reason"].decode())
    assert any("not Avro single-object encoded" in r for r in reasons)
    assert any("unknown writer schema fingerprint" in r for r in reasons)
    assert any("record type HostSample does not belong on" in r for r in reasons)
    assert {m.value() for m in dead} == set(garbage)
    assert worker.alive()


def synthetic_host(host_id: str, tasks: int, helpers: int) -> tuple[Host, dict[str, int]]:
    """A generic run with many tasks of a few processes each; returns the expected totals."""
    h = Host(host_id)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "big.sh"], exe="/usr/bin/bash")
    cpu = 0
    procs = 2
    for i in range(tasks):
        task_root = h.spawn(root, ["bwa", "mem", f"r{i}.fq"])
        for _ in range(helpers):
            helper = h.spawn(task_root, ["gzip", "-c"])
            h.exit(helper, "gzip", after=MS, cpu_ns=MS, peak_rss=1 << 20)
            cpu += MS
        h.exit(task_root, "bwa", after=10 * MS, cpu_ns=7 * MS, peak_rss=8 << 20)
        cpu += 7 * MS
        procs += 1 + helpers
    h.exit(root, "bash", cpu_ns=3 * MS)
    cpu += 3 * MS
    # rows: every process, the interactive shell too; the run: the root and its subtree
    return h, {"tasks": tasks, "processes": procs, "run_processes": procs - 1, "run_cpu": cpu}


def test_killed_worker_restarts_without_duplicates_or_gaps(settings: Settings, worker: WorkerProcess) -> None:
    hosts = [synthetic_host(f"kill-host-{i}", tasks=400, helpers=4) for i in range(4)]
    events = [e for h, _ in hosts for e in h.events]
    worker.args += ["--batch-size", "500"]
    worker.start()
    produce(settings, events)
    dsn = settings.database_url
    # kill it while it is part-way through
    wait_for(lambda: query(dsn, "SELECT count(*) FROM processes")[0][0], lambda n: n > 500, interval_s=0.05)
    worker.kill()
    partial = query(dsn, "SELECT count(*) FROM tasks")[0][0]
    worker.start()
    expected_procs = sum(x["processes"] for _, x in hosts)

    def succeeded() -> int:
        worker.supervise()
        return int(query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0])

    wait_for(succeeded, lambda n: n == len(hosts), timeout_s=300)
    have = {(r[0], r[1], r[2]) for r in query(dsn, "SELECT host_id, pid, start_time_ns FROM processes")}
    want = {(r["host_id"], r["pid"], r["start_time_ns"]) for _, r in events}
    missing = sorted(want - have)
    near = query(dsn, "SELECT host_id, pid, start_time_ns, end_time IS NOT NULL, task_id, exe FROM processes"
                      " WHERE pid BETWEEN 1050 AND 1062 AND host_id IN ('kill-host-0', 'kill-host-1') ORDER BY 1, 2")
    assert not missing, (len(missing), missing[:20], near)
    assert query(dsn, "SELECT count(*) FROM processes")[0][0] == expected_procs
    assert query(dsn, "SELECT count(*) FROM tasks")[0][0] == sum(x["tasks"] for _, x in hosts) > partial
    for h, expected in hosts:
        row = query(dsn, "SELECT task_count, process_count, cpu_ns FROM runs WHERE host_id = %s", (h.host,))
        assert row == [(expected["tasks"], expected["run_processes"], expected["run_cpu"])]
        bad = query(dsn, "SELECT count(*) FROM tasks WHERE host_id = %s AND (process_count <> 5 OR cpu_ns <> %s)",
                    (h.host, 11 * MS))
        assert bad == [(0,)]
    assert worker.starts == 2 + worker.restarts_by_supervisor


def test_edited_rules_file_changes_the_tool_of_the_next_process(settings: Settings, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {tool: aligner-v1, exe: myaligner}\n")
    worker = WorkerProcess(settings, tmp_path / "worker.log", env={"EXECSIGHT_TOOL_RULES": str(rules)})
    try:
        worker.start()
        dsn = settings.database_url
        h = Host("rules-host")
        sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")

        def run_tool() -> int:
            pid = h.spawn(sh, ["myaligner", "--fast", "x.fq"])
            h.exit(pid, "myaligner")
            produce(settings, h.events)
            h.events.clear()
            return pid

        def tool_of(pid: int) -> Any:
            rows = query(dsn, "SELECT tool FROM processes WHERE host_id = 'rules-host' AND pid = %s"
                              " AND end_time IS NOT NULL", (pid,))
            return rows[0][0] if rows else "missing"

        first = run_tool()
        assert wait_for(lambda: tool_of(first), lambda t: t != "missing") == "aligner-v1"
        rules.write_text("rules:\n  - {tool: aligner-v2, exe: myaligner}\n")
        wait_for(worker.log_tail, lambda log: "tool rules reloaded" in log, timeout_s=20)
        second = run_tool()
        assert wait_for(lambda: tool_of(second), lambda t: t != "missing") == "aligner-v2"
        rules.write_text("rules:\n  - {tool: aligner-v3, exe: [myaligner}\n")  # broken: rejected, v2 stays
        wait_for(worker.log_tail, lambda log: "tool rules rejected" in log, timeout_s=20)
        third = run_tool()
        assert wait_for(lambda: tool_of(third), lambda t: t != "missing") == "aligner-v2"
        assert worker.alive()
    finally:
        worker.stop()


def test_database_outage_pauses_and_resumes_without_loss(settings: Settings, tmp_path: Path) -> None:
    from .tcp_proxy import TcpProxy

    proxy = TcpProxy(settings.database_url)
    proxy.start()
    worker = WorkerProcess(settings, tmp_path / "worker.log",
                           env={"EXECSIGHT_DATABASE_URL": proxy.dsn})
    try:
        worker.start()
        dsn = settings.database_url
        a, _ = synthetic_host("outage-a", tasks=20, helpers=2)
        produce(settings, a.events)
        wait_for(lambda: query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0], lambda n: n == 1)
        proxy.stop()  # the database becomes unreachable
        b, expected_b = synthetic_host("outage-b", tasks=30, helpers=2)
        produce(settings, b.events)
        wait_for(worker.log_tail, lambda log: "database unavailable" in log, timeout_s=30)
        time.sleep(2)
        assert worker.alive()
        assert query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'outage-b'")[0][0] == 0
        proxy.start()
        wait_for(lambda: query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0], lambda n: n == 2,
                 timeout_s=60)
        assert query(dsn, "SELECT task_count, process_count, cpu_ns FROM runs WHERE host_id = 'outage-b'") == [
            (expected_b["tasks"], expected_b["run_processes"], expected_b["run_cpu"])]
        assert query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'outage-b'")[0][0] == expected_b["processes"]
    finally:
        worker.stop()
        proxy.stop()


def test_two_workers_share_the_partitions_and_hand_over_on_leaving(settings: Settings, tmp_path: Path) -> None:
    """Two workers in one group split the hosts' partitions; when one leaves mid-stream the other takes its
    partitions over, state from the changelog, and every run still adds up exactly once."""
    hosts = [synthetic_host(f"share-host-{i}", tasks=150, helpers=3) for i in range(8)]
    half = [len(h.events) // 2 for h, _ in hosts]
    workers = [
        WorkerProcess(settings, tmp_path / f"worker-{n}.log", args=["--batch-size", "300"],
                      env={"EXECSIGHT_STATE_DIR": str(tmp_path / f"state-{n}"), "EXECSIGHT_RUN_TIMEOUT_S": "600"})
        for n in (0, 1)
    ]
    dsn = settings.database_url
    try:
        for w in workers:
            w.start()
        produce(settings, [e for (h, _), n in zip(hosts, half, strict=True) for e in h.events[:n]])
        wait_for(lambda: query(dsn, "SELECT count(*) FROM processes")[0][0],
                 lambda n: n >= sum(half) // 3, timeout_s=120, interval_s=0.1)
        # both took part: each logs loading the state of the partitions it was given
        for w in workers:
            wait_for(w.log_path.read_text, lambda text: "partition state loaded" in text, timeout_s=60)
        workers[0].stop()  # leaves the group: its partitions move to the other worker
        produce(settings, [e for (h, _), n in zip(hosts, half, strict=True) for e in h.events[n:]])

        def succeeded() -> int:
            workers[1].supervise()
            return int(query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0])

        wait_for(succeeded, lambda n: n == len(hosts), timeout_s=180)
    finally:
        for w in workers:
            w.stop()
    assert query(dsn, "SELECT count(*) FROM processes")[0][0] == sum(x["processes"] for _, x in hosts)
    for h, expected in hosts:
        row = query(dsn, "SELECT task_count, process_count, cpu_ns FROM runs WHERE host_id = %s", (h.host,))
        assert row == [(expected["tasks"], expected["run_processes"], expected["run_cpu"])], h.host
        bad = query(dsn, "SELECT count(*) FROM tasks WHERE host_id = %s AND (process_count <> 4 OR cpu_ns <> %s)",
                    (h.host, 10 * MS))
        assert bad == [(0,)], h.host
    # every task was published once on the enriched topic, however the partitions moved
    tasks = consume_all(settings, ENRICHED_TASK, sum(x["tasks"] for _, x in hosts))
    codec = default_codec()
    ids = Counter((rec["host_id"], rec["task_id"]) for rec in (codec.decode(m.value())[1] for m in tasks))
    assert len(ids) == sum(x["tasks"] for _, x in hosts)
    assert max(ids.values()) == 1
