"""Analyses -> TuneFinding records (pure functions).

Every finding has a stable id from its kind and subject (execsight.findings.finding_id):

- what bounded a task type (io_bound, compute_bound, memory_bound, contended,
  idle_stalled, helper_churn): subject pipeline + task;
- right-sizing (rightsize_memory, rightsize_cpu): subject pipeline + task;
- regression: subject pipeline (names the run and the tasks that moved).

``detected_ns`` is set to ``now_ns`` here; the worker keeps the first detection time
of a finding it already stored. ``resolved(...)`` turns a stored finding that no longer
holds into its RESOLVED state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from execsight.findings import evidence, finding_id
from services.tune.breakdown import (
    COMPUTE_BOUND,
    CONTENDED,
    HELPER_CHURN,
    IDLE_STALLED,
    IO_BOUND,
    MEMORY_BOUND,
    Breakdown,
    Classification,
)
from services.tune.cost import Cost
from services.tune.regression import RegressionResult
from services.tune.rightsize import (
    DEFAULT_POLICY,
    Policy,
    Rightsizing,
    cpu_overprovisioned,
    cpu_underprovisioned,
    memory_overprovisioned,
)

Record = dict[str, Any]
MIB = float(1 << 20)

CLASS_KINDS = (IO_BOUND, COMPUTE_BOUND, MEMORY_BOUND, CONTENDED, IDLE_STALLED, HELPER_CHURN)
RIGHTSIZE_KINDS = ("rightsize_memory", "rightsize_cpu")
TASK_KINDS = CLASS_KINDS + RIGHTSIZE_KINDS
REGRESSION = "regression"
SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH")


def task_subject(task: Mapping[str, Any]) -> dict[str, str]:
    return {"pipeline": str(task.get("pipeline") or ""), "task": str(task["task"])}


def _label(task: Mapping[str, Any]) -> str:
    return f"{task['pipeline']}/{task['task']}" if task.get("pipeline") else str(task["task"])


def severity_for_seconds(seconds: float) -> str:
    """Severity of time lost per run: 30 min HIGH, 5 min MEDIUM, 30 s LOW, else INFO."""
    if seconds >= 1800:
        return "HIGH"
    if seconds >= 300:
        return "MEDIUM"
    return "LOW" if seconds >= 30 else "INFO"


def _base(kind: str, subject: Mapping[str, str], task: Mapping[str, Any] | None, now_ns: int) -> Record:
    return {
        "finding_id": finding_id(kind, subject),
        "kind": kind,
        "status": "OPEN",
        "detected_ns": now_ns,
        "updated_ns": now_ns,
        "pipeline": (task or {}).get("pipeline") or subject.get("pipeline") or None,
        "run_id": (task or {}).get("run_id"),
        "task": subject.get("task"),
        "tool": (task or {}).get("tool"),
        "host_id": (task or {}).get("host_id"),
        "recommended": {},
        "confidence": None,
        "estimated_savings_usd": None,
    }


def _breakdown_evidence(b: Breakdown) -> list[Record]:
    s = b.shares()
    return evidence(
        ("wall_time", b.wall_ns / 1e9, "s"),
        ("on_cpu_share", s["on_cpu"], "ratio"),
        ("runq_wait_share", s["runq_wait"], "ratio"),
        ("blkio_wait_share", s["blkio_wait"], "ratio"),
        ("other_off_cpu_share", s["other_off_cpu"], "ratio"),
        ("idle_share", s["idle"], "ratio"),
        ("busy_share", min(1.0, b.lanes), "ratio"),
        ("cpu_concurrency", b.cpu_concurrency, "cores"),
        ("helper_processes", b.helper_count, "count"),
        ("helper_wall_share", b.helper_share, "ratio"),
    )


def classification_findings(
    task: Mapping[str, Any], b: Breakdown, c: Classification, cost: Cost | None, now_ns: int
) -> list[Record]:
    """One finding per class that holds for the task's latest run."""
    out: list[Record] = []
    name = _label(task)
    wall_s = b.wall_ns / 1e9
    s = b.shares()
    for kind in c.labels:
        f = _base(kind, task_subject(task), task, now_ns)
        ev = _breakdown_evidence(b)
        if kind == IO_BOUND:
            lost = b.blkio_ns / 1e9 if b.blkio_ns else (b.other_off_cpu_ns + b.idle_ns) / 1e9
            f["severity"] = severity_for_seconds(lost)
            f["summary"] = (f"{name} is I/O-bound: {s['blkio_wait']:.0%} of its {wall_s:.1f} s waiting on block I/O, "
                            f"{s['on_cpu']:.0%} on CPU")
            f["recommendation"] = (
                "Storage wait dominates, so more CPUs will not help: use faster or local storage (instance-store "
                "NVMe, gp3/io2 with more IOPS and throughput), batch fsyncs, or overlap I/O with compute."
            )
            ev += evidence(("blkio_wait", b.blkio_ns / 1e9, "s"), ("write_bytes", float(task.get("write_bytes") or 0),
                                                                   "bytes"),
                           ("read_bytes", float(task.get("read_bytes") or 0), "bytes"))
        elif kind == COMPUTE_BOUND:
            f["severity"] = "INFO"
            f["summary"] = (f"{name} is compute-bound: {s['on_cpu']:.0%} of its {wall_s:.1f} s on CPU, "
                            f"{b.cpu_concurrency:.2f} cores in use on average")
            req = task.get("requested_cpus")
            if req and b.cpu_concurrency < 0.6 * float(req):
                f["recommendation"] = (f"It uses {b.cpu_concurrency:.1f} of {float(req):g} requested CPUs: enable "
                                       "its threads option or request fewer CPUs.")
            else:
                f["recommendation"] = ("CPU time dominates: a faster CPU family (e.g. c7i), more cores if the tool "
                                       "scales, or a cheaper algorithm/options shorten it.")
        elif kind == CONTENDED:
            f["severity"] = severity_for_seconds(b.runq_ns / 1e9)
            f["summary"] = (f"{name} is CPU-contended: {s['runq_wait']:.0%} of its {wall_s:.1f} s runnable but "
                            f"waiting for a core")
            f["recommendation"] = ("The host is oversubscribed while it runs: request more CPUs, run fewer tasks "
                                   "at once on the host, or cap the tool's thread count to its allocation.")
            ev += evidence(("runq_wait", b.runq_ns / 1e9, "s"))
        elif kind == IDLE_STALLED:
            lost = (b.other_off_cpu_ns + b.idle_ns) / 1e9
            f["severity"] = severity_for_seconds(lost)
            f["summary"] = (f"{name} is idle or stalled: {s['other_off_cpu'] + s['idle']:.0%} of its {wall_s:.1f} s "
                            "off-CPU without disk I/O")
            f["recommendation"] = ("It mostly waits on something other than CPU or disk (sleep, lock, remote "
                                   "service, a child): find the wait; its reserved cores and memory sit idle.")
        elif kind == HELPER_CHURN:
            f["severity"] = severity_for_seconds(b.helper_wall_ns / 1e9)
            f["summary"] = (f"{name} churns helpers: {b.helper_count} short-lived processes took "
                            f"{b.helper_share:.0%} of its {wall_s:.1f} s")
            f["recommendation"] = ("Process start-up dominates: batch the work into fewer, longer processes "
                                   "(xargs -n/-P, a loop inside the tool, a long-lived worker).")
            ev += evidence(("helper_wall", b.helper_wall_ns / 1e9, "s"))
        elif kind == MEMORY_BOUND:
            detail = c.memory_detail or "pressure"
            f["severity"] = "HIGH" if detail == "oom" else "MEDIUM"
            what = {"oom": "was OOM-killed", "reclaim": "stalls in memory reclaim",
                    "near_limit": "runs at its memory limit", "pressure": "runs under memory pressure"}[detail]
            peak_mib = float(task.get("peak_rss_bytes") or 0) / MIB
            f["summary"] = f"{name} is memory-bound: it {what} (peak RSS {peak_mib:.0f} MiB)"
            f["recommendation"] = ("Give it more memory (see its rightsize_memory finding) or reduce its working "
                                   "set (smaller batches, streaming, fewer threads).")
            ev += evidence(("peak_rss", float(task.get("peak_rss_bytes") or 0), "bytes"),
                           ("reclaim_wait", float(task.get("reclaim_ns") or 0) / 1e9, "s"),
                           ("oom_killed", 1.0 if task.get("oom_killed") else 0.0, "count"))
        else:
            continue
        if cost is not None:
            ev += evidence(("cost", cost.cost_usd, "usd"), ("waste", cost.waste_usd, "usd"))
        f["evidence"] = ev
        out.append(f)
    return out


