"""Recorded collector streams (tests/correlator/fixtures/*.jsonl) as (record type, record) pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# where @WORK@ points at replay: the Nextflow-shaped scenario's wrappers were copied into fixtures/nf
WORK_DIRS = {"nextflow": FIXTURES / "nf", "snakemake": FIXTURES / "smk-work-gone", "explicit": FIXTURES / "gone"}


def _local(value: Any, work: str) -> Any:
    if isinstance(value, str):
        return value.replace("@FIXTURES@", str(FIXTURES)).replace("@WORK@", work)
    if isinstance(value, list):
        return [_local(v, work) for v in value]
    if isinstance(value, dict):
        return {k: _local(v, work) for k, v in value.items()}
    return value


def load(name: str, host_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    work = str(WORK_DIRS[name])
    out: list[tuple[str, dict[str, Any]]] = []
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        rec = _local(json.loads(line), work)
        kind = rec.pop("type")
        if host_id:
            rec["host_id"] = host_id
        out.append((kind, rec))
    return out
