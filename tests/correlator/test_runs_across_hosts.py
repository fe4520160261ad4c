"""A Nextflow run whose driver is on host A and whose tasks run on hosts B and C (the Slurm executor: each
task a Slurm job of its own) is one run (issue 15): each host's part goes through its own HostTree, as in
different correlator workers, and the database merges the parts (migration 0010: run_lanes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from execsight.correlator.engines import nextflow
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host, S
from .worker_process import query

pytestmark = pytest.mark.db
ROOT = "/shared/run1/work"
HASHES = {"B": "3f/a94c1d2be84b9c0e7d6f5a4c3b2a19", "C": "7b/12e0aa9c4d3e2f1a0b9c8d7e6f5a41"}
NAMES = {"B": "ALIGN (s1)", "C": "ALIGN (s2)"}


def _task_host(name: str, t0: int, job: str) -> Host:
    h = Host(f"host-{name}", t=t0)
    stepd = h.seed(900, [f"slurmstepd: [{job}.batch]"], exe="/usr/sbin/slurmstepd")
    wd = f"{ROOT}/{HASHES[name]}"
    wrapper = h.spawn(stepd, ["/bin/bash", "-ue", ".command.run"], cwd=wd,
                      env={"SLURM_JOB_ID": job, "SLURM_JOB_NAME": f"nf-{NAMES[name]}"})
    header = f"#!/bin/bash\n#SBATCH -J nf-{NAMES[name]}\n#SBATCH -c 2\n### name: '{NAMES[name]}'\n"
    h.events.append(("ProcessContext", {
        "host_id": h.host, "pid": wrapper, "start_time_ns": h.starts[wrapper], "time_ns": h.tick(),
        "kind": "nextflow_task", "path": f"{wd}/.command.run", "text": header, "truncated": False,
        "exit_code": None, "error": None, "cached": False}))
    tool = h.spawn(wrapper, ["bwa", "mem", "-t", "2", "ref.fa", "r.fq"], cwd=wd)
    h.exit(tool, "bwa", after=2 * S, cpu_ns=3 * S, peak_rss=100 << 20)
    h.exit(wrapper, "bash", after=MS, code=0)
    return h


def _outputs(h: Host) -> Outputs:
    tree = HostTree(h.host, TreeConfig(), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return out


def _driver(t0: int) -> tuple[Host, Host]:
    """The driver's events before (STARTED) and all of them (it exits after its tasks)."""
    a = Host("host-A", t=t0)
    sh = a.seed(100, ["-bash"], exe="/usr/bin/bash")
    drv = a.spawn(sh, ["nextflow", "run", "main.nf"], exe="/usr/bin/nextflow", cwd="/shared/run1")
    started = Host("host-A", t=a.t, events=list(a.events), starts=dict(a.starts))
    a.exit(drv, "java", after=10 * S, code=0, cpu_ns=S)
    return started, a


def test_a_driver_and_tasks_on_three_hosts_are_one_run_with_per_host_lanes(database_url: str) -> None:
    t0 = 1_700_000_000 * S
    started, driver = _driver(t0)
    b, c = _task_host("B", t0 + S, "501"), _task_host("C", t0 + 2 * S, "502")
    parts = [_outputs(started), _outputs(b), _outputs(c), _outputs(driver)]
    run_ids = {r["run_id"] for out in parts for r in out.runs.values()}
    assert run_ids == {nextflow.run_id_of(ROOT)}  # every host derived the same id, with no host in it
    sink = Sink(database_url)

    async def write(*batches: Outputs) -> None:
        for batch in batches:
            await sink.write(batch)
        await sink.close()

    asyncio.run(write(*parts))
    runs = query(database_url, "SELECT run_id, host_id, status, task_count, pipeline, start_time, end_time "
                               "FROM runs")
    (run_id, host, status, task_count, pipeline, start, end), = runs
    assert (run_id, host, status, task_count, pipeline) == (nextflow.run_id_of(ROOT), "host-A", "SUCCEEDED", 2,
                                                            "main")
    tasks = query(database_url, "SELECT host_id, task, task_id, requested_cpus FROM tasks ORDER BY host_id")
    assert tasks == [("host-B", NAMES["B"], HASHES["B"], 2.0), ("host-C", NAMES["C"], HASHES["C"], 2.0)]
    lanes = query(database_url, "SELECT host_id, status, task_count FROM run_host_lanes ORDER BY host_id")
    assert lanes == [("host-A", "DONE", 0), ("host-B", "DONE", 1), ("host-C", "DONE", 1)]
    # the merged row: the earliest start (the driver's) and the latest end (the driver's exit)
    assert start == min(r[0] for r in query(database_url, "SELECT start_time FROM run_lanes"))
    assert end == max(r[0] for r in query(database_url, "SELECT end_time FROM run_lanes"))
    before: list[Any] = query(database_url, "SELECT * FROM run_lanes ORDER BY 1, 2, 3, 4")
    asyncio.run(write(*parts, parts[0]))  # a replay, and an old batch again: nothing moves
    assert [r[:-1] for r in query(database_url, "SELECT * FROM run_lanes ORDER BY 1, 2, 3, 4")] == [
        r[:-1] for r in before]
    assert query(database_url, "SELECT status, task_count FROM runs") == [("SUCCEEDED", 2)]


def test_while_the_driver_runs_the_run_is_running_though_task_hosts_are_done(database_url: str) -> None:
    t0 = 1_700_000_000 * S
    started, _ = _driver(t0)
    sink = Sink(database_url)

    async def write(*batches: Outputs) -> None:
        for batch in batches:
            await sink.write(batch)
        await sink.close()

    asyncio.run(write(_outputs(started), _outputs(_task_host("B", t0 + S, "501"))))
    assert query(database_url, "SELECT status, task_count, end_time FROM runs") == [("RUNNING", 1, None)]


def test_one_worker_with_every_host_in_one_batch_writes_the_same_run(database_url: str) -> None:
    """A worker holding all three hosts' partitions: their parts of the run come in one batch (one statement)."""
    t0 = 1_700_000_000 * S
    _, driver = _driver(t0)
    out = Outputs()
    for h in (driver, _task_host("B", t0 + S, "501"), _task_host("C", t0 + 2 * S, "502")):
        tree = HostTree(h.host, TreeConfig(), load_rules([]).identify)
        for i, (kind, rec) in enumerate(h.events):
            tree.apply(kind, rec, "P", i, out)
        tree.finish(out)
    assert len(out.runs) == 3  # one part per host, though one run id
    sink = Sink(database_url)

    async def write() -> None:
        await sink.write(out)
        await sink.close()

    asyncio.run(write())
    assert query(database_url, "SELECT host_id, status, task_count FROM runs") == [("host-A", "SUCCEEDED", 2)]
    assert query(database_url, "SELECT count(DISTINCT host_id) FROM run_lanes") == [(3,)]
