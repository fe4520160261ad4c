"""CPU advice, per-definition findings and the noise floor (pure tune logic, issue #13 points 3, 4 and 6).

Tasks are the recorded real workloads (tests/tune/fixtures/workloads.json), and the measurements of
two demo tasks taken on the shared 2-CPU build host (taskstats totals of the Snakemake demo, copied
from its tasks table).
"""

from __future__ import annotations

from typing import Any

import pytest

from execsight.findings import finding_id
from execsight.pricing import HostRate
from execsight.run_analysis.breakdown import CONTENDED, sampled_cpu
from execsight.run_analysis.process_definition import definition_of, instance_tag, process_definition
from execsight.run_analysis.regression import run_metrics
from execsight.run_analysis.rightsize import MIB
from execsight.settings import SettingsError, load_settings
from execsight.tune.finding_rules import TIME_KINDS, FindingFloor, severity_for_money
from execsight.tune.task_analysis import analyze_task

from .tune_records import workload_task

RATE = HostRate(0.10, "onprem")
NO_FLOOR = FindingFloor(0.0, 0.0)
GIB = 1 << 30


def task(name: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("task_id", f"t-{name}")
    kw.setdefault("run_id", "r1")
    kw.setdefault("pipeline", "demo")
    return workload_task(name, **kw)


# Measured by execsight on the demo (scale default) on a loaded 2-CPU host: `bwa index` is single-threaded
# and waited 16 s of its 18 s for a core other work held.
BWA_INDEX = {"task": "bwa_index", "engine": "snakemake", "wall_ns": 18_350_177_855, "cpu_ns": 2_083_221_186,
             "runq_ns": 16_168_185_992, "process_count": 2, "requested_cpus": 1.0, "peak_rss_bytes": 45 * MIB,
             "cpu_count": 2, "mem_total_bytes": 24105 * MIB, "blkio_ns": 0, "short_lived_count": 0,
             "short_lived_wall_ns": 0}


def samples(per_interval: list[tuple[float, float]], threads: int = 1) -> list[dict[str, Any]]:
    """One process sampled each second: (cores on CPU, cores' worth of run-queue wait) per interval."""
    return [{"time": i, "interval_ns": 10**9, "cpu_ns": int(c * 1e9), "runq_ns": int(q * 1e9), "blocked_ns": 0,
             "threads": threads} for i, (c, q) in enumerate(per_interval)]


def by_kind(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["kind"]: f for f in findings}


def advice_text(findings: list[dict[str, Any]]) -> str:
    return " ".join(f"{f['summary']} {f['recommendation']}" for f in findings)


# --- point 3: CPU advice ------------------------------------------------------------------------

def test_single_threaded_tool_saturating_one_core_is_not_told_to_take_two() -> None:
    # the case: 0.99 cores in use at peak vs 1 requested
    t = task("cpu_heavy", requested_cpus=1.0, wall_ns=60 * 10**9, cpu_ns=59_400_000_000, runq_ns=100_000_000)
    rows = samples([(0.99, 0.0)] * 60)
    a = analyze_task(t, [], RATE, 2, 8 * GIB, samples={("r1", "t-cpu_heavy"): rows}, now_ns=1)
    assert a.rightsizing.cpu.recommended_cpus == 1.0 and a.rightsizing.cpu.single_threaded
    f = by_kind(a.findings)
    assert "rightsize_cpu" not in f
    assert "compute_bound" in f
    assert "single-threaded" in f["compute_bound"]["recommendation"]
    assert "more CPUs will not help" in f["compute_bound"]["recommendation"]


def test_single_threaded_task_on_a_busy_host_is_told_to_run_fewer_at_once_not_to_take_more() -> None:
    t = task("cpu_heavy", **BWA_INDEX)
    a = analyze_task(t, [], RATE, 2, 24105 * MIB, now_ns=1)
    f = by_kind(a.findings)
    assert a.classification.label == CONTENDED and set(f) & set(TIME_KINDS) == {CONTENDED}
    rec = f[CONTENDED]["recommendation"]
    assert "single-threaded, so more CPUs will not help" in rec and "Run fewer tasks at once" in rec
    assert "request more" not in rec.lower() and "rightsize_cpu" not in f
    assert "faster CPU" not in advice_text(a.findings)  # the "compute-bound: faster CPU" advice is not also given


def test_never_more_cpus_than_the_largest_host_offers_and_it_says_so() -> None:
    # two processes of a pipe busy at once (1.7 cores) on a 2-CPU host: 2, not ceil(1.7 x 1.2) = 3
    t = task("cpu_heavy", requested_cpus=1.0, wall_ns=30 * 10**9, cpu_ns=51 * 10**9, runq_ns=0, cpu_count=2)
    a = analyze_task(t, [], RATE, 2, 8 * GIB, samples={("r1", "t-cpu_heavy"): samples([(1.7, 0.0)] * 30, 2)},
                     now_ns=1, floor=NO_FLOOR)
    assert a.rightsizing.cpu.recommended_cpus == 2.0
    # eight threads runnable at once on the same host: still at most 2, and the finding names the host limit
    t8 = dict(t, cpu_ns=60 * 10**9, runq_ns=180 * 10**9)
    a8 = analyze_task(t8, [], RATE, 2, 8 * GIB, samples={("r1", "t-cpu_heavy"): samples([(2.0, 6.0)] * 30, 8)},
                      now_ns=1, floor=NO_FLOOR)
    c = a8.rightsizing.cpu
    assert c.wanted_cpus == 8.0 and c.recommended_cpus == 2.0 and c.host_limited
    f = by_kind(a8.findings)
    assert f["rightsize_cpu"]["recommended"]["cpus"] == 2.0
    assert "largest host it ran on has 2 CPUs" in f["rightsize_cpu"]["recommendation"]
    assert "cap" in f[CONTENDED]["recommendation"] and "2 CPUs of the largest host" in f[CONTENDED]["recommendation"]


def test_more_cpus_only_when_its_own_threads_outnumbered_its_cores() -> None:
    # bwa mem -t 4 under a 1-thread request on a 4-CPU host: four threads running or runnable at once
    t = task("cpu_heavy", requested_cpus=1.0, wall_ns=40 * 10**9, cpu_ns=80 * 10**9, runq_ns=75 * 10**9, cpu_count=4)
    a = analyze_task(t, [], RATE, 4, 16 * GIB, samples={("r1", "t-cpu_heavy"): samples([(2.0, 1.9)] * 40, 4)},
                     now_ns=1)
    f = by_kind(a.findings)
    assert f["rightsize_cpu"]["recommended"]["cpus"] == 4.0 and "needs more CPUs" in f["rightsize_cpu"]["summary"]
    assert "request 4 CPUs" in f[CONTENDED]["recommendation"]
    assert "will not help" not in advice_text(a.findings)


def test_one_coherent_verdict_per_task() -> None:
    cases = [task(n) for n in ("io_fsync", "cpu_heavy", "helper_churn", "mem_small", "oom_killed")]
    cases += [task("cpu_heavy", **BWA_INDEX), task("cpu_heavy", requested_cpus=8.0),
              task("cpu_heavy", requested_cpus=1.0, runq_ns=task("cpu_heavy")["cpu_ns"] * 3, process_count=4),
              # I/O-bound, and four threads at once on one requested CPU: no "more CPUs will not help" then
              task("io_fsync", requested_cpus=1.0, cpu_count=8, runq_ns=task("io_fsync")["wall_ns"] * 3,
                   blkio_ns=task("io_fsync")["wall_ns"] * 4)]
    for t in cases:
        a = analyze_task(t, [], RATE, 2, 8 * GIB, now_ns=1, floor=NO_FLOOR)
        kinds = [f["kind"] for f in a.findings]
        assert sum(k in TIME_KINDS for k in kinds) <= 1, kinds
        text = advice_text(a.findings)
        raise_cpu = any(f["kind"] == "rightsize_cpu" and f["recommended"]["cpus"] > float(t.get("requested_cpus") or 0)
                        for f in a.findings if t.get("requested_cpus"))
        assert not (raise_cpu and "will not help" in text), text
        assert not ("run fewer tasks at once" in text.lower() and "faster CPU" in text), text
    # the last case does hold both: it is I/O-bound and its threads outnumbered its CPU
    assert {"io_bound", "rightsize_cpu"} <= {f["kind"] for f in a.findings}


def test_severity_follows_money_for_a_15_gib_over_request() -> None:
    # the demo's coverage_table: 16000 MB requested (15,259 MiB), 28 MiB used, a few seconds per run
    t = task("mem_small", task="coverage_table", engine="snakemake", requested_memory_bytes=16_000_000_000,
             peak_rss_bytes=28 * MIB, requested_cpus=1.0, wall_ns=3 * 10**9, cpu_count=2,
             mem_total_bytes=24105 * MIB)
    a = analyze_task(t, [], RATE, 2, 24105 * MIB, now_ns=1)  # default floor: 3 s and ~$0.0001 of task time
    mem = by_kind(a.findings)["rightsize_memory"]
    assert "15259 MiB requested" in mem["summary"]
    # it holds ~62% of a $0.10/h host whenever it runs: $0.06/h is MEDIUM, not INFO
    assert mem["severity"] == "MEDIUM"
    assert severity_for_money(0.0001, 0.001) == "INFO" and severity_for_money(2.0, 0.0) == "HIGH"


# --- point 6: the noise floor -------------------------------------------------------------------

def test_findings_below_the_floor_are_not_raised_but_oom_kills_are() -> None:
    churn = task("helper_churn")  # 0.85 s: helper churn holds, but it is too small to matter
    assert "helper_churn" in by_kind(analyze_task(churn, [], RATE, 2, 8 * GIB, now_ns=1, floor=NO_FLOOR).findings)
    quiet = analyze_task(churn, [], RATE, 2, 8 * GIB, now_ns=1)
    assert quiet.below_floor and quiet.findings == []
    oom = analyze_task(task("oom_killed"), [], RATE, 2, 8 * GIB, now_ns=1)
    assert {"memory_bound", "rightsize_memory"} <= set(by_kind(oom.findings))
    # long or costly enough is above it: 10 cheap minutes, or 3 s on a $1,000/h host
    long_cheap = task("cpu_heavy", wall_ns=600 * 10**9, cpu_ns=590 * 10**9, runq_ns=0)
    assert analyze_task(long_cheap, [], HostRate(0.001, "onprem"), 2, 8 * GIB, now_ns=1).findings
    short_dear = task("cpu_heavy", wall_ns=3 * 10**9, cpu_ns=3 * 10**9, runq_ns=0)
    assert not analyze_task(short_dear, [], RATE, 2, 8 * GIB, now_ns=1).findings
    assert analyze_task(short_dear, [], HostRate(1000.0, "onprem"), 2, 8 * GIB, now_ns=1).findings
    # configurable: a higher floor silences the 10-minute task too
    assert not analyze_task(long_cheap, [], HostRate(0.001, "onprem"), 2, 8 * GIB, now_ns=1,
                            floor=FindingFloor(900.0, 1.0)).findings


# --- point 4: per process definition ------------------------------------------------------------

def test_process_definition_strips_the_instance_tag_of_engines_that_add_one() -> None:
    assert definition_of("ALIGN (s1)", "nextflow") == "ALIGN"
    assert definition_of("NFCORE:RNASEQ:ALIGN (sample 1)", "nextflow") == "NFCORE:RNASEQ:ALIGN"
    assert definition_of("align (sample=s1)", "snakemake") == "align"
    assert definition_of("MAKE_REFERENCE", "nextflow") == "MAKE_REFERENCE"
    assert definition_of("sort (big)", "explicit") == "sort (big)"  # a label the user chose is kept as it is
    assert instance_tag({"task": "ALIGN (s2)", "engine": "nextflow"}) == "s2"
    assert process_definition({"task": "ALIGN (s2)", "engine": "nextflow"}) == "ALIGN"


def test_tagged_instances_share_one_set_of_findings_sized_over_all_of_them() -> None:
    base: dict[str, Any] = {"engine": "nextflow", "requested_memory_bytes": 8 * GIB, "requested_cpus": 4.0}
    s1 = task("mem_small", task="ALIGN (s1)", task_id="a1", **base)
    s2 = task("mem_small", task="ALIGN (s2)", task_id="a2", peak_rss_bytes=600 * MIB,
              start_ns=s1["end_ns"], end_ns=s1["end_ns"] + s1["wall_ns"], **base)
    a1 = analyze_task(s1, [], RATE, 4, 16 * GIB, now_ns=1, floor=NO_FLOOR)
    a2 = analyze_task(s2, [s1], RATE, 4, 16 * GIB, now_ns=2, floor=NO_FLOOR)
    assert a2.definition == "ALIGN" and a2.rightsizing.memory.runs == 2
    assert a2.rightsizing.memory.observed_peak_bytes == 600 * MIB  # the larger instance sets the size
    ids1 = {f["kind"]: f["finding_id"] for f in a1.findings}
    ids2 = {f["kind"]: f["finding_id"] for f in a2.findings}
    assert ids2["rightsize_memory"] == ids1["rightsize_memory"] == finding_id(
        "rightsize_memory", {"pipeline": "demo", "task": "ALIGN"})
    mem = by_kind(a2.findings)["rightsize_memory"]
    assert mem["task"] == "ALIGN" and "ALIGN (s1)" in mem["summary"] and "ALIGN (s2)" in mem["summary"]
    assert "2 tasks" in mem["summary"]
    # the wall time the floor and the time classes judge is both instances' together
    assert a2.breakdown.wall_ns == s1["wall_ns"] + s2["wall_ns"]


def test_regressions_compare_definitions_not_tagged_instances() -> None:
    tasks = [{"task": "ALIGN (s1)", "engine": "nextflow", "wall_ns": 10, "cost_usd": 0.1, "peak_rss_bytes": 5},
             {"task": "ALIGN (s2)", "engine": "nextflow", "wall_ns": 20, "cost_usd": 0.2, "peak_rss_bytes": 7},
             {"task": "INDEX", "engine": "nextflow", "wall_ns": 3, "cost_usd": 0.0, "peak_rss_bytes": 1}]
    m = run_metrics(tasks)
    assert set(m) == {"ALIGN", "INDEX"} and m["ALIGN"]["wall_ns"] == 30 and m["ALIGN"]["peak_rss_bytes"] == 7


def test_sampled_cpu_sums_processes_per_sample_time() -> None:
    rows = samples([(0.9, 0.1), (1.0, 0.0), (0.2, 0.0)]) + samples([(0.8, 0.6), (0.0, 0.0), (0.0, 0.0)], threads=3)
    s = sampled_cpu(rows)
    assert s is not None
    assert abs(s.peak_cores - 1.7) < 1e-9 and abs(s.peak_demand - 2.4) < 1e-9 and s.max_threads == 4


def test_floor_settings_are_typed_and_validated() -> None:
    s = load_settings({"EXECSIGHT_HOST_ID": "h"})
    assert (s.findings_min_wall_s, s.findings_min_cost_usd) == (5.0, 0.001)
    assert load_settings({"EXECSIGHT_HOST_ID": "h", "EXECSIGHT_FINDINGS_MIN_WALL_S": "0"}).findings_min_wall_s == 0.0
    for bad in ("-1", "nan", "inf", "five"):
        with pytest.raises(SettingsError, match="EXECSIGHT_FINDINGS_MIN_WALL_S"):
            load_settings({"EXECSIGHT_HOST_ID": "h", "EXECSIGHT_FINDINGS_MIN_WALL_S": bad})
    with pytest.raises(SettingsError, match="EXECSIGHT_FINDINGS_MIN_COST_USD"):
        load_settings({"EXECSIGHT_HOST_ID": "h", "EXECSIGHT_FINDINGS_MIN_COST_USD": "-0.5"})
