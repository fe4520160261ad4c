"""One batch of raw messages: decode, correlate, commit to the database, publish, then persist state.

The order is what makes a crash harmless: (1) the database transaction commits, (2) the
enriched and dead-letter messages are acknowledged by the broker, (3) the state changes
are handed to the state store (changelog), and only then (4) the caller acknowledges the
source offsets. A crash before (4) replays the batch; state marks (the last offset applied
per source partition, and per key) make the replay change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaException, Producer

from execsight.correlator import context, validation
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import ReloadingRules
from execsight.schemas.codec import Codec, CodecError
from execsight.schemas.topics import DEADLETTER, ENRICHED_HOST, ENRICHED_PROCESS, ENRICHED_RUN, ENRICHED_TASK, RAW_HOST
from execsight.settings import Settings

log = logging.getLogger(__name__)
ORIGIN = "correlator"

# librdkafka refuses messages over message.max.bytes (1,000,000 by default) before compression
MAX_MESSAGE_BYTES = 900_000
DEADLETTER_VALUE_MAX = 512 * 1024  # the head of an oversized message, with its full size in a header

PROCESS_TYPES = frozenset({"ProcessExec", "ProcessFork", "ProcessExit", "ProcessSample", "ProcessThrottle",
                           "ProcessExitUnobserved", "CollectorGap"})  # the last two: after a collector restart
HOST_TYPES = frozenset({"HostSample", "CollectorStatus"})


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class OffsetGapError(RuntimeError):
    """Messages of a partition were not delivered in sequence: the batch must not be applied."""


class StateStore(Protocol):
    """Where host state lives between batches (a Faust table, or a dict in tests)."""

    def host_items(self, host_id: str) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def mark(self, source: str, partition: int) -> int: ...
    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None: ...
    def write_mark(self, source: str, partition: int, offset: int) -> None: ...


class DictState:
    """In-memory StateStore (tests, benchmarks): the same keys a Faust table holds."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def host_items(self, host_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        prefix = host_id + "|"
        for key, value in list(self.data.items()):
            if key.startswith(prefix) and isinstance(value, dict):
                yield key[len(prefix):], value

    def mark(self, source: str, partition: int) -> int:
        return int(self.data.get(f"~mark|{source}|{partition}", -1))

    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def write_mark(self, source: str, partition: int, offset: int) -> None:
        self.data[f"~mark|{source}|{partition}"] = offset


@dataclass
class Stats:
    events: int = 0
    deadlettered: int = 0
    normalised: int = 0  # accepted after cleaning or cutting (validation.py)
    oversized: int = 0  # enriched records too large to publish, dead-lettered instead
    batches: int = 0
    skipped_replayed: int = 0
    throttled_execs: int = 0
    last_batch_s: float = 0.0
    delays_s: deque[float] = field(default_factory=lambda: deque(maxlen=20000))  # recent events
    last_delays_s: list[float] = field(default_factory=list)  # the last batch's events
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


