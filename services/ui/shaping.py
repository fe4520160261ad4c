"""Pure transforms from query results to what the pages show (no Streamlit, no database)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from execsight.run_analysis.breakdown import SLICE_LABELS, Breakdown, dominant_slice, run_breakdown
from execsight.run_analysis.regression import DEFAULT_RULES, baseline, moved, run_metrics
from execsight.ui import formatting as fmt

# The run page's time breakdown is execsight.run_analysis.breakdown.run_breakdown, the one `execsight run` prints and
# the run report draws: slices of task time (the tasks' wall times summed), helpers as a share of that time.
BREAKDOWN_ORDER = tuple(label[0].upper() + label[1:] for label in SLICE_LABELS.values())


def task_rows(tasks: pd.DataFrame) -> list[dict[str, Any]]:
    """Task rows as plain dicts, a missing value as None (pandas reads a NULL in a numeric column as NaN)."""
    return [{str(k): (None if not isinstance(v, list | tuple) and pd.isna(v) else v) for k, v in r.items()}
            for r in tasks.astype(object).to_dict("records")]


def time_breakdown(tasks: pd.DataFrame) -> Breakdown:
    """Where the tasks' time went (run_breakdown over the task rows); no samples: idle stays in "other off-CPU"."""
    return run_breakdown(task_rows(tasks)) if not tasks.empty else run_breakdown([])


def breakdown_frame(b: Breakdown) -> pd.DataFrame:
    """The breakdown's slices for the chart: category (BREAKDOWN_ORDER), task-seconds, share of task time."""
    shares = b.shares()
    return pd.DataFrame({"category": list(BREAKDOWN_ORDER),
                         "seconds": [shares[k] * b.wall_ns / 1e9 for k in SLICE_LABELS],
                         "share": [shares[k] for k in SLICE_LABELS]})


def dominant_bound(b: Breakdown) -> str:
    """The slice that took most of the task time, as a phrase."""
    top = dominant_slice(b)
    if top is None:
        return "no time recorded"
    return f"mostly {SLICE_LABELS[top[0]]} ({top[1]:.1%})"


def helpers_line(b: Breakdown) -> str:
    """The short-lived helpers' share of task time, in the words `execsight run` prints it."""
    if not b.helper_count:
        return "no short-lived helper process"
    return f"{b.helper_count:,} short-lived helper processes took {b.helper_share:.1%} of task time"


def waste_delta(waste_usd: Any) -> str | None:
    """The Cost tile's delta: the waste, or None (no delta, no red arrow) when there is none to show."""
    if waste_usd is None or pd.isna(waste_usd) or fmt.usd(abs(float(waste_usd))) in ("$0", "$0.0000"):
        return None
    return f"{fmt.usd(waste_usd)} waste"


def cost_by(tasks: pd.DataFrame, key: str) -> pd.DataFrame:
    """Cost and waste grouped by task or tool, most expensive first."""
    if tasks.empty:
        return pd.DataFrame(columns=[key, "cost_usd", "waste_usd", "wall_s"])
    df = tasks.assign(**{key: tasks[key].fillna("(none)")})
    out = df.groupby(key, as_index=False).agg(
        cost_usd=("cost_usd", lambda s: float(s.fillna(0).sum())),
        waste_usd=("waste_usd", lambda s: float(s.fillna(0).sum())),
        wall_s=("wall_ns", lambda s: float(s.sum()) / 1e9),
    )
    return out.sort_values(["cost_usd", "wall_s"], ascending=False).reset_index(drop=True)


