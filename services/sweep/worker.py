"""The sweep worker: folds host heartbeats, execution windows and runs from Kafka; every scan interval
decides which hosts are idle, scans the configured AWS regions read-only, and stores and publishes
findings (OPEN, or RESOLVED when the resource is gone or active again).

State is a function of the topics' recent history: on start the worker assigns itself every
partition at the offset of ``now - lookback`` (offsets_for_times) and replays from there, so it
commits no offsets and a restart loses nothing. Findings are upserts by stable id, so re-running a
scan changes nothing but ``updated``; the database is committed before findings are published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, Producer, TopicPartition

from execsight import pricing
from execsight.db_retry import Backoff, retry
from execsight.findings import publish_findings, upsert_findings
from execsight.kafka_io import consume_messages, consumer_config, make_producer, send_to_deadletter
from execsight.schemas.codec import CodecError, default_codec
from execsight.schemas.rollups import RollupRefresher
from execsight.schemas.storage_health import log_failing_jobs, read_health
from execsight.schemas.topics import ENRICHED_HOST, ENRICHED_RUN, FINDINGS_SWEEP, RAW_HOST
from execsight.settings import Settings
from execsight.sweep.finding_records import (
    ALL_KINDS,
    HOST,
    IDLE_GPU,
    INVENTORY_KINDS,
    SCHEMA,
    SOURCE,
    Finding,
    Record,
    reconcile,
)
from execsight.sweep.idle import NS, HostTracker, IdleConfig, host_findings
from execsight.sweep.inventory import RegionInventory
from execsight.sweep.inventory_rules import RuleConfig, region_findings
from execsight.timestamps import to_ns

log = logging.getLogger(__name__)

TOPICS = (RAW_HOST, ENRICHED_HOST, ENRICHED_RUN)
EXPECTED = {RAW_HOST: {"HostSample", "CollectorStatus"}, ENRICHED_HOST: {"HostActivity"}, ENRICHED_RUN: {"EnrichedRun"}}
GROUP = "sweep"


class Scanner(Protocol):
    def scan(self, regions: Sequence[str]) -> tuple[list[RegionInventory], dict[str, str]]: ...


@dataclass(frozen=True)
class ScanResult:
    records: list[Record]  # what was stored and published this round (OPEN and RESOLVED)
    open: list[Record]  # every open finding after this round
    failed_regions: dict[str, str]


class SweepWorker:
    def __init__(self, settings: Settings, scanner: Scanner | None = None, regions: Sequence[str] | None = None,
                 idle: IdleConfig | None = None, rules: RuleConfig | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.scanner = scanner
        self.regions = tuple(regions if regions is not None else settings.aws_regions)
        self.idle_cfg = idle or IdleConfig.from_settings(settings)
        self.rules = rules or RuleConfig(onprem_hourly_usd=settings.onprem_hourly_usd)
        self.tracker = HostTracker(self.idle_cfg)
        self.table = pricing.price_table(settings)
        self.codec = default_codec()
        self.clock = clock
        self.open: dict[str, Record] = {}
        self.messages = 0
        self.deadlettered = 0

    # --- input ---------------------------------------------------------------------------------------

    def topic_of(self, msg: Message) -> str:
        name = msg.topic() or ""
        prefix = self.settings.topic_prefix
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    def apply(self, topic: str, record_type: str, rec: Mapping[str, Any]) -> None:
        """Folds one decoded record into the host state; ValueError/KeyError on records it cannot use."""
        if record_type not in EXPECTED.get(topic, set()):
            raise ValueError(f"unexpected record type {record_type} on {topic}")
        if record_type == "HostSample":
            self.tracker.on_sample(rec)
        elif record_type == "HostActivity":
            self.tracker.on_activity(rec)
        elif record_type == "EnrichedRun":
            self.tracker.on_run(rec)

    def handle(self, msg: Message, producer: Producer) -> None:
        self.messages += 1
        topic = self.topic_of(msg)
        try:
            record_type, rec = self.codec.decode(msg.value() or b"")
            self.apply(topic, record_type, rec)
        except (CodecError, ValueError, KeyError, TypeError) as exc:
            self.deadlettered += 1
            send_to_deadletter(producer, self.settings, msg, f"{type(exc).__name__}: {exc}", "sweep")

    # --- evaluation ------------------------------------------------------------------------------------

    def hourly(self, instance_type: str | None, region: str | None) -> float:
        return pricing.host_rate(instance_type, region, self.settings.onprem_hourly_usd, self.table).hourly_usd

    def evaluate(self, now_ns: int, inventories: Iterable[RegionInventory]) -> tuple[list[Finding], set[str]]:
        """Current findings, and the regions whose inventory findings were evaluated."""
        self.tracker.prune(now_ns)
        verdicts = self.tracker.verdicts(now_ns)
        found: list[Finding] = []
        scanned: set[str] = set()
        joined: set[str] = set()
        for inv in inventories:
            scanned.add(inv.region)
            found.extend(region_findings(inv, verdicts, now_ns, self.rules, self.table))
            joined.update(i.instance_id for i in inv.instances)
        for f in host_findings(verdicts, now_ns, self.hourly):
            v = verdicts[f.resource_id]
            # an EC2 host seen in the inventory is reported once, as its instance (idle_instance)
            if f.kind != IDLE_GPU and v.instance_id and v.instance_id in joined:
                continue
            found.append(f)
        return found, scanned

    def sweep(self, now_ns: int | None = None) -> tuple[list[Record], dict[str, str]]:
        """One round: scan, evaluate, reconcile with the open findings. Returns (records, failed regions)."""
        now = self.clock() if now_ns is None else now_ns
        inventories: list[RegionInventory] = []
        failed: dict[str, str] = {}
        if self.scanner is not None and self.regions:
            inventories, failed = self.scanner.scan(self.regions)
        found, scanned = self.evaluate(now, inventories)

        def in_scope(rec: Mapping[str, Any]) -> bool:
            if rec["resource_type"] == HOST:
                return True
            return rec["kind"] in INVENTORY_KINDS and rec.get("region") in scanned

        return reconcile(found, self.open, in_scope, now), failed

    def remember(self, records: Iterable[Record]) -> None:
        for r in records:
            if r["status"] == "OPEN":
                self.open[r["finding_id"]] = r
            else:
                self.open.pop(r["finding_id"], None)

    def store_and_publish(self, records: list[Record], conn: psycopg.Connection[Any], producer: Producer) -> None:
        upsert_findings(conn, SOURCE, records)
        conn.commit()
        publish_findings(producer, self.settings, FINDINGS_SWEEP, SCHEMA, records, self.codec)
        self.remember(records)


# --- database -----------------------------------------------------------------------------------------

def row_to_record(row: Mapping[str, Any]) -> Record:
    """A findings row (as written by upsert_findings) back into a SweepFinding record."""
    return {
        "finding_id": row["finding_id"], "kind": row["kind"], "status": row["status"], "severity": row["severity"],
        "detected_ns": to_ns(row["detected_at"]) or 0, "updated_ns": to_ns(row["updated_at"]) or 0,
        "summary": row["summary"], "evidence": list(row["evidence"] or []), "recommendation": row["recommendation"],
        "resource_type": row["resource_type"] or "", "resource_id": row["resource_id"] or "",
        "region": row["region"], "host_id": row["host_id"], "since_ns": to_ns(row["since"]),
        "last_run_id": row["last_run_id"], "monthly_waste_usd": row["monthly_waste_usd"],
        "accrued_waste_usd": row["accrued_waste_usd"],
    }


def load_open(conn: psycopg.Connection[Any]) -> dict[str, Record]:
    cur = conn.execute("SELECT * FROM findings WHERE source = %s AND status = 'OPEN' AND kind = ANY(%s)",
                       (SOURCE, list(ALL_KINDS)))
    names = [d.name for d in cur.description or []]
    out = {}
    for row in cur.fetchall():
        rec = row_to_record(dict(zip(names, row, strict=True)))
        out[rec["finding_id"]] = rec
    conn.commit()
    return out


def connect_db(settings: Settings, stop: threading.Event | None = None, interval_s: float = 2.0,
               timeout_s: float = 0) -> psycopg.Connection[Any]:
    """Connects, waiting and retrying while the database is unreachable (forever when timeout_s is 0)."""
    return retry(lambda: psycopg.connect(settings.database_url, connect_timeout=10),
                 "database not reachable, retrying", Backoff(interval_s, budget_s=timeout_s or None), stop=stop,
                 logger=log)


def store_until_done(worker: SweepWorker, records: list[Record], conn: psycopg.Connection[Any],
                     producer: Producer, settings: Settings, stop: threading.Event) -> psycopg.Connection[Any]:
    """store_and_publish, reconnecting while the database is away; returns the connection it ended on.

    Raises the database's error when stop is set before the round could be stored.
    """
    current = [conn]

    def attempt() -> None:
        if current[0].closed:
            current[0] = connect_db(settings, stop)
        worker.store_and_publish(records, current[0], producer)

    retry(attempt, "database write failed, reconnecting", Backoff(0.0), stop=stop,
          on_failure=lambda _exc: current[0].close(), logger=log)
    return current[0]


def _check_storage(conn: psycopg.Connection[Any], known: frozenset[int] = frozenset()) -> frozenset[int]:
    """Logs TimescaleDB policy jobs that fail, when the set of failing jobs changed since ``known``;
    returns the failing job ids. Never fails the round."""
    try:
        health = read_health(conn)
        conn.commit()
    except psycopg.Error as exc:
        if not conn.broken:
            conn.rollback()
        log.warning("storage health unavailable", extra={"error": str(exc).strip()})
        return known
    failing = frozenset(j.job_id for j in health.failing)
    if failing != known:
        log_failing_jobs(health)
        if known and not failing:
            log.info("timescaledb policy jobs succeed again", extra={"jobs": len(health.jobs)})
    return failing


# --- Kafka history ----------------------------------------------------------------------------------

def assign_from(consumer: Consumer, settings: Settings, since_ns: int, timeout_s: float = 30) -> list[TopicPartition]:
    """Assigns every partition of the input topics at the first offset at or after ``since_ns``."""
    wanted: list[TopicPartition] = []
    deadline = time.monotonic() + timeout_s
    for topic in TOPICS:
        name = settings.topic(topic)
        while True:
            md = consumer.list_topics(name, timeout=10).topics.get(name)
            if md is not None and md.error is None and md.partitions:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} does not exist (or has no partitions)")
            log.warning("waiting for topic", extra={"topic": name})
            time.sleep(1)
        wanted.extend(TopicPartition(name, p, since_ns // 1_000_000) for p in sorted(md.partitions))
    while True:
        try:
            offsets = consumer.offsets_for_times(wanted, timeout=30)
            break
        except KafkaException as exc:
            # Right after topic creation the broker may answer with a stale leader epoch: try again.
            if time.monotonic() > deadline:
                raise
            log.warning("offsets lookup failed, retrying", extra={"error": str(exc)})
            time.sleep(1)
    assigned = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                for tp in offsets]
    consumer.assign(assigned)
    return assigned


def catch_up(consumer: Consumer, worker: SweepWorker, producer: Producer, assigned: Sequence[TopicPartition],
             timeout_s: float = 120) -> None:
    """Consumes until every assigned partition reached the end it had when this was called."""
    targets: dict[tuple[str, int], int] = {}
    for tp in assigned:
        if tp.offset < 0:  # nothing at or after the start time: nothing to read there
            continue
        _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
        if high > tp.offset:
            targets[(tp.topic, tp.partition)] = high
    deadline = time.monotonic() + timeout_s
    while targets and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error():
                continue
            worker.handle(msg, producer)
            key = (msg.topic() or "", msg.partition() or 0)
            if key in targets and (msg.offset() or 0) + 1 >= targets[key]:
                del targets[key]
    if targets:
        log.warning("history not fully read before the deadline", extra={"partitions": len(targets)})


def make_consumer(settings: Settings) -> Consumer:
    return Consumer(consumer_config(settings, GROUP, **{"enable.partition.eof": False}))


# --- loops ------------------------------------------------------------------------------------------

def run_once(settings: Settings, scanner: Scanner | None, write: bool = True, history: bool = True,
             regions: Sequence[str] | None = None, idle: IdleConfig | None = None,
             rules: RuleConfig | None = None) -> ScanResult:
    """One sweep: reads the topics' recent history (if ``history``), scans, stores and publishes (if ``write``)."""
    worker = SweepWorker(settings, scanner, regions, idle, rules)
    producer = make_producer(settings) if (write or history) else None
    if history and producer is not None:
        consumer = make_consumer(settings)
        try:
            since = worker.clock() - int(worker.idle_cfg.lookback_s * NS)
            assigned = assign_from(consumer, settings, since)
            catch_up(consumer, worker, producer, assigned)
        finally:
            consumer.close()
    conn = connect_db(settings, timeout_s=60) if write else None
    try:
        if conn is not None:
            worker.open = load_open(conn)
        records, failed = worker.sweep()
        if conn is not None and producer is not None:
            worker.store_and_publish(records, conn, producer)
        else:
            worker.remember(records)
    finally:
        if conn is not None:
            conn.close()
    return ScanResult(records=records, open=list(worker.open.values()), failed_regions=failed)


