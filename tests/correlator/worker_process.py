"""A correlator worker as a child process, raw events onto the test's topics, and waiting on the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, Producer

from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS
from execsight.settings import Settings

REPO = Path(__file__).resolve().parents[2]
HOST_TYPES = ("HostSample", "CollectorStatus")
T = TypeVar("T")
ENTRY = "import sys; from execsight.correlator.main import main; sys.exit(main(sys.argv[1:]))"


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path, env: dict[str, str] | None = None,
                 args: Iterable[str] = ()) -> None:
        self.settings = settings
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
            "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
            "EXECSIGHT_DATABASE_URL": settings.database_url,
            "EXECSIGHT_STATE_DIR": str(settings.state_dir),
            "EXECSIGHT_LOG_FORMAT": "json",
            "EXECSIGHT_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        # This harness is the supervisor here (it counts restarts), so the worker runs unsupervised.
        self.args = ["--no-supervise", "--no-metrics", "--commit-interval", "0.5", *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.restarts_by_supervisor = 0

    def start(self, ready_timeout_s: float = 90.0) -> None:
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"\n===== start {self.starts}\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *self.args],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log_path.open("a"),
        )
        marker = f"===== start {self.starts}"
        deadline = time.time() + ready_timeout_s
        while time.time() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Worker ready" in text[text.rindex(marker):]:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"correlator exited {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"correlator not ready in {ready_timeout_s}s:\n{self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def supervise(self) -> None:
        """What a supervisor (systemd, Kubernetes) does: start the worker again when it exited by itself
        (it exits, unacknowledged, when it cannot finish a batch, e.g. a hole in the offsets it was given)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.restarts_by_supervisor += 1
            self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def produce(settings: Settings, events: Iterable[tuple[str, dict[str, Any]]], extra: Iterable[bytes] = (),
            extra_key: bytes = b"poison-host") -> int:
    """Encodes and sends records keyed by host (raw.process or raw.host by type); returns how many."""
    codec = default_codec()
    # compressed like the collector's producer (execsight.kafka_io.producer_config): zstd
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True,
                         "compression.type": "zstd"})
    n = 0
    for kind, rec in events:
        topic = RAW_HOST if kind in HOST_TYPES else RAW_PROCESS
        while True:
            try:
                producer.produce(settings.topic(topic), key=rec["host_id"].encode(), value=codec.encode(kind, rec))
                break
            except BufferError:
                producer.poll(0.2)
        n += 1
    for value in extra:
        producer.produce(settings.topic(RAW_PROCESS), key=extra_key, value=value)
        n += 1
    assert producer.flush(60) == 0
    return n


def wait_for(fn: Callable[[], T], ok: Callable[[T], bool], timeout_s: float = 60.0, interval_s: float = 0.3) -> T:
    deadline = time.time() + timeout_s
    value = fn()
    while not ok(value):
        if time.time() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s; last value: {value!r}")
        time.sleep(interval_s)
        value = fn()
    return value


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode() if not params else sql, params).fetchall()


def consume_all(settings: Settings, topic: str, min_messages: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"t-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic(topic)])
    out: list[Any] = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if len(out) >= min_messages:
                    break
                continue
            if msg.error():
                continue
            out.append(msg)
    finally:
        consumer.close()
    return out
