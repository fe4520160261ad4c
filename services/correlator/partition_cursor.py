"""Where each source partition stands, and the one place that decides holes, rewinds and replays.

Per (topic, partition) the cursor knows the last offset applied (the *mark*, persisted in the
state store's changelog and loaded once), the offset it expects next in this worker, and the
lowest offset a rebalance dropped from the feed before it could be processed. From those it
splits every fetched batch once: the messages that follow on from what was applied, and for each
partition that shows a hole, the offset to read it again from. Raw topics are neither compacted
nor transactional, so a hole always means fetched-but-never-handed-over messages; reading again
from the expected offset loses nothing, and replays at or below the mark change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class MarkStore(Protocol):
    """The persisted marks: the last offset applied per mark namespace ("P"/"H") and partition."""

    def mark(self, source: str, partition: int) -> int: ...
    def write_mark(self, source: str, partition: int, offset: int) -> None: ...


class OffsetGapError(RuntimeError):
    """Messages of a partition were not delivered in sequence: the batch must not be applied."""


@dataclass(frozen=True, slots=True)
class InSequence:
    """Messages the cursor accepted: each follows on from what was applied (or is a harmless replay).
    Only ``PartitionCursor.split`` and ``PartitionCursor.accept`` make one, so nothing else can hand a
    batch with a hole to the processor."""

    messages: tuple[RawMessage, ...]


@dataclass(frozen=True, slots=True)
class Split:
    accepted: InSequence
    kept: tuple[int, ...]  # indices into the fetched batch, for acknowledging exactly those
    rewinds: dict[TopicPartition, int]  # partitions to read again, from this offset


class PartitionCursor:
    def __init__(self, marks: MarkStore, raw_host_topic: str) -> None:
        self._store = marks
        self._raw_host_topic = raw_host_topic
        self._marks: dict[tuple[str, int], int] = {}
        self._next: dict[TopicPartition, int] = {}
        self._dropped: dict[TopicPartition, int] = {}

    def source(self, topic: str) -> str:
        """The mark namespace of a raw topic: H for raw.host, P for raw.process."""
        return "H" if topic == self._raw_host_topic else "P"

    def mark(self, source: str, partition: int, first_offset: int | None = None) -> int:
        """The last offset applied (-1: none), loaded from the store the first time it is asked for."""
        k = (source, partition)
        mark = self._marks.get(k)
        if mark is None:
            mark = self._marks[k] = self._store.mark(source, partition)
            if first_offset is not None and mark >= 0 and first_offset > mark + 1:
                log.warning("offsets skipped between the last applied event and the first one read",
                            extra={"source": source, "partition": partition, "mark": mark,
                                   "first_offset": first_offset})
            log.info("partition state loaded", extra={"source": source, "partition": partition, "mark": mark,
                                                      "first_offset": first_offset})
        return mark

    def is_replay(self, msg: RawMessage) -> bool:
        # asked per message: the loaded mark straight from the cache, the store only the first time
        mark = self._marks.get(("H" if msg.topic == self._raw_host_topic else "P", msg.partition))
        if mark is None:
            mark = self.mark(self.source(msg.topic), msg.partition, msg.offset)
        return msg.offset <= mark

    def split(self, batch: Sequence[RawMessage]) -> Split:
        """The messages that follow on from what was applied, and where to read the others again.

        A partition may go on with the next offset expected, or anything up to the one after the mark
        (messages at or below it were applied already, so missing them loses nothing)."""
        expected = dict(self._next)
        keep: list[int] = []
        rewinds: dict[TopicPartition, int] = {}
        marks: dict[TopicPartition, int] = {}  # per partition, looked up once (nothing here moves them)
        for i, msg in enumerate(batch):
            k = (msg.topic, msg.partition)
            mark = marks.get(k)
            if mark is None:
                mark = marks[k] = self.mark(self.source(msg.topic), msg.partition, msg.offset)
            want = expected.get(k)
            if want is None:
                want = msg.offset if mark < 0 or msg.offset <= mark + 1 else mark + 1
            elif mark >= 0:
                want = max(want, mark + 1)
            if msg.offset > want:
                rewinds[k] = want
                continue
            keep.append(i)
            expected[k] = max(want, msg.offset + 1)
        return Split(InSequence(tuple(batch[i] for i in keep)), tuple(keep), rewinds)

    def accept(self, batch: Sequence[RawMessage]) -> InSequence:
        """The whole batch, or OffsetGapError naming the first message that does not follow on."""
        split = self.split(batch)
        if split.rewinds:
            kept = set(split.kept)
            msg = batch[next(i for i in range(len(batch)) if i not in kept)]
            want = split.rewinds[(msg.topic, msg.partition)]
            raise OffsetGapError(f"{msg.topic}[{msg.partition}]: offset {msg.offset} read, {want} expected")
        return split.accepted

    def expect(self, topic: str, partition: int, offset: int) -> None:
        """The partition was sought to ``offset``: anything else read first is out of sequence (a fetch from
        before the seek), even on a partition with no state yet, which would otherwise start anywhere."""
        self._next[(topic, partition)] = offset

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The first offset of a partition not yet applied, or None when nothing of it has been."""
        known = self._next.get((topic, partition))
        if known is not None:
            return known
        mark = self.mark(self.source(topic), partition)
        return mark + 1 if mark >= 0 else None

    def dropped(self, topic: str, partition: int, offset: int) -> None:
        """The feed discarded a fetched message (a rebalance): the partition must be read again."""
        k = (topic, partition)
        low = self._dropped.get(k)
        if low is None or offset < low:
            self._dropped[k] = offset

    def has_dropped(self) -> bool:
        return bool(self._dropped)

    def take_dropped(self) -> list[tuple[TopicPartition, int]]:
        """Partitions to read again after drops, each from the first message not yet applied (the lowest
        dropped one when nothing of the partition has been applied in this worker or before)."""
        dropped, self._dropped = self._dropped, {}
        out: list[tuple[TopicPartition, int]] = []
        for (topic, partition), lowest in sorted(dropped.items()):
            offset = self.resume_offset(topic, partition)
            out.append(((topic, partition), lowest if offset is None else offset))
        return out

    def applied(self, batch: InSequence) -> dict[tuple[str, int], int]:
        """Moves past a batch whose outputs are committed: the partitions now expect what follows, and
        the marks to persist (source, partition) -> offset are returned (only those that moved)."""
        last: dict[tuple[str, int], int] = {}
        expected, host_topic = self._next, self._raw_host_topic
        for msg in batch.messages:
            expected[(msg.topic, msg.partition)] = msg.offset + 1
            last[("H" if msg.topic == host_topic else "P", msg.partition)] = msg.offset  # as source()
        moved = {k: off for k, off in last.items() if off > self.mark(*k)}
        for (source, partition), offset in moved.items():
            self._store.write_mark(source, partition, offset)
            self._marks[(source, partition)] = offset
        return last

    def forget(self) -> None:
        """After a rebalance marks are loaded again (another worker may have moved them); pending drops
        stay, they still have to be read again."""
        self._marks.clear()
        self._next.clear()