def gantt_rows(tasks: pd.DataFrame, processes: pd.DataFrame, max_processes: int = 25) -> pd.DataFrame:
    """Bars for the run timeline: one lane per task, then the run's longest processes.

    Short-lived helpers are left to the Processes page unless they are all there is.
    """
    frames = []
    if not tasks.empty:
        frames.append(pd.DataFrame({
            "lane": "task: " + tasks["task"].astype(str), "kind": "task", "task": tasks["task"].astype(str),
            "label": tasks["tool"].fillna("").astype(str), "start": tasks["start_time"], "end": tasks["end_time"],
        }))
    if not processes.empty:
        long_lived = processes[~processes["short_lived"].astype(bool)]
        pool = long_lived if not long_lived.empty else processes
        longest = pool.assign(w=pool["end_time"] - pool["start_time"]).nlargest(max_processes, "w")
        longest = longest.sort_values("start_time")
        frames.append(pd.DataFrame({
            "lane": [f"{c} [{p}]" for c, p in zip(longest["comm"], longest["pid"], strict=True)],
            "kind": "process", "task": longest["task"].fillna("(run)").astype(str),
            "label": longest["comm"].astype(str), "start": longest["start_time"], "end": longest["end_time"],
        }))
    if not frames:
        return pd.DataFrame(columns=["lane", "kind", "task", "label", "start", "end", "order"])
    out = pd.concat(frames, ignore_index=True)
    out["order"] = range(len(out))
    # A bar needs some width to be seen; keep zero-length ones visible.
    out["end"] = out[["start", "end"]].max(axis=1)
    return out


