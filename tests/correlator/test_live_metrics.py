"""The correlator's /metrics stay true while batches do not finish, and its supervisor restarts any exit.

Against real Kafka and PostgreSQL: during a database outage the consumer-lag gauge follows what is
produced (it froze before: it was set from finished batches only) and database failures count up
while the batch is held; `execsight correlator` (supervised) starts a SIGKILLed worker again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from execsight.correlator.metrics import CorrelatorMetrics, partition_lag
from execsight.schemas.topics import RAW_PROCESS
from execsight.settings import Settings

from .correlator_events import MS, Host
from .worker_process import REPO, WorkerProcess, produce, query, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.db]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _host(host_id: str, tasks: int) -> Host:
    h = Host(host_id)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "big.sh"], exe="/usr/bin/bash")
    for i in range(tasks):
        t = h.spawn(root, ["bwa", "mem", f"r{i}.fq"])
        h.exit(t, "bwa", after=10 * MS, cpu_ns=7 * MS)
    h.exit(root, "bash", cpu_ns=3 * MS)
    return h


def test_partition_lag() -> None:
    assert partition_lag(100, position=59, committed=None) == 40
    assert partition_lag(100, position=59, committed=70) == 30, "the group committed further: from there"
    assert partition_lag(100, position=None, committed=None) == 100
    assert partition_lag(100, position=99, committed=None) == 0


def test_lag_is_measured_against_the_broker_without_batches(settings: Settings) -> None:
    """No batch finishes here at all: the gauge still follows what is produced and committed."""
    topic = settings.topic(RAW_PROCESS)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(50):
        producer.produce(topic, key=b"h", value=b"x%d" % i, partition=0)
    assert producer.flush(30) == 0

    class Stats:
        positions = {("P", 0): 9}

    class Proc:
        stats = Stats()

        def source(self, t: str) -> str:
            return "P"

    metrics = CorrelatorMetrics()
    metrics._processor = Proc()
    metrics._assigned = {(topic, 0): "P"}
    group = f"{settings.topic_prefix}lagtest"
    assert metrics.measure_lag(settings.kafka_bootstrap, group) == 40
    for i in range(30):
        producer.produce(topic, key=b"h", value=b"y%d" % i, partition=0)
    assert producer.flush(30) == 0
    assert metrics.measure_lag(settings.kafka_bootstrap, group) == 70
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 60)], asynchronous=False)
    consumer.close()
    assert metrics.measure_lag(settings.kafka_bootstrap, group) == 20
    assert metrics.registry.get_sample_value("execsight_correlator_consumer_lag_total") == 20
    age = metrics.registry.get_sample_value("execsight_correlator_consumer_lag_age_seconds")
    assert age is not None and 0 <= age < 5


def test_db_failures_show_while_the_batch_is_held() -> None:
    class Sink:
        failures = 0

    class Proc:
        sink = Sink()

    metrics = CorrelatorMetrics()
    metrics.bind(Proc(), app=None)
    Proc.sink.failures = 7  # the sink counts its retries; no batch has finished
    assert metrics.registry.get_sample_value("execsight_correlator_db_failures") == 7


def test_lag_and_db_failures_during_a_database_outage(settings: Settings, tmp_path: Path) -> None:
    from .tcp_proxy import TcpProxy

    port = _free_port()
    proxy = TcpProxy(settings.database_url)
    proxy.start()
    worker = WorkerProcess(settings, tmp_path / "worker.log", env={"EXECSIGHT_DATABASE_URL": proxy.dsn})
    worker.args = [a for a in worker.args if a != "--no-metrics"] + ["--metrics-port", str(port)]
    try:
        worker.start()
        dsn = settings.database_url
        produce(settings, _host("lag-a", tasks=5).events)
        wait_for(lambda: query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0], lambda n: n == 1)
        wait_for(lambda: _metric(port, "execsight_correlator_consumer_lag_total"), lambda v: v == 0, timeout_s=20)
        proxy.stop()  # the database becomes unreachable
        n1 = produce(settings, _host("lag-b", tasks=1000).events)
        wait_for(worker.log_tail, lambda log: "database unavailable" in log, timeout_s=30)
        wait_for(lambda: _metric(port, "execsight_correlator_db_failures"), lambda v: (v or 0) >= 1, timeout_s=20)
        lag1 = wait_for(lambda: _metric(port, "execsight_correlator_consumer_lag_total"),
                        lambda v: v is not None and v >= n1 * 0.9, timeout_s=20)
        n2 = produce(settings, _host("lag-c", tasks=1000).events)
        lag2 = wait_for(lambda: _metric(port, "execsight_correlator_consumer_lag_total"),
                        lambda v: v is not None and v >= (lag1 or 0) + n2, timeout_s=20)
        failures = _metric(port, "execsight_correlator_db_failures")
        print(f"outage: produced {n1}+{n2}, lag {lag1} -> {lag2}, db failures {failures}")
        assert worker.alive()
        proxy.start()
        wait_for(lambda: _metric(port, "execsight_correlator_consumer_lag_total"), lambda v: v == 0, timeout_s=90)
    finally:
        worker.stop()
        proxy.stop()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_supervised_correlator_restarts_a_killed_worker(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    env: dict[str, Any] = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
                           "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
                           "EXECSIGHT_DATABASE_URL": settings.database_url,
                           "EXECSIGHT_STATE_DIR": str(settings.state_dir),
                           "EXECSIGHT_CORRELATOR_METRICS_PORT": str(port), "EXECSIGHT_LOG_FORMAT": "json"}
    log = (tmp_path / "correlator.log").open("ab")
    sup = subprocess.Popen([sys.executable, "-m", "execsight.cli", "correlator"], cwd=REPO, env=env,
                           stdout=log, stderr=log)
    try:
        def ready() -> int:
            return (tmp_path / "correlator.log").read_text(errors="replace").count("Worker ready")

        first = wait_for(lambda: _children(sup.pid), lambda c: len(c) == 1, timeout_s=30)[0]
        wait_for(ready, lambda n: n == 1, timeout_s=90)
        assert _metric(port, "execsight_correlator_consumer_lag_total") is not None
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: _children(sup.pid), lambda c: len(c) == 1 and c[0] != first, timeout_s=30)[0]
        assert sup.poll() is None, "the supervisor outlives its worker"
        wait_for(ready, lambda n: n == 2, timeout_s=90)
        assert _metric(port, "execsight_correlator_consumer_lag_total") is not None
        text = (tmp_path / "correlator.log").read_text(errors="replace")
        assert "worker exited; starting it again" in text and "killed by SIGKILL" in text
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(60) == 0
        time.sleep(0.5)
        assert not Path(f"/proc/{second}").exists() or "Z" in Path(f"/proc/{second}/stat").read_text().split()[2]
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait(30)
        log.close()
