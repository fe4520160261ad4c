"""Prometheus /metrics of a correlator worker: consumer lag, events/s, dead letters, delays.

Consumer lag and database failures must be right exactly when batches stop finishing (backpressure,
a database outage): lag is measured by a thread of its own against the broker's end offsets, and
failures are read from the sink at scrape time, neither waiting for a batch to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from execsight.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0
RAW_SUFFIXES = ("raw.process", "raw.host")


def partition_lag(end: int, position: int | None, committed: int | None) -> int:
    """Messages behind the end offset: from the newest of this worker's last applied offset
    (position, the offset of a message) and the group's committed offset (the next one to read)."""
    consumed = max(position + 1 if position is not None else 0, committed if committed is not None else 0)
    return max(0, end - consumed)


def broker_offsets(bootstrap: str, group: str, partitions: Iterable[tuple[str, int]],
                   timeout_s: float = 5.0, security: KafkaSecurity | None = None,
                   ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """End offsets and the group's committed offsets of partitions, asked of the broker (TLS/SASL: security, else
    this process's EXECSIGHT_KAFKA_* settings)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

    from execsight.kafka_security import from_environment, librdkafka_config

    tps = [TopicPartition(t, p) for t, p in partitions]
    if not tps:
        return {}, {}
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000),
                            **librdkafka_config(from_environment() if security is None else security),
                            "log_level": 0, "logger": logging.getLogger("librdkafka.lag")}
    client = AdminClient(conf)
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    ends_f = client.list_offsets(dict.fromkeys(tps, latest), request_timeout=timeout_s)
    ends = {(tp.topic, tp.partition): int(f.result(timeout=timeout_s).offset) for tp, f in ends_f.items()}
    got = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)], request_timeout=timeout_s)
    committed = {(tp.topic, tp.partition): int(tp.offset)
                 for tp in got[group].result(timeout=timeout_s).topic_partitions
                 if tp.offset is not None and tp.offset >= 0}
    return ends, committed


class CorrelatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("execsight_correlator_events", "Raw events consumed.", registry=r)
        self.deadletters = Counter("execsight_correlator_deadletters", "Messages sent to the dead-letter topic.",
                                   registry=r)
        self.batches = Counter("execsight_correlator_batches", "Batches committed.", registry=r)
        self.events_per_s = Gauge("execsight_correlator_events_per_second", "Events/s over the last batches.",
                                  registry=r)
        self.lag = Gauge("execsight_correlator_consumer_lag", "Messages behind the high watermark.",
                         ["topic", "partition"], registry=r)
        self.lag_total = Gauge("execsight_correlator_consumer_lag_total", "Sum of consumer lag.", registry=r)
        self.delay = Histogram("execsight_correlator_event_to_commit_seconds",
                               "Delay from event time to the database commit of its rows.",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=r)
        self.batch_seconds = Histogram("execsight_correlator_batch_seconds", "Time to process one batch.",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=r)
        self.delay_p50 = Gauge("execsight_correlator_event_to_commit_p50_seconds",
                               "Median delay event time -> commit over the last 20000 events.", registry=r)
        self.delay_p99 = Gauge("execsight_correlator_event_to_commit_p99_seconds",
                               "99th percentile delay event time -> commit over the last 20000 events.", registry=r)
        self.db_failures = Gauge("execsight_correlator_db_failures", "Database write attempts that failed.",
                                 registry=r)
        self.live_hosts = Gauge("execsight_correlator_hosts", "Hosts with state in this worker.", registry=r)
        self.running = Gauge("execsight_correlator_worker_running",
                             "1 once the Faust worker runs its timers (started, not only listening).", registry=r)
        self.lag_age = Gauge("execsight_correlator_consumer_lag_age_seconds",
                             "Seconds since consumer lag was last measured against the broker.", registry=r)
        self._processor: Any = None
        self._window: list[tuple[float, int]] = []
        self._dl_seen = 0
        self._assigned: dict[tuple[str, int], str] = {}  # raw partition -> its mark namespace
        self._lag_at = 0.0
        self.lag_age.set_function(lambda: time.time() - self._lag_at if self._lag_at else -1.0)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
        log.info("metrics endpoint listening", extra={"port": port, "address": addr})

    def bind(self, processor: Any, app: Any) -> None:
        self._processor = processor
        # read at scrape time: a database that stays down shows while batches are held
        self.db_failures.set_function(lambda: float(processor.sink.failures))

    def observe_batch(self, processor: Any, n: int) -> None:
        stats = processor.stats
        self.events.inc(n)
        self.batches.inc()
        if stats.deadlettered > self._dl_seen:
            self.deadletters.inc(stats.deadlettered - self._dl_seen)
            self._dl_seen = stats.deadlettered
        self.batch_seconds.observe(stats.last_batch_s)
        now = time.time()
        self._window.append((now, n))
        self._window = [(t, c) for t, c in self._window if now - t <= 10.0]
        span = max(1e-3, now - self._window[0][0]) if len(self._window) > 1 else max(1e-3, stats.last_batch_s)
        self.events_per_s.set(sum(c for _, c in self._window) / span)
        last = stats.last_delays_s
        for d in last[:: max(1, len(last) // 2000)]:  # at most ~2000 observations per batch
            self.delay.observe(max(0.0, d))
        recent = sorted(stats.delays_s)
        if recent:
            self.delay_p50.set(recent[len(recent) // 2])
            self.delay_p99.set(recent[min(len(recent) - 1, int(len(recent) * 0.99))])
        self.live_hosts.set(len(processor.hosts))

    def update_lag(self, app: Any) -> None:
        """On the event loop: note which raw partitions this worker holds (the lag thread measures them)."""
        self.running.set(1)
        processor = self._processor
        if processor is None:
            return
        try:
            assignment = app.consumer.assignment()
        except Exception:  # not assigned yet
            return
        self._assigned = {(tp.topic, tp.partition): processor.source(tp.topic) for tp in assignment
                          if tp.topic.endswith(RAW_SUFFIXES)}

    def set_lag(self, ends: Mapping[tuple[str, int], int], committed: Mapping[tuple[str, int], int],
                assigned: Mapping[tuple[str, int], str], positions: Mapping[tuple[str, int], int]) -> int:
        """Sets the lag gauges of the assigned partitions from broker offsets; the total."""
        total = 0
        for (topic, partition), source in assigned.items():
            if (topic, partition) not in ends:
                continue
            lag = partition_lag(ends[(topic, partition)], positions.get((source, partition)),
                                committed.get((topic, partition)))
            self.lag.labels(topic, str(partition)).set(lag)
            total += lag
        self.lag_total.set(total)
        self._lag_at = time.time()
        return total

    def measure_lag(self, bootstrap: str, group: str, security: KafkaSecurity | None = None) -> int | None:
        """One measurement against the broker; None when nothing is assigned yet."""
        assigned = dict(self._assigned)
        if not assigned or self._processor is None:
            return None
        ends, committed = broker_offsets(bootstrap, group, assigned, security=security)
        return self.set_lag(ends, committed, assigned, dict(self._processor.stats.positions))

    def watch_lag(self, bootstrap: str, group: str, interval_s: float = LAG_INTERVAL_S,
                  security: KafkaSecurity | None = None) -> threading.Thread:
        """Measures lag every interval_s in a daemon thread, whatever the event loop is doing."""

        def loop() -> None:
            while True:
                try:
                    self.measure_lag(bootstrap, group, security)
                except Exception as exc:  # broker unreachable: the age gauge shows the lag is stale
                    log.warning("consumer lag not measured", extra={"error": str(exc)[:300]})
                time.sleep(interval_s)

        thread = threading.Thread(target=loop, name="lag-watch", daemon=True)
        thread.start()
        return thread
