"""Where the local stack listens: derived from KAFKA_BOOTSTRAP_SERVERS and the database DSNs."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict


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
