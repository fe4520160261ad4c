"""Right-sizing as config (issue #13 point 4): a Nextflow `process { withName: ... }` scope and a Snakemake
profile, built from recorded real workloads named as the engines name their task instances."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from execsight.run_analysis.config_export import (
    definition_configs,
    nextflow_duration,
    nextflow_memory,
    render,
    render_nextflow,
    render_snakemake,
)
from execsight.run_analysis.rightsize import MIB, SampledCpu, recommend_time

from .tune_records import workload_task

GIB = 1 << 30


def nextflow_tasks() -> list[dict[str, Any]]:
    """Nextflow's local executor: tagged instances, no requests recorded."""
    out = []
    for run in ("r1", "r2"):
        for i, sample in enumerate(("s1", "s2")):
            shift = (0 if run == "r1" else 100) * 10**9 + i * 10**9
            out.append(workload_task("mem_small", task=f"ALIGN ({sample})", task_id=f"{run}-a{sample}", run_id=run,
                                     pipeline="nf", engine="nextflow", requested_cpus=None,
                                     requested_memory_bytes=None, shift_ns=shift))
            out.append(workload_task("cpu_heavy", task=f"SORT ({sample})", task_id=f"{run}-s{sample}", run_id=run,
                                     pipeline="nf", engine="nextflow", shift_ns=shift))
    return out


def snakemake_tasks() -> list[dict[str, Any]]:
    """Snakemake jobs with their declared threads and mem_mb."""
    cov = workload_task("mem_small", task="coverage_table", task_id="c1", run_id="r1", pipeline="demo",
                        engine="snakemake", requested_cpus=1.0, requested_memory_bytes=16_000_000_000,
                        peak_rss_bytes=28 * MIB)
    align = workload_task("cpu_heavy", task="align", task_id="al1", run_id="r1", pipeline="demo", engine="snakemake",
                          requested_cpus=2.0)
    odd = workload_task("cpu_heavy", task="script make plots.py", task_id="x1", run_id="r1", pipeline="demo",
                        engine="snakemake")
    return [cov, align, odd]


def parse_nextflow_config(text: str) -> dict[str, Any]:
    """A strict parser of the config subset the exporter writes: scopes, `withName: '...'` selectors and
    `key = value` assignments (numbers or single-quoted strings). Raises on anything else."""
    text = re.sub(r"//[^\n]*", "", text)
    tokens = re.findall(r"withName\s*:\s*'(?:[^'\\]|\\.)*'|'(?:[^'\\]|\\.)*'|[A-Za-z_][\w]*|\d+(?:\.\d+)?|[{}=]|\S",
                        text)
    pos = 0

    def block() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != "}":
            tok = tokens[pos]
            if tok.startswith("withName"):
                name = tok.split(":", 1)[1].strip()[1:-1]
                assert tokens[pos + 1] == "{", f"expected {{ after {tok}"
                pos += 2
                out[f"withName:{name}"] = block()
            elif re.fullmatch(r"[A-Za-z_]\w*", tok) and tokens[pos + 1] == "{":
                pos += 2
                out[tok] = block()
            elif re.fullmatch(r"[A-Za-z_]\w*", tok) and tokens[pos + 1] == "=":
                value = tokens[pos + 2]
                assert re.fullmatch(r"'[^']*'|\d+(\.\d+)?", value), f"bad value {value!r}"
                out[tok] = value[1:-1] if value.startswith("'") else float(value)
                pos += 3
            else:
                raise AssertionError(f"unexpected token {tok!r}")
        assert pos < len(tokens), "unbalanced braces"
        pos += 1
        return out

    tokens.append("}")
    top = block()
    assert pos == len(tokens), "text after the last scope"
    return top


NF_MEMORY = re.compile(r"^\d+ (MB|GB)$")
NF_DURATION = re.compile(r"^\d+(m|h)$")


