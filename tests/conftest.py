"""Real servers for tests: Kafka and PostgreSQL.

Order of preference for each server:
1. the address in the environment (KAFKA_BOOTSTRAP_SERVERS, EXECSIGHT_DATABASE_URL) — CI sets these;
2. testcontainers (Kafka, TimescaleDB images) when a Docker engine answers;
3. the local stack's defaults (what `make up` starts).
Every test gets its own topic prefix and its own database, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from execsight.kafka_io import admin_client, create_topics
from execsight.schemas.migrate import apply_migrations
from execsight.schemas.topics import load_topics
from execsight.settings import Settings, load_settings

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_DB = "postgresql://execsight:execsight@127.0.0.1:5432/execsight"


def _docker_answers() -> bool:
    sock = Path("/var/run/docker.sock")
    if not sock.exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    yield DEFAULT_KAFKA


@pytest.fixture(scope="session")
def database_server_url() -> Iterator[str]:
    env = os.environ.get("EXECSIGHT_DATABASE_URL")
    if env:
        yield env
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("timescale/timescaledb:latest-pg15", driver=None) as pg:
            yield pg.get_connection_url()
        return
    yield DEFAULT_DB


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def _template(database_server_url: str) -> Iterator[tuple[str, str]]:
    """A database with every migration applied, cloned for each test (fast), and its flavour.

    TimescaleDB's scheduler connects to every database that has the extension, and a database
    with a connection cannot be a CREATE DATABASE ... TEMPLATE source. Its launcher leaves
    template databases alone, so the template is marked IS_TEMPLATE before the migrations create
    the extension, and closed to connections once it is filled.
    """
    name = f"execsight_tmpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    url = _with_dbname(database_server_url, name)
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
    assert len(rows) == 1, rows
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    yield name, str(rows[0][0])
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false ALLOW_CONNECTIONS true')
    drop_database(database_server_url, name)


@pytest.fixture(scope="session")
def migrated_template(_template: tuple[str, str]) -> str:
    return _template[0]


@pytest.fixture(scope="session")
def db_flavour(_template: tuple[str, str]) -> str:
    """The storage flavour the test databases got (timescale | postgres).

    CI runs the DB tests once per flavour and sets EXECSIGHT_TEST_DB_FLAVOUR, so a pass meant for
    TimescaleDB cannot quietly run on plain PostgreSQL (or the other way round).
    """
    flavour = _template[1]
    expected = os.environ.get("EXECSIGHT_TEST_DB_FLAVOUR")
    if expected and expected != flavour:
        pytest.fail(f"EXECSIGHT_TEST_DB_FLAVOUR={expected} but the database server gives {flavour}")
    return flavour


@pytest.fixture()
def database_url(database_server_url: str, migrated_template: str, db_flavour: str) -> Iterator[str]:
    """DSN of a fresh, fully migrated database of this test's own (of the flavour CI asked for)."""
    name = f"execsight_t_{uuid.uuid4().hex[:12]}"
    clone_database(database_server_url, migrated_template, name)
    yield _with_dbname(database_server_url, name)
    drop_database(database_server_url, name)


def clone_database(server_url: str, template: str, name: str, wait_s: float = 30.0) -> None:
    """CREATE DATABASE name TEMPLATE template, waiting out a backend of the template that has not quite gone
    (TimescaleDB's scheduler connects to a database with the extension): it goes within moments."""
    deadline = time.monotonic() + wait_s
    with psycopg.connect(server_url, autocommit=True) as conn:
        while True:
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (template,))
                time.sleep(0.5)


def drop_database(server_url: str, name: str, wait_s: float = 10.0) -> None:
    """DROP ... WITH (FORCE) may not terminate another role's backend (the dashboard's read-only role); a
    backend whose client has just closed its connection goes away within moments, so try again until then."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture()
def empty_database_url(database_server_url: str) -> Iterator[str]:
    """DSN of a fresh database with no migrations applied."""
    name = f"execsight_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_dbname(database_server_url, name)
    drop_database(database_server_url, name)


@pytest.fixture()
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A unique prefix with every topic of schemas/topics.yaml created under it; afterwards every topic under
    it (the correlator's changelogs too) is deleted: a suite's thousands of partitions otherwise pile up in
    one broker (one that had 16,600 ran out of heap)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    assert len(create_topics(kafka_bootstrap, prefix)) == len(load_topics())
    yield prefix
    client = admin_client(kafka_bootstrap)
    with contextlib.suppress(Exception):  # best effort: a test that stopped the broker leaves its topics
        names = [t for t in client.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for fut in client.delete_topics(names, operation_timeout=10).values():
                fut.result(timeout=15)


@pytest.fixture()
def settings(
    kafka_bootstrap: str, topic_prefix: str, database_url: str, tmp_path: Path
) -> Settings:
    """Settings pointing at this test's topics, database and a private state dir."""
    base = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "EXECSIGHT_TOPIC_PREFIX": topic_prefix,
            "EXECSIGHT_DATABASE_URL": database_url,
            "EXECSIGHT_STATE_DIR": str(tmp_path / "state"),
            "EXECSIGHT_HOST_ID": f"test-{socket.gethostname()}",
            "EXECSIGHT_LOG_FORMAT": "text",
        }
    )
    return replace(base)
