"""A batch replayed after a crash in the middle of its changelog flush publishes the same records (pure).

The state writes of a batch reach the changelog in order, but a worker killed while they are on the
way leaves any prefix of them, and never the partition mark that follows (checkpoint.py). The batch
is then read again over that state. A process whose exit was in the lost batch may be in that prefix
as a ``gone`` entry: the replay must neither take its exit for the first event of an unknown process
(a copy of its EnrichedProcess with no parent, command or run, issue #19.8's differing duplicate) nor
lose its parent for a child forked in that batch, nor leave its task open. And a process written from
the lost batch must not come without the run or task its events changed (the replay skips its events).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from execsight.correlator.changelog import stored
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host

RULES = load_rules([])
Event = tuple[str, dict[str, Any]]
KEYS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    "enriched_process": lambda r: (r["host_id"], r["pid"], r["start_time_ns"]),
    "enriched_task": lambda r: (r["run_id"], r["task_id"]),
    "enriched_run": lambda r: (r["run_id"], r["event"]),
}


def differing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields two copies of one record disagree on: (first, second)."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def stream() -> list[Event]:
    """A generic run: tasks of a root and a few helpers each, every process living across a few events."""
    h = Host("replay-host")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "big.sh"], exe="/usr/bin/bash")
    for i in range(3):
        task_root = h.spawn(root, ["bwa", "mem", f"r{i}.fq"])
        helpers = [h.spawn(task_root, ["gzip", "-c"]) for _ in range(2)]
        for helper in helpers:
            h.exit(helper, "gzip", after=MS, cpu_ns=MS, peak_rss=1 << 20)
        h.exit(task_root, "bwa", after=10 * MS, cpu_ns=7 * MS, peak_rss=8 << 20)
    h.exit(root, "bash", cpu_ns=3 * MS)
    return h.events


def apply(tree: HostTree, events: list[Event], first_offset: int) -> Outputs:
    out = Outputs()
    for off, (kind, rec) in enumerate(events, start=first_offset):
        tree.apply(kind, rec, "P", off, out)
    tree.finish(out)
    return out


def persist(store: dict[str, Any], writes: list[tuple[str, Any]]) -> None:
    """What the changelog keeps (as the checkpoint writes it): a serialized copy of each value written,
    a removal keeping the version stored before it, None deletes."""
    for key, value in writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = json.loads(json.dumps(stored(store.get(key), value)))


def new_tree() -> HostTree:
    return HostTree("replay-host", TreeConfig(), RULES.identify)


EVENTS = stream()
BATCH = 12  # the batch lost in the crash


def crash_cases() -> list[tuple[int, int]]:
    """(first offset of the lost batch, how many of its changelog writes reached the changelog)."""
    cases = []
    for cut in range(1, len(EVENTS) - BATCH):
        tree = new_tree()
        apply(tree, EVENTS[:cut], 0)
        tree.changes()
        apply(tree, EVENTS[cut:cut + BATCH], cut)
        cases += [(cut, flushed) for flushed in range(len(tree.changes()) + 1)]
    return cases


CASES = crash_cases()


def test_the_crash_cases_include_gone_processes_in_the_flushed_prefix() -> None:
    assert len(CASES) > 100  # every batch start, every prefix of its changelog writes


CLEAN = apply(new_tree(), EVENTS, 0)
FIRST: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {
    name: {KEYS[name](r): r for r in getattr(CLEAN, name)} for name in KEYS}


def crash_and_replay(cut: int, flushed: int, marks: bool = True) -> tuple[list[Outputs], HostTree]:
    """Batch 1 (events before ``cut``) committed; batch 2 published, then killed after ``flushed`` of its
    changelog writes; the restarted worker reads batch 2 again and the rest. marks=False: the load takes
    every gone entry for a removal that stands (as before #19.8's fix)."""
    tree, store = new_tree(), dict[str, Any]()
    before = apply(tree, EVENTS[:cut], 0)
    persist(store, tree.changes())
    lost = apply(tree, EVENTS[cut:cut + BATCH], cut)
    persist(store, tree.changes()[:flushed])
    restarted = new_tree()  # the partition mark is batch 1's last offset: batch 2's was never written
    restarted.load(iter(list(store.items())), (lambda source: cut - 1 if source == "P" else -1) if marks else None)
    replay = apply(restarted, EVENTS[cut:cut + BATCH], cut)
    rest = apply(restarted, EVENTS[cut + BATCH:], cut + BATCH)
    return [before, lost, replay, rest], restarted


@pytest.mark.parametrize(("cut", "flushed"), CASES)
def test_a_replay_after_a_partial_changelog_flush_publishes_identical_copies(cut: int, flushed: int) -> None:
    passes, restarted = crash_and_replay(cut, flushed)
    for name, key in KEYS.items():
        for out in passes:
            for rec in getattr(out, name):
                want = FIRST[name].get(key(rec))
                assert want is not None, (name, key(rec), "a record the clean pass never published")
                assert rec == want, (name, key(rec), differing(want, rec))
        # at least once: every record of the clean pass was published by one of the passes
        assert {key(r) for out in passes for r in getattr(out, name)} == set(FIRST[name]), name
    # the database ends as after a clean pass (rows are upserts: the last copy stays)
    for rows in ("processes", "tasks", "runs"):
        merged: dict[Any, Any] = {}
        for out in passes:
            merged.update(getattr(out, rows))
        assert merged == getattr(CLEAN, rows), rows
    # and nothing stays open: every task and the run completed, only the interactive shell is live
    assert not restarted.tasks and not restarted.runs
    assert list(restarted.procs) == [(100, EVENTS[0][1]["start_time_ns"])]


def test_taking_a_gone_entry_for_a_removal_that_stands_publishes_differing_copies() -> None:
    """The defect, reproduced: a gone entry flushed without its batch's marks, dropped at load, makes the
    replayed exit the first event of an unknown process (and a child forked in that batch an orphan)."""
    fields: set[str] = set()
    open_tasks = 0
    for cut, flushed in CASES:
        passes, restarted = crash_and_replay(cut, flushed, marks=False)
        for rec in passes[2].enriched_process:
            fields |= set(differing(FIRST["enriched_process"][KEYS["enriched_process"](rec)], rec))
        open_tasks += len(restarted.tasks)
    # the copy has no parent, command or run: what the SIGKILL test once saw
    assert {"ppid", "parent_start_time_ns", "exe", "argv", "run_id", "task_id"} <= fields, fields
    assert open_tasks > 0  # and tasks whose process's exit was lost so never complete
