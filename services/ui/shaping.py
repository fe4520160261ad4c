"""Pure transforms from query results to what the pages show (no Streamlit, no database)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

BREAKDOWN_ORDER = ("CPU", "Run-queue wait", "I/O wait", "Helper churn", "Idle")


def time_breakdown(tasks: pd.DataFrame) -> pd.DataFrame:
    """Where the tasks' time went, in task-seconds.

    CPU, run-queue wait and block-I/O wait come from the kernel's per-process accounting summed
    per task; helper churn is the wall time of short-lived helper processes; idle is what is left
    of the tasks' wall time (never negative: multi-threaded CPU can exceed wall time).
    """
    if tasks.empty:
        return pd.DataFrame({"category": list(BREAKDOWN_ORDER), "seconds": [0.0] * 5, "share": [0.0] * 5})
    wall = float(tasks["wall_ns"].fillna(0).sum())
    cpu = float(tasks["cpu_ns"].fillna(0).sum())
    runq = float(tasks["runq_ns"].fillna(0).sum())
    blkio = float(tasks["blkio_ns"].fillna(0).sum())
    churn = float(tasks["short_lived_wall_ns"].fillna(0).sum()) if "short_lived_wall_ns" in tasks else 0.0
    idle = max(0.0, wall - cpu - runq - blkio - churn)
    values = [cpu, runq, blkio, churn, idle]
    total = sum(values) or 1.0
    return pd.DataFrame({
        "category": list(BREAKDOWN_ORDER),
        "seconds": [v / 1e9 for v in values],
        "share": [v / total for v in values],
    })


def dominant_bound(breakdown: pd.DataFrame) -> str:
    """The category that took most of the time, as a phrase."""
    if breakdown.empty or float(breakdown["seconds"].sum()) == 0:
        return "no time recorded"
    top = breakdown.sort_values("seconds", ascending=False).iloc[0]
    return f"mostly {str(top['category']).lower()} ({float(top['share']):.0%})"


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
