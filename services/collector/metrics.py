"""Prometheus /metrics for the collector: events by type, events/s, losses, spool."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Gauge("execsight_collector_events_total", "Events produced since start, by type.",
                            ["type"], registry=self.registry)
        self.rate = Gauge("execsight_collector_events_per_second", "Events per second over the last interval.",
                          ["type"], registry=self.registry)
        self.lost = Gauge("execsight_collector_lost_events_total", "Events lost, by buffer.",
                          ["buffer"], registry=self.registry)
        self.spool_bytes = Gauge("execsight_collector_spool_bytes", "Bytes in the on-disk spool.",
                                 registry=self.registry)
        self.spool_records = Gauge("execsight_collector_spool_records", "Records in the on-disk spool.",
                                   registry=self.registry)
        self.spool_dropped = Gauge("execsight_collector_spool_dropped_total",
                                   "Records dropped because the spool was full.", registry=self.registry)
        self.cpu_escalations = Gauge("execsight_collector_cpu_escalations_total",
                                     "Times the collector fell behind and left SCHED_IDLE for SCHED_BATCH.",
                                     registry=self.registry)
        self.undeliverable = Gauge("execsight_collector_undeliverable_total",
                                   "Records dropped because Kafka can never accept them (e.g. too large).",
                                   registry=self.registry)
        self.delivery_errors = Gauge("execsight_collector_delivery_errors_total", "Kafka delivery failures.",
                                     registry=self.registry)
        self.container_lookups = Gauge(
            "execsight_collector_container_lookups_total",
            "Container runtime lookups by result: answered, not_found, failed, dropped (queue full), "
            "rate_limited (waits for the lookup rate).", ["result"], registry=self.registry)
        self.container_failures = Gauge("execsight_collector_container_lookup_failures_total",
                                        "Failed container runtime queries, by API (docker, cri, kubelet).",
                                        ["source"], registry=self.registry)

        self.context = Gauge("execsight_collector_context_files_total",
                             "Context files (services/collector/context_files.py), by outcome.",
                             ["outcome"], registry=self.registry)

        # restarts (services/collector/live_set.py): totals kept in the state dir, so they survive the restart
        self.gaps = Gauge("execsight_collector_gaps_total", "Times the collector started again after a gap.",
                          registry=self.registry)
        self.blind_seconds = Gauge("execsight_collector_blind_seconds_total",
                                   "Seconds the collector was not observing (between a save and the next start).",
                                   registry=self.registry)
        self.exits_unobserved = Gauge("execsight_collector_exits_unobserved_total",
                                      "Processes reported live that exited while the collector was down.",
                                      registry=self.registry)

    def context_files(self, counters: dict[str, int]) -> None:
        for k, v in counters.items():
            self.context.labels(k).set(v)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)

    def update_containers(self, lookups: dict[str, int], failures: dict[str, int]) -> None:
        for k, v in lookups.items():
            self.container_lookups.labels(k).set(v)
        for k, v in failures.items():
            self.container_failures.labels(k).set(v)

    def gap_totals(self, gaps: int, blind_ns: int, unobserved_exits: int) -> None:
        self.gaps.set(gaps)
        self.blind_seconds.set(blind_ns / 1e9)
        self.exits_unobserved.set(unobserved_exits)

    def update(self, totals: dict[str, int], rates: dict[str, float], lost: dict[str, int],
               sink: dict[str, int]) -> None:
        for k, v in totals.items():
            self.events.labels(k).set(v)
        for k, r in rates.items():
            self.rate.labels(k).set(r)
        for k, v in lost.items():
            self.lost.labels(k).set(v)
        self.spool_bytes.set(sink.get("spool_bytes", 0))
        self.spool_records.set(sink.get("spool_records", 0))
        self.spool_dropped.set(sink.get("spool_dropped", 0))
        self.delivery_errors.set(sink.get("delivery_errors", 0))
        self.undeliverable.set(sink.get("undeliverable", 0))