def test_nextflow_scope_per_process_definition_with_cpus_memory_and_time() -> None:
    tasks = nextflow_tasks()
    configs = definition_configs(tasks)
    assert sorted(c.definition for c in configs) == ["ALIGN", "SORT"]
    align = next(c for c in configs if c.definition == "ALIGN")
    assert align.tasks == 4 and align.runs == 2 and not align.requests_known
    text = render_nextflow("nf", configs)
    parsed = parse_nextflow_config(text)
    scopes = parsed["process"]
    assert set(scopes) == {"withName:ALIGN", "withName:SORT"}
    a = scopes["withName:ALIGN"]
    peak = max(int(t["peak_rss_bytes"]) for t in tasks if t["task"].startswith("ALIGN"))
    assert NF_MEMORY.match(a["memory"]) and NF_DURATION.match(a["time"])
    mem_mib = int(a["memory"].split()[0]) * (1024 if a["memory"].endswith("GB") else 1)
    assert peak * 1.15 <= mem_mib * MIB <= peak * 1.15 + 64 * MIB
    assert a["cpus"] == 1.0 and a["time"] == "5m"  # ~1 s tasks: the 5-minute minimum
    assert "requests unknown" in text and "4 tasks in 2 runs" in text


def test_nextflow_cpus_follow_sampled_threads_but_never_exceed_the_host() -> None:
    tasks = nextflow_tasks()
    sorts = {(str(t["run_id"]), str(t["task_id"])): SampledCpu(3.6, 3.9, 4) for t in tasks if "SORT" in t["task"]}
    on_2 = {c.definition: c for c in definition_configs(tasks, sorts)}
    assert on_2["SORT"].cpus == 2 and on_2["SORT"].sizing.cpu.host_limited  # recorded on a 2-CPU host
    big = [dict(t, cpu_count=16) for t in tasks]
    on_16 = {c.definition: c for c in definition_configs(big, sorts)}
    assert on_16["SORT"].cpus == 4
    assert "capped at the 2 CPUs of its largest host" in render_nextflow("nf", list(on_2.values()))


def test_snakemake_profile_loads_with_snakemake_and_sets_threads_and_resources(tmp_path: Path) -> None:
    profiles = pytest.importorskip("snakemake.profiles")
    cli = pytest.importorskip("snakemake.cli")
    text = render_snakemake("demo", definition_configs(snakemake_tasks()))
    profile = tmp_path / "config.yaml"
    profile.write_text(text)
    with profile.open() as stream:
        parsed = profiles.ProfileConfigFileParser().parse(stream)
    resources = cli.parse_set_resources(parsed["set-resources"])
    threads = cli.parse_set_threads(parsed["set-threads"])
    assert set(resources) == {"coverage_table", "align"} and set(threads) == {"coverage_table", "align"}
    assert "script make plots.py" in text.split("set-threads")[0]  # named as left out, not emitted as a rule
    cov = dict(parsed_pairs(parsed["set-resources"], "coverage_table"))
    assert int(cov["mem_mb"]) <= 200 and int(cov["runtime"]) == 5  # 128 MiB, not the 16000 MB it requested
    assert "requested 1 CPU and 14.9 GiB" in text
    assert dict(p.split("=") for p in parsed["set-threads"])["align"] == "1"  # one thread ran, 2 requested


def parsed_pairs(entries: list[str], rule: str) -> list[tuple[str, str]]:
    out = []
    for e in entries:
        r, assign = e.split(":", 1)
        if r == rule:
            k, v = assign.split("=", 1)
            out.append((k, v))
    return out


def test_time_is_observed_wall_plus_margin_rounded_up() -> None:
    def t(seconds: float) -> dict[str, Any]:
        return {"wall_ns": int(seconds * 1e9)}

    assert recommend_time([t(2)]).recommended_s == 300
    assert recommend_time([t(50 * 60)]).recommended_s == 75 * 60
    assert recommend_time([t(2 * 3600)]).recommended_s == 3 * 3600
    assert nextflow_duration(75 * 60) == "75m" and nextflow_duration(3 * 3600) == "3h"
    assert nextflow_memory(3 * GIB) == "3 GB" and nextflow_memory(384 * MIB) == "384 MB"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render("cwl", "p", [])
    assert '"definition": "ALIGN"' in render("json", "nf", definition_configs(nextflow_tasks()))
