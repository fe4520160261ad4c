"""Prometheus /metrics of a correlator worker: consumer lag, events/s, dead letters, delays."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)
DEFAULT_PORT = 9464


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
        self._processor: Any = None
        self._window: list[tuple[float, int]] = []
        self._dl_seen = 0

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
        log.info("metrics endpoint listening", extra={"port": port})

    def bind(self, processor: Any, app: Any) -> None:
        self._processor = processor

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
        self.db_failures.set(processor.sink.failures)
        self.live_hosts.set(len(processor.hosts))

    def update_lag(self, app: Any) -> None:
        processor = self._processor
        if processor is None:
            return
        total = 0
        try:
            assignment = app.consumer.assignment()
        except Exception:  # not assigned yet
            return
        for tp in assignment:
            source = processor.source(tp.topic)
            if not (tp.topic.endswith("raw.process") or tp.topic.endswith("raw.host")):
                continue
            try:
                high = app.consumer.highwater(tp)
            except Exception:
                continue
            if high is None:
                continue
            pos = processor.stats.positions.get((source, tp.partition))
            lag = max(0, high - (pos + 1)) if pos is not None else high
            self.lag.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.lag_total.set(total)
