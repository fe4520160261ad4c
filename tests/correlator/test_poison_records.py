"""Poison records through a real correlator worker (Kafka + PostgreSQL): each one is either made valid
or dead-lettered with its reason, and the records after it are written (issue 19, points 1 and 5)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from execsight.schemas import record_bounds
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import DEADLETTER, ENRICHED_PROCESS, RAW_PROCESS
from execsight.settings import Settings

from .correlator_events import MS, Host, S, exec_, exit_
from .worker_process import WorkerProcess, consume_all, query, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.db]

HOST = "poison-records"
YEAR_NS = 365 * 24 * 3600 * S


@pytest.fixture()
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(settings, tmp_path / "worker.log", env={"EXECSIGHT_RUN_TIMEOUT_S": "3"})
    yield w
    w.stop()


def _produce(settings: Settings, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Like the collector's producer (zstd), but allowed to send a 10 MB record: compressed, the broker
    takes it, as it took the one from /proc that stopped the correlator."""
    codec = default_codec()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "compression.type": "zstd",
                         "message.max.bytes": 20_000_000, "enable.idempotence": True})
    for kind, rec in events:
        producer.produce(settings.topic(RAW_PROCESS), key=rec["host_id"].encode(), value=codec.encode(kind, rec))
    assert producer.flush(60) == 0


def test_poison_records_are_normalised_or_dead_lettered_and_the_next_ones_are_written(
        settings: Settings, worker: WorkerProcess) -> None:
    h = Host(HOST)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    # made valid: NUL bytes (PostgreSQL text cannot hold them), a 10 MB argument, 1,500 variables
    nul = h.spawn(sh, ["gzip", "-c", "a\x00b"], comm="gz\x00ip")
    h.exit(nul, "gz\x00ip")
    huge = h.spawn(sh, ["bwa", "mem", "A" * 10_000_000], env={f"NXF_V{i}": "x" * 1000 for i in range(1500)})
    h.exit(huge, "bwa")
    overflow = h.spawn(sh, ["samtools", "sort"])
    kind, bad_exit = exit_(HOST, overflow, h.starts[overflow], h.tick(), "samtools", cpu_ns=0)
    bad_exit["accounting"]["utime_ns"] = bad_exit["kernel"]["on_cpu_ns"] = (1 << 63) - 1  # bigint overflow
    h.events.append((kind, bad_exit))
    # cannot be made valid: dead-lettered with the reason
    poison = [
        exec_(HOST, 7001, h.t + 10 * YEAR_NS, h.t + 10 * YEAR_NS, 100, h.starts[sh], ["future"]),
        exit_(HOST, 7002, h.t, h.t - 60 * S, "early"),  # ends before it starts
        exec_(HOST, 0, h.t, h.t, 100, 0, ["no-pid"]),
        exit_(HOST, 7003, h.t - S, h.t, "odd", code=300),
    ]
    h.events.extend(poison)
    # the next good records
    after = h.spawn(sh, ["gzip", "-t", "ok.gz"])
    h.exit(after, "gzip")
    worker.start()
    _produce(settings, h.events)

    dsn = settings.database_url
    wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE host_id = %s AND pid = %s"
                                " AND end_time IS NOT NULL", (HOST, after)), lambda r: r[0][0] == 1)
    rows = {r[0]: r[1:] for r in query(dsn, "SELECT pid, comm, argv, cpu_ns, end_time IS NOT NULL FROM processes"
                                            " WHERE host_id = %s", (HOST,))}
    assert rows[nul][0] == "gz\ufffdip" and rows[nul][1] == ["gzip", "-c", "a\ufffdb"] and rows[nul][3]
    assert rows[huge][1][:2] == ["bwa", "mem"]
    assert sum(len(a.encode()) + 1 for a in rows[huge][1]) <= record_bounds.ARGV_MAX_BYTES
    assert rows[overflow][2] == 0 and rows[overflow][3]  # figures unknown, the exit itself recorded
    assert not {7001, 7002, 0, 7003} & set(rows)

    dead = consume_all(settings, DEADLETTER, len(poison))
    reasons = sorted(dict(m.headers())["execsight.reason"].decode() for m in dead)
    assert len(dead) == len(poison), reasons
    assert any("ahead of the correlator's clock" in r for r in reasons)
    assert any("the event ends or happens before the process started" in r for r in reasons)
    assert any("pid 0 out of range" in r for r in reasons)
    assert any("exit_code 300 out of range" in r for r in reasons)
    codec = default_codec()
    assert {codec.decode(m.value())[1]["pid"] for m in dead} == {7001, 7002, 0, 7003}

    # the enriched record of the huge process is bounded, and so is every state write (changelog)
    enriched = [codec.decode(m.value())[1] for m in consume_all(settings, ENRICHED_PROCESS, len(rows))]
    (big,) = [r for r in enriched if r["pid"] == huge]
    assert len(big["argv"]) == 3 and len(big["argv"][2]) < record_bounds.ARGV_MAX_BYTES
    changelog = consume_all(settings, "execsight-correlator-state-changelog", 1)
    assert changelog and max(len(m.value() or b"") for m in changelog) < 64 * 1024
    assert worker.alive()
    assert "record normalised at the boundary" in worker.log_tail(200_000)


