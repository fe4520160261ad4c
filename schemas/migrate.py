"""Versioned SQL migrations, applied once each and tracked in schema_migrations.

Files are ``NNNN_name.sql`` (both storage flavours) or ``NNNN_name.timescale.sql`` /
``NNNN_name.postgres.sql`` (one per flavour, same version). A file whose first line is
``-- execsight: no-transaction`` runs outside a transaction (TimescaleDB continuous
aggregates need that). Writers call apply_migrations at start; an advisory lock makes
concurrent starts safe.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(?P<version>\d{4}_[a-z0-9_]+?)(?:\.(?P<flavour>timescale|postgres))?\.sql$")
_LOCK_ID = 0x65786563  # "exec"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    transactional: bool


def detect_flavour(conn: psycopg.Connection[object]) -> str:
    """timescale when this database already has the extension or the server preloads it, else postgres.

    Installed is not enough: a cluster of the same installation that does not list timescaledb in
    shared_preload_libraries shows it in pg_available_extensions but refuses CREATE EXTENSION. A
    preloaded library defines its GUCs, so timescaledb.max_background_workers answers only then.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " current_setting('timescaledb.max_background_workers', true) IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    in_db, preloaded = row if isinstance(row, tuple) else (False, False)
    return "timescale" if in_db or preloaded else "postgres"


def plan(flavour: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    chosen: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration file names must look like 0001_name[.timescale|.postgres].sql")
        if match["flavour"] not in (None, flavour):
            continue
        version = match["version"]
        if version in chosen:
            raise ValueError(f"{path}: version {version} defined twice")
        first = path.read_text().split("\n", 1)[0].strip()
        chosen[version] = Migration(version, path, first != "-- execsight: no-transaction")
    return [chosen[v] for v in sorted(chosen)]


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies the pending migrations; returns the versions applied now."""
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, flavour text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version, flavour FROM schema_migrations").fetchall()
            done = {r[0] for r in rows}
            flavour = _flavour_of(conn, {r[1] for r in rows})
            for migration in plan(flavour, directory):
                if migration.version in done:
                    continue
                sql = migration.path.read_text()
                try:
                    if migration.transactional:
                        with conn.transaction():
                            conn.execute(sql.encode())
                            _record(conn, migration.version, flavour)
                    else:
                        for statement in _statements(sql):
                            conn.execute(statement.encode())
                        _record(conn, migration.version, flavour)
                except psycopg.Error as exc:
                    raise RuntimeError(f"{migration.path}: {exc}") from exc
                log.info("migration applied", extra={"version": migration.version, "flavour": flavour})
                applied_now.append(migration.version)
        finally:
            _unlock(conn)
    return applied_now


def _unlock(conn: psycopg.Connection[object]) -> None:
    """Releases the advisory lock; a broken connection already released it with the session, and
    raising here would hide the migration's own error."""
    if conn.closed or conn.broken:
        return
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    except psycopg.Error as exc:
        log.warning("advisory unlock failed", extra={"error": str(exc).strip()})


def _flavour_of(conn: psycopg.Connection[object], recorded: set[str]) -> str:
    """A database keeps the flavour of its first migration; the server must still provide it."""
    detected = detect_flavour(conn)
    if not recorded:
        return detected
    if len(recorded) > 1:
        raise RuntimeError(f"schema_migrations mixes flavours {sorted(recorded)}: repair it by hand")
    (flavour,) = recorded
    if flavour == "timescale" and detected != "timescale":
        raise RuntimeError(
            "this database was migrated for TimescaleDB but the server does not provide it: add"
            " shared_preload_libraries = 'timescaledb' to postgresql.conf and restart the server")
    return flavour


def _record(conn: psycopg.Connection[object], version: str, flavour: str) -> None:
    conn.execute("INSERT INTO schema_migrations (version, flavour) VALUES (%s, %s)", (version, flavour))


def _statements(sql: str) -> list[str]:
    """Splits a no-transaction file on top-level semicolons (it holds no function bodies)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    parts: list[str] = []
    current: list[str] = []
    in_dollar = False
    for chunk in re.split(r"(\$\$|;)", body):
        if chunk == "$$":
            in_dollar = not in_dollar
        if chunk == ";" and not in_dollar:
            text = "".join(current).strip()
            if text:
                parts.append(text)
            current = []
        else:
            current.append(chunk)
    tail = "".join(current).strip()
    if tail:
        parts.append(tail)
    return parts


def main() -> None:  # pragma: no cover - convenience for operators
    import os

    print(apply_migrations(os.environ.get("EXECSIGHT_DATABASE_URL", "")))


if __name__ == "__main__":  # pragma: no cover
    main()
