"""The batch steps and the checkpoint, over in-memory edges: commit order, what reaches the
dead-letter topic (only explicitly invalid records) and what stops a batch unacknowledged (a bug)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from execsight.correlator import process_tree
from execsight.correlator.batch import BatchProcessor
from execsight.correlator.partition_cursor import RawMessage
from execsight.correlator.tool_rules import ReloadingRules
from execsight.correlator.validation import InvalidRecord
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import DEADLETTER, ENRICHED_PROCESS
from execsight.settings import load_settings
from tests.correlator.doubles import MemoryPublisher, MemorySink, MemoryState

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
RAW = "x.execsight.raw.process"


def example(kind: str, offset: int, pid: int) -> RawMessage:
    rec: dict[str, Any] = json.loads((EXAMPLES / kind / "v1-1.json").read_text())
    rec["pid"] = pid
    rec["start_time_ns"] = 1763750000000000000  # the exec and exit examples name one process
    return RawMessage(RAW, 0, offset, rec["host_id"].encode(), default_codec().encode(kind, rec))


def process(offset: int, pid: int = 4242) -> list[RawMessage]:
    """A process's exec and exit (an enriched process is published at its exit)."""
    return [example("ProcessExec", offset, pid), example("ProcessExit", offset + 1, pid)]


def exec_message(offset: int, pid: int = 4242) -> RawMessage:
    return example("ProcessExec", offset, pid)


def build(tmp_path: Path, log: list[str], sink: MemorySink | None = None,
          room: int = 1 << 30) -> tuple[BatchProcessor, MemoryPublisher, MemoryState]:
    settings = load_settings({"EXECSIGHT_STATE_DIR": str(tmp_path), "EXECSIGHT_TOPIC_PREFIX": "x."})
    state, publisher = MemoryState(log), MemoryPublisher(log, room)
    proc = BatchProcessor(settings, state, sink or MemorySink(log), publisher, ReloadingRules([]), default_codec())
    return proc, publisher, state


def run(proc: BatchProcessor, batch: list[RawMessage]) -> None:
    asyncio.run(proc.process(proc.cursor.accept(batch)))


def test_commit_order_is_database_topics_state_then_marks(tmp_path: Path) -> None:
    log: list[str] = []
    proc, publisher, state = build(tmp_path, log)
    run(proc, [*process(0), *process(2, pid=4243), RawMessage(RAW, 0, 4, b"h", b"\x00garbage")])
    assert log == ["db", "topics", "state", "mark P0=4"]
    assert publisher.topics().count(ENRICHED_PROCESS) == 2
    dead = [m for m in publisher.acknowledged if m[0] == DEADLETTER]
    assert len(dead) == 1 and dict(dead[0][3] or [])["execsight.reason"].startswith(b"undecodable")
    assert state.mark("P", 0) == 4


def test_a_database_failure_publishes_nothing_and_moves_no_mark(tmp_path: Path) -> None:
    log: list[str] = []
    proc, publisher, state = build(tmp_path, log, MemorySink(log, fail=ConnectionError("db down")))
    with pytest.raises(ConnectionError):
        run(proc, [exec_message(0)])
    assert log == [] and publisher.acknowledged == [] and state.mark("P", 0) == -1
    assert not proc.cursor.is_replay(exec_message(0))  # read again, applied then


def test_a_full_producer_is_waited_out_not_spun_on(tmp_path: Path) -> None:
    log: list[str] = []
    proc, publisher, _ = build(tmp_path, log, room=1)
    run(proc, [m for i in range(5) for m in process(2 * i, pid=5000 + i)])
    assert publisher.topics().count(ENRICHED_PROCESS) == 5
    assert publisher.waits == len(publisher.acknowledged) - 1  # one wait for each message after the first


def test_a_bug_in_tree_code_stops_the_batch_and_dead_letters_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, *args: Any) -> None:
        raise KeyError("st")  # what a typo in the tree code looks like

    log: list[str] = []
    proc, publisher, state = build(tmp_path, log)
    monkeypatch.setattr(process_tree.HostTree, "apply", broken)
    with pytest.raises(KeyError):
        run(proc, [exec_message(0)])
    assert publisher.acknowledged == [] and publisher.pending == [] and state.mark("P", 0) == -1


def test_a_record_the_tree_calls_invalid_is_dead_lettered_and_the_rest_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apply = process_tree.HostTree.apply

    def picky(self: Any, kind: str, rec: dict[str, Any], *args: Any) -> None:
        if rec["pid"] == 13:
            raise InvalidRecord("pid 13 is unlucky")
        apply(self, kind, rec, *args)

    log: list[str] = []
    proc, publisher, state = build(tmp_path, log)
    monkeypatch.setattr(process_tree.HostTree, "apply", picky)
    run(proc, [*process(0, pid=12), exec_message(2, pid=13)])
    dead = [m for m in publisher.acknowledged if m[0] == DEADLETTER]
    assert [dict(m[3] or [])["execsight.offset"] for m in dead] == [b"2"]
    assert b"pid 13 is unlucky" in dict(dead[0][3] or [])["execsight.reason"]
    assert publisher.topics().count(ENRICHED_PROCESS) == 1 and state.mark("P", 0) == 2


def test_a_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    log: list[str] = []
    proc, publisher, _ = build(tmp_path, log)
    batch = [*process(0), *process(2, pid=4243)]
    run(proc, batch)
    published = len(publisher.acknowledged)
    assert publisher.topics().count(ENRICHED_PROCESS) == 2
    proc.forget()  # a restart: positions come back from the marks
    run(proc, batch)
    assert proc.stats.skipped_replayed == 4 and len(publisher.acknowledged) == published
