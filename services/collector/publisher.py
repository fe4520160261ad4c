"""Delivery of encoded records to Kafka, with the on-disk spool (JSON lines: jsonl.py).

Kafka: idempotent producer, acks=all, compressed and batched, every record keyed by
host id so per-host order holds. When the brokers are unreachable (error callback) new
records go to the spool while those already handed to librdkafka stay there and are
retried by it (idempotence deduplicates them); when the broker answers again and the
producer queue is empty, the spool is replayed in order, each record consumed only
after its delivery is confirmed. SIGTERM: flush; whatever cannot be delivered in time
is purged from librdkafka back into the spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.collector.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

REPLAY_BATCH = 1000
RETRY_INTERVAL_S = 1.0


class Sink(Protocol):
    def send(self, topic: str, key: bytes, value: bytes, name: str, record: dict[str, Any]) -> None: ...
    def poll(self) -> None: ...
    def close(self, timeout_s: float) -> None: ...
    def stats(self) -> dict[str, int]: ...


def producer_config(bootstrap: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 50,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        "queue.buffering.max.kbytes": 262144,
        "message.timeout.ms": 600000,
        "reconnect.backoff.max.ms": 2000,
        "socket.connection.setup.timeout.ms": 5000,
    }
    cfg.update(extra or {})
    return cfg


@dataclass
class KafkaSink:
    bootstrap: str
    spool: Spool
    extra_config: dict[str, Any] = field(default_factory=dict)
    delivered: int = 0
    delivery_errors: int = 0
    down: bool = False
    _producer: Any = None
    _replay_outstanding: int = 0
    _replay_ok: int = 0
    _replay_failed: bool = False
    _last_try: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _errors: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(producer_config(self.bootstrap, {"error_cb": self._on_error, **self.extra_config}))
        self.down = len(self.spool) > 0

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if not self.down:
                log.warning("kafka unreachable, spooling", extra={"error": str(err)})
            self.down = True
        self._errors[str(err.code())] += 1

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.delivery_errors += 1
        self.down = True
        self.spool.append(SpoolRecord(msg.topic(), msg.key() or b"", msg.value() or b""))

    def _on_replay(self, err: Any, msg: Any) -> None:
        self._replay_outstanding -= 1
        if err is None and not self._replay_failed:
            self._replay_ok += 1
            self.delivered += 1
        elif err is None:
            # delivered after an earlier failure in the batch: count it, it will be replayed again
            self.delivered += 1
        else:
            self.delivery_errors += 1
            self._replay_failed = True

    def send(self, topic: str, key: bytes, value: bytes, name: str, record: dict[str, Any]) -> None:
        if self.down or len(self.spool) > 0 or self._replay_outstanding:
            self.spool.append(SpoolRecord(topic, key, value))
            return
        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
        except BufferError:
            self.down = True
            self.spool.append(SpoolRecord(topic, key, value))

    def poll(self) -> None:
        self._producer.poll(0)
        if self._replay_outstanding:
            return
        if self._replay_ok or self._replay_failed:
            self.spool.commit(self._replay_ok)
            if self._replay_failed:
                self.down = True
            elif len(self.spool) == 0:
                log.info("spool replayed, kafka delivery resumed")
                self.down = False
            self._replay_ok, self._replay_failed = 0, False
        if len(self.spool) == 0 and not self.down:
            return
        if len(self._producer) > 0:
            return  # older records still inside librdkafka: they go first
        now = time.monotonic()
        if self._replay_failed or (self.down and now - self._last_try < RETRY_INTERVAL_S):
            return
        self._last_try = now
        # while down, probe with one record; once it is delivered, replay in batches
        batch = self.spool.peek(1 if self.down else REPLAY_BATCH)
        if batch and self.down:
            self.down = False  # optimistic; the probe's failure sets it again
            self._replay_failed = False
        for rec in batch:
            self._replay_outstanding += 1
            self._producer.produce(rec.topic, value=rec.value, key=rec.key, on_delivery=self._on_replay)

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (len(self._producer) > 0 or (len(self.spool) and not self.down)):
            self._producer.poll(0.1)
            self.poll()
        if len(self._producer) > 0:
            from confluent_kafka import KafkaError  # noqa: F401  (purge callbacks carry _PURGE_* errors)

            self._replay_failed = True
            self._producer.purge()
            self._producer.poll(0.5)
        if self._replay_ok:
            self.spool.commit(self._replay_ok)
            self._replay_ok = 0
        self.spool.close()

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "delivery_errors": self.delivery_errors,
            "spool_records": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "spool_dropped": self.spool.dropped,
            "queued": len(self._producer),
        }
