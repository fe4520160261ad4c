"""Analyses -> TuneFinding records (pure functions).

Every finding has a stable id from its kind and subject (execsight.findings.finding_id).
The subject of task findings is the pipeline and the process definition (``ALIGN`` for the
Nextflow tasks ``ALIGN (s1)``, ``ALIGN (s2)``; the Snakemake rule), so a definition run many
times gets one finding, which names the instances it is about:

- what bounded the definition's tasks in a run: the dominant one of io_bound, compute_bound,
  contended, idle_stalled (one, so the advice never contradicts itself), plus memory_bound
  and helper_churn when they hold;
- right-sizing (rightsize_memory, rightsize_cpu) over the definition's history;
- regression: subject pipeline (names the run and the definitions that moved).

All CPU advice comes from one CpuRecommendation: more CPUs are recommended only when the
task's own threads outnumbered the CPUs it had, never beyond the largest host it ran on;
a single-threaded tool is told that more CPUs will not help.

Noise floor: findings about how a definition's tasks ran are not raised when those tasks
together ran under ``FindingFloor.min_wall_s`` and cost under ``min_cost_usd``. Request
mistakes (a request far above use, memory at its limit, an OOM kill) are raised at any size:
the reservation blocks the host whatever the task's length; their severity follows the money.

``detected_ns`` is set to ``now_ns`` here; the worker keeps the first detection time
of a finding it already stored. ``resolved(...)`` turns a stored finding that no longer
holds into its RESOLVED state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.findings import evidence, finding_id
from execsight.run_analysis.breakdown import (
    COMPUTE_BOUND,
    CONTENDED,
    HELPER_CHURN,
    IDLE_STALLED,
    IO_BOUND,
    MEMORY_BOUND,
    Breakdown,
    Classification,
)
from execsight.run_analysis.cost import Cost
from execsight.run_analysis.process_definition import process_definition
from execsight.run_analysis.regression import RegressionResult
from execsight.run_analysis.rightsize import (
    CPU_LOWER,
    CPU_RAISE,
    DEFAULT_POLICY,
    CpuRecommendation,
    Policy,
    Rightsizing,
    memory_overprovisioned,
    memory_underprovisioned,
)
from execsight.timestamps import to_ns

Record = dict[str, Any]
MIB = float(1 << 20)

CLASS_KINDS = (IO_BOUND, COMPUTE_BOUND, MEMORY_BOUND, CONTENDED, IDLE_STALLED, HELPER_CHURN)
TIME_KINDS = (IO_BOUND, CONTENDED, COMPUTE_BOUND, IDLE_STALLED)   # mutually exclusive: the dominant slice
RIGHTSIZE_KINDS = ("rightsize_memory", "rightsize_cpu")
TASK_KINDS = CLASS_KINDS + RIGHTSIZE_KINDS
REGRESSION = "regression"
SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH")


@dataclass(frozen=True)
class FindingFloor:
    """Tasks below this (together, per definition and run) raise no finding about how they ran.

    Below means short and cheap: under ``min_wall_s`` of wall time and under ``min_cost_usd``. A
    task that ran long enough, or cost enough, to matter is above it (a 50 s task on a $0.10/h
    host costs under $0.001 and still deserves its helper-churn finding). 0 for either turns it off.
    """

    min_wall_s: float = 5.0
    min_cost_usd: float = 0.001

    def below(self, wall_ns: float, cost_usd: float) -> bool:
        return wall_ns / 1e9 < self.min_wall_s and cost_usd < self.min_cost_usd


DEFAULT_FLOOR = FindingFloor()


def task_subject(task: Mapping[str, Any]) -> dict[str, str]:
    return {"pipeline": str(task.get("pipeline") or ""), "task": process_definition(task)}


def _label(task: Mapping[str, Any]) -> str:
    d = process_definition(task)
    return f"{task['pipeline']}/{d}" if task.get("pipeline") else d


def _cpus(n: float) -> str:
    return f"{n:g} CPU" if n == 1 else f"{n:g} CPUs"


def _instances(names: Sequence[str], definition: str, count: bool = True) -> str:
    """' (tasks ALIGN (s1), ALIGN (s2))' when the definition ran as tagged instances, ' (2 tasks)' for
    untagged ones; '' for one task."""
    shown = [n for n in dict.fromkeys(names) if n != definition]
    if not shown:
        return f" ({len(names)} tasks)" if count and len(names) > 1 else ""
    more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
    return f" (task{'s' if len(shown) > 1 else ''} {', '.join(shown[:3])}{more})"


def severity_for_seconds(seconds: float) -> str:
    """Severity of time lost per run: 30 min HIGH, 5 min MEDIUM, 30 s LOW, else INFO."""
    if seconds >= 1800:
        return "HIGH"
    if seconds >= 300:
        return "MEDIUM"
    return "LOW" if seconds >= 30 else "INFO"


def severity_for_money(per_run_usd: float, hourly_usd: float) -> str:
    """Severity of money a change frees: per run of the pipeline, or per hour the task holds its request.

    $1 (per run or per hour) HIGH, $0.10 per run or $0.05/h MEDIUM, $0.001 per run or $0.005/h LOW.
    The hourly rate counts because a request blocks that share of a host whenever the task runs,
    however short each run is.
    """
    if per_run_usd >= 1.0 or hourly_usd >= 1.0:
        return "HIGH"
    if per_run_usd >= 0.1 or hourly_usd >= 0.05:
        return "MEDIUM"
    return "LOW" if per_run_usd >= 0.001 or hourly_usd >= 0.005 else "INFO"


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


def _threads_evidence(c: CpuRecommendation) -> str:
    return "sampled" if c.basis == "sampled_peak" else "on average"


def compute_advice(c: CpuRecommendation, b: Breakdown) -> str:
    req = c.requested_cpus
    if c.verdict == CPU_LOWER and req is not None:
        return (f"It keeps {c.peak_demand:.1f} of its {req:g} requested CPUs busy: request {c.recommended_cpus:g} "
                "(see its rightsize_cpu finding), or enable the tool's threads option to use them all.")
    if c.host_limited:
        return (f"Its {c.wanted_cpus:g} busy threads outnumber the {c.host_cpus} CPUs of the largest host it ran on "
                f"(so {c.host_cpus} is the most to request): use a larger host or cap its threads to {c.host_cpus}.")
    if c.verdict == CPU_RAISE and req is not None:
        return (f"Its own threads ({c.peak_demand:.1f} running or runnable at peak) outnumber the {_cpus(req)} it "
                f"requested: request {c.recommended_cpus:g} (see its rightsize_cpu finding).")
    if c.single_threaded:
        return (f"It is single-threaded (at most one thread running or waiting for a core, {_threads_evidence(c)}): "
                "more CPUs will not help. A faster CPU (higher clock, a newer family such as c7i) or cheaper "
                "options shorten it; a threads option, if the tool has one, would let it use more cores.")
    return (f"It keeps {b.cpu_concurrency:.1f} cores busy on average: a faster CPU family shortens it, or more "
            "threads with as many CPUs if the tool scales.")


def contended_advice(c: CpuRecommendation) -> str:
    req = c.requested_cpus
    if c.host_limited:
        return (f"Its own {c.peak_demand:.1f} runnable threads outnumber the {c.host_cpus} CPUs of the largest host "
                f"it ran on ({c.host_cpus} is the most to request): cap the tool's threads to {c.host_cpus} or run it "
                "on a larger host.")
    if c.verdict == CPU_RAISE and req is not None:
        return (f"Its own threads ({c.peak_demand:.1f} running or runnable at peak) outnumber the {_cpus(req)} it "
                f"requested: request {c.recommended_cpus:g} CPUs, or cap the tool's threads to {req:g}.")
    if c.single_threaded:
        return ("It is single-threaded, so more CPUs will not help: other work on the host took the cores it waited "
                "for. Run fewer tasks at once on this host (lower -j/--cores, maxForks), or give it a quieter host.")
    alloc = f"{req:g} requested" if req is not None else f"the host's {c.host_cpus}"
    return (f"Its own threads ({c.peak_demand:.1f} at peak) fit {alloc} CPUs: other work on the host took the cores. "
            "Run fewer tasks at once on this host; more CPUs for this task will not help.")


def dominant_time_class(c: Classification) -> str | None:
    return next((k for k in c.labels if k in TIME_KINDS), None)


def classification_findings(
    task: Mapping[str, Any], b: Breakdown, c: Classification, cost: Cost | None, now_ns: int,
    cpu: CpuRecommendation | None = None, instances: Sequence[str] = (),
) -> list[Record]:
    """Memory and helper-churn findings when they hold, and the one dominant time class.

    ``task`` and ``b``/``c`` describe the definition's tasks in one run (summed), ``instances`` their names.
    """
    out: list[Record] = []
    definition = process_definition(task)
    name = _label(task) + _instances(instances, definition)
    wall_s = b.wall_ns / 1e9
    its = "its" if len(instances) <= 1 else "their"
    s = b.shares()
    dominant = dominant_time_class(c)
    kinds = [k for k in c.labels if k in (MEMORY_BOUND, HELPER_CHURN)] + ([dominant] if dominant else [])
    for kind in kinds:
        f = _base(kind, task_subject(task), task, now_ns)
        ev = _breakdown_evidence(b)
        if kind == IO_BOUND:
            lost = b.blkio_ns / 1e9 if b.blkio_ns else (b.other_off_cpu_ns + b.idle_ns) / 1e9
            f["severity"] = severity_for_seconds(lost)
            f["summary"] = (f"{name} is I/O-bound: {s['blkio_wait']:.0%} of {its} {wall_s:.1f} s waiting on block I/O, "
                            f"{s['on_cpu']:.0%} on CPU")
            # "more CPUs will not help" unless its own threads also outnumbered its CPUs (rightsize_cpu says so)
            cpus_too = cpu is not None and cpu.verdict == CPU_RAISE
            f["recommendation"] = (
                ("Storage wait dominates" if cpus_too else "Storage wait dominates, so more CPUs will not help")
                + ": use faster or local storage (instance-store NVMe, gp3/io2 with more IOPS and throughput), "
                "batch fsyncs, or overlap I/O with compute."
            )
            ev += evidence(("blkio_wait", b.blkio_ns / 1e9, "s"), ("write_bytes", float(task.get("write_bytes") or 0),
                                                                   "bytes"),
                           ("read_bytes", float(task.get("read_bytes") or 0), "bytes"))
        elif kind == COMPUTE_BOUND:
            f["severity"] = "INFO"
            f["summary"] = (f"{name} is compute-bound: {s['on_cpu']:.0%} of {its} {wall_s:.1f} s on CPU, "
                            f"{b.cpu_concurrency:.2f} cores in use on average")
            f["recommendation"] = (compute_advice(cpu, b) if cpu is not None else
                                   "CPU time dominates: a faster CPU family or cheaper options shorten it.")
        elif kind == CONTENDED:
            f["severity"] = severity_for_seconds(b.runq_ns / 1e9)
            f["summary"] = (f"{name} waits for CPUs: {s['runq_wait']:.0%} of {its} {wall_s:.1f} s runnable but "
                            f"waiting for a core")
            f["recommendation"] = (contended_advice(cpu) if cpu is not None else
                                   "The host is oversubscribed while it runs: run fewer tasks at once on the host.")
            ev += evidence(("runq_wait", b.runq_ns / 1e9, "s"))
        elif kind == IDLE_STALLED:
            lost = (b.other_off_cpu_ns + b.idle_ns) / 1e9
            f["severity"] = severity_for_seconds(lost)
            f["summary"] = (f"{name} is idle or stalled: {s['other_off_cpu'] + s['idle']:.0%} of {its} {wall_s:.1f} s "
                            "off-CPU without disk I/O")
            f["recommendation"] = ("It mostly waits on something other than CPU or disk (sleep, lock, remote "
                                   "service, a child): find the wait; its reserved cores and memory sit idle.")
        elif kind == HELPER_CHURN:
            f["severity"] = severity_for_seconds(b.helper_wall_ns / 1e9)
            f["summary"] = (f"{name} churns helpers: {b.helper_count} short-lived processes took "
                            f"{b.helper_share:.0%} of {its} {wall_s:.1f} s")
            f["recommendation"] = ("Process start-up dominates: batch the work into fewer, longer processes "
                                   "(xargs -n/-P, a loop inside the tool, a long-lived worker).")
            ev += evidence(("helper_wall", b.helper_wall_ns / 1e9, "s"))
        else:  # MEMORY_BOUND
            detail = c.memory_detail or "pressure"
            f["severity"] = "HIGH" if detail == "oom" else "MEDIUM"
            what = {"oom": "was OOM-killed", "reclaim": "stalls in memory reclaim",
                    "near_limit": "runs at its memory limit", "pressure": "runs under memory pressure"}[detail]
            peak_mib = float(task.get("peak_rss_bytes") or 0) / MIB
            f["summary"] = f"{name} is memory-bound: it {what} (peak RSS {peak_mib:.0f} MiB)"
            f["recommendation"] = ("Give it more memory (see its rightsize_memory finding) or reduce its working "
                                   "set (smaller batches, streaming).")
            ev += evidence(("peak_rss", float(task.get("peak_rss_bytes") or 0), "bytes"),
                           ("reclaim_wait", float(task.get("reclaim_ns") or 0) / 1e9, "s"),
                           ("oom_killed", 1.0 if task.get("oom_killed") else 0.0, "count"))
        if cost is not None:
            ev += evidence(("cost", cost.cost_usd, "usd"), ("waste", cost.waste_usd, "usd"))
        if cpu is not None and kind in (COMPUTE_BOUND, CONTENDED):
            ev += evidence(("runnable_threads_peak", cpu.peak_demand, "threads"),
                           ("largest_host_cpus", float(cpu.host_cpus), "cores"))
        f["evidence"] = ev
        out.append(f)
    return out


@dataclass(frozen=True)
class Competitor:
    """Other work on the host while the definition's tasks ran: a task of another run or definition, or
    processes outside any task, with the CPU time they used in that interval."""

    task: str | None
    run_id: str | None
    tool: str
    cpu_s: float

    @property
    def label(self) -> str:
        if self.task:
            return f"{self.task} ({self.tool}" + (f", run {self.run_id})" if self.run_id else ")")
        return self.tool


def name_competitors(finding: Record, competitors: Sequence[Competitor]) -> Record:
    """A contended finding that says what it competed with (the top few by CPU); others unchanged."""
    if finding.get("kind") != CONTENDED or not competitors:
        return finding
    named = ", ".join(f"{c.label} {c.cpu_s:.1f} s CPU" for c in competitors)
    return {
        **finding,
        "summary": f"{finding['summary']}; competing on the host: {named}"[:2000],
        "recommendation": f"{finding['recommendation']} Running with it on the host: {named}.",
        "evidence": [*finding["evidence"],
                     *evidence(*((f"competitor:{c.label}", c.cpu_s, "s") for c in competitors))],
    }


@dataclass(frozen=True)
class HostShare:
    """What the latest run's tasks of the definition held: the host's rate and size, and their wall time."""

    rate_hourly_usd: float
    cpu_count: int
    mem_total_bytes: int
    wall_ns: float                  # summed over the definition's tasks in the run


def _freed(requested: float, recommended: float, total: float) -> float:
    """Share of a host a smaller request frees (a request above the host holds all of it)."""
    return max(0.0, (min(requested, total) - recommended) / total) if total > 0 else 0.0


def rightsize_findings(
    task: Mapping[str, Any], r: Rightsizing, host: HostShare, now_ns: int,
    p: Policy = DEFAULT_POLICY, instances: Sequence[str] = (),
) -> list[Record]:
    """rightsize_memory when over-provisioned, OOM-killed or at its limit; rightsize_cpu when the request
    is clearly above what its threads used, or below what its own threads ran at once."""
    out: list[Record] = []
    definition = process_definition(task)
    name = _label(task) + _instances(instances, definition, count=False)
    m, c = r.memory, r.cpu
    n = m.runs
    scope = f"{n} task{'s' if n != 1 else ''}" + (f" in {r.run_count} runs" if r.run_count > 1 else "")
    conf = f"{r.confidence_label} confidence ({scope})"
    wall_h = host.wall_ns / 3600e9
    under = memory_underprovisioned(m)
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
            share = _freed(float(m.requested_bytes or 0), m.recommended_bytes, host.mem_total_bytes)
            hourly = host.rate_hourly_usd * share
            f["estimated_savings_usd"] = hourly * wall_h
            f["severity"] = severity_for_money(hourly * wall_h, hourly)
            f["summary"] = (f"{name} is over-provisioned: {req}peak {m.observed_peak_bytes / MIB:.0f} MiB used, "
                            f"recommend {m.recommended_bytes / MIB:.0f} MiB ({conf})")
        f["recommendation"] = (
            f"Set its memory to {m.recommended_bytes / MIB:.0f} MiB: {m.basis} peak RSS over {scope} "
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
    if c.verdict in (CPU_RAISE, CPU_LOWER) and c.requested_cpus is not None:
        f = _base("rightsize_cpu", task_subject(task), task, now_ns)
        req_cpus = c.requested_cpus
        how = "sampled sustained peak" if c.basis == "sampled_peak" else "average over the task"
        if c.verdict == CPU_RAISE:
            # at most the share of the time its extra threads waited: demand d on r CPUs runs ~d/r slower
            saved_s = host.wall_ns / 1e9 * max(0.0, 1.0 - req_cpus / min(c.peak_demand, c.recommended_cpus))
            f["severity"] = severity_for_seconds(saved_s)
            f["summary"] = (f"{name} needs more CPUs: its own threads ran {c.peak_demand:.1f} at once ({how}) on "
                            f"{req_cpus:g} requested; recommend {c.recommended_cpus:g} ({conf})")
            cap = (f" Its threads would use {c.wanted_cpus:g}, but the largest host it ran on has {c.host_cpus} CPUs: "
                   f"{c.recommended_cpus:g} is the most it can get there; cap its threads to match."
                   if c.host_limited else "")
            f["recommendation"] = (f"Request {c.recommended_cpus:g} CPUs: threads running or waiting for a core "
                                   f"{c.peak_demand:.2f} at once ({how}), rounded to whole cores.{cap}")
        else:
            share = _freed(req_cpus, c.recommended_cpus, float(host.cpu_count))
            hourly = host.rate_hourly_usd * share
            f["estimated_savings_usd"] = hourly * wall_h
            f["severity"] = severity_for_money(hourly * wall_h, hourly)
            f["summary"] = (f"{name} is over-provisioned on CPU: {req_cpus:g} requested, at most "
                            f"{c.peak_demand:.2f} threads running or runnable ({how}); recommend "
                            f"{c.recommended_cpus:g} ({conf})")
            f["recommendation"] = (f"Request {c.recommended_cpus:g} CPUs: its threads never needed more at once "
                                   f"({how}: {c.peak_demand:.2f}), rounded to whole cores."
                                   + (" Based on averages only (no process samples): check its peak before cutting."
                                      if c.basis != "sampled_peak" else ""))
        f["recommended"] = {"cpus": c.recommended_cpus}
        f["confidence"] = r.confidence if c.basis == "sampled_peak" else r.confidence / 2
        f["evidence"] = evidence(
            ("requested_cpus", req_cpus, "cores"),
            ("avg_cores_in_use", c.avg_concurrency, "cores"),
            ("demand_cores", c.demand_concurrency, "cores"),
            ("peak_cores_in_use", c.peak_concurrency if c.peak_concurrency is not None else -1.0, "cores"),
            ("runnable_threads_peak", c.peak_demand, "threads"),
            ("largest_host_cpus", float(c.host_cpus), "cores"),
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
    if result.tasks:
        names = ", ".join(result.tasks)
        f["summary"] = f"{pipeline} run {run_id} regressed ({names}): " + "; ".join(parts)
        f["recommendation"] = (f"Compare {names} with the previous {result.compared_runs} runs: input size, tool "
                               "version, options, host and storage.")
    else:
        # only the run's wall moved: the time went between tasks, not into one
        f["summary"] = f"{pipeline} run {run_id} regressed as a whole, no task of it slower: " + "; ".join(parts)
        f["recommendation"] = (f"No task took longer than in the previous {result.compared_runs} runs: the time went "
                               "between tasks. Compare the run's timeline with theirs: waits for a scheduler or "
                               "queue, staging of inputs, fewer tasks at once, the engine's own start-up.")
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


def finding_from_row(row: Mapping[str, Any]) -> Record:
    """A findings-table row as a TuneFinding record."""
    ev = row.get("evidence") or []
    return {
        "finding_id": row["finding_id"],
        "kind": row["kind"],
        "status": row["status"],
        "severity": row["severity"],
        "detected_ns": (to_ns(row.get("detected_at")) or 0),
        "updated_ns": (to_ns(row.get("updated_at")) or 0),
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
