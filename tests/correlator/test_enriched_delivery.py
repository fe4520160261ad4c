"""What a subscriber of the enriched topics sees when the correlator is SIGKILLed mid-backlog (#19.8).

The documented contract (README "Guarantees"): database rows exactly once; enriched records at least
once, a record read twice is the same record, told apart by its key:
EnrichedProcess (host_id, pid, start_time_ns), EnrichedTask (run_id, task_id), EnrichedRun (run_id, event).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from execsight.schemas.codec import default_codec
from execsight.schemas.topics import ENRICHED_PROCESS, ENRICHED_RUN, ENRICHED_TASK
from execsight.settings import Settings

from .test_replay_after_crash import differing
from .test_worker import synthetic_host
from .worker_process import WorkerProcess, consume_all, produce, query, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.db]

# the de-duplication key of each enriched record type, as the README documents it
DEDUP_KEYS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    ENRICHED_PROCESS: lambda r: (r["host_id"], r["pid"], r["start_time_ns"]),
    ENRICHED_TASK: lambda r: (r["run_id"], r["task_id"]),
    ENRICHED_RUN: lambda r: (r["run_id"], r["event"]),
}


@pytest.fixture()
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(settings, tmp_path / "worker.log", args=["--batch-size", "300"])
    yield w
    w.stop()


def by_key(settings: Settings, topic: str, min_messages: int) -> tuple[dict[tuple[Any, ...], list[dict[str, Any]]],
                                                                        int]:
    """Every record of ``topic`` grouped by its de-duplication key, and how many were read."""
    codec = default_codec()
    messages = consume_all(settings, topic, min_messages, timeout_s=120)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        _, rec = codec.decode(m.value())
        groups[DEDUP_KEYS[topic](rec)].append(rec)
    return groups, len(messages)


def test_subscribers_see_every_record_at_least_once_and_duplicates_are_the_same(
    settings: Settings, worker: WorkerProcess
) -> None:
    hosts = [synthetic_host(f"dup-host-{i}", tasks=300, helpers=4) for i in range(4)]
    events = [e for h, _ in hosts for e in h.events]
    worker.start()
    produce(settings, events)
    dsn = settings.database_url

    def rows() -> int:
        return int(query(dsn, "SELECT count(*) FROM processes")[0][0])

    # SIGKILL twice, each time part-way through the backlog (batches written to the database and published,
    # their offsets and state marks not all committed yet)
    for threshold in (800, 3500):
        wait_for(rows, threshold.__lt__, interval_s=0.05, timeout_s=120)
        worker.kill()
        worker.start()

    def succeeded() -> int:
        worker.supervise()
        return int(query(dsn, "SELECT count(*) FROM runs WHERE status = 'SUCCEEDED'")[0][0])

    wait_for(succeeded, lambda n: n == len(hosts), timeout_s=300)

    # database: every process, task and run exactly once
    exited = {(r["host_id"], r["pid"], r["start_time_ns"]) for k, r in events if k == "ProcessExit"}
    expected_procs = sum(x["processes"] for _, x in hosts)
    expected_tasks = sum(x["tasks"] for _, x in hosts)
    assert query(dsn, "SELECT count(*), count(DISTINCT (host_id, pid, start_time_ns)) FROM processes") == [
        (expected_procs, expected_procs)]
    assert query(dsn, "SELECT count(*), count(DISTINCT (run_id, task_id)) FROM tasks") == [
        (expected_tasks, expected_tasks)]
    run_ids = {r[0] for r in query(dsn, "SELECT run_id FROM runs")}
    assert len(run_ids) == len(hosts)

    # enriched topics: every record at least once; every copy of a key is the same record
    seen: dict[str, tuple[int, int]] = {}
    procs, n = by_key(settings, ENRICHED_PROCESS, len(exited))
    assert set(procs) == exited
    seen[ENRICHED_PROCESS] = (n, len(procs))
    tasks, n = by_key(settings, ENRICHED_TASK, expected_tasks)
    task_keys = {(r[0], r[1]) for r in query(dsn, "SELECT run_id, task_id FROM tasks")}
    assert set(tasks) == task_keys
    seen[ENRICHED_TASK] = (n, len(tasks))
    runs, n = by_key(settings, ENRICHED_RUN, 2 * len(hosts))
    assert set(runs) == {(run_id, event) for run_id in run_ids for event in ("STARTED", "COMPLETED")}
    seen[ENRICHED_RUN] = (n, len(runs))
    for topic, groups in ((ENRICHED_PROCESS, procs), (ENRICHED_TASK, tasks), (ENRICHED_RUN, runs)):
        differ = {key: [differing(copies[0], c) for c in copies[1:] if c != copies[0]]
                  for key, copies in groups.items() if any(c != copies[0] for c in copies[1:])}
        # the fields each later copy disagrees on, as (first copy, later copy)
        assert not differ, (topic, len(differ), dict(list(differ.items())[:5]))
    # recorded for the README's figures: (records read, distinct keys) per topic
    print("enriched delivery after two SIGKILLs:", seen, "worker starts:", worker.starts)
    assert worker.starts >= 3
