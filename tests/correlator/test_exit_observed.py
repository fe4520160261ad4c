"""A task or run whose root ended while the collector was down is not a success nobody saw (#19.4):
it stays SUCCEEDED (no failure was seen, and old readers know no other symbol) with exit_observed
false, on its enriched record, its row and across a state reload (pure)."""

from __future__ import annotations

import json

from execsight.correlator.process_tree import HostTree, TreeConfig
from execsight.schemas.codec import default_codec

from .correlator_events import MS, Host, S
from .test_collector_gaps import H, pipeline_cut_by_a_restart, unobserved
from .test_process_tree import RULES, run_events


def test_a_root_that_exited_unobserved_is_flagged_on_its_task_and_run() -> None:
    h, _root, bwa, gz, _ = pipeline_cut_by_a_restart()
    _, out = run_events(h.events)
    (run,) = out.runs.values()
    assert (run["status"], run["exit_code"], run["exit_observed"]) == ("SUCCEEDED", None, False)
    completed = [e for e in out.enriched_run if e["event"] == "COMPLETED"]
    assert [e["exit_observed"] for e in completed] == [False]
    tasks = {t["root_pid"]: t for t in out.tasks.values()}
    assert (tasks[bwa]["status"], tasks[bwa]["exit_observed"]) == ("SUCCEEDED", False)
    assert tasks[gz]["exit_observed"] is True  # its exit was seen before the crash
    for name, rec in (("EnrichedRun", completed[0]), ("EnrichedTask", tasks[bwa])):
        assert default_codec().decode(default_codec().encode(name, rec))[1]["exit_observed"] is False


def test_a_run_whose_exits_were_seen_is_observed() -> None:
    h = Host(H)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "ok.sh"], exe="/usr/bin/bash")
    h.exit(h.spawn(root, ["bwa", "mem"]), "bwa", cpu_ns=MS)
    h.exit(root, "bash")
    _, out = run_events(h.events)
    assert [r["exit_observed"] for r in out.runs.values()] == [True]
    assert [t["exit_observed"] for t in out.tasks.values()] == [True]


def test_the_flag_survives_a_state_reload_until_the_task_completes() -> None:
    """The task root ends unobserved in one batch, its last process exits in a later one, after a restart."""
    h = Host(H)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "p.sh"], exe="/usr/bin/bash")
    task_root = h.spawn(root, ["bash", "-c", "sleep 100 & exit"], exe="/usr/bin/bash")
    orphan = h.spawn(task_root, ["sleep", "100"])
    t = h.tick(S)
    tree, first = run_events([*h.events, unobserved(h, task_root, t, t + S)])
    assert not first.tasks  # its orphan still runs
    store = {k: json.loads(json.dumps(v)) for k, v in tree.changes() if v is not None}
    restarted = HostTree(H, TreeConfig(), RULES.identify)
    restarted.load(iter(store.items()))
    h.events.clear()
    h.exit(orphan, "sleep", after=100 * S)
    h.exit(root, "bash")
    _, out = run_events(h.events, restarted, first_offset=100)
    (task,) = out.tasks.values()
    assert (task["status"], task["exit_code"], task["exit_observed"]) == ("SUCCEEDED", None, False)
    assert [r["exit_observed"] for r in out.runs.values()] == [True]  # the run's own root exit was seen
