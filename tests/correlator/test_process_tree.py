"""The process-tree state machine (pure): tasks, runs, totals, completion, bounded state, replays."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from execsight.correlator import concurrent_peak
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from . import fixture_streams
from .correlator_events import MS, Host, S, exit_, fork

RULES = load_rules([])


def run_events(events: list[tuple[str, dict[str, Any]]], tree: HostTree | None = None, first_offset: int = 0,
               cfg: TreeConfig | None = None) -> tuple[HostTree, Outputs]:
    tree = tree or HostTree(events[0][1]["host_id"], cfg or TreeConfig(), RULES.identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(events, start=first_offset):
        tree.apply(kind, rec, "H" if kind in ("HostSample", "CollectorStatus") else "P", i, out)
    tree.finish(out)
    return tree, out


def small_pipeline() -> Host:
    h = Host("h1")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
    bwa = h.spawn(root, ["bwa", "mem", "-t", "2", "ref.fa", "r.fq"])
    sort = h.spawn(root, ["samtools", "sort", "-o", "x.bam", "-"])
    h.exit(bwa, "bwa", after=2 * S, cpu_ns=3 * S, peak_rss=100 << 20, read_bytes=7000, run_delay_ns=5 * MS)
    h.exit(sort, "samtools", after=MS, cpu_ns=S, peak_rss=50 << 20, write_bytes=9000)
    helper = h.fork_only(root)
    for _ in range(3):  # a loop of short-lived helpers inside one task
        tool = h.spawn(helper, ["gzip", "-t", "x.gz"])
        h.exit(tool, "gzip", after=MS, cpu_ns=MS, peak_rss=2 << 20)
    h.exit(helper, "bash", after=MS, cpu_ns=MS, peak_rss=3 << 20)
    h.exit(root, "bash", code=0, cpu_ns=10 * MS, peak_rss=4 << 20)
    return h


def test_generic_run_tasks_and_totals() -> None:
    h = small_pipeline()
    tree, out = run_events(h.events)
    assert len(out.runs) == 1
    run = next(iter(out.runs.values()))
    assert (run["pipeline"], run["engine"], run["status"], run["task_count"]) == ("pipeline.sh", "generic",
                                                                                 "SUCCEEDED", 3)
    assert run["process_count"] == 1 + 2 + 1 + 3
    assert run["cpu_ns"] == 3 * S + S + 4 * MS + 10 * MS
    # bwa and samtools ran together with the root: their peaks add up
    assert run["peak_rss_bytes"] == (100 << 20) + (50 << 20) + (4 << 20)
    tasks = {t["task"]: t for t in out.tasks.values()}
    assert set(tasks) == {"bwa mem", "samtools sort", "bash"}
    assert (tasks["bwa mem"]["cpu_ns"], tasks["bwa mem"]["read_bytes"], tasks["bwa mem"]["runq_ns"]) == (3 * S, 7000,
                                                                                                     5 * MS)
    loop = tasks["bash"]
    # the forked helper shell is still pipeline.sh: the script is its tool (bash itself is no tool)
    assert (loop["process_count"], loop["short_lived_count"], loop["tools"]) == (4, 4, ["gzip", "pipeline"])
    assert loop["peak_rss_bytes"] == (3 << 20) + (2 << 20)  # one helper at a time beside their shell
    assert [(e["event"], e["status"]) for e in out.enriched_run] == [("STARTED", "RUNNING"), ("COMPLETED", "SUCCEEDED")]
    assert len(out.enriched_task) == 3 and len(out.enriched_process) == 7
    assert not tree.tasks and not tree.runs and list(tree.procs) == [(100, h.starts[100])]


def test_task_completes_only_when_all_descendants_exited() -> None:
    h = Host("h2")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "x.sh"], exe="/usr/bin/bash")
    task_root = h.spawn(root, ["bash", "-c", "sleep 100 & exit 3"], exe="/usr/bin/bash")
    orphan = h.spawn(task_root, ["sleep", "100"])
    h.exit(task_root, "bash", code=3)
    tree, out = run_events(h.events)
    assert not out.tasks
    h.events.clear()
    h.exit(orphan, "sleep", after=100 * S, cpu_ns=MS)
    h.exit(root, "bash")
    tree, out = run_events(h.events, tree, first_offset=100)
    (task,) = out.tasks.values()
    assert (task["status"], task["exit_code"], task["process_count"]) == ("FAILED", 3, 2)
    assert task["wall_ns"] >= 100 * S


def test_state_stays_bounded_over_many_processes() -> None:
    h = Host("h3")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "churn.sh"], exe="/usr/bin/bash")
    loop = h.fork_only(root)
    tree = HostTree("h3", TreeConfig(), RULES.identify)
    written: Counter[str] = Counter()
    sizes = []
    for batch in range(40):
        for _ in range(500):
            pid = h.spawn(loop, ["date", "+%s"])
            h.exit(pid, "date", after=MS, cpu_ns=MS, peak_rss=1 << 20)
        _, out = run_events(h.events, tree, first_offset=batch * 10_000)
        h.events.clear()
        for key, _ in tree.changes():
            written[key[:2]] += 1
        peak_rows = sum(concurrent_peak.size(t.segments) for t in tree.tasks.values())
        sizes.append((len(tree.procs), len(tree.tasks), peak_rows))
    # peak state: a few segments plus the reorder queue (events of the last 100 ms: 3 ms per helper here)
    assert max(s[0] for s in sizes) <= 4 and max(s[2] for s in sizes) <= 4 + 2 * 34
    assert written["p|"] < 100  # short-lived processes never reach the changelog
    h.exit(loop, "bash")
    h.exit(root, "bash")
    _, out = run_events(h.events, tree, first_offset=999_999)
    (task,) = out.tasks.values()
    # the loop shell itself lived 20 s: not short-lived
    assert (task["process_count"], task["short_lived_count"], task["peak_rss_bytes"]) == (20_001, 20_000, 1 << 20)


def _persist(store: dict[str, Any], writes: list[tuple[str, Any]]) -> None:
    """What the changelog keeps: a serialized snapshot of each value written."""
    for key, value in writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = json.loads(json.dumps(value))


@pytest.mark.parametrize("flushed", [0, 1, 3, 5, 8, 1000])
def test_replay_after_a_partial_changelog_flush_changes_nothing(flushed: int) -> None:
    events = small_pipeline().events
    cut = 9
    _, clean = run_events(events)
    # first pass: batch 1 fully persisted; batch 2's state writes only partly (crash), so it is replayed
    tree = HostTree("h1", TreeConfig(), RULES.identify)
    store: dict[str, Any] = {}
    _, out1 = run_events(events[:cut], tree)
    _persist(store, tree.changes())
    _, out2 = run_events(events[cut:], tree, first_offset=cut)
    _persist(store, tree.changes()[:flushed])
    restarted = HostTree("h1", TreeConfig(), RULES.identify)
    restarted.load(iter(list(store.items())))
    _, replay = run_events(events[cut:], restarted, first_offset=cut)
    final_tasks = {**out1.tasks, **out2.tasks, **replay.tasks}
    final_runs = {**out1.runs, **out2.runs, **replay.runs}
    assert final_tasks == clean.tasks
    assert final_runs == clean.runs
    assert not restarted.tasks and not restarted.runs


def test_run_without_root_exit_is_closed_by_the_inactivity_timeout() -> None:
    h = Host("h4")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "long.sh"], exe="/usr/bin/bash")
    child = h.spawn(root, ["sleep", "1"])
    h.exit(child, "sleep", after=S)
    tree, out = run_events(h.events, cfg=TreeConfig(run_timeout_ns=60 * S))
    assert not any(e["event"] == "COMPLETED" for e in out.enriched_run)
    h.events.clear()
    other = h.spawn(sh, ["ls"])  # later activity on the host advances event time
    h.t += 120 * S
    h.exit(other, "ls", after=0)
    h.exit(h.spawn(sh, ["true"]), "true", after=0)  # the host clock moves with two records, never one
    _, out = run_events(h.events, tree, first_offset=100)
    (run,) = (r for r in out.runs.values() if r["pipeline"] == "long.sh")
    assert run["status"] == "TIMED_OUT"
    assert [e["status"] for e in out.enriched_run if e["event"] == "COMPLETED"] == ["TIMED_OUT"]
    assert not tree.runs and all(p.pid != root for p in tree.procs.values())


def test_pid_reuse_and_exit_before_fork_seen() -> None:
    h = Host("h5")
    events = [exit_("h5", 4000, 10, 20, "ghost", code=0, cpu_ns=5), fork("h5", 4000, 30, 1, 0, "init")]
    tree, out = run_events([*events, exit_("h5", 4000, 30, 40, "new")])
    assert {(k[1], k[2]) for k in out.processes} == {(4000, 10), (4000, 30)}
    assert not tree.procs
    assert h.host == "h5"


def fixture(name: str) -> tuple[HostTree, Outputs]:
    return run_events(fixture_streams.load(name), cfg=TreeConfig(run_timeout_ns=2 * S))


def _process_sums(out: Outputs, run_id: str, task_id: str) -> tuple[int, int]:
    rows = [p for p in out.processes.values() if p["run_id"] == run_id and p["task_id"] == task_id]
    return len(rows), sum(p["cpu_ns"] for p in rows)


def test_recorded_nextflow_tree_tasks_named_from_wrappers() -> None:
    _, out = fixture("nextflow")
    (run,) = out.runs.values()
    assert (run["engine"], run["pipeline"], run["status"], run["task_count"]) == ("nextflow", "hello", "SUCCEEDED", 3)
    tasks = {t["task"]: t for t in out.tasks.values()}
    assert set(tasks) == {"INDEX (ref)", "GZIP (ref)", "STATS (ref)"}
    assert tasks["INDEX (ref)"]["task_id"] == "3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
    assert set(tasks["INDEX (ref)"]["tools"]) == {"bwa index", "samtools faidx"}
    for t in tasks.values():
        assert t["status"] == "SUCCEEDED" and t["cpu_ns"] > 0 and t["peak_rss_bytes"] > 0
        assert (t["process_count"], t["cpu_ns"]) == _process_sums(out, run["run_id"], t["task_id"])
    assert sum(t["cpu_ns"] for t in tasks.values()) < run["cpu_ns"]  # the driver's own helpers count in the run


def test_recorded_snakemake_run_tasks_named_by_rule() -> None:
    _, out = fixture("snakemake")
    runs = list(out.runs.values())
    assert len(runs) == 1 and runs[0]["engine"] == "snakemake" and runs[0]["pipeline"] == "smk"
    names = Counter(t["task"] for t in out.tasks.values())
    # a rule's jobs told apart by their wildcards: from `--target-jobs stats:s=...` (spawned jobs) and from
    # the job's file names ({input}/{output} in the command) matched against the rule's file patterns
    assert names == Counter({"reference": 1, "index": 1, "reads (s=s1)": 1, "reads (s=s2)": 1, "align (s=s1)": 1,
                             "align (s=s2)": 1, "stats (s=s1)": 1, "stats (s=s2)": 1, "summary": 1})
    align = [t for t in out.tasks.values() if t["task"].startswith("align (")]
    assert len(align) == 2
    assert all(set(t["tools"]) >= {"bwa mem", "samtools sort"} and t["tool"] == "bwa mem" for t in align)
    index = next(t for t in out.tasks.values() if t["task"] == "index")
    assert index["requested_cpus"] == 1.0 and index["task_id"].startswith("index#")
    for t in out.tasks.values():
        assert (t["process_count"], t["cpu_ns"]) == _process_sums(out, t["run_id"], t["task_id"])


def test_recorded_explicit_labels() -> None:
    _, out = fixture("explicit")
    (run,) = out.runs.values()
    assert (run["run_id"], run["pipeline"], run["status"]) == ("fixture-explicit-run", "explicit-demo", "SUCCEEDED")
    named = {t["task"]: t for t in out.tasks.values() if t["task"] in ("index", "faidx", "compress", "check")}
    assert set(named) == {"index", "faidx", "compress", "check"}
    assert named["compress"]["process_count"] == 4 and named["compress"]["tools"] == ["gzip"]
    assert run["task_count"] == len(out.tasks)


def test_the_envs_requested_packages_reach_identify_and_name_a_bare_interpreter() -> None:
    """ProcessExec.env_packages (the collector's conda-meta/history) names `python <tmp config>` in a hash env."""
    h = Host("envpk")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    env = "/galaxy/database/dependencies/_conda/envs/mulled-v1-3f9a1c0e2b7d4f6a8c0e/bin"
    named = h.spawn(sh, ["python", "/galaxy/jobs/000/1/configs/tmpe70dc9bf"], exe=f"{env}/python")
    h.events[-1][1]["env_packages"] = ["python", "zqx-ml"]
    bare = h.spawn(sh, ["python", "/galaxy/jobs/000/2/configs/tmp2ab193cb"], exe=f"{env}/python")  # not looked up
    _, out = run_events(list(h.events))
    rows = {pid: out.processes[("envpk", pid, h.starts[pid])] for pid in (named, bare)}
    assert (rows[named]["tool"], rows[named]["tool_method"], rows[named]["tool_package"]) == (
        "zqx-ml", "package", "zqx-ml")
    assert rows[bare]["tool"] is None
