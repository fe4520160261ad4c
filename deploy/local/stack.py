"""The local stack without Docker: Kafka (KRaft), PostgreSQL, topics, migrations and the services.

`LocalStack.up()` is idempotent: what runs and answers is left alone, what is missing or has
crashed is (re)started, topics and migrations are applied only where missing. A server on the
configured port that this stack did not start is used as it is ("external") when it answers.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from deploy.local import host_prep, kafka_admin, kafka_broker, pg_cluster, procs, services
from deploy.local.endpoints import kafka_endpoint, pg_endpoint, pg_role, port_open
from execsight.kafka_io import create_topics
from execsight.settings import REPO_ROOT, Settings
from schemas.storage_health import health_line
from schemas.topics import TOPICS_FILE, load_topics

log = logging.getLogger(__name__)

KAFKA_START_TIMEOUT_S = 120.0
SERVICE_GRACE_S = 3.0
UI_START_TIMEOUT_S = 60.0


class StackError(RuntimeError):
    """A component could not be brought up; the message says which and why."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # up | down | external | skipped | absent
    version: str = ""
    address: str = ""
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state in {"up", "external", "skipped", "absent"}


@dataclass
class UpReport:
    changes: list[str] = field(default_factory=list)
    components: list[ComponentStatus] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    dashboard: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.healthy for c in self.components)