def test_one_record_dated_ahead_does_not_time_out_the_hosts_runs(settings: Settings, worker: WorkerProcess) -> None:
    """With a 3 s run timeout, one exec dated 50 minutes ahead (inside the wall-clock bound) used to close
    every open run of the host at once; the host clock is the median of recent event times."""
    h = Host("poison-clock")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
    step = h.spawn(root, ["gzip", "-c", "a"])
    h.exit(step, "gzip")
    h.events.append(exec_(h.host, 7100, h.t + 3000 * S, h.t + 3000 * S, 1, 0, ["ntpdate"]))
    for _ in range(3):
        step = h.spawn(root, ["gzip", "-c", "b"])
        h.exit(step, "gzip", after=100 * MS)
    worker.start()
    _produce(settings, h.events)  # one batch ends after the record dated ahead, the run still open
    dsn = settings.database_url
    wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'poison-clock' AND pid = %s"
                                " AND end_time IS NOT NULL", (step,)), lambda r: r[0][0] == 1)
    h.events.clear()
    h.exit(root, "bash")
    _produce(settings, h.events)
    status = wait_for(lambda: query(dsn, "SELECT status, process_count FROM runs WHERE host_id = 'poison-clock'"),
                      lambda r: bool(r) and r[0][0] != "RUNNING")
    assert status == [("SUCCEEDED", 5)]
    time.sleep(0.5)
    assert worker.alive()


def test_operator_skips_a_message_and_the_worker_reads_on_after_it(settings: Settings, tmp_path: Path) -> None:
    codec = default_codec()
    h = Host("poison-skip")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    first = h.spawn(sh, ["true"])
    h.exit(first, "true")
    skipped = h.spawn(sh, ["skipped-tool"])
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.start()
        _produce(settings, h.events)
        dsn = settings.database_url
        wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'poison-skip' AND pid = %s",
                               (skipped,)), lambda r: r[0][0] == 1)
        worker.stop()
        # the message to skip: the exit of `skipped`, produced while no worker runs
        where: list[tuple[int | None, int | None]] = []
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        kind, rec = exit_("poison-skip", skipped, h.starts[skipped], h.tick(), "skipped-tool")
        producer.produce(settings.topic(RAW_PROCESS), key=b"poison-skip", value=codec.encode(kind, rec),
                         on_delivery=lambda err, msg: where.append((msg.partition(), msg.offset())))
        assert producer.flush(30) == 0
        partition, offset = where[0]
        assert partition is not None and offset is not None
        done = subprocess.run([sys.executable, "-m", "execsight.cli", "correlator", "skip", "--partition",
                               str(partition), "--offset", str(offset)], env=worker.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{settings.topic(RAW_PROCESS)}[{partition}]@{offset}" in done.stdout
        h.events.clear()
        later = h.spawn(sh, ["later-tool"])
        h.exit(later, "later-tool")
        worker.start()
        _produce(settings, h.events)
        wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE host_id = 'poison-skip' AND pid = %s"
                                    " AND end_time IS NOT NULL", (later,)), lambda r: r[0][0] == 1)
        assert query(dsn, "SELECT end_time FROM processes WHERE host_id = 'poison-skip' AND pid = %s",
                     (skipped,)) == [(None,)]  # its exit was skipped
        (dead,) = consume_all(settings, DEADLETTER, 1)
        headers = dict(dead.headers())
        assert headers["execsight.reason"].startswith(b"skipped by operator")
        assert int(headers["execsight.offset"]) == offset and codec.decode(dead.value())[1]["pid"] == skipped
    finally:
        worker.stop()
