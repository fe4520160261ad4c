"""One batch of raw messages, as steps: decode, check at the boundary, apply to the host trees, commit.

The steps before the commit are this module's; where each partition stands is the cursor's
(partition_cursor.py), and the commit order (database, topics, state, marks) the checkpoint's
(checkpoint.py). Only a record the boundary or the tree explicitly calls invalid goes to the
dead-letter topic; any other exception is a bug and ends the batch unacknowledged, so it is
read again after the restart rather than lost with half-applied state.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from execsight.correlator import validation
from execsight.correlator.checkpoint import Checkpoint, Dead, PublishCounts, Publisher, RecordSink
from execsight.correlator.partition_cursor import InSequence, OffsetGapError, PartitionCursor, RawMessage
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import ReloadingRules
from execsight.schemas.codec import Codec, CodecError
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS, load_topics
from execsight.settings import Settings

__all__ = ["BatchProcessor", "DictState", "InSequence", "OffsetGapError", "RawMessage", "StateStore", "Stats"]

log = logging.getLogger(__name__)
# which record types belong on which raw topic: the contract's (topics.yaml), not a copy of it
PROCESS_TYPES = frozenset(load_topics()[RAW_PROCESS].value_schemas)
HOST_TYPES = frozenset(load_topics()[RAW_HOST].value_schemas)


class StateStore(Protocol):
    """Where host state lives between batches (a Faust table, or a dict in tests)."""

    def host_items(self, host_id: str) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
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

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return value if isinstance(value, dict) else None

    def mark(self, source: str, partition: int) -> int:
        return int(self.data.get(f"~mark|{source}|{partition}", -1))

    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            # a copy, as a changelog holds it: the live state goes on changing nested values (peaks, tools)
            self.data[key] = json.loads(json.dumps(value))

    def write_mark(self, source: str, partition: int, offset: int) -> None:
        self.data[f"~mark|{source}|{partition}"] = offset


@dataclass
class Stats(PublishCounts):
    events: int = 0
    deadlettered: int = 0
    normalised: int = 0  # accepted after cleaning or cutting (validation.py)
    batches: int = 0
    skipped_replayed: int = 0
    throttled_execs: int = 0
    last_batch_s: float = 0.0
    delays_s: deque[float] = field(default_factory=lambda: deque(maxlen=20000))  # recent events
    last_delays_s: list[float] = field(default_factory=list)  # the last batch's events
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


class BatchProcessor:
    """Decodes, checks and applies an in-sequence batch to the host trees, then has it committed."""

    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        sink: RecordSink,
        publisher: Publisher,
        rules: ReloadingRules,
        codec: Codec,
    ) -> None:
        self.settings = settings
        self.state = state
        self.sink = sink
        self.publisher = publisher
        self.rules = rules
        self.codec = codec
        self.cfg = TreeConfig.from_settings(settings)
        self.hosts: dict[str, HostTree] = {}
        self.host_partition: dict[str, int] = {}
        self.stats = Stats()
        self.cursor = PartitionCursor(state, settings.topic(RAW_HOST))
        self.checkpoint = Checkpoint(sink, publisher, state, self.cursor, codec.encode, self.stats)

    def forget(self) -> None:
        """Drops cached host state and positions (after a rebalance they are loaded again from the state store)."""
        self.hosts.clear()
        self.cursor.forget()

    def source(self, topic: str) -> str:
        return self.cursor.source(topic)

    def _tree(self, host_id: str, partition: int) -> HostTree:
        tree = self.hosts.get(host_id)
        if tree is None:
            tree = HostTree(host_id, self.cfg, self.rules.identify)
            tree.load(self.state.host_items(host_id), lambda source: self.cursor.mark(source, partition))
            self.hosts[host_id] = tree
        return tree

    def _checked(self, msg: RawMessage, source: str, now_ns: int) -> tuple[str, dict[str, Any]] | Dead:
        """The boundary: a decoded record that belongs on its topic and is valid (perhaps normalised),
        or why not."""
        try:
            kind, rec = self.codec.decode(msg.value or b"")
        except CodecError as exc:
            return Dead(msg, f"undecodable: {exc}")
        allowed = HOST_TYPES if source == "H" else PROCESS_TYPES
        if kind not in allowed:
            return Dead(msg, f"invalid: record type {kind} does not belong on {msg.topic}")
        checked = validation.validate(kind, rec, now_ns)
        if checked.record is None:
            return Dead(msg, checked.reason)
        if checked.fixes:
            self.stats.normalised += 1
            log.warning("record normalised at the boundary", extra={
                "record_type": kind, "fixes": list(checked.fixes), "topic": msg.topic,
                "partition": msg.partition, "offset": msg.offset})
        return kind, checked.record

    async def process(self, batch: InSequence) -> Outputs:
        started = time.time()
        out = Outputs()
        touched: dict[str, HostTree] = {}
        dead: list[Dead] = []
        now_ns = time.time_ns()
        source_of = self.cursor.source
        for msg in batch.messages:
            if self.cursor.is_replay(msg):
                self.stats.skipped_replayed += 1
                continue
            source = source_of(msg.topic)
            checked = self._checked(msg, source, now_ns)
            if isinstance(checked, Dead):
                dead.append(checked)
                continue
            kind, rec = checked
            host_id = rec["host_id"]
            tree = touched.get(host_id) or self._tree(host_id, msg.partition)
            touched[host_id] = tree
            self.host_partition[host_id] = msg.partition
            try:
                tree.apply(kind, rec, source, msg.offset, out)
            except validation.InvalidRecord as exc:
                # only what the tree code calls invalid; anything else is a bug and must stop the batch
                dead.append(Dead(msg, f"invalid: {kind} could not be applied: {exc}"))
        for tree in touched.values():
            tree.finish(out)
        out.event_times_ns.sort()

        db_started = time.time()
        committed, positions = await self.checkpoint.commit(
            batch, out, dead, [(h, self.host_partition[h], tree) for h, tree in touched.items()])
        self.stats.positions.update(positions)

        self.stats.events += len(batch.messages)
        self.stats.deadlettered += len(dead)
        self.stats.batches += 1
        self.stats.throttled_execs += out.throttled_execs
        self.stats.last_batch_s = time.time() - started
        log.debug("batch committed", extra={"events": len(batch.messages), "seconds": round(self.stats.last_batch_s, 4),
                                            "db_s": round(committed - db_started, 4), "dead": len(dead)})
        self.stats.last_delays_s = [committed - t / 1e9 for t in out.event_times_ns]
        self.stats.delays_s.extend(self.stats.last_delays_s)
        return out
