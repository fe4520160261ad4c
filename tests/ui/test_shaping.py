"""Pure transforms and formatting of the dashboard (no database)."""

from __future__ import annotations

import pandas as pd
import pytest

from execsight.run_analysis.breakdown import run_breakdown
from execsight.ui import formatting as fmt
from execsight.ui import shaping
from execsight.ui.main import streamlit_argv


def _tasks(**cols: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {"wall_ns": [10e9, 10e9], "cpu_ns": [4e9, 2e9], "runq_ns": [1e9, 0],
                                     "blkio_ns": [0, 3e9], "short_lived_wall_ns": [0, 1e9]}
    return pd.DataFrame(base | cols)


def test_time_breakdown_is_the_tune_breakdown_of_the_tasks_with_helpers_as_a_share() -> None:
    tasks = _tasks(short_lived_count=[0, 5], process_count=[1, 6])
    b = shaping.time_breakdown(tasks)
    assert b == run_breakdown(tasks.to_dict("records"))  # one definition: execsight.run_analysis.breakdown's
    frame = shaping.breakdown_frame(b).set_index("category")["seconds"]
    assert frame.sum() == pytest.approx(20)  # the slices add up to task time (both tasks' wall times)
    assert (frame["On CPU"], frame["Run-queue wait"], frame["Block I/O wait"]) == (6, 1, 3)
    assert frame["Other off-CPU"] == pytest.approx(10) and frame["Idle"] == 0  # no samples read on the page
    # helpers are a share of the same task time, not a slice (their CPU is already in "On CPU")
    assert shaping.helpers_line(b) == "5 short-lived helper processes took 5.0% of task time"
    assert shaping.dominant_bound(b) == "mostly other off-CPU (50.0%)"


def test_time_breakdown_scales_parallel_cpu_to_wall_time_and_reads_a_missing_counter_as_zero() -> None:
    b = shaping.time_breakdown(_tasks(cpu_ns=[40e9, 40e9], runq_ns=[None, None]))
    shares = shaping.breakdown_frame(b).set_index("category")["share"]
    assert shares.sum() == pytest.approx(1.0) and shares["Other off-CPU"] == 0
    assert shaping.dominant_bound(b).startswith("mostly on CPU")
    assert shaping.dominant_bound(shaping.time_breakdown(_tasks().iloc[0:0])) == "no time recorded"


def test_idle_periods_need_contiguous_quiet_minutes() -> None:
    start = pd.Timestamp("2024-01-01T00:00Z")
    busy = [0.5] * 3 + [0.01] * 6 + [0.9] + [0.01] * 3
    series = pd.DataFrame({"bucket": [start + pd.Timedelta(minutes=i) for i in range(len(busy))],
                           "cpu_busy_ratio": busy})
    periods = shaping.idle_periods(series, threshold=0.05, min_minutes=5)
    assert len(periods) == 1
    assert periods[0].start == start + pd.Timedelta(minutes=3) and periods[0].minutes == 6
    gap = series.drop(index=5)  # a missing minute splits the period
    assert shaping.idle_periods(gap, threshold=0.05, min_minutes=5) == []


def _procs() -> pd.DataFrame:
    rows = [  # pid, start_ns, ppid, parent_start_ns, comm, short_lived
        (10, 100, 1, 50, "sh", False), (12, 300, 10, 100, "sha256sum", True), (11, 200, 10, 100, "seq", True),
        (13, 400, 12, 300, "child", True), (10, 900, 1, 50, "reused-pid", False),
    ]
    df = pd.DataFrame(rows, columns=["pid", "start_time_ns", "ppid", "parent_start_time_ns", "comm", "short_lived"])
    return df.assign(argv=[[c] for c in df["comm"]], wall_ns=[5e9, 2e6, 1e6, 1e6, 3e9])


def test_process_tree_orders_depth_first_and_keeps_reused_pids_apart() -> None:
    tree = shaping.process_tree(_procs())
    assert tree["comm"].tolist() == ["sh", "seq", "sha256sum", "child", "reused-pid"]
    assert tree["depth"].tolist() == [0, 1, 1, 2, 0]


def test_filter_processes_hides_short_lived_and_matches_text() -> None:
    tree = shaping.process_tree(_procs())
    assert shaping.filter_processes(tree, show_short_lived=False)["comm"].tolist() == ["sh", "reused-pid"]
    assert shaping.filter_processes(tree, text="SHA")["comm"].tolist() == ["sha256sum"]
    assert len(shaping.filter_processes(tree, min_wall_ms=1000)) == 2


def test_compare_with_previous_uses_median_of_earlier_runs() -> None:
    history = pd.DataFrame({"run_id": ["r3", "r2", "r1", "r0"], "wall_ns": [20e9, 10e9, 12e9, 8e9],
                            "cpu_ns": [1e9] * 4, "cost_usd": [2.0, 1.0, 1.0, 1.0], "peak_rss_bytes": [2**20] * 4,
                            "process_count": [5, 5, 5, 5]})
    cmp = shaping.compare_with_previous(history, "r3").set_index("metric")
    assert cmp.loc["Duration (s)", "median_before"] == 10 and cmp.loc["Duration (s)", "change"] == 1.0
    assert cmp.loc["Cost (USD)", "change"] == 1.0
    assert shaping.compare_with_previous(history.head(1), "r3").empty


def test_gantt_lanes_are_unique_and_prefer_long_lived_processes() -> None:
    t0 = pd.Timestamp("2024-01-01T00:00Z")
    tasks = pd.DataFrame({"task": ["a"], "tool": ["x"], "start_time": [t0], "end_time": [t0 + pd.Timedelta(seconds=9)]})
    procs = pd.DataFrame({"pid": [1, 2, 3], "comm": ["long", "blip", "blip"], "task": ["a"] * 3,
                          "short_lived": [False, True, True], "start_time": [t0] * 3,
                          "end_time": [t0 + pd.Timedelta(seconds=5), t0, t0 + pd.Timedelta(milliseconds=3)]})
    rows = shaping.gantt_rows(tasks, procs)
    assert rows["lane"].tolist() == ["task: a", "long [1]"]
    assert rows["lane"].is_unique


def test_cost_by_tool_groups_and_sorts() -> None:
    tasks = pd.DataFrame({"task": ["a", "b", "c"], "tool": ["bwa", None, "bwa"], "cost_usd": [1.0, 5.0, 2.0],
                          "waste_usd": [0.5, None, 0.0], "wall_ns": [1e9, 1e9, 1e9]})
    out = shaping.cost_by(tasks, "tool")
    assert out["tool"].tolist() == ["(none)", "bwa"] and out["cost_usd"].tolist() == [5.0, 3.0]


def test_requested_used_recommended_rows() -> None:
    history = pd.DataFrame({"wall_ns": [10e9], "cpu_ns": [5e9], "requested_cpus": [4.0],
                            "requested_memory_bytes": [8 * 2**30], "peak_rss_bytes": [2**30]})
    out = shaping.resources_used_vs_requested(history, {"cpus": 1.0, "memory_bytes": 2 * 2**30})
    values = {(r, k): v for r, k, v in out.itertuples(index=False)}
    assert values[("CPU (cores)", "requested")] == 4 and values[("CPU (cores)", "used: average")] == 0.5
    assert values[("Memory (GiB)", "recommended")] == 2


@pytest.mark.parametrize(("value", "text"), [(None, fmt.MISSING), (5e8, "500 ms"), (75e9, "1 min 15 s"),
                                             (7322e9, "2 h 02 min")])
def test_duration(value: float | None, text: str) -> None:
    assert fmt.duration(value) == text


def test_size_and_usd() -> None:
    assert fmt.size(1536) == "1.5 KiB" and fmt.size(3 * 2**30) == "3.0 GiB" and fmt.size(None) == fmt.MISSING
    assert fmt.usd(0) == "$0" and fmt.usd(0.0004) == "$0.0004" and fmt.usd(1234.5) == "$1,234.50"


def test_streamlit_command_line_serves_the_app_on_the_port() -> None:
    argv = streamlit_argv(8599, "127.0.0.1")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("services/ui/app.py")
    assert argv[argv.index("--server.port") + 1] == "8599"
    assert argv[argv.index("--server.headless") + 1] == "true"
