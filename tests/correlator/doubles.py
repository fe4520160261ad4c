"""In-memory stand-ins for the correlator's edges (the RecordSink and Publisher protocols and the
state store), so that the batch steps and the checkpoint's order are tested without Kafka or
PostgreSQL. The real adapters (sink.Sink, kafka_publisher.KafkaPublisher, app.FaustState) are
tested against the real servers elsewhere."""

from __future__ import annotations

from typing import Any

from execsight.correlator.batch import DictState
from execsight.correlator.outputs import Outputs


class MemorySink:
    def __init__(self, log: list[str], fail: BaseException | None = None) -> None:
        self.log = log
        self.fail = fail
        self.batches: list[Outputs] = []
        self.failures = 0

    async def write(self, out: Outputs) -> float:
        if self.fail is not None:
            self.failures += 1
            raise self.fail
        self.log.append("db")
        self.batches.append(out)
        return 0.0


class MemoryPublisher:
    """Takes ``room`` messages, then says it is full until ``make_room`` is awaited."""

    def __init__(self, log: list[str], room: int = 1 << 30) -> None:
        self.log = log
        self.room = self.capacity = room
        self.pending: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = []
        self.acknowledged: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = []
        self.waits = 0

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]] | None = None) -> bool:
        if self.room == 0:
            return False
        self.room -= 1
        self.pending.append((topic, key, value, headers))
        return True

    async def make_room(self) -> None:
        self.waits += 1
        self.acknowledged.extend(self.pending)
        self.pending.clear()
        self.room = self.capacity

    async def flush(self) -> None:
        self.acknowledged.extend(self.pending)
        self.pending.clear()
        self.log.append("topics")

    def topics(self) -> list[str]:
        return [t for t, *_ in self.acknowledged]


class MemoryState(DictState):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        if not self.log or self.log[-1] != "state":
            self.log.append("state")
        super().write(partition, key, value)

    def write_mark(self, source: str, partition: int, offset: int) -> None:
        self.log.append(f"mark {source}{partition}={offset}")
        super().write_mark(source, partition, offset)
