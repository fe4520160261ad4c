"""Recorded collector streams (tests/correlator/fixtures/*.jsonl) as (record type, record) pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from execsight.collector.context_files import ContextReader, wanted

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# where @WORK@ points at replay: the Nextflow-shaped scenario's wrappers were copied into fixtures/nf
WORK_DIRS = {"nextflow": FIXTURES / "nf", "snakemake": FIXTURES / "smk-work-gone", "explicit": FIXTURES / "gone"}


def _local(value: Any, work: str, fixtures: str) -> Any:
    if isinstance(value, str):
        return value.replace("@FIXTURES@", fixtures).replace("@WORK@", work)
    if isinstance(value, list):
        return [_local(v, work, fixtures) for v in value]
    if isinstance(value, dict):
        return {k: _local(v, work, fixtures) for k, v in value.items()}
    return value


def load(name: str, host_id: str | None = None, context: str | None = "after_exec", work: str | None = None,
         fixtures: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The recorded stream; with context, the ProcessContext records the collector makes today are added
    (the recordings predate them), right after the exec or late (just before the exit)."""
    work = work or str(WORK_DIRS[name])
    fixtures = fixtures or str(FIXTURES)
    out: list[tuple[str, dict[str, Any]]] = []
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        rec = _local(json.loads(line), work, fixtures)
        kind = rec.pop("type")
        if host_id:
            rec["host_id"] = host_id
        out.append((kind, rec))
    return with_context(out, context) if context else out


def with_context(events: list[tuple[str, dict[str, Any]]], place: str = "after_exec",
                 reader: ContextReader | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The stream with the ProcessContext records the collector's context reader makes of the files the
    execs name (read here, by the test: the correlator reads none). place: right after the exec, or
    late: just before the process's exit (the collector's deferred read holds the exit back that long), or
    at the end (after the exit: a hold that timed out)."""
    reader = reader or ContextReader("fixture", roots=lambda pid, ppid: ["/"], files_per_s=1e9, burst=10**9)
    out: list[tuple[str, dict[str, Any]]] = []
    late: dict[tuple[int, int], dict[str, Any]] = {}
    for kind, rec in events:
        key = (rec.get("pid", 0), rec.get("start_time_ns", 0))
        if kind == "ProcessExit" and key in late and place != "end":
            out.append(("ProcessContext", late.pop(key)))
        out.append((kind, rec))
        want = wanted(rec) if kind == "ProcessExec" else None
        if want is None:
            continue
        ctx = reader.read_now(want)
        if ctx is None:
            continue
        ctx = {**ctx, "host_id": rec["host_id"], "time_ns": rec["time_ns"]}
        if place == "after_exec":
            out.append(("ProcessContext", ctx))
        else:
            late[key] = ctx
    out += [("ProcessContext", c) for c in late.values()]
    return out
