"""Where the local stack listens: derived from KAFKA_BOOTSTRAP_SERVERS and the database DSNs."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:
    from execsight.settings import Settings


@dataclass(frozen=True)
class KafkaEndpoint:
    host: str
    port: int

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PgEndpoint:
    host: str
    port: int
    dbname: str
    user: str
    password: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PgRole:
    user: str
    password: str


def kafka_endpoint(bootstrap: str) -> KafkaEndpoint:
    """The first bootstrap server: the one the local single-node broker listens on."""
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, sep, port = first.rpartition(":")
    if not sep:
        return KafkaEndpoint(host=first or "127.0.0.1", port=9092)
    try:
        return KafkaEndpoint(host=host.strip("[]") or "127.0.0.1", port=int(port))
    except ValueError:
        raise ValueError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r}: bad port {port!r}") from None


def pg_endpoint(dsn: str) -> PgEndpoint:
    d = conninfo_to_dict(dsn)
    host = str(d.get("host") or "127.0.0.1")
    if host.startswith("/"):
        raise ValueError(f"database DSN {dsn!r}: the local stack needs a TCP host, not a socket directory")
    return PgEndpoint(
        host=host,
        port=int(d.get("port") or 5432),
        dbname=str(d.get("dbname") or "execsight"),
        user=str(d.get("user") or "execsight"),
        password=str(d.get("password") or ""),
    )


def pg_role(dsn: str) -> PgRole:
    ep = pg_endpoint(dsn)
    return PgRole(user=ep.user, password=ep.password)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (nothing else holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def exposure_problems(settings: Settings) -> list[str]:
    """Why the stack must not start as configured: something listens beyond loopback while a
    database role still has the built-in password (anyone who can reach the port knows it)."""
    from execsight.settings import env_value

    kafka_host = kafka_endpoint(settings.kafka_bootstrap).host
    binds = {"EXECSIGHT_UI_ADDRESS": settings.ui_address, "EXECSIGHT_METRICS_ADDRESS": settings.metrics_address,
             "KAFKA_BOOTSTRAP_SERVERS": kafka_host, "EXECSIGHT_DATABASE_URL": pg_endpoint(settings.database_url).host}
    wide = [f"{var} ({host})" for var, host in binds.items() if not is_loopback(host)]
    if not wide:
        return []
    dsns = {"EXECSIGHT_DATABASE_URL": settings.database_url, "EXECSIGHT_UI_DATABASE_URL": settings.ui_database_url}
    builtin = {pg_role(env_value({}, var)).password for var in dsns}
    weak = [var for var, dsn in dsns.items() if pg_role(dsn).password in builtin | {""}]
    if not weak:
        return []
    return [f"{', '.join(wide)} listen beyond loopback while {' and '.join(weak)} keep the built-in "
            "password: set real passwords in the DSNs, or bind to 127.0.0.1"]


def ui_exposure_problem(settings: Settings) -> str | None:
    """Why the dashboard must not be served as configured: beyond loopback without a login."""
    if settings.ui_auth == "none" and not is_loopback(settings.ui_address):
        return (f"EXECSIGHT_UI_ADDRESS={settings.ui_address} exposes the dashboard without a login: set "
                "EXECSIGHT_UI_AUTH=password (with EXECSIGHT_UI_PASSWORD) or EXECSIGHT_UI_AUTH=oidc")
    return None
