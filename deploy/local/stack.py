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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from execsight import kafka_admin
from execsight.deploy.local import host_prep, kafka_broker, lag_trend, pg_cluster, procs, services, supervisor
from execsight.deploy.local.endpoints import (
    exposure_problems,
    kafka_endpoint,
    pg_endpoint,
    pg_role,
    port_free,
    port_open,
    ui_exposure_problem,
)
from execsight.kafka_io import create_topics
from execsight.lifecycle import STABLE_AFTER_S
from execsight.schemas.storage_health import health_line
from execsight.schemas.topics import TOPICS_FILE, load_topics
from execsight.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

KAFKA_START_TIMEOUT_S = 120.0
SERVICE_START_TIMEOUT_S = 120.0
SETTLE_S = 5.0  # a service counts as healthy once it has answered and run this long without a restart
KAFKA_STOP_GRACE_S = 60.0
SERVICE_STOP_GRACE_S = 20.0


class StackError(RuntimeError):
    """A component could not be brought up; the message says which and why."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # up | degraded | down | starting | restarting | crashloop | external | skipped | absent
    version: str = ""
    address: str = ""
    detail: str = ""
    restarts: int = 0  # restarts by the supervisor since `up` started it
    last_exit: str = ""  # how the process last ended, and the last line it logged

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
        from execsight.schemas import migrate
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
        self.start_timeout_s = SERVICE_START_TIMEOUT_S  # how long `up` waits for services to be healthy

    # -- paths -------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    def pid_file(self, name: str) -> Path:
        return supervisor.child_pid_file(self.run_dir, name)

    def supervisor_pid(self, name: str) -> int | None:
        return procs.running_pid(supervisor.supervisor_pid_file(self.run_dir, name), supervisor.marker(name))

    def supervision(self, name: str) -> supervisor.SupervisorState | None:
        return supervisor.read_state(self.run_dir, name)

    def _start_supervised(self, name: str, cmd: Sequence[str], cwd: Path, stop_grace_s: float) -> int:
        """Start the supervisor of name, which starts cmd (and again after every exit); its pid."""
        return procs.start(supervisor.command(name, list(cmd), self.run_dir, self.log_file(name), stop_grace_s),
                           pid_file=supervisor.supervisor_pid_file(self.run_dir, name),
                           log_file=self.log_file(name), cwd=cwd, env=self.child_env())

    def _stop_supervised(self, name: str, marker: str, grace_s: float) -> bool:
        """Stop the supervisor (which stops its child), then any unsupervised process left. True if one ran."""
        sup = procs.stop(supervisor.supervisor_pid_file(self.run_dir, name), supervisor.marker(name),
                         timeout_s=grace_s + 10)
        child = procs.stop(self.pid_file(name), marker, timeout_s=grace_s)
        supervisor.state_file(self.run_dir, name).unlink(missing_ok=True)
        return sup or child

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
            "EXECSIGHT_UI_ADDRESS": s.ui_address,
            "EXECSIGHT_COLLECTOR_METRICS_PORT": str(s.collector_metrics_port),
            "EXECSIGHT_CORRELATOR_METRICS_PORT": str(s.correlator_metrics_port),
            "EXECSIGHT_METRICS_ADDRESS": s.metrics_address,
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
        if self.kafka_pid() is None and self.supervisor_pid("kafka") is None:
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
            pid = self._start_supervised("kafka", kafka_broker.broker_command(self.kafka_paths, self.lib_dir,
                                                                              self.log_file("kafka")),
                                         self.kafka_paths.root, KAFKA_STOP_GRACE_S)
            report.changes.append(f"kafka: started (supervisor pid {pid})")
        alive = lambda: self.kafka_pid() is not None or self.supervisor_pid("kafka") is not None  # noqa: E731
        if not _wait(self._kafka_ok, KAFKA_START_TIMEOUT_S, alive=alive):
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
        to_start: list[services.ServiceSpec] = []
        for name in self.available_services():
            s = services.spec(name, self.settings, self.repo_root)
            if services.can_run(s) is not None or self.supervisor_pid(name) is not None:
                continue
            if procs.stop(self.pid_file(name), s.marker, timeout_s=SERVICE_STOP_GRACE_S):
                report.changes.append(f"{name}: stopped, to run it under the supervisor")
            to_start.append(s)
        self._check_ports(to_start)
        for s in to_start:
            pid = self._start_supervised(s.name, s.command, self.repo_root, SERVICE_STOP_GRACE_S)
            report.changes.append(f"{s.name}: started (supervisor pid {pid})")
        self.wait_healthy([n for n in self.available_services() if self.supervisor_pid(n) is not None])

    def _check_ports(self, to_start: list[services.ServiceSpec]) -> None:
        """Fail at once, naming the setting, when a port a service is about to listen on is taken."""
        for s in to_start:
            if s.port_setting is None:
                continue
            var, port = s.port_setting
            host = self.settings.ui_address if s.name == "ui" else self.settings.metrics_address
            if not port_free(host, port):
                raise StackError(f"{s.name}: port {port} ({var}) is already in use on {host or '*'}, "
                                 f"by another stack or program: set {var} to a free port")

    def service_ready(self, name: str) -> bool:
        """Answers its health check (or needs none) and has run SETTLE_S without a restart."""
        pid = self.service_pid(name)
        st = self.supervision(name)
        if pid is None or st is None or st.child_pid != pid or st.child_started_at is None:
            return False
        if time.time() - st.child_started_at < SETTLE_S:
            return False
        s = services.spec(name, self.settings, self.repo_root)
        return s.health_url is None or services.http_ok(s.health_url, text=s.health_text)

    def wait_healthy(self, names: list[str], timeout_s: float | None = None) -> None:
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        pending = set(names)
        deadline = time.monotonic() + timeout_s
        while pending:
            pending = {n for n in pending if not self.service_ready(n)}
            if not pending:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        problems = []
        for name in sorted(pending):
            st = self.supervision(name)
            why = f"restarted {st.restarts} times, last {st.last_exit}: {st.last_log_line}" if st and st.restarts \
                else "no health yet"
            problems.append(f"{name}: not healthy after {timeout_s:.0f} s ({why}); log tail:\n"
                            f"{procs.log_tail(self.log_file(name), lines=8)}")
        raise StackError("\n".join(problems))

    # -- the commands ------------------------------------------------------------------------
    def up(self, *, prepare_host: bool = True, start_services: bool = True) -> UpReport:
        problems = exposure_problems(self.settings)
        if services.service_exists("ui", self.repo_root):
            problems += filter(None, [ui_exposure_problem(self.settings)])
        if problems:
            raise StackError("refusing to start: " + "; ".join(problems))
        report = UpReport()
        if prepare_host:  # apt and the host's files: with the usual umask
            report.changes += host_prep.prepare_host()
        old_umask = os.umask(0o077)  # what up writes (configs, Kafka's formatted storage) is private
        try:
            return self._up(report, start_services)
        finally:
            os.umask(old_umask)

    def _up(self, report: UpReport, start_services: bool) -> UpReport:
        self.make_private()
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

    def make_private(self) -> None:
        """The state dir holds raw events (spool, Kafka data, logs): 0700 directories, 0600 files."""
        for d in (self.state, self.run_dir, self.settings.log_dir, self.settings.spool_dir, self.kafka_paths.root):
            procs.make_private(d)
        for f in self.settings.log_dir.glob("*.log"):
            if f.owner() != pg_cluster.SUPERUSER:
                f.chmod(0o600)
        if self.pg_managed_running() or pg_cluster.initialized(self.pg_paths):
            pg_cluster.prepare_dirs(self.pg_paths, self.log_file("postgres"))  # the postgres user's way in

    def down(self) -> list[str]:
        stopped: list[str] = []
        for name in reversed(services.SERVICE_NAMES):
            s = services.spec(name, self.settings, self.repo_root)
            if self._stop_supervised(name, s.marker, SERVICE_STOP_GRACE_S):
                stopped.append(name)
        if self._stop_supervised("kafka", kafka_broker.MAIN_CLASS, KAFKA_STOP_GRACE_S):
            stopped.append("kafka")
        if pg_cluster.initialized(self.pg_paths) and pg_cluster.stop(self.pg_paths):
            stopped.append("postgresql")
        return stopped

    def kill(self, name: str) -> bool:
        """SIGKILL one managed process (kafka or a service), as a crash would; its supervisor stays."""
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
        grown = self._lag_growth(lags) if lags else {}
        for name in services.SERVICE_NAMES:
            out.append(self._service_status(name, lags, grown))
        if lags:
            out += [ComponentStatus(f"group {g.group}", "degraded" if g.group in grown else "up",
                                    address=",".join(g.topics),
                                    detail=f"lag {g.lag} over {g.partitions} partitions"
                                    + (f"; {grown[g.group].describe()}" if g.group in grown else ""))
                    for g in lags]
        return out

    def _lag_growth(self, lags: list[kafka_admin.GroupLag]) -> dict[str, lag_trend.Growth]:
        """Groups whose lag has grown for more than a minute (samples kept across status calls)."""
        path = self.settings.state_dir / "lag_history.json"
        history = lag_trend.add_samples(lag_trend.load(path), time.time(), {g.group: g.lag for g in lags})
        lag_trend.save(path, history)
        return {g: grew for g, samples in history.items() if (grew := lag_trend.growth(samples)) is not None}

    def _own_groups(self, lags: list[kafka_admin.GroupLag]) -> list[kafka_admin.GroupLag]:
        """Consumer groups reading this stack's topics only (not other prefixes' test or tenant groups)."""
        own = {self.settings.topic(name) for name in load_topics()}
        return [g for g in lags if g.topics and set(g.topics) <= own]

    def _kafka_status(self) -> ComponentStatus:
        pid = self.kafka_pid()
        ok = self._kafka_ok()
        version = kafka_broker.kafka_version()
        sup = self._supervised_state("kafka", pid)
        if sup is not None and sup.state != "up":
            return ComponentStatus("kafka", sup.state, version, self.kafka_ep.address, sup.detail,
                                   sup.restarts, sup.last_exit)
        restarts, last_exit = (sup.restarts, sup.last_exit) if sup else (0, "")
        if pid is not None:
            return ComponentStatus("kafka", "up" if ok else "starting", version, self.kafka_ep.address,
                                   f"pid {pid}" + ("" if ok else ", metadata does not answer")
                                   + ("" if sup else ", not supervised: `down` then `up` supervises it"),
                                   restarts, last_exit)
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

    def _supervised_state(self, name: str, pid: int | None) -> ComponentStatus | None:
        """What the supervisor of name says (state up, restarting or crashloop), or None without one."""
        st = self.supervision(name)
        if self.supervisor_pid(name) is None or st is None:
            return None
        last = format_last_exit(st)
        if pid is None or st.child_pid != pid:
            wait = max(0.0, (st.next_start_at or time.time()) - time.time())
            return ComponentStatus(name, "restarting", detail=f"supervisor pid {st.supervisor_pid}, "
                                   f"next start in {wait:.0f} s", restarts=st.restarts, last_exit=last)
        if st.crash_loop and time.time() - (st.child_started_at or 0.0) < STABLE_AFTER_S:
            return ComponentStatus(name, "crashloop", detail=f"pid {pid}, {st.failures_in_a_row} exits in a row",
                                   restarts=st.restarts, last_exit=last)
        return ComponentStatus(name, "up", restarts=st.restarts, last_exit=last)

    def _service_status(self, name: str, lags: list[kafka_admin.GroupLag],
                        grown: dict[str, lag_trend.Growth] | None = None) -> ComponentStatus:
        if not services.service_exists(name, self.repo_root):
            return ComponentStatus(name, "absent", detail="module not present")
        s = services.spec(name, self.settings, self.repo_root)
        why = services.can_run(s)
        if why is not None:
            return ComponentStatus(name, "skipped", detail=why)
        pid = self.service_pid(name)
        address = services.ui_url(self.settings) if name == "ui" else (s.health_url or "")
        sup = self._supervised_state(name, pid)
        if sup is not None and sup.state != "up":
            return ComponentStatus(name, sup.state, _package_version(), address, sup.detail, sup.restarts,
                                   sup.last_exit)
        restarts, last_exit = (sup.restarts, sup.last_exit) if sup else (0, "")
        if pid is None:
            return ComponentStatus(name, "down", _package_version(), address, detail=f"log {self.log_file(name)}")
        detail = [f"pid {pid}"]
        if sup is None:
            detail.append("not supervised: `execsight up` restarts it under the supervisor")
        if s.health_url and not services.http_ok(s.health_url, text=s.health_text):
            return ComponentStatus(name, "starting", _package_version(), address, f"pid {pid}, health check fails",
                                   restarts, last_exit)
        mine = [g for g in lags if name in g.group]
        if mine:
            detail.append("lag " + ", ".join(f"{g.group}={g.lag}" for g in mine))
        behind = [f"{g.group}: {grown[g.group].describe()}" for g in mine if grown and g.group in grown]
        return ComponentStatus(name, "degraded" if behind else "up", _package_version(), address,
                               "; ".join(detail + behind), restarts, last_exit)


def format_last_exit(st: supervisor.SupervisorState) -> str:
    """`killed by SIGKILL at 13:02:11Z: <last log line>`, empty when it never exited."""
    if not st.last_exit:
        return ""
    at = time.strftime("%H:%M:%SZ", time.gmtime(st.last_exit_at)) if st.last_exit_at else "?"
    return f"{st.last_exit} at {at}" + (f": {st.last_log_line}" if st.last_log_line else "")
