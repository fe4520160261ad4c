"""Right-sizing delivered as the config a user applies (pure functions).

``definition_configs`` groups a pipeline's observed task instances by process definition
(``ALIGN`` for ``ALIGN (s1)``, ``ALIGN (s2)``; the Snakemake rule) and right-sizes each over
all its instances (execsight.run_analysis.rightsize). The renderers print it as

- a Nextflow config scope: ``process { withName: 'ALIGN' { cpus = 2; memory = '3 GB'; time = '1h' } }``
  (one block per line pair, Nextflow's binary memory units, durations in m or h);
- a Snakemake profile (``config.yaml``): ``set-threads`` and ``set-resources`` with ``mem_mb``
  (decimal megabytes, as Snakemake reads them) and ``runtime`` (minutes).

Each definition carries a comment with its evidence. When no request was ever recorded (Nextflow's
local executor, a generic run) that is said, and the values are recommended from observed use.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.run_analysis.process_definition import process_definition
from execsight.run_analysis.rightsize import DEFAULT_POLICY, MIB, Policy, Rightsizing, SampledCpu, rightsize

GIB = 1 << 30
FORMATS = ("nextflow", "snakemake", "json")
_SNAKEMAKE_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DefinitionConfig:
    definition: str
    engine: str | None
    sizing: Rightsizing
    tasks: int
    runs: int
    requests_known: bool              # a CPU or memory request was recorded for some instance

    @property
    def cpus(self) -> int:
        return math.ceil(self.sizing.cpu.recommended_cpus - 1e-9)

    @property
    def memory_bytes(self) -> int:
        return self.sizing.memory.recommended_bytes

    @property
    def time_s(self) -> int:
        return self.sizing.time.recommended_s


def definition_configs(
    tasks: Sequence[Mapping[str, Any]],
    sampled: Mapping[tuple[str, str], SampledCpu] | None = None,
    p: Policy = DEFAULT_POLICY,
) -> list[DefinitionConfig]:
    """One right-sized config per process definition, in the order the definitions first ran."""
    sampled = sampled or {}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in sorted(tasks, key=lambda t: int(t.get("start_ns") or 0)):
        groups.setdefault(process_definition(t), []).append(t)
    out: list[DefinitionConfig] = []
    for definition, history in groups.items():
        cpu_samples = [s for t in history
                       if (s := sampled.get((str(t.get("run_id")), str(t.get("task_id"))))) is not None]
        out.append(DefinitionConfig(
            definition=definition,
            engine=history[-1].get("engine"),
            sizing=rightsize(history, cpu_samples, p),
            tasks=len(history),
            runs=len({t.get("run_id") for t in history}),
            requests_known=any(t.get("requested_cpus") or t.get("requested_memory_bytes") for t in history),
        ))
    return out


def nextflow_memory(nbytes: int) -> str:
    """Nextflow memory units are binary: '3 GB' is 3 GiB."""
    return f"{nbytes // GIB} GB" if nbytes % GIB == 0 else f"{math.ceil(nbytes / MIB)} MB"


def nextflow_duration(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _human_size(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.0f} MiB"


def evidence_line(c: DefinitionConfig) -> str:
    """What the recommendation is based on, in one line."""
    s = c.sizing
    runs = f"{c.tasks} task{'s' if c.tasks != 1 else ''} in {c.runs} run{'s' if c.runs != 1 else ''}"
    threads = (f"{s.cpu.peak_demand:.2f} threads running or runnable at peak" if s.cpu.basis == "sampled_peak"
               else f"{s.cpu.peak_demand:.2f} threads running or runnable on average")
    cap = f", capped at the {s.cpu.host_cpus} CPUs of its largest host" if s.cpu.host_limited else ""
    parts = [runs, f"peak RSS {_human_size(s.memory.observed_peak_bytes)}", threads + cap,
             f"longest {s.time.observed_max_ns / 1e9:.1f} s"]
    if s.memory.oom_count:
        parts.append(f"{s.memory.oom_count} OOM kill{'s' if s.memory.oom_count != 1 else ''}")
    req = [f"{s.cpu.requested_cpus:g} CPU{'s' if s.cpu.requested_cpus != 1 else ''}" if s.cpu.requested_cpus else "",
           _human_size(s.memory.requested_bytes) if s.memory.requested_bytes else ""]
    requested = " and ".join(r for r in req if r)
    parts.append(f"requested {requested}" if c.requests_known and requested else
                 "requests unknown (local executor or not recorded): recommended from observed use")
    if s.confidence_label == "low":
        parts.append("low confidence: few runs")
    return "; ".join(parts)


def _header(pipeline: str, configs: Sequence[DefinitionConfig], comment: str) -> list[str]:
    return [f"{comment} execsight tune config for pipeline {pipeline}: {len(configs)} process definitions.",
            f"{comment} memory = peak RSS + 15%, cpus = threads that ran at once (never above the largest host),",
            f"{comment} time = longest wall time + 50% (at least +1 min), rounded up."]


def render_nextflow(pipeline: str, configs: Sequence[DefinitionConfig]) -> str:
    lines = [*_header(pipeline, configs, "//"), "process {"]
    for c in configs:
        name = c.definition.replace("\\", "\\\\").replace("'", "\\'")
        lines.append(f"    // {evidence_line(c)}")
        lines.append(f"    withName: '{name}' {{")
        lines.append(f"        cpus = {c.cpus}")
        lines.append(f"        memory = '{nextflow_memory(c.memory_bytes)}'")
        lines.append(f"        time = '{nextflow_duration(c.time_s)}'")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def snakemake_mem_mb(nbytes: int) -> int:
    """Snakemake's mem_mb is decimal megabytes."""
    return math.ceil(nbytes / 1e6)


def render_snakemake(pipeline: str, configs: Sequence[DefinitionConfig]) -> str:
    """A Snakemake profile (config.yaml) fragment: set-threads and set-resources per rule."""
    usable = [c for c in configs if _SNAKEMAKE_RULE.match(c.definition)]
    skipped = [c.definition for c in configs if not _SNAKEMAKE_RULE.match(c.definition)]
    lines = _header(pipeline, usable, "#")
    if skipped:
        lines.append("# not rule names, left out: " + ", ".join(json.dumps(s) for s in skipped))
    if not usable:
        return "\n".join(lines) + "\n{}\n"
    lines.append("set-threads:")
    lines += [f"  {c.definition}: {c.cpus}" for c in usable]
    lines.append("set-resources:")
    for c in usable:
        lines.append(f"  # {evidence_line(c)}")
        lines.append(f"  {c.definition}:")
        lines.append(f"    mem_mb: {snakemake_mem_mb(c.memory_bytes)}")
        lines.append(f"    runtime: {max(1, math.ceil(c.time_s / 60))}")
    return "\n".join(lines) + "\n"


def render_json(pipeline: str, configs: Sequence[DefinitionConfig]) -> str:
    return json.dumps({"pipeline": pipeline, "definitions": [
        {"definition": c.definition, "engine": c.engine, "tasks": c.tasks, "runs": c.runs, "cpus": c.cpus,
         "memory_bytes": c.memory_bytes, "time_s": c.time_s, "requests_known": c.requests_known,
         "confidence": c.sizing.confidence, "evidence": evidence_line(c)} for c in configs]}, indent=2) + "\n"


def render(fmt: str, pipeline: str, configs: Sequence[DefinitionConfig]) -> str:
    if fmt == "nextflow":
        return render_nextflow(pipeline, configs)
    if fmt == "snakemake":
        return render_snakemake(pipeline, configs)
    if fmt == "json":
        return render_json(pipeline, configs)
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
