"""The tune worker: enriched tasks and runs in, costs and findings out.

Per batch of messages (arroyo-style small steps, commit last):
1. decode; a message that is not the topic's record type, or does not decode, goes to
   the dead-letter topic with the reason (once, before any retry);
2. in one database transaction: per task, its cost (task_costs); per process definition, its
   last task's breakdown, class and right-sizing over the definition's history, with findings
   opened, updated or resolved (decisive_tasks); per completed run, its cost (run_costs), and
   for each pipeline's last one a regression check against previous runs of the pipeline.
   The batch is analysed per process definition (DefinitionBatch: its history read, sorted and
   right-sized once per batch) and its reads are shared (BatchReads; samples are kept across
   batches behind a signature probe); the result is what analysing record by record gives, less
   findings opened and resolved again within the batch (``per_record=True`` keeps that path and
   ``every_record=True`` the batched one analysing every record: the references
   tests/tune/test_batch_analysis.py compares against);
3. commit the transaction, publish the findings (Avro TuneFinding, keyed by id), then
   commit the Kafka offsets.

An unreachable database or broker makes the worker wait and retry the same batch;
nothing is dropped and offsets move only after both the database and Kafka have the
findings. Re-processing a batch changes nothing but ``updated`` times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from execsight import pricing
from execsight.db_retry import Backoff, retry
from execsight.findings import publish_findings
from execsight.intake import decode_expected
from execsight.kafka_io import consume_messages, make_consumer, make_producer
from execsight.run_analysis.breakdown import CONTENDED
from execsight.run_analysis.cost import task_cost
from execsight.run_analysis.process_definition import process_definition
from execsight.run_analysis.regression import compare_metrics, detect_regression, run_metrics
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import ENRICHED_RUN, ENRICHED_TASK, FINDINGS_TUNE
from execsight.settings import Settings
from execsight.tune import store
from execsight.tune.batch_analysis import DefinitionBatch, DerivedCache
from execsight.tune.batch_reads import BatchReads, SampleCache, TypeKey
from execsight.tune.finding_rules import (
    REGRESSION,
    TASK_KINDS,
    Competitor,
    FindingFloor,
    name_competitors,
    regression_finding,
    resolved,
)
from execsight.tune.task_analysis import TaskAnalysis, analyze_task, merge_history

log = logging.getLogger(__name__)

GROUP = "tune"
SOURCE = "tune"
SCHEMA = "TuneFinding"
TOPICS = (ENRICHED_TASK, ENRICHED_RUN)
EXPECTED = {ENRICHED_TASK: "EnrichedTask", ENRICHED_RUN: "EnrichedRun"}

Record = dict[str, Any]


class InvalidRecord(ValueError):
    """A decoded record that cannot be analysed; it goes to the dead-letter topic."""


def validate(kind: str, rec: Mapping[str, Any]) -> None:
    if kind == "EnrichedTask":
        if int(rec["wall_ns"]) < 0 or int(rec["end_ns"]) < int(rec["start_ns"]):
            raise InvalidRecord(f"EnrichedTask {rec.get('task_id')}: end before start")
        if not str(rec.get("task") or "").strip():
            raise InvalidRecord(f"EnrichedTask {rec.get('task_id')}: empty task name")
    elif kind == "EnrichedRun" and rec.get("end_ns") is not None and int(rec["end_ns"]) < int(rec["start_ns"]):
        raise InvalidRecord(f"EnrichedRun {rec.get('run_id')}: end before start")


def regression_checked(run: Mapping[str, Any]) -> bool:
    """Whether a completed run is compared with the pipeline's earlier runs: a successful run of a pipeline
    that is one (an engine's workflow, or named by EXECSIGHT_PIPELINE / `execsight run --pipeline`). A
    generic run's "pipeline" is only its program (make, git, bash): two of them need not be the same work,
    and an unrelated build was reported as a 90x regression of "make"."""
    return bool(run.get("pipeline")) and run.get("engine") != "generic" and run["status"] == "SUCCEEDED" \
        and run.get("end_ns") is not None


@dataclass
class Stats:
    messages: int = 0
    tasks: int = 0
    runs: int = 0
    deadlettered: int = 0
    findings_published: int = 0
    batches: int = 0
    retries: int = 0
    queries: int = 0  # database reads (BatchReads), to see that they are shared over a batch
    superseded: int = 0  # task records renamed since (the tasks row has another name now): not analysed
    last_batch_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class TuneWorker:
    def __init__(self, settings: Settings, clock: Callable[[], int] = time.time_ns,
                 retry_interval_s: float = 2.0, per_record: bool = False, every_record: bool = False) -> None:
        self.settings = settings
        self.codec = default_codec()
        self.table = pricing.price_table(settings)
        self.clock = clock
        self.retry_interval_s = retry_interval_s
        self.stats = Stats()
        self.floor = FindingFloor(settings.findings_min_wall_s, settings.findings_min_cost_usd)
        self._conn: psycopg.Connection[Any] | None = None
        # per_record: analyse each task on its own (analyze_task over its merged history), as before batch
        # analysis; kept as the reference the batched path is checked against, and for the benchmark
        self.per_record = per_record
        # every_record: analyse every task and run of a batch, not only each definition's last task
        # (decisive_tasks) and each pipeline's last run (handle_runs): the benchmark's before column
        self.every_record = every_record
        self._definitions: dict[TypeKey, DefinitionBatch] = {}
        # across batches: samples (re-read only where they changed) and what was derived from them
        self._samples = SampleCache()
        self._derived: DerivedCache = {}

    # --- database ------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # no JIT: a batch's queries are short lookups, and compiling one (chosen by cost, over unnest's guessed
            # row counts) took longer than running it
            self._conn = psycopg.connect(self.settings.database_url, connect_timeout=10, options="-c jit=off")
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def _database_failed(self, _exc: BaseException) -> None:
        self.stats.retries += 1
        self.close()
        self._conn = None

    def _rate(self, reads: BatchReads, rec: Mapping[str, Any]) -> tuple[pricing.HostRate, int, int]:
        host = reads.host(str(rec["host_id"]))
        instance_type = rec.get("instance_type") or (host.instance_type if host else None)
        region = host.region if host else None
        rate = pricing.host_rate(instance_type or self.settings.instance_type, region or self.settings.region,
                                 self.settings.onprem_hourly_usd, self.table)
        cpu_count = int(rec.get("cpu_count") or (host.cpu_count if host else 0) or 0)
        mem_total = int(rec.get("mem_total_bytes") or (host.mem_total_bytes if host else 0) or 0)
        return rate, cpu_count, mem_total

    @staticmethod
    def task_type(task: Mapping[str, Any]) -> str:
        """What a task's history and findings are kept by (with its pipeline): its process definition
        (ALIGN for ALIGN (s1))."""
        return process_definition(task)

    def reads(self, conn: psycopg.Connection[Any]) -> BatchReads:
        return BatchReads(conn, SOURCE, TASK_KINDS, history_fn=store.definition_history, type_of=self.task_type,
                          histories_fn=None if self.per_record else store.definition_histories,
                          sample_cache=None if self.per_record else self._samples)

    def _definition(self, reads: BatchReads, key: TypeKey) -> DefinitionBatch:
        """The batch's view of a definition's history (built once per batch and definition)."""
        d = self._definitions.get(key)
        if d is None:
            d = self._definitions[key] = DefinitionBatch(
                key[1], reads.history(*key), lambda k: reads.samples.get(k) or [], derived=self._derived)
            if len(self._derived) > self._samples.max_keys:
                self._derived.clear()
        return d

    def analysis_of(self, reads: BatchReads, task: Mapping[str, Any], now_ns: int) -> TaskAnalysis:
        rate, cpu_count, mem_total = self._rate(reads, task)
        psi = reads.memory_pressure(str(task["host_id"]), int(task["start_ns"]), int(task["end_ns"]))
        if self.per_record:
            history = reads.history(task.get("pipeline"), self.task_type(task))
            runs = merge_history(history, task)
            keys = [(str(t["run_id"]), str(t["task_id"])) for t in runs if t.get("run_id")]
            samples = reads.process_samples(keys)
            return analyze_task(task, history, rate, cpu_count, mem_total, samples, psi, now_ns, floor=self.floor)
        # prefetch read the samples of the batch's histories and tasks: every key merged() can give
        return self._definition(reads, (task.get("pipeline"), self.task_type(task))).analyze(
            task, rate, cpu_count, mem_total, psi, now_ns, floor=self.floor)

    @staticmethod
    def competitors(reads: BatchReads, analyses: Sequence[TaskAnalysis]) -> list[list[Competitor]]:
        """What each contended analysis competed with on its host (one query for all of them)."""
        wanted = [(i, a.span) for i, a in enumerate(analyses)
                  if a.span is not None and any(f["kind"] == CONTENDED for f in a.findings)]
        out: list[list[Competitor]] = [[] for _ in analyses]
        if not wanted:
            return out
        reads.queries += 1
        rows = store.host_competitors(reads.conn, [span for _, span in wanted])
        for (i, _), found in zip(wanted, rows, strict=True):
            out[i] = [Competitor(r["task"], r["run_id"], str(r["tool"]), float(r["cpu_s"])) for r in found]
        return out

    def handle_task(self, reads: BatchReads, task: Mapping[str, Any], now_ns: int, a: TaskAnalysis | None = None,
                    competitors: Sequence[Competitor] | None = None) -> list[Record]:
        if a is None:
            a = self.analysis_of(reads, task, now_ns)
        if competitors is None:
            competitors = self.competitors(reads, [a])[0]
        a = replace(a, findings=[name_competitors(f, competitors) for f in a.findings])
        if task.get("run_id"):
            reads.stage_cost(str(task["run_id"]), str(task["task_id"]), a.cost)
        current = {f["finding_id"] for f in a.findings}
        stale = [
            resolved(row, now_ns, task.get("run_id"))
            for row in reads.open_findings(task.get("pipeline"), self.task_type(task), current)
        ]
        log.debug("task analysed", extra={
            "run_id": task.get("run_id"), "task": task["task"], "class": a.classification.label,
            "cost_usd": round(a.cost.cost_usd, 6), "findings": len(a.findings), "resolved": len(stale),
        })
        return a.findings + stale

    def _task_cost_usd(self, reads: BatchReads, t: Mapping[str, Any], store_it: bool) -> tuple[float, float]:
        if t.get("cost_usd") is not None:
            return float(t["cost_usd"]), float(t.get("waste_usd") or 0.0)
        rate, cpu_count, mem_total = self._rate(reads, t)
        cost = task_cost(t, rate, cpu_count, mem_total)
        if store_it:
            reads.stage_cost(str(t["run_id"]), str(t["task_id"]), cost)
        return cost.cost_usd, cost.waste_usd

    def _run_cost(self, reads: BatchReads, tasks: Sequence[Record]) -> tuple[float, float]:
        """A run's cost and waste: its tasks' (each stored, and set on the task as cost_usd)."""
        total = waste = 0.0
        for t in tasks:
            c, w = self._task_cost_usd(reads, t, store_it=True)
            t["cost_usd"] = c
            total += c
            waste += w
        return total, waste

    def handle_run(self, reads: BatchReads, run: Mapping[str, Any], now_ns: int) -> list[Record]:
        if run["event"] != "COMPLETED":
            return []
        reads.flush()  # the run's regression check reads findings of the batch's tasks
        conn = reads.conn
        run_id = str(run["run_id"])
        tasks = reads.run_tasks([run_id], fresh=True)[run_id]
        total, waste = self._run_cost(reads, tasks)
        store.upsert_run_cost(conn, run_id, total, waste)
        pipeline = run.get("pipeline")
        out: list[Record] = []
        if regression_checked(run):
            prev = store.previous_runs(conn, str(pipeline), run_id, int(run["start_ns"]))
            prev_tasks = reads.run_tasks([str(r["run_id"]) for r in prev])
            for ts in prev_tasks.values():
                for t in ts:
                    t["cost_usd"] = self._task_cost_usd(reads, t, store_it=False)[0]
            result = detect_regression(
                tasks, [prev_tasks[str(r["run_id"])] for r in prev if prev_tasks[str(r["run_id"])]],
                current_run_wall_ns=float(int(run["end_ns"]) - int(run["start_ns"])),
                previous_run_walls_ns=[float(r["wall_ns"]) for r in prev if r["wall_ns"] is not None],
            )
            f = regression_finding(str(pipeline), run_id, str(run["host_id"]), result, now_ns)
            if f is not None:
                out.append(f)
            elif not result.missing_baseline:
                stale = store.open_findings(conn, [REGRESSION], pipeline, None)
                out += [resolved(row, now_ns, run_id) for row in stale]
            log.info("run analysed", extra={
                "run_id": run_id, "pipeline": pipeline, "cost_usd": round(total, 6), "baseline_runs": len(prev),
                "regressed": result.regressed, "moved_tasks": result.tasks,
            })
        return out

    def handle_runs(self, reads: BatchReads, runs: Sequence[Mapping[str, Any]], now_ns: int,
                    emit: Callable[[list[Record]], None]) -> None:
        """handle_run for a batch's runs, in order (``emit`` gets each run's findings), with its reads shared:
        the runs' tasks, their previous runs and those runs' tasks, the open regressions, in four queries,
        and the run costs written in one statement. A regression opened or resolved earlier in the batch
        is read back before a later run of that pipeline resolves it, as one run at a time would."""
        done = [r for r in runs if r["event"] == "COMPLETED"]  # the others bring no findings
        if not done:
            return
        reads.flush()  # the runs' checks read the costs and findings of the batch's tasks
        conn = reads.conn
        reads.queries += 1
        fresh = store.run_tasks(conn, list(dict.fromkeys(str(r["run_id"]) for r in done)))
        reads.runs.update(fresh)
        checked = [r for r in done if regression_checked(r)]
        if not self.every_record:
            # a pipeline's regression finding is decided by its last checked run of the batch (as its tasks'
            # findings by their definition's last task: decisive_tasks); that run's baseline holds the others
            last = {str(r["pipeline"]): id(r) for r in checked}
            checked = [r for r in checked if last[str(r["pipeline"])] == id(r)]
        reads.queries += 2
        prev_of = dict(zip((id(r) for r in checked), store.previous_runs_many(
            conn, [(str(r["pipeline"]), str(r["run_id"]), int(r["start_ns"])) for r in checked]), strict=True))
        reads.run_tasks([str(p["run_id"]) for rows in prev_of.values() for p in rows])
        pipelines = list(dict.fromkeys(str(r["pipeline"]) for r in checked))
        open_reg = store.open_findings_of_pipelines(conn, [REGRESSION], pipelines)
        changed: set[str] = set()  # pipelines whose open regression this batch staged or resolved
        run_costs: dict[str, tuple[float, float]] = {}
        metrics: dict[str, dict[str, dict[str, float]]] = {}  # run_metrics of previous runs, once per batch
        for run in done:
            run_id = str(run["run_id"])
            tasks = [dict(t) for t in fresh[run_id]]  # its own copy: others' checks fill cost_usd in the shared one
            run_costs[run_id] = self._run_cost(reads, tasks)
            total = run_costs[run_id][0]
            out: list[Record] = []
            pipeline = run.get("pipeline")
            if id(run) in prev_of:
                prev = prev_of[id(run)]
                prev_tasks = reads.run_tasks([str(r["run_id"]) for r in prev])
                for rid, ts in prev_tasks.items():
                    if rid not in metrics:  # a run's tasks and costs do not change within the batch
                        for t in ts:
                            t["cost_usd"] = self._task_cost_usd(reads, t, store_it=False)[0]
                        metrics[rid] = run_metrics(ts)
                result = compare_metrics(
                    run_metrics(tasks), [metrics[str(r["run_id"])] for r in prev if prev_tasks[str(r["run_id"])]],
                    current_run_wall_ns=float(int(run["end_ns"]) - int(run["start_ns"])),
                    previous_run_walls_ns=[float(r["wall_ns"]) for r in prev if r["wall_ns"] is not None],
                )
                f = regression_finding(str(pipeline), run_id, str(run["host_id"]), result, now_ns)
                if f is not None:
                    out.append(f)
                    changed.add(str(pipeline))
                elif not result.missing_baseline:
                    if str(pipeline) in changed:
                        reads.flush()
                        reads.queries += 1
                        stale = store.open_findings(conn, [REGRESSION], pipeline, None)
                    else:
                        stale = open_reg.get(str(pipeline), [])
                    out += [resolved(row, now_ns, run_id) for row in stale]
                    if stale:
                        changed.add(str(pipeline))
                log.info("run analysed", extra={
                    "run_id": run_id, "pipeline": pipeline, "cost_usd": round(total, 6), "baseline_runs": len(prev),
                    "regressed": result.regressed, "moved_tasks": result.tasks,
                })
            emit(out)
        store.upsert_run_costs(conn, run_costs)

    def _stage(self, reads: BatchReads, batch: list[Record], type_key: TypeKey | None,
               findings: dict[str, Record]) -> None:
        first = reads.first_detected([f["finding_id"] for f in batch])
        for f in batch:
            if f["finding_id"] in first:
                f["detected_ns"] = first[f["finding_id"]]
        reads.stage(batch, type_key)
        for f in batch:
            findings[f["finding_id"]] = f

    def current_tasks(self, reads: BatchReads, tasks: Sequence[Record]) -> list[Record]:
        """The task records whose name is still the one their tasks row has. The correlator writes the row
        before it publishes, so a record whose row has another name now was renamed since (a Nextflow task
        named by its hash until its .command.run header came): its renamed record follows on the topic, and
        analysing this one too would count one task twice, once under a name it never had."""
        keys = [(str(t["run_id"]), str(t["task_id"])) for t in tasks if t.get("run_id")]
        if not keys:
            return list(tasks)
        reads.queries += 1
        names = store.current_names(reads.conn, list(dict.fromkeys(keys)))
        out = []
        for t in tasks:
            now_named = names.get((str(t["run_id"]), str(t["task_id"]))) if t.get("run_id") else None
            if now_named is not None and now_named != t["task"]:
                self.stats.superseded += 1
                log.info("task record superseded by a rename", extra={
                    "run_id": t["run_id"], "task_id": t["task_id"], "task": t["task"], "now": now_named})
                continue
            out.append(t)
        return out

    def renamed_placeholders(self, reads: BatchReads, tasks: Sequence[Record], now_ns: int) -> list[Record]:
        """Findings raised for a task under its id (its name until a rename), resolved once it comes named:
        after the rename no task has that name, so they are about no task."""
        subjects = list(dict.fromkeys((t.get("pipeline"), str(t["task_id"])) for t in tasks
                                      if str(t["task"]) != str(t["task_id"])))
        if not subjects:
            return []
        reads.flush()
        reads.queries += 1
        rows = store.placeholder_findings(reads.conn, TASK_KINDS, subjects)
        out = []
        for row in rows:
            f = resolved(row, now_ns)
            f["summary"] = f"superseded: the task was renamed: {f['summary']}"[:2000]
            out.append(f)
        return out

    def last_of_definitions(self, tasks: Sequence[Record]) -> list[Record]:
        """Each process definition's last task record in the batch, in record order."""
        last = {(t.get("pipeline"), self.task_type(t)): i for i, t in enumerate(tasks)}
        return [tasks[i] for i in sorted(last.values())]

    def decisive_tasks(self, reads: BatchReads, tasks: Sequence[Record], decisive: Sequence[Record]) -> list[Record]:
        """The tasks whose analysis decides the batch's findings: each definition's last one. Every finding of
        a definition has the definition as its subject, and a task analysed raises or resolves each open one,
        so the last task of a definition leaves its findings as analysing all of them in order would (bar
        findings an earlier task of the batch would have opened and the last one resolved again, in the same
        transaction: never visible as open, so not raised). The others are costed only; the history the last
        one is right-sized over holds them already (the correlator writes a task's row before publishing it).
        A burst of many runs then costs one analysis per definition per batch, not one per task."""
        chosen = {id(t) for t in decisive}  # decisive: last_of_definitions(tasks)
        for t in tasks:
            if id(t) not in chosen and t.get("run_id"):
                rate, cpu_count, mem_total = self._rate(reads, t)
                reads.stage_cost(str(t["run_id"]), str(t["task_id"]), task_cost(t, rate, cpu_count, mem_total))
        return list(decisive)

    def analyse(self, decoded: Sequence[tuple[str, Record]]) -> list[Record]:
        """One transaction over a batch of decoded records; returns the findings it stored (committed).

        Reads are shared over the batch (BatchReads) and findings written once at the end; a record
        still sees the findings of the records before it in the batch."""
        conn = self._connection()
        now = self.clock()
        findings: dict[str, Record] = {}
        reads = self.reads(conn)
        self._definitions = {}
        try:
            tasks = self.current_tasks(reads, [rec for kind, rec in decoded if kind == "EnrichedTask"])
            self._stage(reads, self.renamed_placeholders(reads, tasks, now), None, findings)
            last = tasks if self.per_record or self.every_record else self.last_of_definitions(tasks)
            reads.prefetch(last)
            # Tasks before runs: a run's check reads its tasks' costs and findings.
            if self.per_record:
                for rec in tasks:
                    self._stage(reads, self.handle_task(reads, rec, now), (rec.get("pipeline"), self.task_type(rec)),
                                findings)
            else:
                decisive = tasks if self.every_record else self.decisive_tasks(reads, tasks, last)
                # analyses first (they read nothing the batch writes), then what the contended ones competed
                # with in one query, then findings in record order
                analyses = [self.analysis_of(reads, rec, now) for rec in decisive]
                rivals = self.competitors(reads, analyses)
                for rec, a, c in zip(decisive, analyses, rivals, strict=True):
                    self._stage(reads, self.handle_task(reads, rec, now, a, c),
                                (rec.get("pipeline"), self.task_type(rec)), findings)
            runs = [rec for kind, rec in decoded if kind != "EnrichedTask"]
            if self.per_record:
                for rec in runs:
                    self._stage(reads, self.handle_run(reads, rec, now), None, findings)
            else:
                self.handle_runs(reads, runs, now, lambda batch: self._stage(reads, batch, None, findings))
            reads.flush()
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        self.stats.queries += reads.queries
        return list(findings.values())

    # --- Kafka ---------------------------------------------------------------------------------------

    def decode(self, producer: Producer, msgs: Sequence[Message]) -> list[tuple[str, Record]]:
        def dead() -> None:
            self.stats.deadlettered += 1

        # validate() raises KeyError/TypeError/ValueError on a record missing or mistyping a field
        decoded = decode_expected(msgs, codec=self.codec, settings=self.settings, producer=producer,
                                  expected=EXPECTED, origin="tune", check=validate,
                                  refusals=(InvalidRecord, KeyError, TypeError, ValueError), on_dead=dead)
        return [(name, rec) for _, name, rec in decoded]

    def process(self, producer: Producer, msgs: Sequence[Message], stop: threading.Event) -> bool:
        """Handles a batch until it is stored and published; False when stopped before that."""
        t0 = time.monotonic()
        decoded = self.decode(producer, msgs)
        try:
            findings = retry(lambda: self.analyse(decoded), "database unavailable, retrying batch",
                             Backoff(self.retry_interval_s), stop=stop, on_failure=self._database_failed,
                             logger=log)
        except psycopg.OperationalError:  # retried without a budget: only a stop ends the wait
            return False
        while True:
            try:
                publish_findings(producer, self.settings, FINDINGS_TUNE, SCHEMA, findings, self.codec)
                break
            except (KafkaException, BufferError, RuntimeError) as exc:
                self.stats.retries += 1
                log.warning("findings not acknowledged, retrying", extra={"error": str(exc)})
                if stop.wait(self.retry_interval_s):
                    return False
        self.stats.messages += len(msgs)
        self.stats.tasks += sum(1 for k, _ in decoded if k == "EnrichedTask")
        self.stats.runs += sum(1 for k, _ in decoded if k == "EnrichedRun")
        self.stats.findings_published += len(findings)
        self.stats.batches += 1
        self.stats.last_batch_s = time.monotonic() - t0
        log.info("batch stored and published", extra={
            "messages": len(msgs), "decoded": len(decoded), "findings": len(findings),
            "seconds": round(self.stats.last_batch_s, 3),
        })
        return True

    def run(self, stop: threading.Event, idle_exit_s: float | None = None, batch_size: int = 1000) -> None:
        consumer: Consumer = make_consumer(self.settings, GROUP, TOPICS)
        producer = make_producer(self.settings)
        idle_since = time.monotonic()
        log.info("tune worker started", extra={"topics": [self.settings.topic(t) for t in TOPICS]})
        try:
            while not stop.is_set():
                good = consume_messages(consumer, batch_size, timeout=0.5)
                if not good:
                    if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        break
                    continue
                if not self.process(producer, good, stop):
                    break
                while True:
                    try:
                        consumer.commit(asynchronous=False)
                        break
                    except KafkaException as exc:
                        if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                            break
                        log.warning("offset commit failed, retrying", extra={"error": str(exc)})
                        if stop.wait(self.retry_interval_s):
                            return
                idle_since = time.monotonic()
        finally:
            consumer.close()
            producer.flush(10)
            self.close()
            log.info("tune worker stopped", extra={"messages": self.stats.messages,
                                                   "deadlettered": self.stats.deadlettered})
