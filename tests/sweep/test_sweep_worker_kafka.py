"""The worker on the real Kafka and PostgreSQL: heartbeats with no execution make an idle-host
finding (stored and published); execution resolves it; malformed input goes to the dead-letter topic."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from confluent_kafka import Consumer

from execsight.findings import load_finding
from execsight.kafka_io import make_producer
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import DEADLETTER, ENRICHED_HOST, FINDINGS_SWEEP, RAW_HOST
from execsight.settings import Settings
from execsight.sweep.worker import ScanResult, run_forever

from .sweep_records import NS, activity, host_sample

pytestmark = [pytest.mark.kafka, pytest.mark.db]


@pytest.fixture()
def sweep_settings(settings: Settings) -> Settings:
    return replace(settings, sweep_interval_s=0.5, idle_after_s=3.0, host_interval_s=0.5)


@pytest.fixture()
def worker(sweep_settings: Settings) -> Iterator[queue.Queue[ScanResult]]:
    rounds: queue.Queue[ScanResult] = queue.Queue()
    stop = threading.Event()
    t = threading.Thread(target=run_forever, args=(sweep_settings, None, stop), kwargs={"on_round": rounds.put},
                         daemon=True)
    t.start()
    yield rounds
    stop.set()
    t.join(30)
    assert not t.is_alive()


def wait_for(rounds: queue.Queue[ScanResult], cond: object, timeout_s: float = 30) -> ScanResult:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            r = rounds.get(timeout=1)
        except queue.Empty:
            continue
        if cond(r):  # type: ignore[operator]
            return r
    raise AssertionError("no sweep round met the condition in time")


def read_topic(settings: Settings, topic: str, want: int, timeout_s: float = 20) -> list[object]:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([settings.topic(topic)])
    out: list[object] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < want and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(m)
    finally:
        c.close()
    return out


def test_idle_host_found_from_heartbeats_and_resolved_by_activity(
    sweep_settings: Settings, worker: queue.Queue[ScanResult]
) -> None:
    s = sweep_settings
    codec = default_codec()
    producer = make_producer(s)
    now = time.time_ns()
    for k in range(10, -1, -1):  # heartbeats over the last 10 s, no execution
        rec = host_sample("k-host", now - k * NS, "i-0abc", "m5.large", "us-east-1")
        producer.produce(s.topic(RAW_HOST), key=b"k-host", value=codec.encode("HostSample", rec))
    producer.produce(s.topic(RAW_HOST), key=b"k-host", value=b"not avro at all")
    assert producer.flush(30) == 0

    def idle_open(r: ScanResult) -> bool:
        return any(x["resource_id"] == "k-host" and x["status"] == "OPEN" for x in r.records)

    opened = wait_for(worker, idle_open)
    rec = next(x for x in opened.records if x["resource_id"] == "k-host")
    assert rec["kind"] == "idle_host" and rec["resource_type"] == "host"
    assert rec["since_ns"] == now - 10 * NS
    assert rec["monthly_waste_usd"] == pytest.approx(0.096 * 730)
    fid = rec["finding_id"]
    with psycopg.connect(s.database_url) as conn:
        row = load_finding(conn, fid)
    assert row is not None and row["status"] == "OPEN" and row["source"] == "sweep" and row["region"] == "us-east-1"

    # execution on the host: a busy window ending now, and a heartbeat
    t = time.time_ns()
    producer.produce(s.topic(ENRICHED_HOST), key=b"k-host",
                     value=codec.encode("HostActivity", activity("k-host", t - NS, t, 0.8, runs=("run-7",))))
    producer.produce(s.topic(RAW_HOST), key=b"k-host", value=codec.encode("HostSample", host_sample("k-host", t)))
    assert producer.flush(30) == 0

    def resolved(r: ScanResult) -> bool:
        return any(x["finding_id"] == fid and x["status"] == "RESOLVED" for x in r.records)

    wait_for(worker, resolved)
    with psycopg.connect(s.database_url) as conn:
        row = load_finding(conn, fid)
    assert row is not None and row["status"] == "RESOLVED" and row["resolved_at"] is not None

    # the findings topic carries the finding's life: OPEN first, RESOLVED last (keyed by finding id)
    msgs = read_topic(s, FINDINGS_SWEEP, want=2)
    states = [codec.decode(m.value())[1]["status"] for m in msgs if m.key() == fid.encode()]  # type: ignore[attr-defined]
    assert states[0] == "OPEN" and states[-1] == "RESOLVED"

    dead = read_topic(s, DEADLETTER, want=1)
    assert len(dead) == 1
    headers = dict(dead[0].headers())  # type: ignore[attr-defined]
    assert dead[0].value() == b"not avro at all"  # type: ignore[attr-defined]
    assert b"CodecError" in headers["execsight.reason"] and headers["execsight.origin"] == b"sweep"
