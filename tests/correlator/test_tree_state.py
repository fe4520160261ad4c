"""The typed state's changelog boundary: every type round-trips, and state written before the typed
state (values without the keys added since) still loads."""

from __future__ import annotations

import json

from execsight.correlator.changelog import ChangeLog
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_tree import HostTree, TreeConfig
from execsight.correlator.tool_rules import load_rules
from execsight.correlator.tree_state import EventGate, HostActivity, HostInfo, Proc, Run, Task, decode

from .correlator_events import Host


def test_every_state_value_of_a_pipeline_round_trips_through_json() -> None:
    h = Host("rt")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
    h.spawn(root, ["bwa", "mem", "ref.fa"])  # left running: its process, task and run stay in the state
    tree = HostTree("rt", TreeConfig(), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    writes = tree.changes()
    kinds = {key[:2] for key, _ in writes}
    assert {"p|", "t|", "r|", "ha"} <= kinds
    for key, value in writes:
        assert value is not None
        state = decode(key, json.loads(json.dumps(value)))
        assert state is not None and state.key == key
        assert state.to_json() == value


def test_values_in_the_earlier_format_load_with_defaults() -> None:
    # a process as the dict-based tree wrote it: no sample totals yet, no generic-name flag, offset mark oP
    old = {"pid": 7, "st": 70, "pp": 1, "pst": 10, "comm": "bash", "exe": "/bin/bash", "argv": ["bash", "x.sh"],
           "run": "run-1", "pl": "x.sh", "eng": "generic", "tid": None, "task": None, "role": "generic_root",
           "rr": True, "tr": False, "rqc": None, "rqm": None, "tool": None, "cid": None, "crt": None, "cg": None,
           "peak": 5, "scpu": 3, "oP": 41, "oom": False}
    p = decode("p|7|70", old)
    assert isinstance(p, Proc)
    assert (p.run_id, p.run_root, p.sample_cpu, p.sample_tx, p.marks, p.oom) == ("run-1", True, 3, 0, {"P": 41}, False)
    assert not p.fresh("P", 41) and p.fresh("P", 42)
    t = decode("t|run-1\x00a", {"run": "run-1", "tid": "a", "task": "bwa", "rpid": 8, "rst": 80, "start": 80,
                                 "end": 80, "seg": [[80, 0, 1]], "tools": {"bwa": 3}, "n": 1, "live": 1})
    assert isinstance(t, Task) and (t.name, t.segments, t.tools, t.peak) == ("bwa", [[80, 0, 1]], {"bwa": 3}, 0)
    r = decode("r|run-1", {"run": "run-1", "rpid": 7, "rst": 70, "start": 70, "seg": [], "last": 99})
    assert isinstance(r, Run) and (r.status, r.last, r.done) == ("RUNNING", 99, False)
    assert isinstance(decode("hi", {"k": "hi", "cpu_count": 4, "oH": 3}), HostInfo)
    assert isinstance(decode("ha", {"k": "ha", "ws": 60, "cpu": 1, "n": 2, "runs": []}), HostActivity)
    assert decode("zz", {}) is None


def test_a_value_created_and_removed_in_one_batch_never_reaches_the_changelog() -> None:
    log = ChangeLog()
    gate = EventGate()
    kept, gone = Proc(pid=1, start=1), Proc(pid=2, start=2)
    gate.begin("P", 5)
    assert gate.ok(kept) and gate.ok(kept)  # asked twice in one event: the same answer
    log.new(kept)
    log.new(gone)
    log.remove(gone)
    assert [k for k, _ in log.changes()] == ["p|1|1"]
    log.remove(kept)
    first = log.changes()
    assert first[0][0] == "p|1|1" and first[0][1] is not None and first[0][1]["gone"] is True
    assert log.changes() == [("p|1|1", None)]  # the tombstone, one batch later
