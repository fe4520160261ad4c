"""The one owner of a batch's commit order: database, then topics, then state, then marks.

(1) the database transaction commits, (2) the enriched and dead-letter messages are acknowledged
by the broker, (3) the state changes are handed to the state store (its changelog), (4) the
partition marks move; only then does the caller acknowledge the source offsets. A crash at any
point before the acknowledgement replays the batch, and the marks make the replay change nothing
in state; the database upserts and the enriched topics' keys make it harmless downstream
(enriched topics are at least once, see the README's Guarantees).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from execsight.correlator.changelog import stored
from execsight.correlator.outputs import Outputs
from execsight.correlator.partition_cursor import InSequence, PartitionCursor, RawMessage
from execsight.schemas.topics import DEADLETTER, ENRICHED_HOST, ENRICHED_PROCESS, ENRICHED_RUN, ENRICHED_TASK

log = logging.getLogger(__name__)
ORIGIN = "correlator"

# librdkafka refuses messages over message.max.bytes (1,000,000 by default) before compression
MAX_MESSAGE_BYTES = 900_000
DEADLETTER_VALUE_MAX = 512 * 1024  # the head of an oversized message, with its full size in a header


class RecordSink(Protocol):
    """Where the batch's rows go (the database); returns the time it committed."""

    async def write(self, out: Outputs) -> float: ...


class Publisher(Protocol):
    """Where enriched and dead-letter messages go. ``produce`` returns False when the producer has no
    room; the caller then awaits ``make_room`` (so a full queue never blocks the event loop)."""

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]] | None = None) -> bool: ...
    async def make_room(self) -> None: ...
    async def flush(self) -> None: ...


class StateWriter(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...  # the value as last written (not a live object)
    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None: ...


class ChangedHost(Protocol):
    def changes(self) -> Sequence[tuple[str, dict[str, Any] | None]]: ...


@dataclass(frozen=True, slots=True)
class Dead:
    msg: RawMessage
    reason: str


@dataclass
class PublishCounts:
    oversized: int = 0  # enriched records too large to publish, dead-lettered instead


@dataclass
class Checkpoint:
    sink: RecordSink
    publisher: Publisher
    state: StateWriter
    cursor: PartitionCursor
    encode: Callable[[str, dict[str, Any]], bytes]  # Codec.encode
    counts: PublishCounts = field(default_factory=PublishCounts)

    async def commit(self, batch: InSequence, out: Outputs, dead: list[Dead],
                     touched: Sequence[tuple[str, int, ChangedHost]]) -> tuple[float, dict[tuple[str, int], int]]:
        """Commits one batch in order; returns when the database committed and each partition's last
        offset. Any exception leaves the batch unacknowledged (marks unmoved), to be read again."""
        committed = await self.sink.write(out)  # (1)
        await self._publish(out, dead)  # (2)
        await self.publisher.flush()
        for host_id, partition, tree in touched:  # (3)
            for key, value in tree.changes():
                full = f"{host_id}|{key}"
                if value is not None and "gone" in value:  # a removal keeps what was stored (changelog.py)
                    value = stored(self.state.get(full), value)
                self.state.write(partition, full, value)
        return committed, self.cursor.applied(batch)  # (4)

    async def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        while not self.publisher.produce(topic, key, value, headers):
            await self.publisher.make_room()

    async def _publish(self, out: Outputs, dead: list[Dead]) -> None:
        enc, produce = self.encode, self.publisher.produce
        for topic, name, records in ((ENRICHED_PROCESS, "EnrichedProcess", out.enriched_process),
                                     (ENRICHED_TASK, "EnrichedTask", out.enriched_task),
                                     (ENRICHED_RUN, "EnrichedRun", out.enriched_run),
                                     (ENRICHED_HOST, "HostActivity", out.host_activity)):
            for rec in records:
                key, value = rec["host_id"].encode(), enc(name, rec)
                if len(value) + len(key) <= MAX_MESSAGE_BYTES:
                    if not produce(topic, key, value):  # no coroutine per record unless the producer is full
                        await self._produce(topic, key, value)
                    continue
                # bounded inputs keep records far below this; should one still grow past what Kafka takes,
                # publishing it would fail the batch for good: its head goes to the dead-letter topic instead
                self.counts.oversized += 1
                log.error("enriched record too large to publish; dead-lettered",
                          extra={"record_type": name, "bytes": len(value), "host_id": rec["host_id"]})
                headers = [("execsight.reason", f"oversized: {name} of {len(value)} bytes".encode()),
                           ("execsight.origin", ORIGIN.encode()), ("execsight.truncated", str(len(value)).encode())]
                await self._produce(DEADLETTER, key, value[:DEADLETTER_VALUE_MAX], headers)
        for d in dead:
            msg = d.msg
            log.warning("message sent to dead-letter topic",
                        extra={"reason": d.reason, "topic": msg.topic, "partition": msg.partition,
                               "offset": msg.offset})
            raw = msg.value
            headers = deadletter_headers(msg, d.reason)
            if raw is not None and len(raw) > DEADLETTER_VALUE_MAX:
                # a raw message can be larger than a producer may send (compressed on the way in)
                headers.append(("execsight.truncated", str(len(raw)).encode()))
                raw = raw[:DEADLETTER_VALUE_MAX]
            await self._produce(DEADLETTER, msg.key, raw, headers)


def deadletter_headers(msg: RawMessage, reason: str) -> list[tuple[str, bytes]]:
    """The same headers as execsight.kafka_io.deadletter_headers, for a message read through Faust."""
    return [
        ("execsight.reason", reason.encode()),
        ("execsight.origin", ORIGIN.encode()),
        ("execsight.topic", msg.topic.encode()),
        ("execsight.partition", str(msg.partition).encode()),
        ("execsight.offset", str(msg.offset).encode()),
    ]
