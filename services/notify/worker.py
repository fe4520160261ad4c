"""The notify worker: findings in (execsight.findings.tune and .sweep), webhook posts out.

Per batch: decode (a message that is not the topic's finding type, or does not decode, goes to the
dead-letter topic with the reason); per finding, the routes it matches and whether it is posted again
(routes.plan); each post with bounded retries (delivery.deliver); then the de-duplication state is
saved and only then the offsets committed. A webhook that is down holds the batch for at most
attempts x backoff; after that the post is given up, counted (execsight_notify_given_up_total,
a log line with the route and finding) and the batch moves on. A stop request during the retries
leaves the offsets uncommitted: the posts are tried again at the next start.

The routes file is reloaded when it changes (execsight.reloading); a broken file is refused with
file, line and reason, and the routes in force stay.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from execsight.kafka_io import consume_messages, make_consumer, make_producer, send_to_deadletter
from execsight.notify import delivery, messages
from execsight.notify.posted_state import State, load_state, save_state
from execsight.notify.routes import Delivery, NotifyConfig, RoutesError, after, load_config, plan
from execsight.reloading import Reloading
from execsight.schemas.codec import CodecError, default_codec
from execsight.schemas.topics import FINDINGS_SWEEP, FINDINGS_TUNE
from execsight.settings import Settings

log = logging.getLogger(__name__)

GROUP = "notify"
TOPICS = (FINDINGS_TUNE, FINDINGS_SWEEP)
EXPECTED = {FINDINGS_TUNE: "TuneFinding", FINDINGS_SWEEP: "SweepFinding"}
SOURCE = {FINDINGS_TUNE: "tune", FINDINGS_SWEEP: "sweep"}
RELOAD_EVERY_S = 1.0

Record = dict[str, Any]
Sender = Callable[[str, Mapping[str, Any], float], object]


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.delivered = Counter("execsight_notify_delivered_total", "Webhook posts delivered, by route and event.",
                                 ["route", "event"], registry=self.registry)
        self.given_up = Counter("execsight_notify_given_up_total",
                                "Posts given up after the retries (or refused with a 4xx), by route.",
                                ["route"], registry=self.registry)
        self.retries = Counter("execsight_notify_retries_total", "Failed attempts that were retried, by route.",
                               ["route"], registry=self.registry)
        self.deadlettered = Counter("execsight_notify_deadlettered_total", "Messages sent to the dead-letter topic.",
                                    registry=self.registry)
        self.reload_errors = Counter("execsight_notify_config_errors_total",
                                     "Routes files refused on reload (the previous routes stayed).",
                                     registry=self.registry)
        self.routes = Gauge("execsight_notify_routes", "Routes in force.", registry=self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)


@dataclass
class Stats:
    messages: int = 0
    findings: int = 0
    delivered: int = 0
    given_up: int = 0
    retries: int = 0
    deadlettered: int = 0
    reloads: int = 0
    config_errors: int = 0
    last_config_error: str | None = None


class NotifyWorker:
    def __init__(self, settings: Settings, routes_path: Path, state_path: Path | None = None,
                 env: Mapping[str, str] | None = None, send: Sender = delivery.post_json) -> None:
        self.settings = settings
        self.codec = default_codec()
        self.routes_path = routes_path
        self.state_path = state_path or settings.state_dir / "notify-state.json"
        self.env = os.environ if env is None else env
        self.send = send
        self.stats = Stats()
        self.metrics = NotifyMetrics()
        # A broken file at start-up raises RoutesError: the service does not start.
        self.config = Reloading(lambda: load_config(self.routes_path, self.env), lambda: [self.routes_path],
                                (RoutesError,))
        self.metrics.routes.set(len(self.config.current.routes))
        self.state: State = load_state(self.state_path)
        self._last_reload_check = time.monotonic()

    @property
    def routes(self) -> NotifyConfig:
        return self.config.current

    def reload_routes(self) -> None:
        """Loads the routes file again when it changed; a broken one is logged and refused."""
        try:
            if self.config.reload_if_changed():
                self.stats.reloads += 1
                self.metrics.routes.set(len(self.routes.routes))
                log.info("routes reloaded", extra={"file": str(self.routes_path),
                                                   "routes": [r.name for r in self.routes.routes]})
        except RoutesError as exc:
            self.stats.config_errors += 1
            self.stats.last_config_error = str(exc)
            self.metrics.reload_errors.inc()
            log.error("routes file refused, the previous routes stay", extra={
                "file": exc.path, "line": exc.line, "reason": exc.reason})

    # --- per finding -------------------------------------------------------------------------------

    def _post(self, d: Delivery, finding: Record, source: str, stop: threading.Event) -> delivery.Outcome:
        body = messages.payload(d.route.format, finding, d.event, source)
        policy = self.routes.retry

        def on_retry(attempt: int, exc: delivery.DeliveryError, delay: float) -> None:
            self.stats.retries += 1
            self.metrics.retries.labels(d.route.name).inc()
            log.warning("webhook post failed, retrying", extra={
                "route": d.route.name, "finding_id": d.finding_id, "attempt": attempt,
                "error": exc.reason, "retry_in_s": round(delay, 3)})

        return delivery.deliver(lambda: self.send(d.route.url, body, policy.timeout_s), policy, stop, on_retry)

    def notify(self, finding: Record, source: str, stop: threading.Event) -> bool:
        """Posts one finding to its routes; False when stopped before every post was settled."""
        for d in plan(self.routes, self.state, finding):
            key = (d.route.name, d.finding_id)
            if d.silent:
                self.state[key] = after(self.state.get(key), finding, d.event)
                continue
            outcome = self._post(d, finding, source, stop)
            if outcome.stopped:
                return False
            if outcome.delivered:
                self.stats.delivered += 1
                self.metrics.delivered.labels(d.route.name, d.event).inc()
                self.state[key] = after(self.state.get(key), finding, d.event)
                log.info("finding posted", extra={"route": d.route.name, "finding_id": d.finding_id,
                                                  "event": d.event, "attempts": outcome.attempts})
            else:
                # Not recorded as posted: the next update of this finding tries the route again.
                self.stats.given_up += 1
                self.metrics.given_up.labels(d.route.name).inc()
                log.error("webhook post given up", extra={
                    "route": d.route.name, "finding_id": d.finding_id, "event": d.event,
                    "attempts": outcome.attempts, "error": outcome.error})
        return True

    # --- Kafka -------------------------------------------------------------------------------------

    def decode(self, producer: Producer, msgs: Sequence[Message]) -> list[tuple[str, Record]]:
        out: list[tuple[str, Record]] = []
        prefix = self.settings.topic_prefix
        for msg in msgs:
            topic = (msg.topic() or "")[len(prefix):]
            try:
                name, rec = self.codec.decode(msg.value() or b"")
                if name != EXPECTED.get(topic):
                    raise CodecError(f"{name} on {topic}: expected {EXPECTED.get(topic)}")
                if not str(rec.get("finding_id") or ""):
                    raise CodecError(f"{name} without a finding_id")
            except CodecError as exc:
                self.stats.deadlettered += 1
                self.metrics.deadlettered.inc()
                send_to_deadletter(producer, self.settings, msg, str(exc), "notify")
                continue
            out.append((SOURCE[topic], rec))
        return out

    def process(self, producer: Producer, msgs: Sequence[Message], stop: threading.Event) -> bool:
        """Posts a batch and saves the state; False when stopped before that (offsets stay)."""
        decoded = self.decode(producer, msgs)
        for source, finding in decoded:
            if not self.notify(finding, source, stop):
                save_state(self.state_path, self.state)  # what was delivered stays delivered
                return False
        save_state(self.state_path, self.state)
        self.stats.messages += len(msgs)
        self.stats.findings += len(decoded)
        return True

    def _commit(self, consumer: Consumer, stop: threading.Event) -> bool:
        while True:
            try:
                consumer.commit(asynchronous=False)
                return True
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                    return True
                log.warning("offset commit failed, retrying", extra={"error": str(exc)})
                if stop.wait(2.0):
                    return False

    def run(self, stop: threading.Event, idle_exit_s: float | None = None, batch_size: int = 100) -> None:
        # Retries may hold a batch for minutes while a webhook is down: allow that between polls.
        consumer: Consumer = make_consumer(self.settings, GROUP, TOPICS, **{"max.poll.interval.ms": 1800000})
        producer = make_producer(self.settings)
        idle_since = time.monotonic()
        log.info("notify worker started", extra={"topics": [self.settings.topic(t) for t in TOPICS],
                                                 "routes": [r.name for r in self.routes.routes]})
        try:
            while not stop.is_set():
                if time.monotonic() - self._last_reload_check >= RELOAD_EVERY_S:
                    self._last_reload_check = time.monotonic()
                    self.reload_routes()
                good = consume_messages(consumer, batch_size, timeout=0.5)
                if not good:
                    if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        break
                    continue
                self.reload_routes()  # a batch is routed by the file as it is now
                if not self.process(producer, good, stop) or not self._commit(consumer, stop):
                    break
                idle_since = time.monotonic()
        finally:
            consumer.close()
            producer.flush(10)
            log.info("notify worker stopped", extra={
                "messages": self.stats.messages, "delivered": self.stats.delivered,
                "given_up": self.stats.given_up, "deadlettered": self.stats.deadlettered})