class Publisher:
    """Enriched and dead-letter messages through confluent-kafka; flush() waits for every ack."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        from execsight.kafka_io import make_producer

        self.settings = settings
        self.producer = producer or make_producer(settings, **{"linger.ms": 5})
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        while True:
            try:
                self.producer.produce(
                    self.settings.topic(topic), key=key, value=value, headers=headers, on_delivery=self._on_delivery
                )
                return
            except BufferError:
                self.producer.poll(0.1)

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = await loop.run_in_executor(None, self.producer.flush, 10.0)
            if remaining == 0:
                break
            log.warning("kafka not acknowledging enriched messages yet", extra={"pending": remaining})
        if self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"enriched publish failed: {errors[:3]}")


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        sink: Sink,
        publisher: Publisher,
        rules: ReloadingRules,
        codec: Codec,
        read: context.FileReader = context.read_local_file,
        containers: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.sink = sink
        self.publisher = publisher
        self.rules = rules
        self.codec = codec
        self.read = read
        self.containers = containers
        self.cfg = TreeConfig.from_settings(settings)
        self.hosts: dict[str, HostTree] = {}
        self.host_partition: dict[str, int] = {}
        self.marks: dict[tuple[str, int], int] = {}
        self.next_offset: dict[tuple[str, int], int] = {}
        self.stats = Stats()
        self.raw_host_topic = settings.topic(RAW_HOST)

    def forget(self) -> None:
        """Drops cached host state (after a rebalance it is loaded again from the state store)."""
        self.hosts.clear()
        self.marks.clear()
        self.next_offset.clear()

    def _tree(self, host_id: str) -> HostTree:
        tree = self.hosts.get(host_id)
        if tree is None:
            tree = HostTree(host_id, self.cfg, self.rules.identify, self.read, self.containers)
            tree.load(self.state.host_items(host_id))
            self.hosts[host_id] = tree
        return tree

    def _mark(self, source: str, partition: int, offset: int | None = None) -> int:
        k = (source, partition)
        if k not in self.marks:
            self.marks[k] = self.state.mark(source, partition)
            if offset is not None and self.marks[k] >= 0 and offset > self.marks[k] + 1:
                log.warning("offsets skipped between the last applied event and the first one read",
                            extra={"source": source, "partition": partition, "mark": self.marks[k],
                                   "first_offset": offset})
            log.info("partition state loaded", extra={"source": source, "partition": partition,
                                                      "mark": self.marks[k], "first_offset": offset})
        return self.marks[k]

    def source(self, topic: str) -> str:
        """The mark namespace of a raw topic: H for raw.host, P for raw.process."""
        return "H" if topic == self.raw_host_topic else "P"

    def _expected(self, expected: dict[tuple[str, int], int], msg: RawMessage) -> int:
        """The highest offset the partition may go on with: the next one read, or anything up to the one
        after the mark (messages at or below it were applied already, so missing them loses nothing)."""
        mark = self._mark(self.source(msg.topic), msg.partition, msg.offset)
        want = expected.get((msg.topic, msg.partition))
        if want is None:
            return msg.offset if mark < 0 or msg.offset <= mark + 1 else mark + 1
        return max(want, mark + 1) if mark >= 0 else want

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The first offset of a partition not yet applied, or None when nothing of it has been."""
        known = self.next_offset.get((topic, partition))
        if known is not None:
            return known
        mark = self._mark(self.source(topic), partition)
        return mark + 1 if mark >= 0 else None

    def expect(self, topic: str, partition: int, offset: int) -> None:
        """The partition was sought to ``offset``: anything else read first is out of sequence (a fetch from
        before the seek), even on a partition with no state yet, which would otherwise start anywhere."""
        self.next_offset[(topic, partition)] = offset

    def in_sequence(self, batch: Sequence[RawMessage]) -> tuple[list[int], dict[tuple[str, int], int]]:
        """Splits a batch at holes: the indices of the messages that follow on from what was applied, and
        for each partition where a message did not, the offset to read it again from.

        Raw topics are neither compacted nor transactional, so a hole means messages were fetched but
        never handed over (e.g. dropped from the feed by a rebalance while the partition stayed here).
        Applying past it would move the marks over them for good; reading the partition again from the
        offset expected loses nothing, and replayed messages below the mark change nothing."""
        expected = dict(self.next_offset)
        keep: list[int] = []
        rewind: dict[tuple[str, int], int] = {}
        for i, msg in enumerate(batch):
            k = (msg.topic, msg.partition)
            want = self._expected(expected, msg)
            if msg.offset > want:
                rewind[k] = want
                continue
            keep.append(i)
            expected[k] = max(want, msg.offset + 1)
        return keep, rewind

    def check_sequence(self, batch: Sequence[RawMessage]) -> None:
        """Refuses a batch with a hole in any partition's offsets (see in_sequence)."""
        keep, rewind = self.in_sequence(batch)
        if rewind:
            kept = set(keep)
            msg = batch[next(i for i in range(len(batch)) if i not in kept)]
            want = rewind[(msg.topic, msg.partition)]
            raise OffsetGapError(f"{msg.topic}[{msg.partition}]: offset {msg.offset} read, {want} expected")

    async def process(self, batch: Sequence[RawMessage]) -> Outputs:
        started = time.time()
        self.check_sequence(batch)
        out = Outputs()
        touched: dict[str, HostTree] = {}
        last_offsets: dict[tuple[str, int], int] = {}
        dead: list[tuple[RawMessage, str]] = []
        now_ns = time.time_ns()
        for msg in batch:
            source = self.source(msg.topic)
            last_offsets[(source, msg.partition)] = msg.offset
            if msg.offset <= self._mark(source, msg.partition, msg.offset):
                self.stats.skipped_replayed += 1
                continue
            try:
                kind, rec = self.codec.decode(msg.value or b"")
            except CodecError as exc:
                dead.append((msg, f"undecodable: {exc}"))
                continue
            allowed = HOST_TYPES if source == "H" else PROCESS_TYPES
            if kind not in allowed:
                dead.append((msg, f"invalid: record type {kind} does not belong on {msg.topic}"))
                continue
            checked = validation.validate(kind, rec, now_ns)
            if checked.record is None:
                dead.append((msg, checked.reason))
                continue
            if checked.fixes:
                self.stats.normalised += 1
                log.warning("record normalised at the boundary", extra={
                    "record_type": kind, "fixes": list(checked.fixes), "topic": msg.topic,
                    "partition": msg.partition, "offset": msg.offset})
            host_id = rec["host_id"]
            tree = touched.get(host_id) or self._tree(host_id)
            touched[host_id] = tree
            self.host_partition[host_id] = msg.partition
            try:
                tree.apply(kind, rec, source, msg.offset, out)
            except (KeyError, TypeError, ValueError) as exc:
                dead.append((msg, f"invalid: {kind} could not be applied: {exc!r}"))
        for tree in touched.values():
            tree.finish(out)
        out.event_times_ns.sort()

        # (1) database
        db_started = time.time()
        committed = await self.sink.write(out)
        # (2) enriched topics and dead letters, acknowledged
        self._publish(out, dead)
        await self.publisher.flush()
        # (3) state
        for host_id, tree in touched.items():
            partition = self.host_partition[host_id]
            for key, value in tree.changes():
                self.state.write(partition, f"{host_id}|{key}", value)
        for msg in batch:
            self.next_offset[(msg.topic, msg.partition)] = msg.offset + 1
        for (source, partition), offset in last_offsets.items():
            if offset > self._mark(source, partition):
                self.state.write_mark(source, partition, offset)
                self.marks[(source, partition)] = offset
            self.stats.positions[(source, partition)] = offset

        self.stats.events += len(batch)
        self.stats.deadlettered += len(dead)
        self.stats.batches += 1
        self.stats.throttled_execs += out.throttled_execs
        self.stats.last_batch_s = time.time() - started
        log.debug("batch committed", extra={"events": len(batch), "seconds": round(self.stats.last_batch_s, 4),
                                            "db_s": round(committed - db_started, 4), "dead": len(dead)})
        self.stats.last_delays_s = [committed - t / 1e9 for t in out.event_times_ns]
        self.stats.delays_s.extend(self.stats.last_delays_s)
        return out

    def _publish(self, out: Outputs, dead: list[tuple[RawMessage, str]]) -> None:
        enc = self.codec.encode

        def produce(topic: str, name: str, rec: dict[str, Any]) -> None:
            key, value = rec["host_id"].encode(), enc(name, rec)
            if len(value) + len(key) <= MAX_MESSAGE_BYTES:
                self.publisher.produce(topic, key, value)
                return
            # bounded inputs keep records far below this; should one still grow past what Kafka takes,
            # publishing it would fail the batch for good: its head goes to the dead-letter topic instead
            self.stats.oversized += 1
            log.error("enriched record too large to publish; dead-lettered",
                      extra={"record_type": name, "bytes": len(value), "host_id": rec["host_id"]})
            headers = [("execsight.reason", f"oversized: {name} of {len(value)} bytes".encode()),
                       ("execsight.origin", ORIGIN.encode()), ("execsight.truncated", str(len(value)).encode())]
            self.publisher.produce(DEADLETTER, key, value[:DEADLETTER_VALUE_MAX], headers=headers)

        for rec in out.enriched_process:
            produce(ENRICHED_PROCESS, "EnrichedProcess", rec)
        for rec in out.enriched_task:
            produce(ENRICHED_TASK, "EnrichedTask", rec)
        for rec in out.enriched_run:
            produce(ENRICHED_RUN, "EnrichedRun", rec)
        for rec in out.host_activity:
            produce(ENRICHED_HOST, "HostActivity", rec)
        for msg, reason in dead:
            log.warning("message sent to dead-letter topic",
                        extra={"reason": reason, "topic": msg.topic, "partition": msg.partition, "offset": msg.offset})
            value = msg.value
            headers = deadletter_headers(msg, reason)
            if value is not None and len(value) > DEADLETTER_VALUE_MAX:
                # a raw message can be larger than a producer may send (compressed on the way in)
                headers.append(("execsight.truncated", str(len(value)).encode()))
                value = value[:DEADLETTER_VALUE_MAX]
            self.publisher.produce(DEADLETTER, msg.key, value, headers=headers)


def deadletter_headers(msg: RawMessage, reason: str) -> list[tuple[str, bytes]]:
    """The same headers as execsight.kafka_io.deadletter_headers, for a message read through Faust."""
    return [
        ("execsight.reason", reason.encode()),
        ("execsight.origin", ORIGIN.encode()),
        ("execsight.topic", msg.topic.encode()),
        ("execsight.partition", str(msg.partition).encode()),
        ("execsight.offset", str(msg.offset).encode()),
    ]