def run_forever(settings: Settings, scanner: Scanner | None, stop: threading.Event,
                regions: Sequence[str] | None = None, idle: IdleConfig | None = None,
                rules: RuleConfig | None = None, on_round: Callable[[ScanResult], None] | None = None) -> int:
    worker = SweepWorker(settings, scanner, regions, idle, rules)
    producer = make_producer(settings)
    conn = connect_db(settings, stop)
    worker.open = load_open(conn)
    conn.commit()
    failing_jobs = _check_storage(conn)
    # The rollups the Hosts page reads: nothing else refreshes them on plain PostgreSQL, and
    # TimescaleDB's refresh policy may be stuck on a failure backoff (schemas/storage_health.py).
    refresher = RollupRefresher(settings.database_url, settings.rollup_refresh_s)
    consumer = make_consumer(settings)
    try:
        refresher.maybe_refresh()
        since = worker.clock() - int(worker.idle_cfg.lookback_s * NS)
        assigned = assign_from(consumer, settings, since, timeout_s=3600)
        catch_up(consumer, worker, producer, assigned, timeout_s=600)
        log.info("sweep worker started", extra={"regions": list(worker.regions), "open_findings": len(worker.open),
                                                "interval_s": settings.sweep_interval_s})
        next_round = time.monotonic() + min(settings.sweep_interval_s, 5.0)
        while not stop.is_set():
            wait = max(0.0, min(1.0, next_round - time.monotonic()))
            for msg in consume_messages(consumer, 1000, timeout=wait):
                worker.handle(msg, producer)
            refresher.maybe_refresh()
            if time.monotonic() < next_round:
                continue
            next_round = time.monotonic() + settings.sweep_interval_s
            records, failed = worker.sweep()
            try:
                conn = store_until_done(worker, records, conn, producer, settings, stop)
            except psycopg.OperationalError:  # retried without a budget: only a stop ends the wait
                return 0
            opened = sum(1 for r in records if r["status"] == "OPEN")
            log.info("sweep round", extra={"open": opened, "resolved": len(records) - opened,
                                           "failed_regions": failed, "hosts": len(worker.tracker.hosts),
                                           "messages": worker.messages, "deadlettered": worker.deadlettered})
            failing_jobs = _check_storage(conn, failing_jobs)
            if on_round is not None:
                on_round(ScanResult(records, list(worker.open.values()), failed))
    finally:
        refresher.close()
        consumer.close()
        conn.close()
        producer.flush(30)
    return 0
