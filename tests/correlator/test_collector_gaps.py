"""Exits that happened while the collector was down (issue 19.4): the correlator closes the processes at
the bound, flagged, so their tasks and run complete; the gap itself is a row (pure, and the sink)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from execsight.correlator import validation
from execsight.correlator.process_tree import Outputs
from execsight.correlator.sink import Sink

from .correlator_events import MS, Host, S, sample
from .test_process_tree import run_events

H = "h-gap"


def unobserved(h: Host, pid: int, last_seen: int, at: int) -> tuple[str, dict[str, Any]]:
    return "ProcessExitUnobserved", {"host_id": H, "pid": pid, "start_time_ns": h.starts[pid], "time_ns": at,
                                     "last_seen_ns": last_seen, "comm": "bwa", "reason": "crash"}


def gap(last_seen: int, at: int, n: int) -> tuple[str, dict[str, Any]]:
    return "CollectorGap", {"host_id": H, "time_ns": at, "from_ns": last_seen, "to_ns": at, "reason": "crash",
                            "unobserved_exits": n, "carried_over": 1, "live_set_truncated": False}


def pipeline_cut_by_a_restart() -> tuple[Host, int, int, int, int]:
    """A run whose root and one tool exit while the collector is down; another tool's exit was seen."""
    h = Host(H)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
    bwa = h.spawn(root, ["bwa", "mem", "ref.fa", "r.fq"])
    gz = h.spawn(root, ["gzip", "-t", "x.gz"])
    h.events.append(sample(H, bwa, h.starts[bwa], h.tick(S), cpu_ns=700 * MS, rss=90 << 20))
    h.exit(gz, "gzip", cpu_ns=MS)
    last_seen = h.tick(S)
    at = h.tick(60 * S)
    h.events += [unobserved(h, bwa, last_seen, at), unobserved(h, root, last_seen, at),
                 unobserved(h, gz, last_seen, at),  # its exit was sent before the crash: already closed
                 gap(last_seen, at, 3)]
    return h, root, bwa, gz, last_seen


def test_unobserved_exits_close_processes_at_the_bound_and_the_run_completes() -> None:
    h, root, bwa, gz, last_seen = pipeline_cut_by_a_restart()
    tree, out = run_events(h.events)
    rows = {pid: r for (_, pid, _), r in out.processes.items()}
    for pid in (bwa, root):
        r = rows[pid]
        assert (r["end_ns"], r["exit_code"], r["signal"], r["exit_unobserved"]) == (last_seen, None, None, True)
    assert rows[bwa]["cpu_ns"] == 700 * MS and rows[bwa]["peak_rss_bytes"] == 90 << 20  # from its samples
    assert rows[gz]["exit_unobserved"] is False and rows[gz]["exit_code"] == 0
    (run,) = out.runs.values()
    assert run["status"] != "RUNNING" and run["end_ns"] == last_seen and run["exit_code"] is None
    assert not tree.runs and not tree.tasks and set(tree.procs) == {(100, h.starts[100])}
    assert [e["exit_unobserved"] for e in out.enriched_process].count(True) == 2
    assert out.collector_gaps == [gap(last_seen, h.t, 3)[1]]


def test_an_unobserved_exit_of_an_unknown_or_closed_process_changes_nothing() -> None:
    h = Host(H)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    h.starts[4242] = h.tick()
    t = h.tick(S)
    tree, out = run_events([*h.events, unobserved(h, 4242, t, t + S)])
    assert (4242, h.starts[4242]) not in tree.procs and not any(pid == 4242 for _, pid, _ in out.processes)
    assert (sh, h.starts[sh]) in tree.procs


def test_boundary_checks_of_the_new_records() -> None:
    now = 1_700_000_100 * S
    h = Host(H)
    h.starts[7] = now - 10 * S
    _, ok = unobserved(h, 7, now - 5 * S, now)
    assert validation.validate("ProcessExitUnobserved", dict(ok), now).record is not None
    early = validation.validate("ProcessExitUnobserved", {**ok, "last_seen_ns": now - 20 * S}, now)
    assert early.record is not None and early.record["last_seen_ns"] == now - 10 * S and early.fixes
    late = validation.validate("ProcessExitUnobserved", {**ok, "last_seen_ns": now + S}, now)
    assert late.record is None and "last_seen_ns" in late.reason
    _, g = gap(now - 5 * S, now, 1)
    assert validation.validate("CollectorGap", dict(g), now).record is not None
    backwards = validation.validate("CollectorGap", {**g, "from_ns": now + S}, now + 2 * S)
    assert backwards.record is None and "from_ns" in backwards.reason


@pytest.mark.db
def test_sink_stores_the_flag_and_the_gap_once(database_url: str) -> None:
    h, root, bwa, _gz, _last_seen = pipeline_cut_by_a_restart()
    _, out = run_events(h.events)
    again = Outputs()
    again.collector_gaps = list(out.collector_gaps)

    async def write() -> None:
        sink = Sink(database_url)
        try:
            await sink.write(out)
            await sink.write(out)  # a replayed batch changes nothing
            await sink.write(again)
        finally:
            await sink.close()

    asyncio.run(write())
    with psycopg.connect(database_url) as conn:
        flagged = conn.execute("SELECT pid FROM processes WHERE exit_unobserved AND end_time IS NOT NULL"
                               " AND exit_code IS NULL ORDER BY pid").fetchall()
        assert [r[0] for r in flagged] == sorted([root, bwa])
        gaps = conn.execute("SELECT host_id, extract(epoch FROM gap_to - gap_from), reason, unobserved_exits"
                            " FROM collector_gaps").fetchall()
        assert [(g[0], round(float(g[1])), g[2], g[3]) for g in gaps] == [(H, 60, "crash", 3)]
        marked = conn.execute("SELECT run_id, run_unobserved_exits FROM run_collector_gaps").fetchall()
        (run,) = out.runs.values()  # keyed by host and run (a run may span hosts)
        assert marked == [(run["run_id"], 2)]


@pytest.mark.db
def test_a_real_exit_arriving_after_the_unobserved_one_wins_in_the_row(database_url: str) -> None:
    """A spooled exit sent before the crash may be delivered after the restart's records."""
    h = Host(H)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
    tool = h.spawn(root, ["bwa", "mem", "ref.fa"])
    seen = h.tick(S)
    tree, first = run_events([*h.events, unobserved(h, tool, seen, h.tick(10 * S))])
    h.events = []
    h.exit(tool, "bwa", code=3, cpu_ns=5 * MS)
    _, second = run_events(h.events, tree=tree, first_offset=100)
    (late,) = [r for (_, pid, _), r in second.processes.items() if pid == tool]
    assert (late["exit_code"], late["exit_unobserved"]) == (3, False)

    async def write() -> None:
        sink = Sink(database_url)
        try:
            await sink.write(first)
            await sink.write(second)
        finally:
            await sink.close()

    asyncio.run(write())
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT exit_code, exit_unobserved, run_id IS NOT NULL FROM processes WHERE pid = %s",
                           (tool,)).fetchone()
    assert row == (3, False, True)
