"""ProcessContext records in the correlator: validation at the boundary, and a Snakefile that survives a
restart in the state (the correlator cannot read it again)."""

from __future__ import annotations

from typing import Any

from execsight.correlator import validation
from execsight.correlator.batch import DictState
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host, S

SNAKEFILE = 'rule index:\n    shell: "bwa index {input} 2> /dev/null"\n'


def _context(h: Host, pid: int, path: str, text: str | None, kind: str = "snakefile") -> tuple[str, dict[str, Any]]:
    return "ProcessContext", {"host_id": h.host, "pid": pid, "start_time_ns": h.starts[pid], "time_ns": h.tick(),
                              "kind": kind, "path": path, "text": text, "truncated": False, "exit_code": None,
                              "error": None, "cached": False}


def test_validation_bounds_the_text_and_rejects_a_read_before_the_start() -> None:
    h = Host("v")
    pid = h.seed(10, ["snakemake"])
    _, rec = _context(h, pid, "/p/Snakefile", "x\x00" + "y" * 70000)
    rec["exit_code"] = 999
    checked = validation.validate("ProcessContext", rec, rec["time_ns"])
    assert checked.record is not None and len(checked.record["text"]) == validation.CONTEXT_TEXT_MAX_CHARS
    assert "\x00" not in checked.record["text"] and checked.record["exit_code"] is None and checked.fixes
    _, early = _context(h, pid, "/p/Snakefile", "rule a:\n")
    early["time_ns"] = early["start_time_ns"] - 5 * S
    assert validation.validate("ProcessContext", early, early["start_time_ns"]).record is None


def _apply(tree: HostTree, events: list[tuple[str, dict[str, Any]]], first: int) -> Outputs:
    out = Outputs()
    for i, (kind, rec) in enumerate(events, start=first):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return out


def test_a_snakefile_survives_a_restart_in_the_state() -> None:
    h = Host("smk-restart")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    drv = h.spawn(sh, ["/venv/bin/python", "/venv/bin/snakemake", "-s", "/p/Snakefile", "-c", "1"], cwd="/p")
    h.events.append(_context(h, drv, "/p/Snakefile", SNAKEFILE))
    rules = load_rules([]).identify
    tree = HostTree(h.host, TreeConfig(), rules)
    _apply(tree, h.events, 0)
    state = DictState()
    for key, value in tree.changes():
        state.write(0, f"{h.host}|{key}", value)
    assert any(k.startswith(f"{h.host}|s|") for k in state.data)
    first = len(h.events)
    job = h.spawn(drv, ["/usr/bin/bash", "-c", "set -euo pipefail;  bwa index ref.fa 2> /dev/null"], cwd="/p")
    h.exit(job, "bash", after=MS)
    restarted = HostTree(h.host, TreeConfig(), rules)
    restarted.load(state.host_items(h.host))
    out = _apply(restarted, h.events[first:], first)
    assert [t["task"] for t in out.tasks.values()] == ["index"]
    h.exit(drv, "python3", after=MS)
    _apply(restarted, h.events[-1:], len(h.events) - 1)
    assert any(v is None or v.get("gone") for k, v in restarted.changes() if k.startswith("s|"))