def _wait(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5,
          alive: Callable[[], bool] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def _package_version() -> str:
    try:
        return importlib.metadata.version("execsight")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def _apply_migrations(dsn: str) -> list[str] | None:
    """Run the lead's migrations when schemas/migrate.py exists; None when it does not (yet)."""
    try:
        from schemas import migrate
    except ImportError:
        log.warning("schemas/migrate.py is missing: database migrations skipped")
        return None
    applied: list[str] = migrate.apply_migrations(dsn)
    return applied


class LocalStack:
    def __init__(self, settings: Settings, *, lib_dir: Path = kafka_broker.DEFAULT_LIB_DIR,
                 topics_file: Path = TOPICS_FILE, repo_root: Path = REPO_ROOT) -> None:
        self.settings = settings
        self.lib_dir = lib_dir
        self.topics_file = topics_file
        self.repo_root = repo_root
        self.state = settings.state_dir
        self.kafka_ep = kafka_endpoint(settings.kafka_bootstrap)
        self.pg_ep = pg_endpoint(settings.database_url)
        self.kafka_paths = kafka_broker.KafkaPaths(self.state / "kafka")
        self.pg_paths = pg_cluster.PgPaths(self.state / "postgres")

    # -- paths -------------------------------------------------------------------------------
    def pid_file(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"

    def child_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap,
            "EXECSIGHT_DATABASE_URL": s.database_url,
            "EXECSIGHT_UI_DATABASE_URL": s.ui_database_url,
            "EXECSIGHT_STATE_DIR": str(s.state_dir),
            "EXECSIGHT_TOPIC_PREFIX": s.topic_prefix,
            "EXECSIGHT_UI_PORT": str(s.ui_port),
            # services/ resolves from this stack's repository first
            "PYTHONPATH": os.pathsep.join(p for p in (str(self.repo_root), os.environ.get("PYTHONPATH", "")) if p),
        }

    def topic_names(self) -> list[str]:
        return [self.settings.topic(name) for name in load_topics(self.topics_file)]

    def available_services(self) -> list[str]:
        return [n for n in services.SERVICE_NAMES if services.service_exists(n, self.repo_root)]

    # -- kafka -------------------------------------------------------------------------------
    def kafka_pid(self) -> int | None:
        return procs.running_pid(self.pid_file("kafka"), kafka_broker.MAIN_CLASS)

    def _kafka_ok(self) -> bool:
        return kafka_admin.metadata_ok(self.kafka_ep.address, timeout_s=2.0)

    def ensure_kafka(self, report: UpReport) -> None:
        ep = self.kafka_ep
        if self.kafka_pid() is None:
            if port_open(ep.host, ep.port):
                if self._kafka_ok():
                    log.info("kafka: a broker not started by this stack answers; using it",
                             extra={"address": ep.address})
                    return
                raise StackError(f"kafka: port {ep.address} is taken by something that is not a Kafka broker")
            if kafka_broker.ensure_jars(self.lib_dir):
                report.changes.append(f"kafka: resolved jars into {self.lib_dir}")
            kafka_broker.write_config(self.kafka_paths, ep)
            if kafka_broker.format_storage(self.kafka_paths, self.lib_dir):
                report.changes.append(f"kafka: formatted storage in {self.kafka_paths.data}")
            pid = kafka_broker.start_broker(self.kafka_paths, self.lib_dir, self.pid_file("kafka"),
                                            self.log_file("kafka"))
            report.changes.append(f"kafka: started (pid {pid})")
        if not _wait(self._kafka_ok, KAFKA_START_TIMEOUT_S, alive=lambda: self.kafka_pid() is not None):
            tail = procs.log_tail(self.log_file("kafka"))
            raise StackError(f"kafka did not become healthy at {ep.address}; log tail:\n{tail}")

    def ensure_topics(self, report: UpReport) -> None:
        created = create_topics(self.kafka_ep.address, self.settings.topic_prefix, load_topics(self.topics_file))
        report.changes += [f"topic created: {t}" for t in created]
        report.topics = self.topic_names()

    # -- postgresql --------------------------------------------------------------------------
    def pg_managed_running(self) -> bool:
        return pg_cluster.running(self.pg_paths)

    def ensure_postgres(self, report: UpReport) -> None:
        ep, paths = self.pg_ep, self.pg_paths
        if not self.pg_managed_running():
            if port_open(ep.host, ep.port):
                if pg_cluster.select_one(self.settings.database_url) is not None:
                    log.info("postgresql: a server not started by this stack answers the DSN; using it",
                             extra={"address": ep.address})
                    return
                raise StackError(
                    f"postgresql: port {ep.address} is taken by a server this stack did not start and "
                    "the DSN's credentials do not work there: stop it or set EXECSIGHT_DATABASE_URL")
            if not pg_cluster.PG_BIN.is_dir():
                raise StackError(f"postgresql: {pg_cluster.PG_BIN} missing (apt-get install postgresql)")
            pg_cluster.prepare_dirs(paths, self.log_file("postgres"))
            if not pg_cluster.initialized(paths):
                pg_cluster.initdb(paths)
                report.changes.append(f"postgresql: initialized cluster in {paths.data}")
            pg_cluster.write_conf(paths, ep)
            pg_cluster.start(paths, self.log_file("postgres"))
            report.changes.append(f"postgresql: started on {ep.address}")
        created = pg_cluster.bootstrap(paths, ep, pg_role(self.settings.database_url),
                                       pg_role(self.settings.ui_database_url))
        report.changes += [f"postgresql: created {c}" for c in created]

    def ensure_migrations(self, report: UpReport) -> None:
        applied = _apply_migrations(self.settings.database_url)
        if applied is None:
            report.changes.append("migrations: skipped (schemas/migrate.py not present)")
        else:
            report.changes += [f"migration applied: {m}" for m in applied]

    # -- services ----------------------------------------------------------------------------
    def service_pid(self, name: str) -> int | None:
        s = services.spec(name, self.settings, self.repo_root)
        return procs.running_pid(self.pid_file(name), s.marker)

    def ensure_services(self, report: UpReport) -> None:
        started: list[str] = []
        for name in self.available_services():
            s = services.spec(name, self.settings, self.repo_root)
            if services.can_run(s) is not None or self.service_pid(name) is not None:
                continue
            pid = procs.start(s.command, pid_file=self.pid_file(name), log_file=self.log_file(name),
                              cwd=self.repo_root, env=self.child_env())
            report.changes.append(f"{name}: started (pid {pid})")
            started.append(name)
        if started:
            time.sleep(SERVICE_GRACE_S)
        for name in started:
            s = services.spec(name, self.settings, self.repo_root)
            if s.health_url:
                _wait(partial(services.http_ok, s.health_url), UI_START_TIMEOUT_S,
                      alive=partial(self._service_alive, name))

    def _service_alive(self, name: str) -> bool:
        return self.service_pid(name) is not None

    # -- the commands ------------------------------------------------------------------------
    def up(self, *, prepare_host: bool = True, start_services: bool = True) -> UpReport:
        report = UpReport()
        self.state.mkdir(parents=True, exist_ok=True)
        if prepare_host:
            report.changes += host_prep.prepare_host()
        self.ensure_kafka(report)
        self.ensure_postgres(report)
        self.ensure_topics(report)
        self.ensure_migrations(report)
        if start_services:
            self.ensure_services(report)
        report.components = self.status(with_lag=False)
        if services.service_exists("ui", self.repo_root):
            report.dashboard = services.ui_url(self.settings)
        return report

    def down(self) -> list[str]:
        stopped: list[str] = []
        for name in reversed(services.SERVICE_NAMES):
            s = services.spec(name, self.settings, self.repo_root)
            if procs.stop(self.pid_file(name), s.marker, timeout_s=20):
                stopped.append(name)
        if procs.stop(self.pid_file("kafka"), kafka_broker.MAIN_CLASS, timeout_s=60):
            stopped.append("kafka")
        if pg_cluster.initialized(self.pg_paths) and pg_cluster.stop(self.pg_paths):
            stopped.append("postgresql")
        return stopped

    def kill(self, name: str) -> bool:
        """SIGKILL one managed process (kafka or a service), as a crash would."""
        if name == "kafka":
            return procs.kill(self.pid_file(name), kafka_broker.MAIN_CLASS)
        marker = services.spec(name, self.settings, self.repo_root).marker
        return procs.kill(self.pid_file(name), marker)

    def status(self, *, with_lag: bool = True) -> list[ComponentStatus]:
        out = [self._kafka_status(), self._pg_status()]
        lags: list[kafka_admin.GroupLag] = []
        if with_lag and out[0].state in {"up", "external"}:
            try:
                lags = self._own_groups(kafka_admin.consumer_group_lag(self.kafka_ep.address))
            except Exception as exc:  # lag is informative: never fail status over it
                log.warning("consumer group lag unavailable", extra={"err": repr(exc)})
        for name in services.SERVICE_NAMES:
            out.append(self._service_status(name, lags))
        if lags:
            out += [ComponentStatus(f"group {g.group}", "up", address=",".join(g.topics),
                                    detail=f"lag {g.lag} over {g.partitions} partitions") for g in lags]
        return out

    def _own_groups(self, lags: list[kafka_admin.GroupLag]) -> list[kafka_admin.GroupLag]:
        """Consumer groups reading this stack's topics only (not other prefixes' test or tenant groups)."""
        own = {self.settings.topic(name) for name in load_topics()}
        return [g for g in lags if g.topics and set(g.topics) <= own]

    def _kafka_status(self) -> ComponentStatus:
        pid = self.kafka_pid()
        ok = self._kafka_ok()
        version = kafka_broker.kafka_version()
        if pid is not None:
            return ComponentStatus("kafka", "up" if ok else "down", version, self.kafka_ep.address,
                                   f"pid {pid}" + ("" if ok else ", metadata does not answer"))
        if ok:
            return ComponentStatus("kafka", "external", "?", self.kafka_ep.address, "not started by this stack")
        return ComponentStatus("kafka", "down", version, self.kafka_ep.address)

    def _pg_status(self) -> ComponentStatus:
        version = pg_cluster.select_one(self.settings.database_url)
        managed = self.pg_managed_running()
        # which storage flavour, and whether TimescaleDB's policy jobs succeed (schemas/storage_health.py)
        storage = (health_line(self.settings.database_url) if version else None) or ""
        if managed:
            pid = pg_cluster.server_pid(self.pg_paths)
            return ComponentStatus("postgresql", "up" if version else "down", version or pg_cluster.PG_MAJOR,
                                   self.pg_ep.address, "; ".join(filter(None, [f"pid {pid}", storage])))
        if version:
            return ComponentStatus("postgresql", "external", version, self.pg_ep.address,
                                   "; ".join(filter(None, ["not started by this stack", storage])))
        return ComponentStatus("postgresql", "down", pg_cluster.PG_MAJOR, self.pg_ep.address)

    def _service_status(self, name: str, lags: list[kafka_admin.GroupLag]) -> ComponentStatus:
        if not services.service_exists(name, self.repo_root):
            return ComponentStatus(name, "absent", detail="module not present")
        s = services.spec(name, self.settings, self.repo_root)
        why = services.can_run(s)
        if why is not None:
            return ComponentStatus(name, "skipped", detail=why)
        pid = self.service_pid(name)
        address = services.ui_url(self.settings) if name == "ui" else ""
        if pid is None:
            return ComponentStatus(name, "down", _package_version(), address, detail=f"log {self.log_file(name)}")
        detail = [f"pid {pid}"]
        if s.health_url and not services.http_ok(s.health_url):
            return ComponentStatus(name, "down", address=address, detail=f"pid {pid}, health check fails")
        mine = [g for g in lags if name in g.group]
        if mine:
            detail.append("lag " + ", ".join(f"{g.group}={g.lag}" for g in mine))
        return ComponentStatus(name, "up", _package_version(), address, "; ".join(detail))
