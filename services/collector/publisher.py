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

from execsight.collector.spool import Spool, SpoolRecord

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


# librdkafka's message.max.bytes default; checked before compression, key and headers included
MAX_MESSAGE_BYTES = 1_000_000
MESSAGE_OVERHEAD = 512  # what librdkafka counts besides key and value


def permanent(code: int) -> bool:
    """Whether a produce or delivery error can never succeed on a retry of the same record: such a
    record is dropped and counted, since spooling it would block everything behind it for good."""
    from confluent_kafka import KafkaError

    return code in (
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_TIMESTAMP,
        KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG, KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    )


def error_name(code: int) -> str:
    from confluent_kafka import KafkaError

    return str(KafkaError(code).name()).lstrip("_").lower()


@dataclass
class KafkaSink:
    bootstrap: str
    spool: Spool
    extra_config: dict[str, Any] = field(default_factory=dict)
    delivered: int = 0
    delivery_errors: int = 0
    down: bool = False
    _producer: Any = None
    _replay: list[bool | None] = field(default_factory=list)  # per peeked record: done, failed, in flight
    _replay_outstanding: int = 0
    _last_try: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _errors: Counter[str] = field(default_factory=Counter)
    undeliverable: Counter[str] = field(default_factory=Counter)  # records dropped, by reason
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        cfg = producer_config(self.bootstrap, {"error_cb": self._on_error, **self.extra_config})
        self.max_message_bytes = int(cfg.get("message.max.bytes", MAX_MESSAGE_BYTES))
        self._producer = Producer(cfg)
        self.down = len(self.spool) > 0

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if not self.down:
                log.warning("kafka unreachable, spooling", extra={"error": str(err)})
            self.down = True
        self._errors[str(err.code())] += 1

    def _drop(self, reason: str, topic: str, size: int) -> None:
        """A record Kafka will never take: counted (metrics, CollectorStatus.lost_events), never retried."""
        self.undeliverable[reason] += 1
        log.error("record dropped: kafka cannot accept it", extra={
            "reason": reason, "topic": topic, "bytes": size, "undeliverable": sum(self.undeliverable.values())})

    def _fits(self, topic: str, key: bytes, value: bytes) -> bool:
        if len(key) + len(value) + MESSAGE_OVERHEAD <= self.max_message_bytes:
            return True
        self._drop("msg_size_too_large", topic, len(value))
        return False

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.delivery_errors += 1
        if permanent(err.code()):
            self._drop(error_name(err.code()), msg.topic() or "", len(msg.value() or b""))
            return
        self.down = True
        self.spool.append(SpoolRecord(msg.topic(), msg.key() or b"", msg.value() or b""))

    def _replay_callback(self, index: int) -> Any:
        def done(err: Any, msg: Any) -> None:
            self._replay_outstanding -= 1
            if err is None:
                self.delivered += 1
                self._replay[index] = True
            elif permanent(err.code()):
                self.delivery_errors += 1
                self._drop(error_name(err.code()), msg.topic() or "", len(msg.value() or b""))
                self._replay[index] = True  # consumed: it can never be delivered
            else:
                self.delivery_errors += 1
                self._replay[index] = False

        return done

    def send(self, topic: str, key: bytes, value: bytes, name: str, record: dict[str, Any]) -> None:
        if not self._fits(topic, key, value):
            return
        if self.down or len(self.spool) > 0 or self._replay_outstanding:
            self.spool.append(SpoolRecord(topic, key, value))
            return
        from confluent_kafka import KafkaException

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
        except BufferError:
            self.down = True
            self.spool.append(SpoolRecord(topic, key, value))
        except KafkaException as exc:  # refused before queueing: never an exit
            code = exc.args[0].code() if exc.args else -1
            if permanent(code):
                self._drop(error_name(code), topic, len(value))
            else:
                self.down = True
                self.spool.append(SpoolRecord(topic, key, value))

    def _finish_replay(self) -> None:
        """Consumes the delivered (or undeliverable) head of the last replay batch from the spool."""
        done = 0
        for state in self._replay:
            if state is not True:
                break
            done += 1
        failed = done < len(self._replay)
        self.spool.commit(done)
        self._replay = []
        if failed:
            self.down = True
        elif len(self.spool) == 0:
            log.info("spool replayed, kafka delivery resumed")
            self.down = False

    def poll(self) -> None:
        from confluent_kafka import KafkaException

        self._producer.poll(0)
        if self._replay_outstanding:
            return
        if self._replay:
            self._finish_replay()
        if len(self.spool) == 0 and not self.down:
            return
        if len(self._producer) > 0:
            return  # older records still inside librdkafka: they go first
        now = time.monotonic()
        if self.down and now - self._last_try < RETRY_INTERVAL_S:
            return
        self._last_try = now
        # while down, probe with one record; once it is delivered, replay in batches
        batch = self.spool.peek(1 if self.down else REPLAY_BATCH)
        if batch and self.down:
            self.down = False  # optimistic; the probe's failure sets it again
        self._replay = [None] * len(batch)
        for i, rec in enumerate(batch):
            if len(rec.key) + len(rec.value) + MESSAGE_OVERHEAD > self.max_message_bytes:
                self._drop("msg_size_too_large", rec.topic, len(rec.value))  # spooled by an older collector
                self._replay[i] = True
                continue
            try:
                self._producer.produce(rec.topic, value=rec.value, key=rec.key, on_delivery=self._replay_callback(i))
                self._replay_outstanding += 1
                continue
            except BufferError:
                pass
            except KafkaException as exc:
                code = exc.args[0].code() if exc.args else -1
                if permanent(code):
                    self._drop(error_name(code), rec.topic, len(rec.value))
                    self._replay[i] = True
                    continue
            # not handed over: this record and the rest of the batch stay in the spool for the next try
            for j in range(i, len(batch)):
                self._replay[j] = False
            break

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (len(self._producer) > 0 or (len(self.spool) and not self.down)):
            self._producer.poll(0.1)
            self.poll()
        if len(self._producer) > 0:
            self._producer.purge()  # purge callbacks carry _PURGE_* errors: not delivered, spooled again
            self._producer.poll(0.5)
        if self._replay:
            self._replay = [state is True for state in self._replay]
            self._finish_replay()
        self.spool.close()

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "delivery_errors": self.delivery_errors,
            "spool_records": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "spool_dropped": self.spool.dropped,
            "queued": len(self._producer),
            "undeliverable": sum(self.undeliverable.values()),
        }
