"""Typed settings from allow-listed environment variables, with defaults for the local stack.

Every variable is listed in SETTINGS_DOC, which the README's configuration table mirrors
(a test keeps the two in step). Nothing else in the environment is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from execsight import kafka_security
from execsight.kafka_security import KafkaSecurity
from execsight.machine_id import default_host_id

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _default_host_id() -> str:
    return default_host_id()


@dataclass(frozen=True)
class Var:
    env: str
    default: str
    doc: str


# One row per variable: (name, default, meaning). The README table is generated from this.
SETTINGS_DOC: tuple[Var, ...] = (
    Var("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka bootstrap servers."),
    # Kafka TLS/SASL (execsight/kafka_security.py; README "Secure transport")
    *(Var(env, default, doc) for env, default, doc in kafka_security.SETTINGS_ROWS),
    Var("EXECSIGHT_TOPIC_PREFIX", "", "Prefix put before every topic name (isolates tests and tenants)."),
    Var("EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight",
        "PostgreSQL/TimescaleDB DSN for writers."),
    Var("EXECSIGHT_UI_DATABASE_URL", "postgresql://execsight_ui:execsight_ui@127.0.0.1:5432/execsight",
        "Read-only DSN for the dashboard (SELECT-only role)."),
    Var("EXECSIGHT_STATE_DIR", "~/.local/state/execsight",
        "Local stack state: Kafka and PostgreSQL data, pid files, logs, collector spool."),
    Var("EXECSIGHT_HOST_ID", "(/etc/machine-id)", "Host identity used as the Kafka key."),
    Var("EXECSIGHT_LOG_LEVEL", "INFO", "Log level for all services (JSON lines on stderr)."),
    Var("EXECSIGHT_LOG_FORMAT", "json", "json or text."),
    Var("EXECSIGHT_UI_PORT", "8501", "Dashboard port."),
    Var("EXECSIGHT_UI_ADDRESS", "127.0.0.1", "Dashboard listen address (0.0.0.0 exposes it: set real passwords)."),
    Var("EXECSIGHT_UI_AUTH", "none", "Dashboard login: none, password (EXECSIGHT_UI_PASSWORD) or oidc (st.login)."),
    Var("EXECSIGHT_UI_PASSWORD", "", "Dashboard password when EXECSIGHT_UI_AUTH=password."),
    Var("EXECSIGHT_COLLECTOR_METRICS_PORT", "0", "Collector: Prometheus /metrics port (0: off; e.g. 9465)."),
    Var("EXECSIGHT_CORRELATOR_METRICS_PORT", "9464", "Correlator: Prometheus /metrics port (0: off)."),
    Var("EXECSIGHT_METRICS_ADDRESS", "127.0.0.1", "Listen address of every /metrics endpoint (opt-in wider)."),
    Var("EXECSIGHT_SAMPLE_INTERVAL_S", "1.0", "Collector: live process sample interval."),
    Var("EXECSIGHT_HOST_INTERVAL_S", "5.0", "Collector: host sample / heartbeat interval."),
    Var("EXECSIGHT_COLLECTOR_CONFIG", "", "Collector: filter/rate-limit rules file (YAML)."),
    Var("EXECSIGHT_SPOOL_MAX_BYTES", "1073741824", "Collector: on-disk spool bound while Kafka is unreachable."),
    Var("EXECSIGHT_INSTANCE_TYPE", "", "Host instance type when no cloud metadata service answers."),
    Var("EXECSIGHT_REGION", "", "Host region when no cloud metadata service answers."),
    Var("EXECSIGHT_TOOL_RULES", "", "Correlator: extra tool rules files or directories (colon-separated)."),
    Var("EXECSIGHT_RUN_TIMEOUT_S", "3600", "Correlator: close a run after this much inactivity (flagged TIMED_OUT)."),
    Var("EXECSIGHT_SHORT_LIVED_S", "1.0", "Processes shorter than this count as short-lived helpers."),
    Var("EXECSIGHT_PRICES_FILE", "", "Tune/sweep: price table override (YAML)."),
    Var("EXECSIGHT_ONPREM_HOURLY_USD", "0.10", "Hourly rate for hosts without a known instance type."),
    Var("EXECSIGHT_FINDINGS_MIN_WALL_S", "5",
        "Tune: no finding about how tasks ran when a definition's tasks in a run took less wall time (s)."),
    Var("EXECSIGHT_FINDINGS_MIN_COST_USD", "0.001",
        "Tune: no finding about how tasks ran when a definition's tasks in a run cost less (USD)."),
    Var("EXECSIGHT_AWS_REGIONS", "", "Sweep: regions to scan (comma-separated; empty: no cloud scan)."),
    Var("EXECSIGHT_SWEEP_INTERVAL_S", "300", "Sweep: scan interval."),
    Var("EXECSIGHT_IDLE_AFTER_S", "1800", "Sweep: a host with no execution this long is idle."),
    Var("EXECSIGHT_IDLE_CPU_RATIO", "0.05", "Sweep: workload CPU share under which a host counts as idle."),
    Var("EXECSIGHT_ROLLUP_REFRESH_S", "60", "Sweep: refresh the host_minute/run_minute rollups this often (> 0)."),
    # generic runs (untagged process trees), see README "What becomes a run"
    Var("EXECSIGHT_GENERIC_RUNS", "sessions",
        "Correlator: which untagged process trees become generic runs: sessions (started from a shell, terminal, "
        "tmux/screen, ssh, cron, a scheduler or a container entrypoint), any (services started by init too), off."),
    Var("EXECSIGHT_GENERIC_IDLE_S", "1800",
        "Correlator: close a generic run after this long without a process start, exit or CPU use (TIMED_OUT)."),
    Var("EXECSIGHT_DAEMONS", "",
        "Correlator: more program names whose process trees never become generic runs (comma-separated)."),
    # container context the collector asks the host's runtime for (README "Container context")
    Var("EXECSIGHT_DOCKER_SOCKETS", "/var/run/docker.sock,/run/podman/podman.sock",
        "Collector: Docker-compatible API sockets (Docker, Podman) to ask for container names (comma-separated)."),
    Var("EXECSIGHT_CRI_SOCKETS", "/run/containerd/containerd.sock,/var/run/crio/crio.sock",
        "Collector: CRI sockets (containerd, CRI-O) to ask for container and pod names (comma-separated)."),
    Var("EXECSIGHT_KUBELET_PODS_URL", "http://127.0.0.1:10255/pods",
        "Collector: the kubelet's read-only pod list (empty: not asked)."),
    Var("EXECSIGHT_CONTAINER_LOOKUPS_PER_S", "5", "Collector: container runtime lookups per second at most (0: none)."),
)


def env_value(env: Mapping[str, str], name: str) -> str:
    for var in SETTINGS_DOC:
        if var.env == name:
            return env.get(name, var.default)
    raise KeyError(f"{name} is not an allow-listed execsight setting")


# Valid range of every numeric setting: (lowest, highest, lowest allowed itself). A value outside,
# or nan/inf, is refused with the variable's name (0 s intervals would make a service spin).
RANGES: dict[str, tuple[float, float, bool]] = {
    "EXECSIGHT_UI_PORT": (1, 65535, True),
    "EXECSIGHT_COLLECTOR_METRICS_PORT": (0, 65535, True),
    "EXECSIGHT_CORRELATOR_METRICS_PORT": (0, 65535, True),
    "EXECSIGHT_SAMPLE_INTERVAL_S": (0.05, 3600, True),
    "EXECSIGHT_HOST_INTERVAL_S": (0.5, 3600, True),
    "EXECSIGHT_SPOOL_MAX_BYTES": (1 << 20, 1 << 50, True),
    "EXECSIGHT_RUN_TIMEOUT_S": (1, 30 * 86400, True),
    "EXECSIGHT_SHORT_LIVED_S": (0, 3600, False),
    "EXECSIGHT_ONPREM_HOURLY_USD": (0, 10000, True),
    "EXECSIGHT_SWEEP_INTERVAL_S": (1, 86400, True),
    "EXECSIGHT_IDLE_AFTER_S": (1, 30 * 86400, True),
    "EXECSIGHT_IDLE_CPU_RATIO": (0, 1, False),
    "EXECSIGHT_FINDINGS_MIN_WALL_S": (0, 30 * 86400, True),
    "EXECSIGHT_FINDINGS_MIN_COST_USD": (0, 10000, True),
    "EXECSIGHT_ROLLUP_REFRESH_S": (0, 86400, False),
    "EXECSIGHT_GENERIC_IDLE_S": (0, 30 * 86400, False),
    "EXECSIGHT_CONTAINER_LOOKUPS_PER_S": (0, 1000, True),
}


def _in_range(name: str, raw: str, value: float) -> None:
    lo, hi, lo_ok = RANGES.get(name, (-math.inf, math.inf, True))
    if not math.isfinite(value) or value > hi or value < lo or (value == lo and not lo_ok):
        low = f"{'>=' if lo_ok else '>'} {lo:g}"
        raise SettingsError(f"{name}={raw!r}: expected a number {low} and <= {hi:g}")


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env_value(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    _in_range(name, raw, value)
    return value


def _int(env: Mapping[str, str], name: str) -> int:
    raw = env_value(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    _in_range(name, raw, value)
    return value


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    topic_prefix: str
    database_url: str
    ui_database_url: str
    state_dir: Path
    host_id: str
    log_level: str
    log_format: str
    ui_port: int
    ui_address: str
    ui_auth: str
    ui_password: str
    collector_metrics_port: int
    correlator_metrics_port: int
    metrics_address: str
    sample_interval_s: float
    host_interval_s: float
    collector_config: Path | None
    spool_max_bytes: int
    instance_type: str | None
    region: str | None
    tool_rules: tuple[Path, ...]
    run_timeout_s: float
    short_lived_s: float
    prices_file: Path | None
    onprem_hourly_usd: float
    aws_regions: tuple[str, ...]
    sweep_interval_s: float
    idle_after_s: float
    idle_cpu_ratio: float
    # generic runs
    generic_runs: str
    generic_idle_s: float
    daemons: tuple[str, ...]
    findings_min_wall_s: float = 5.0
    findings_min_cost_usd: float = 0.001
    rollup_refresh_s: float = 60.0
    docker_sockets: tuple[str, ...] = ("/var/run/docker.sock", "/run/podman/podman.sock")
    cri_sockets: tuple[str, ...] = ("/run/containerd/containerd.sock", "/var/run/crio/crio.sock")
    kubelet_pods_url: str = "http://127.0.0.1:10255/pods"
    container_lookups_per_s: float = 5.0
    kafka_security: KafkaSecurity = kafka_security.PLAINTEXT

    def topic(self, name: str) -> str:
        """The broker-side name of a topic from schemas/topics.yaml."""
        return f"{self.topic_prefix}{name}"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"


def _sockets(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    paths = tuple(p.strip() for p in env_value(env, name).split(",") if p.strip())
    for p in paths:
        if not p.startswith("/"):
            raise SettingsError(f"{name}={env_value(env, name)!r}: {p!r} is not an absolute socket path")
    return paths


def _kubelet_url(env: Mapping[str, str]) -> str:
    url = env_value(env, "EXECSIGHT_KUBELET_PODS_URL").strip()
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(f"EXECSIGHT_KUBELET_PODS_URL={url!r}: expected an http:// or https:// URL, or empty")
    return url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if env is None else env
    host_id = e.get("EXECSIGHT_HOST_ID") or _default_host_id()
    level = env_value(e, "EXECSIGHT_LOG_LEVEL").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"EXECSIGHT_LOG_LEVEL={level!r}: expected DEBUG, INFO, WARNING or ERROR")
    fmt = env_value(e, "EXECSIGHT_LOG_FORMAT")
    if fmt not in {"json", "text"}:
        raise SettingsError(f"EXECSIGHT_LOG_FORMAT={fmt!r}: expected json or text")

    ui_auth = env_value(e, "EXECSIGHT_UI_AUTH")
    if ui_auth not in {"none", "password", "oidc"}:
        raise SettingsError(f"EXECSIGHT_UI_AUTH={ui_auth!r}: expected none, password or oidc")
    if ui_auth == "password" and not env_value(e, "EXECSIGHT_UI_PASSWORD"):
        raise SettingsError("EXECSIGHT_UI_AUTH=password: EXECSIGHT_UI_PASSWORD is empty")

    def opt_path(name: str) -> Path | None:
        raw = env_value(e, name)
        return Path(raw).expanduser() if raw else None

    generic_mode, generic_idle_s, daemons = _generic_runs(e)
    return Settings(
        kafka_bootstrap=env_value(e, "KAFKA_BOOTSTRAP_SERVERS"),
        topic_prefix=env_value(e, "EXECSIGHT_TOPIC_PREFIX"),
        database_url=env_value(e, "EXECSIGHT_DATABASE_URL"),
        ui_database_url=env_value(e, "EXECSIGHT_UI_DATABASE_URL"),
        state_dir=Path(env_value(e, "EXECSIGHT_STATE_DIR")).expanduser(),
        host_id=host_id,
        log_level=level,
        log_format=fmt,
        ui_port=_int(e, "EXECSIGHT_UI_PORT"),
        ui_address=env_value(e, "EXECSIGHT_UI_ADDRESS"),
        ui_auth=ui_auth,
        ui_password=env_value(e, "EXECSIGHT_UI_PASSWORD"),
        collector_metrics_port=_int(e, "EXECSIGHT_COLLECTOR_METRICS_PORT"),
        correlator_metrics_port=_int(e, "EXECSIGHT_CORRELATOR_METRICS_PORT"),
        metrics_address=env_value(e, "EXECSIGHT_METRICS_ADDRESS"),
        sample_interval_s=_float(e, "EXECSIGHT_SAMPLE_INTERVAL_S"),
        host_interval_s=_float(e, "EXECSIGHT_HOST_INTERVAL_S"),
        collector_config=opt_path("EXECSIGHT_COLLECTOR_CONFIG"),
        spool_max_bytes=_int(e, "EXECSIGHT_SPOOL_MAX_BYTES"),
        instance_type=env_value(e, "EXECSIGHT_INSTANCE_TYPE") or None,
        region=env_value(e, "EXECSIGHT_REGION") or None,
        tool_rules=tuple(Path(p).expanduser() for p in env_value(e, "EXECSIGHT_TOOL_RULES").split(":") if p),
        run_timeout_s=_float(e, "EXECSIGHT_RUN_TIMEOUT_S"),
        short_lived_s=_float(e, "EXECSIGHT_SHORT_LIVED_S"),
        prices_file=opt_path("EXECSIGHT_PRICES_FILE"),
        onprem_hourly_usd=_float(e, "EXECSIGHT_ONPREM_HOURLY_USD"),
        aws_regions=tuple(r.strip() for r in env_value(e, "EXECSIGHT_AWS_REGIONS").split(",") if r.strip()),
        sweep_interval_s=_float(e, "EXECSIGHT_SWEEP_INTERVAL_S"),
        idle_after_s=_float(e, "EXECSIGHT_IDLE_AFTER_S"),
        idle_cpu_ratio=_float(e, "EXECSIGHT_IDLE_CPU_RATIO"),
        findings_min_wall_s=_float(e, "EXECSIGHT_FINDINGS_MIN_WALL_S"),
        findings_min_cost_usd=_float(e, "EXECSIGHT_FINDINGS_MIN_COST_USD"),
        rollup_refresh_s=_float(e, "EXECSIGHT_ROLLUP_REFRESH_S"),
        generic_runs=generic_mode,
        generic_idle_s=generic_idle_s,
        daemons=daemons,
        docker_sockets=_sockets(e, "EXECSIGHT_DOCKER_SOCKETS"),
        cri_sockets=_sockets(e, "EXECSIGHT_CRI_SOCKETS"),
        kubelet_pods_url=_kubelet_url(e),
        container_lookups_per_s=_float(e, "EXECSIGHT_CONTAINER_LOOKUPS_PER_S"),
        kafka_security=_kafka_security(e),
    )


def _kafka_security(e: Mapping[str, str]) -> KafkaSecurity:
    try:
        return kafka_security.load_security(e)
    except kafka_security.KafkaSecurityError as exc:
        raise SettingsError(str(exc)) from None


# generic runs (untagged process trees): which count, when an idle one closes, more known daemons
GENERIC_RUN_MODES = ("sessions", "any", "off")


def _generic_runs(e: Mapping[str, str]) -> tuple[str, float, tuple[str, ...]]:
    mode = env_value(e, "EXECSIGHT_GENERIC_RUNS").strip().lower()
    if mode not in GENERIC_RUN_MODES:
        raise SettingsError(f"EXECSIGHT_GENERIC_RUNS={mode!r}: expected one of {', '.join(GENERIC_RUN_MODES)}")
    idle = _float(e, "EXECSIGHT_GENERIC_IDLE_S")
    daemons = tuple(d.strip() for d in env_value(e, "EXECSIGHT_DAEMONS").split(",") if d.strip())
    return mode, idle, daemons