def rightsize_findings(
    task: Mapping[str, Any], r: Rightsizing, rate_hourly_usd: float, cpu_count: int, mem_total_bytes: int,
    now_ns: int, p: Policy = DEFAULT_POLICY,
) -> list[Record]:
    """rightsize_memory when over-provisioned, OOM-killed or short of its peak; rightsize_cpu likewise."""
    out: list[Record] = []
    name = _label(task)
    m, c = r.memory, r.cpu
    conf = f"{r.confidence_label} confidence ({m.runs} run{'s' if m.runs != 1 else ''})"
    wall_h = float(task.get("wall_ns") or 0) / 3600e9
    under = (m.requested_bytes is not None and m.recommended_bytes > m.requested_bytes
             and m.basis_bytes > m.requested_bytes * 0.9)
    if m.oom_raised or memory_overprovisioned(m, p) or under:
        f = _base("rightsize_memory", task_subject(task), task, now_ns)
        req = f"{m.requested_bytes / MIB:.0f} MiB requested, " if m.requested_bytes else ""
        if m.oom_raised:
            f["severity"] = "HIGH"
            f["summary"] = (f"{name} was OOM-killed at {m.observed_peak_bytes / MIB:.0f} MiB: raise its memory to "
                            f"{m.recommended_bytes / MIB:.0f} MiB ({req}{conf})")
        elif under:
            f["severity"] = "MEDIUM"
            f["summary"] = (f"{name} peaks at {m.observed_peak_bytes / MIB:.0f} MiB, at its limit: raise memory to "
                            f"{m.recommended_bytes / MIB:.0f} MiB ({req}{conf})")
        else:
            saved = 0.0
            if mem_total_bytes > 0 and m.requested_bytes:
                saved = rate_hourly_usd * (m.requested_bytes - m.recommended_bytes) / mem_total_bytes * wall_h
            f["estimated_savings_usd"] = saved
            f["severity"] = "MEDIUM" if saved >= 1.0 else "LOW"
            f["summary"] = (f"{name} is over-provisioned: {req}peak {m.observed_peak_bytes / MIB:.0f} MiB used, "
                            f"recommend {m.recommended_bytes / MIB:.0f} MiB ({conf})")
        f["recommendation"] = (
            f"Set its memory to {m.recommended_bytes / MIB:.0f} MiB: {m.basis} peak RSS over {m.runs} run(s) "
            f"+ {p.memory_margin:.0%} margin" + (f", raised x{p.oom_factor:g} (at least +100 MiB) after an OOM kill"
                                                  if m.oom_count else "") + "."
            + (" Low confidence: few runs observed." if r.confidence_label == "low" else "")
        )
        f["recommended"] = {"memory_bytes": float(m.recommended_bytes)}
        f["confidence"] = r.confidence
        f["evidence"] = evidence(
            ("observed_peak_rss", m.observed_peak_bytes, "bytes"),
            ("basis_rss", m.basis_bytes, "bytes"),
            ("recommended_memory", m.recommended_bytes, "bytes"),
            ("runs", m.runs, "count"),
            ("oom_kills", m.oom_count, "count"),
            *((("requested_memory", float(m.requested_bytes), "bytes"),) if m.requested_bytes else ()),
        )
        out.append(f)
    if cpu_overprovisioned(c, p) or cpu_underprovisioned(c):
        f = _base("rightsize_cpu", task_subject(task), task, now_ns)
        used = c.peak_concurrency if c.peak_concurrency is not None else c.demand_concurrency
        basis = "peak cores in use (sampled)" if c.basis == "sampled_peak" else "CPU+run-queue demand over wall time"
        req_cpus = float(c.requested_cpus or 0)
        if cpu_underprovisioned(c):
            f["severity"] = "MEDIUM"
            f["summary"] = (f"{name} needs more CPUs: {used:.2f} cores in use at peak vs {req_cpus:g} requested; "
                            f"recommend {c.recommended_cpus:g} ({conf})")
        else:
            saved = rate_hourly_usd * (req_cpus - c.recommended_cpus) / max(1, cpu_count) * wall_h if cpu_count else 0.0
            f["estimated_savings_usd"] = saved
            f["severity"] = "MEDIUM" if saved >= 1.0 else "LOW"
            f["summary"] = (f"{name} is over-provisioned on CPU: {req_cpus:g} requested, {used:.2f} used ({basis}); "
                            f"recommend {c.recommended_cpus:g} ({conf})")
        f["recommendation"] = (f"Request {c.recommended_cpus:g} CPUs: {basis} {used:.2f} + 20% headroom, rounded up."
                               + (" Based on averages only (no process samples): check its peak before cutting."
                                  if c.basis != "sampled_peak" else ""))
        f["recommended"] = {"cpus": c.recommended_cpus}
        f["confidence"] = r.confidence if c.basis == "sampled_peak" else r.confidence / 2
        f["evidence"] = evidence(
            ("requested_cpus", req_cpus, "cores"),
            ("avg_cores_in_use", c.avg_concurrency, "cores"),
            ("demand_cores", c.demand_concurrency, "cores"),
            ("peak_cores_in_use", c.peak_concurrency if c.peak_concurrency is not None else -1.0, "cores"),
            ("recommended_cpus", c.recommended_cpus, "cores"),
            ("runs", c.runs, "count"),
        )
        out.append(f)
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "ns":
        return f"{value / 1e9:.1f} s"
    if unit == "bytes":
        return f"{value / MIB:.0f} MiB"
    if unit == "usd":
        return f"${value:.4f}"
    return f"{value:g}"