def compare_with_previous(history: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """This run against the median of the pipeline's earlier runs: metric, this run, median, change."""
    metrics = {"wall_ns": ("Duration (s)", 1e-9), "cpu_ns": ("CPU (s)", 1e-9), "cost_usd": ("Cost (USD)", 1.0),
               "peak_rss_bytes": ("Peak memory (MiB)", 1 / 2**20), "process_count": ("Processes", 1.0)}
    this = history[history["run_id"] == run_id]
    earlier = history[history["run_id"] != run_id]
    if this.empty or earlier.empty:
        return pd.DataFrame(columns=["metric", "this_run", "median_before", "change"])
    rows = []
    for col, (name, scale) in metrics.items():
        now = this.iloc[0][col]
        med = earlier[col].dropna().median() if col in earlier else None
        if now is None or pd.isna(now) or med is None or pd.isna(med):
            continue
        now_v, med_v = float(now) * scale, float(med) * scale
        change = (now_v - med_v) / med_v if med_v else 0.0
        rows.append({"metric": name, "this_run": now_v, "median_before": med_v, "change": change})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class IdlePeriod:
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def minutes(self) -> float:
        return float((self.end - self.start).total_seconds()) / 60


def idle_periods(series: pd.DataFrame, threshold: float, min_minutes: int = 5) -> list[IdlePeriod]:
    """Runs of consecutive minutes with CPU busy below threshold (gaps in data end a period)."""
    if series.empty:
        return []
    df = series.sort_values("bucket")
    periods: list[IdlePeriod] = []
    start: pd.Timestamp | None = None
    prev: pd.Timestamp | None = None
    for bucket, busy in zip(df["bucket"], df["cpu_busy_ratio"], strict=True):
        ts = pd.Timestamp(bucket)
        idle = busy is not None and not pd.isna(busy) and float(busy) < threshold
        contiguous = prev is not None and ts - prev <= pd.Timedelta(minutes=1)
        if start is not None and (not idle or not contiguous):
            assert prev is not None
            periods.append(IdlePeriod(start, prev + pd.Timedelta(minutes=1)))
            start = None
        if idle and start is None:
            start = ts
        prev = ts
    if start is not None and prev is not None:
        periods.append(IdlePeriod(start, prev + pd.Timedelta(minutes=1)))
    return [p for p in periods if p.minutes >= min_minutes]


def process_tree(processes: pd.DataFrame) -> pd.DataFrame:
    """Processes in depth-first tree order with a depth column and an indented name.

    Identity is (pid, start_time_ns); a parent is (ppid, parent_start_time_ns). Processes whose
    parent is not in the set are roots. Siblings are ordered by start time.
    """
    if processes.empty:
        return processes.assign(depth=pd.Series(dtype=int), tree=pd.Series(dtype=str))
    keys = list(zip(processes["pid"], processes["start_time_ns"], strict=True))
    index = {k: i for i, k in enumerate(keys)}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, (ppid, pstart) in enumerate(zip(processes["ppid"], processes["parent_start_time_ns"], strict=True)):
        parent = index.get((ppid, pstart))
        if parent is None or parent == i:
            roots.append(i)
        else:
            children.setdefault(parent, []).append(i)
    starts = processes["start_time_ns"].tolist()
    order: list[tuple[int, int]] = []
    stack = [(i, 0) for i in sorted(roots, key=lambda i: starts[i], reverse=True)]
    while stack:
        i, depth = stack.pop()
        order.append((i, depth))
        for c in sorted(children.get(i, []), key=lambda i: starts[i], reverse=True):
            stack.append((c, depth + 1))
    rows = processes.iloc[[i for i, _ in order]].copy()
    rows["depth"] = [d for _, d in order]
    rows["tree"] = ["\u2003" * d + ("\u2514 " if d else "") + str(c) for d, c in zip(rows["depth"], rows["comm"],
                                                                                    strict=True)]
    return rows.reset_index(drop=True)


def filter_processes(
    tree: pd.DataFrame, show_short_lived: bool = True, text: str = "", min_wall_ms: float = 0.0
) -> pd.DataFrame:
    """Filters the tree rows: short-lived helpers on/off, command text, minimum wall time."""
    out = tree
    if not show_short_lived:
        out = out[~out["short_lived"].astype(bool)]
    if text:
        hay = out["comm"].astype(str) + " " + out["argv"].map(lambda a: " ".join(a or []))
        out = out[hay.str.contains(text, case=False, regex=False)]
    if min_wall_ms > 0:
        out = out[out["wall_ns"].fillna(0) >= min_wall_ms * 1e6]
    return out


def resources_used_vs_requested(history: pd.DataFrame, recommended: dict[str, float] | None) -> pd.DataFrame:
    """Requested, used (peak) and recommended CPU and memory for a task across its runs."""
    if history.empty:
        return pd.DataFrame(columns=["resource", "kind", "value"])
    wall = history["wall_ns"].clip(lower=1)
    cores = (history["cpu_ns"] / wall).astype(float)
    rows = [
        ("CPU (cores)", "requested", history["requested_cpus"].dropna().max()),
        ("CPU (cores)", "used: average", cores.mean()),
        ("CPU (cores)", "used: p95", cores.quantile(0.95)),
        ("Memory (GiB)", "requested", history["requested_memory_bytes"].dropna().max() / 2**30),
        ("Memory (GiB)", "used: p95 peak", history["peak_rss_bytes"].quantile(0.95) / 2**30),
        ("Memory (GiB)", "used: max peak", history["peak_rss_bytes"].max() / 2**30),
    ]
    if recommended:
        if recommended.get("cpus") is not None:
            rows.append(("CPU (cores)", "recommended", float(recommended["cpus"])))
        if recommended.get("memory_bytes") is not None:
            rows.append(("Memory (GiB)", "recommended", float(recommended["memory_bytes"]) / 2**30))
    return pd.DataFrame([r for r in rows if r[2] is not None and not pd.isna(r[2])],
                        columns=["resource", "kind", "value"])


# --- the run page -----------------------------------------------------------------------------

def time_axis(span_s: float) -> tuple[float, str]:
    """(divisor, title) of an elapsed-time axis: seconds for runs of a few minutes, then minutes, hours."""
    if span_s <= 180:
        return 1.0, "seconds since the run started"
    if span_s <= 3 * 3600:
        return 60.0, "minutes since the run started"
    return 3600.0, "hours since the run started"


def elapsed(times: pd.Series, start: pd.Timestamp, divisor: float) -> pd.Series:
    """Times as elapsed units (time_axis's divisor) since start; readable on a run of 3 s as on one of 3 h."""
    return (pd.to_datetime(times, utc=True) - pd.Timestamp(start).tz_convert("UTC")).dt.total_seconds() / divisor


def series_long(series: pd.DataFrame, start: pd.Timestamp, divisor: float, columns: dict[str, str],
                scale: float = 1.0) -> pd.DataFrame:
    """Resource series in long form (t, value, series) for a chart with one legend entry per column."""
    if series.empty:
        return pd.DataFrame(columns=["t", "value", "series"])
    t = elapsed(series["bucket"], start, divisor)
    return pd.concat([pd.DataFrame({"t": t, "value": series[c].astype(float) * scale, "series": label})
                      for c, label in columns.items() if c in series], ignore_index=True)


def timeline_lanes(tasks: pd.DataFrame, start: pd.Timestamp, divisor: float) -> pd.DataFrame:
    """Task bars in per-host lanes (tasks running at once on a host stack), in elapsed units since start."""
    cols = ["lane", "host", "task", "tool", "status", "start", "end", "order"]
    if tasks.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    lane_ends: dict[str, list[float]] = {}
    df = tasks.assign(s=elapsed(tasks["start_time"], start, divisor), e=elapsed(tasks["end_time"], start, divisor))
    for t in df.sort_values(["host_id", "s"])[["host_id", "task", "tool", "status", "s", "e"]].to_dict("records"):
        host = str(t["host_id"] or "?")
        s, e = float(t["s"]), max(float(t["s"]), float(t["e"]) if not pd.isna(t["e"]) else float(t["s"]))
        ends = lane_ends.setdefault(host, [])
        lane = next((i for i, x in enumerate(ends) if x <= s), len(ends))
        if lane == len(ends):
            ends.append(e)
        else:
            ends[lane] = e
        rows.append({"lane": f"{host} · {lane + 1}", "host": host, "task": str(t["task"]),
                     "tool": "" if t["tool"] is None or pd.isna(t["tool"]) else str(t["tool"]),
                     "status": str(t["status"]), "start": s, "end": e, "order": (host, lane)})
    out = pd.DataFrame(rows, columns=cols)
    out["order"] = out["order"].rank(method="dense").astype(int)
    return out


VERDICT_SLOWER, VERDICT_FASTER, VERDICT_STEADY, VERDICT_NEW = "slower", "faster", "steady", "new"


def task_comparison(this_tasks: pd.DataFrame, earlier_tasks: pd.DataFrame) -> pd.DataFrame:
    """Per process definition: this run's wall time against the median of the earlier runs, with a verdict.

    Uses execsight.run_analysis.regression (the tune worker's rule: the median of earlier runs, a move beyond 3
    robust deviations, 50 % and 1 s), so the page and the regression finding agree; moved down by as
    much is "faster". Rows most moved first.
    """
    cols = ["task", "this_s", "median_s", "change", "delta_s", "runs", "verdict"]
    if this_tasks.empty:
        return pd.DataFrame(columns=cols)
    now = run_metrics(this_tasks.to_dict("records"))
    before: dict[str, list[float]] = {}
    if not earlier_tasks.empty:
        for _, group in earlier_tasks.groupby("run_id"):
            for name, m in run_metrics(group.to_dict("records")).items():
                before.setdefault(name, []).append(m["wall_ns"])
    rule = DEFAULT_RULES[0]
    rows = []
    for name, m in now.items():
        current = m["wall_ns"]
        values = before.get(name, [])
        if not values:
            rows.append({"task": name, "this_s": current / 1e9, "median_s": None, "change": None, "delta_s": None,
                         "runs": 0, "verdict": VERDICT_NEW})
            continue
        base = baseline(values)
        mirrored = 2 * base.median - current  # a move down by as much as a regression moves up
        verdict = VERDICT_SLOWER if moved(current, base, rule) else (
            VERDICT_FASTER if moved(mirrored, base, rule) else VERDICT_STEADY)
        rows.append({"task": name, "this_s": current / 1e9, "median_s": base.median / 1e9,
                     "change": (current - base.median) / base.median if base.median else None,
                     "delta_s": (current - base.median) / 1e9, "runs": base.n, "verdict": verdict})
    out = pd.DataFrame(rows, columns=cols)
    key = out["delta_s"].abs().fillna(-1)
    return out.assign(_k=key).sort_values("_k", ascending=False).drop(columns="_k").reset_index(drop=True)


# A generic run's pipeline is only its program (make, git, bash): two runs of it need not be the same work
# (the tune worker does not compare them either: execsight.tune.worker.regression_checked).
NOT_COMPARED = ("Not compared with earlier runs: a generic run is named after its program, and two runs of it "
                "need not be the same work. Name the pipeline (`execsight run --pipeline NAME -- CMD`) to compare "
                "its runs.")


def comparable(run: Mapping[str, Any]) -> bool:
    """Whether a run is compared with its pipeline's earlier runs (an engine's or a named pipeline)."""
    return bool(run.get("pipeline")) and run.get("engine") != "generic"


def first_answers(tasks: pd.DataFrame, breakdown: Breakdown, tools: pd.DataFrame, findings: pd.DataFrame,
                  comparison: pd.DataFrame, runs_before: int, compared: bool = True) -> dict[str, str]:
    """The five questions a user asks first, each answered in one line (markdown) from what the page shows."""
    out: dict[str, str] = {}
    if not tasks.empty and tasks["cost_usd"].notna().any():
        by_task = cost_by(tasks, "task")
        top = by_task.iloc[0]
        total = float(by_task["cost_usd"].sum()) or 1.0
        out["cost"] = (f"**{top['task']}** drove the cost: {fmt.usd(top['cost_usd'])} of {fmt.usd(total)} "
                       f"({float(top['cost_usd']) / total:.0%}).")
    elif not tasks.empty:
        top = tasks.sort_values("wall_ns", ascending=False).iloc[0]
        out["cost"] = f"No cost yet; the longest task is **{top['task']}** ({fmt.duration(top['wall_ns'])})."
    else:
        out["cost"] = "No task recorded yet."
    shares = breakdown.shares()
    off_cpu = breakdown.other_off_cpu_ns + breakdown.idle_ns  # the page reads no samples to split idle out
    out["time"] = (f"{dominant_bound(breakdown).capitalize()}; block I/O wait {shares['blkio_wait']:.0%} "
                   f"({fmt.duration(breakdown.blkio_ns)}), off-CPU without disk "
                   f"{shares['other_off_cpu'] + shares['idle']:.0%} ({fmt.duration(off_cpu)}); "
                   f"{helpers_line(breakdown)}.")
    if not tools.empty and "read_bytes" in tools and float((tools["read_bytes"] + tools["write_bytes"]).sum()) > 0:
        io = tools.assign(io=tools["read_bytes"] + tools["write_bytes"]).sort_values("io", ascending=False).iloc[0]
        out["io"] = (f"**{io['tool']}** produced the most I/O: read {fmt.size(io['read_bytes'])}, wrote "
                     f"{fmt.size(io['write_bytes'])}, waited {fmt.duration(io['blkio_ns'])} on the disk.")
    else:
        out["io"] = "No disk I/O recorded for this run."
    recs = findings[findings["recommendation"].notna() & (findings["status"] == "OPEN")] if not findings.empty \
        else findings
    if not recs.empty:
        f = recs.iloc[0]
        out["config"] = f"{f['recommendation']} ({f['kind']!s}, {str(f['severity']).lower()} severity)."
    else:
        out["config"] = "Nothing to change: no open recommendation for this run."
    if not compared:
        out["regression"] = NOT_COMPARED
    elif runs_before == 0 or comparison.empty:
        out["regression"] = "First run of its pipeline: nothing to compare with yet."
    else:
        moved_rows = comparison[comparison["verdict"].isin([VERDICT_SLOWER, VERDICT_FASTER])]
        if moved_rows.empty:
            out["regression"] = f"No task moved against the median of {runs_before} earlier runs."
        else:
            parts = [f"**{r['task']}** {r['verdict']} by {fmt.duration(abs(float(r['delta_s'])) * 1e9)} "
                     f"({float(r['change']):+.0%})" for _, r in moved_rows.head(3).iterrows()]
            out["regression"] = f"Against the median of {runs_before} earlier runs: " + "; ".join(parts) + "."
    return out
