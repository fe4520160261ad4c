"""Pure tune logic on measurements recorded from real workloads (tests/tune/fixtures/workloads.json)."""

from __future__ import annotations

from typing import Any

import pytest

from execsight.findings import finding_id
from execsight.pricing import HostRate
from execsight.run_analysis.breakdown import (
    COMPUTE_BOUND,
    HELPER_CHURN,
    IDLE_STALLED,
    IO_BOUND,
    MEMORY_BOUND,
    classify,
    idle_from_samples,
    peak_concurrency,
    sum_breakdowns,
    time_breakdown,
)
from execsight.run_analysis.cost import rollup, task_cost
from execsight.run_analysis.regression import baseline, detect_regression
from execsight.run_analysis.rightsize import MIB, SampledCpu, confidence_for, recommend_cpu, recommend_memory, rightsize
from execsight.schemas.codec import default_codec
from execsight.tune.finding_rules import HostShare, classification_findings, regression_finding, rightsize_findings
from execsight.tune.task_analysis import analyze_task

from .tune_records import pipeline_runs, recorded, workload_task

RATE = HostRate(0.192, "aws:us-east-1")


def task(name: str, **kw: Any) -> dict[str, Any]:
    return workload_task(name, task_id=f"t-{name}", run_id="r1", pipeline="p", **kw)


# --- breakdown and classification -----------------------------------------------------------------

def test_recorded_workloads_are_real_measurements() -> None:
    doc = recorded()
    w = doc["workloads"]
    assert doc["delayacct_before"] in {"0", "1"} and doc["kernel"]
    # every task has per-process rows whose sums are the task's totals
    for item in w.values():
        t, procs = item["task"], item["processes"]
        assert t["process_count"] == len(procs)
        assert t["cpu_ns"] == sum(p["cpu_ns"] for p in procs)
    assert w["helper_churn"]["task"]["process_count"] > 3000
    assert w["oom_killed"]["task"]["signal"] == 9 and w["oom_killed"]["memcg_oom_kills"] >= 1


def test_slices_add_up_to_wall_time() -> None:
    for name in recorded()["workloads"]:
        b = time_breakdown(task(name))
        assert b.on_cpu_ns + b.runq_ns + b.blkio_ns + b.other_off_cpu_ns + b.idle_ns == b.wall_ns
        assert abs(sum(b.shares().values()) - 1.0) < 1e-9


def test_fsync_writer_is_io_bound_although_a_dashboard_sees_it_busy() -> None:
    t = task("io_fsync")
    b = time_breakdown(t)
    c = classify(t, b)
    assert c.label == IO_BOUND
    # running or blocked in D state the whole time: a "busy" dashboard shows ~100%
    assert min(1.0, b.lanes) > 0.95
    # but less than 60% of it is on a CPU, and at least 30% is waiting for the disk
    assert b.shares()["on_cpu"] < 0.6
    assert b.shares()["blkio_wait"] >= 0.3
    assert t["write_bytes"] >= 1 << 30


def test_cpu_loop_is_compute_bound() -> None:
    t = task("cpu_heavy")
    b = time_breakdown(t)
    assert classify(t, b).label == COMPUTE_BOUND
    assert b.shares()["on_cpu"] > 0.8 and b.blkio_ns < 0.01 * b.wall_ns


def test_thousands_of_tiny_helpers_are_helper_churn() -> None:
    t = task("helper_churn")
    b = time_breakdown(t)
    c = classify(t, b)
    assert c.label == HELPER_CHURN
    assert b.helper_count >= 3000 and b.helper_share > 0.3
    # the same shell with its helpers' time removed would not be flagged
    quiet = dict(t, short_lived_count=0, short_lived_wall_ns=0)
    assert HELPER_CHURN not in classify(quiet, time_breakdown(quiet)).labels