def regression_finding(
    pipeline: str, run_id: str, host_id: str | None, result: RegressionResult, now_ns: int
) -> Record | None:
    if not result.regressed:
        return None
    f = _base(REGRESSION, {"pipeline": pipeline}, None, now_ns)
    f["pipeline"] = pipeline
    f["run_id"] = run_id
    f["host_id"] = host_id
    f["task"] = result.moves[0].task if result.moves else None
    top = max([m.ratio for m in result.moves] + ([result.run_wall.ratio] if result.run_wall else []))
    f["severity"] = "HIGH" if top >= 2.0 else "MEDIUM"
    parts = [f"{m.task} {m.metric.removesuffix('_ns').removesuffix('_usd').removesuffix('_bytes')} "
             f"{_fmt(m.current, m.unit)} vs {_fmt(m.baseline.median, m.unit)} ({m.ratio:.1f}x)"
             for m in result.moves[:4]]
    if result.run_wall is not None:
        parts.append(f"run {_fmt(result.run_wall.current, 'ns')} vs {_fmt(result.run_wall.baseline.median, 'ns')} "
                     f"({result.run_wall.ratio:.1f}x)")
    names = ", ".join(result.tasks) if result.tasks else "no single task"
    f["summary"] = f"{pipeline} run {run_id} regressed ({names}): " + "; ".join(parts)
    f["recommendation"] = (f"Compare {names} with the previous {result.compared_runs} runs: input size, tool "
                           "version, options, host and storage.")
    ev: list[Record] = [*evidence(("baseline_runs", result.compared_runs, "count"))]
    for m in result.moves:
        ev += evidence((f"{m.task}.{m.metric}", m.current, m.unit),
                       (f"{m.task}.{m.metric}.baseline_median", m.baseline.median, m.unit),
                       (f"{m.task}.{m.metric}.baseline_mad", m.baseline.mad, m.unit),
                       (f"{m.task}.{m.metric}.ratio", m.ratio, "ratio"))
    if result.run_wall is not None:
        ev += evidence(("run.wall", result.run_wall.current, "ns"),
                       ("run.wall.baseline_median", result.run_wall.baseline.median, "ns"))
    f["evidence"] = ev
    f["confidence"] = min(1.0, result.compared_runs / 10)
    return f


