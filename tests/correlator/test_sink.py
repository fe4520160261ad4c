"""Database writes: batched upserts are idempotent and never move a row backwards."""

from __future__ import annotations

import asyncio

import pytest

from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host, S
from .worker_process import query

pytestmark = pytest.mark.db


def outputs(events: list) -> Outputs:  # type: ignore[type-arg]
    tree = HostTree(events[0][1]["host_id"], TreeConfig(), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return out


def test_replayed_batches_change_nothing_and_rows_never_regress(database_url: str) -> None:
    h = Host("sink-host")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "p.sh"], exe="/usr/bin/bash")
    tool = h.spawn(root, ["samtools", "sort", "x.bam"], container_id="c" * 64)
    started = outputs(list(h.events))  # the run is RUNNING, samtools has no exit yet
    h.exit(tool, "samtools", after=2 * S, cpu_ns=S, peak_rss=10 << 20)
    h.exit(root, "bash", after=MS)
    done = outputs(list(h.events))
    sink = Sink(database_url)

    async def write(*batches: Outputs) -> None:
        for batch in batches:
            await sink.write(batch)
        await sink.close()

    asyncio.run(write(started, done))
    snapshot = {t: query(database_url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in
                ("processes", "tasks", "runs", "tools", "pipelines", "containers")}
    assert query(database_url, "SELECT status, task_count FROM runs") == [("SUCCEEDED", 1)]
    assert query(database_url, "SELECT count(*) FROM processes WHERE end_time IS NOT NULL")[0][0] == 2
    # the whole history again, then the early batch alone (a replay from an old offset)
    asyncio.run(write(started, done, started))
    for table, rows in snapshot.items():
        after = query(database_url, f"SELECT * FROM {table} ORDER BY 1, 2")
        if table == "runs":  # updated_at moves; nothing else may
            at = [c[0] for c in query(database_url, "SELECT attname FROM pg_attribute WHERE attrelid = 'runs'::regclass"
                                                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
            i = at.index("updated_at")
            rows = [r[:i] + r[i + 1:] for r in rows]
            after = [r[:i] + r[i + 1:] for r in after]
        assert after == rows, table
    assert query(database_url, "SELECT exe, tool, cpu_ns FROM processes WHERE pid = %s", (tool,)) == [
        ("/usr/bin/samtools", "samtools sort", S)]
    assert query(database_url, "SELECT container_id, host_id FROM containers") == [("c" * 64, "sink-host")]