def test_a_sleeping_task_is_idle_stalled_and_oom_is_memory_bound() -> None:
    t = task("mem_small")
    assert classify(t, time_breakdown(t)).label == IDLE_STALLED
    o = task("oom_killed")
    c = classify(o, time_breakdown(o))
    assert c.label == MEMORY_BOUND and c.memory_detail == "oom"


def test_near_limit_and_reclaim_are_memory_bound() -> None:
    t = task("cpu_heavy", requested_memory_bytes=15 << 20)  # its 14 MiB peak is at 94% of this limit
    assert classify(t, time_breakdown(t)).memory_detail == "near_limit"
    r = task("cpu_heavy", reclaim_ns=int(task("cpu_heavy")["wall_ns"]) // 5)
    assert classify(r, time_breakdown(r)).memory_detail == "reclaim"


def test_impossible_kernel_counter_is_dropped() -> None:
    # recorded for real: taskstats reported a block-I/O delay equal to the time since boot
    runs = recorded()["pipeline_runs"]
    bogus = [t["task"] for r in runs for t in r["tasks"] if t["task"]["blkio_ns"] > 100 * t["task"]["wall_ns"]]
    assert bogus, "the fixture keeps its one real impossible counter"
    b = time_breakdown(bogus[0])
    assert b.invalid == ("blkio_ns",) and b.blkio_ns == 0
    assert classify(bogus[0], b).label == COMPUTE_BOUND


def test_idle_and_peak_concurrency_from_samples() -> None:
    s = [
        {"time": 1, "interval_ns": 1_000_000_000, "cpu_ns": 900_000_000, "runq_ns": 0, "blocked_ns": 0},
        {"time": 1, "interval_ns": 1_000_000_000, "cpu_ns": 800_000_000, "runq_ns": 0, "blocked_ns": 0},
        {"time": 2, "interval_ns": 1_000_000_000, "cpu_ns": 1_000, "runq_ns": 0, "blocked_ns": 0},
        {"time": 3, "interval_ns": 1_000_000_000, "cpu_ns": 0, "runq_ns": 0, "blocked_ns": 500_000_000},
    ]
    assert idle_from_samples(s) == 1_000_000_000
    assert peak_concurrency(s) == pytest.approx(1.7)
    t = task("mem_small")
    b = time_breakdown(t, idle_ns=10**18)
    assert b.idle_ns == b.wall_ns - b.on_cpu_ns - b.runq_ns - b.blkio_ns and b.other_off_cpu_ns == 0


def test_tool_breakdown_sums_tasks() -> None:
    parts = [time_breakdown(task(n)) for n in ("io_fsync", "cpu_heavy")]
    total = sum_breakdowns(parts)
    assert total.wall_ns == sum(p.wall_ns for p in parts)
    assert total.blkio_ns == sum(p.blkio_ns for p in parts)


# --- right-sizing ---------------------------------------------------------------------------------

def test_over_provisioned_memory_recommendation_is_within_margin_of_peak() -> None:
    t = task("mem_small")  # 8 GiB requested, ~310 MiB used
    m = recommend_memory([t])
    peak = int(t["peak_rss_bytes"])
    assert m.observed_peak_bytes == peak
    assert peak * 1.15 <= m.recommended_bytes <= peak * 1.15 + 64 * MIB
    assert m.direction == "lower"
    fs = rightsize_findings(t, rightsize([t]), HostShare(0.192, 4, 16 << 30, t["wall_ns"]), now_ns=1)
    mem = [f for f in fs if f["kind"] == "rightsize_memory"]
    assert mem and mem[0]["recommended"]["memory_bytes"] == m.recommended_bytes
    assert "8192 MiB requested" in mem[0]["summary"] and "low confidence (1 task)" in mem[0]["summary"]
    assert mem[0]["estimated_savings_usd"] > 0


def test_oom_killed_task_gets_a_raised_recommendation() -> None:
    t = task("oom_killed")  # limit 256 MiB, killed
    m = recommend_memory([t])
    limit = 256 * MIB
    assert m.oom_raised and m.direction == "raise"
    assert m.recommended_bytes >= max(limit * 1.2, limit + 100 * MIB)
    assert m.recommended_bytes >= int(t["peak_rss_bytes"]) * 1.2
    fs = rightsize_findings(t, rightsize([t]), HostShare(0.192, 4, 16 << 30, t["wall_ns"]), now_ns=1)
    assert [f["severity"] for f in fs if f["kind"] == "rightsize_memory"] == ["HIGH"]


def test_percentile_basis_once_enough_runs() -> None:
    base = task("mem_small")
    runs = [dict(base, peak_rss_bytes=(300 + i) * MIB, start_ns=i) for i in range(19)]
    runs.append(dict(base, peak_rss_bytes=2000 * MIB, start_ns=99))  # one outlier
    m = recommend_memory(runs)
    assert m.basis == "p95" and m.basis_bytes < 2000 * MIB and m.observed_peak_bytes == 2000 * MIB
    assert recommend_memory(runs[:5]).basis == "max"


def test_cpu_from_runnable_threads_without_a_headroom_multiplier() -> None:
    t = task("cpu_heavy", requested_cpus=8.0)  # one thread, ~0.99 running or runnable on average
    c = recommend_cpu([t])
    assert c.basis == "demand" and c.recommended_cpus == 1.0 and c.single_threaded and c.verdict == "lower"
    sampled = recommend_cpu([t], sampled=[SampledCpu(3.4, 3.5, 4)])
    # 3.5 threads at once wants 4 CPUs, but the host it ran on has 2: never recommend more than that
    assert sampled.basis == "sampled_peak" and sampled.wanted_cpus == 4.0
    assert sampled.host_cpus == 2 and sampled.recommended_cpus == 2.0 and sampled.host_limited
    big_host = recommend_cpu([dict(t, cpu_count=16)], sampled=[SampledCpu(3.4, 3.5, 4)])
    assert big_host.recommended_cpus == 4.0 and not big_host.host_limited
    assert confidence_for(1) < 0.5 <= confidence_for(4) < confidence_for(10)


# --- cost -----------------------------------------------------------------------------------------

def test_cost_is_rate_times_max_share_times_time() -> None:
    t = task("mem_small")  # requested 4 CPUs / 8 GiB on a 4-core 16 GiB host -> 100% of the CPUs
    c = task_cost(t, RATE, cpu_count=4, mem_total_bytes=16 << 30)
    hours = int(t["wall_ns"]) / 3600e9
    assert c.basis == "requested" and c.cpu_share == 1.0 and c.mem_share == 0.5
    assert c.cost_usd == pytest.approx(0.192 * hours)
    assert c.waste_usd > 0.9 * c.cost_usd  # it slept on 4 cores and used 310 MiB of 8 GiB
    busy = task_cost(task("cpu_heavy"), RATE, cpu_count=4, mem_total_bytes=16 << 30)
    assert busy.basis == "observed" and busy.cpu_share == 0.25
    assert busy.waste_usd < 0.2 * busy.cost_usd
    totals = rollup([(t, c), (task("cpu_heavy"), busy)], key=lambda x: str(x["pipeline"]))
    assert totals["p"].cost_usd == pytest.approx(c.cost_usd + busy.cost_usd) and totals["p"].count == 2


# --- regression -----------------------------------------------------------------------------------

def _runs() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for label, _run, tasks in pipeline_runs("p"):
        out.append((label, tasks))
    return out


def test_slow_run_regresses_naming_the_slow_task_and_normal_run_does_not() -> None:
    runs = _runs()
    base = [t for label, t in runs if label == "baseline"]
    slow = next(t for label, t in runs if label == "slow_sort")
    normal = next(t for label, t in runs if label == "normal")
    r = detect_regression(slow, base)
    assert r.regressed and r.tasks == ["sort"]
    assert r.moves[0].ratio > 3
    f = regression_finding("p", "p-slow", "h", r, now_ns=1)
    assert f is not None and "sort" in f["summary"] and f["task"] == "sort"
    assert f["finding_id"] == finding_id("regression", {"pipeline": "p"})
    assert not detect_regression(normal, base).regressed
    assert detect_regression(slow, base[:2]).missing_baseline


def test_a_run_slower_as_a_whole_says_that_no_task_is_slower() -> None:
    """Only the run's wall moved (tasks as before, more time between them): the finding says where to look,
    not "compare no single task"."""
    base = [t for label, t in _runs() if label == "baseline"]
    normal = next(t for label, t in _runs() if label == "normal")
    walls = [100e9] * len(base)
    r = detect_regression(normal, base, current_run_wall_ns=400e9, previous_run_walls_ns=walls)
    assert r.regressed and not r.tasks and r.run_wall is not None
    f = regression_finding("p", "p-late", "h", r, now_ns=1)
    assert f is not None and f["task"] is None
    assert "regressed as a whole, no task of it slower: run 400.0 s vs 100.0 s (4.0x)" in f["summary"], f["summary"]
    assert f["recommendation"].startswith(f"No task took longer than in the previous {len(base)} runs")
    assert "no single task" not in f["summary"] + f["recommendation"]


def test_baseline_is_median_and_mad() -> None:
    b = baseline([1.0, 2.0, 3.0, 100.0])
    assert b.median == 2.5 and b.mad == pytest.approx(1.0 * 1.4826)


# --- findings -------------------------------------------------------------------------------------

def test_findings_have_stable_ids_and_encode_as_tune_finding() -> None:
    codec = default_codec()
    for name in recorded()["workloads"]:
        t = task(name)
        a = analyze_task(t, [], RATE, 4, 16 << 30, now_ns=5)
        a2 = analyze_task(t, [], RATE, 4, 16 << 30, now_ns=9)
        assert [f["finding_id"] for f in a.findings] == [f["finding_id"] for f in a2.findings]
        for f in a.findings:
            assert f["finding_id"] == finding_id(f["kind"], {"pipeline": "p", "task": t["task"]})
            assert f["evidence"] and f["summary"] and f["recommendation"]
            name_, back = codec.decode(codec.encode("TuneFinding", f))
            assert name_ == "TuneFinding" and back["finding_id"] == f["finding_id"]
    io = classification_findings(task("io_fsync"), time_breakdown(task("io_fsync")),
                                 classify(task("io_fsync"), time_breakdown(task("io_fsync"))), None, 1)
    ev = {e["name"]: e["value"] for e in io[0]["evidence"]}
    assert ev["blkio_wait_share"] >= 0.3 and ev["busy_share"] > 0.95


def test_sampled_peak_concurrency_drives_the_cpu_finding() -> None:
    t = task("cpu_heavy", requested_cpus=8.0)
    rows = [{"time": i, "interval_ns": 10**9, "cpu_ns": c, "runq_ns": 0, "blocked_ns": 0, "threads": 2}
            for i, c in enumerate([900_000_000, 1_700_000_000, 400_000_000])]
    a = analyze_task(t, [], RATE, 16, 64 << 30, samples={("r1", "t-cpu_heavy"): rows}, now_ns=1)
    assert a.rightsizing.cpu.basis == "sampled_peak" and a.rightsizing.cpu.peak_concurrency == pytest.approx(1.7)
    cpu = [f for f in a.findings if f["kind"] == "rightsize_cpu"]
    assert cpu and cpu[0]["recommended"]["cpus"] == 2.0  # 1.7 threads at once: 2 CPUs, not 1.7 x 1.2 -> 3
    assert "8 requested" in cpu[0]["summary"] and cpu[0]["estimated_savings_usd"] > 0