def resolved(row: Mapping[str, Any], now_ns: int, run_id: str | None = None) -> Record:
    """The RESOLVED state of a stored finding row (findings table) as a TuneFinding record."""
    f = finding_from_row(row)
    f["status"] = "RESOLVED"
    f["updated_ns"] = now_ns
    if run_id:
        f["run_id"] = run_id
        f["summary"] = f"resolved in run {run_id}: {f['summary']}"[:2000]
    return f


def _ns(ts: Any) -> int:
    return int(ts.timestamp() * 1e9) if ts is not None else 0


def finding_from_row(row: Mapping[str, Any]) -> Record:
    """A findings-table row as a TuneFinding record."""
    ev = row.get("evidence") or []
    return {
        "finding_id": row["finding_id"],
        "kind": row["kind"],
        "status": row["status"],
        "severity": row["severity"],
        "detected_ns": _ns(row.get("detected_at")),
        "updated_ns": _ns(row.get("updated_at")),
        "summary": row["summary"],
        "evidence": [{"name": str(e["name"]), "value": float(e["value"]), "unit": str(e["unit"])} for e in ev],
        "recommendation": row.get("recommendation"),
        "pipeline": row.get("pipeline"),
        "run_id": row.get("run_id"),
        "task": row.get("task"),
        "tool": row.get("tool"),
        "host_id": row.get("host_id"),
        "recommended": {str(k): float(v) for k, v in (row.get("recommended") or {}).items()},
        "confidence": row.get("confidence"),
        "estimated_savings_usd": row.get("estimated_savings_usd"),
    }
