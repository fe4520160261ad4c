"""A PostgreSQL 15 cluster of the local stack, from the OS packages, with its data under the state dir.

initdb refuses to run as root, so as root every server command runs as the `postgres` OS user
(runuser); as any other user the cluster belongs to that user. The superuser `postgres` logs in
only over the cluster's private Unix socket (trust, socket directory mode 0700); TCP needs a
password (scram-sha-256). TimescaleDB is preloaded and created when its package is installed
(unless the caller asks for plain PostgreSQL, as CI's second cluster does).

`python -m execsight.deploy.local.pg_cluster start|stop` runs one such cluster on its own (CI's plain-PostgreSQL
pass, a relocated PostgreSQL tree with `--pg-root`).
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from execsight.deploy.local.endpoints import PgEndpoint, PgRole

log = logging.getLogger(__name__)

PG_MAJOR = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PG_SHARE = Path(f"/usr/share/postgresql/{PG_MAJOR}")
SUPERUSER = "postgres"
# TimescaleDB wants timescaledb.max_background_workers (16) + its launcher + one scheduler per
# database; PostgreSQL's default of 8 leaves jobs unstarted ("failed to start a background worker").
TIMESCALEDB_MAX_WORKER_PROCESSES = 32


def timescaledb_available(share: Path | None = None) -> bool:
    return ((share or PG_SHARE) / "extension" / "timescaledb.control").is_file()


@dataclass(frozen=True)
class PgPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def conf(self) -> Path:
        return self.data / "execsight.conf"


def _as_server_user(cmd: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *cmd]
    return list(cmd)


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_server_user(cmd), check=check, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)


def _owner_ids() -> tuple[int, int]:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(SUPERUSER)
        return pw.pw_uid, pw.pw_gid
    return os.geteuid(), os.getegid()


def _grant_traverse(path: Path) -> None:
    """As root, let the postgres user reach path: add search permission on ancestors that lack it."""
    if os.geteuid() != 0:
        return
    for parent in reversed(path.resolve().parents):
        if _run(["test", "-x", str(parent)], check=False).returncode == 0:
            continue
        setfacl = shutil.which("setfacl")
        if setfacl:
            subprocess.run([setfacl, "-m", f"u:{SUPERUSER}:x", str(parent)], check=True)
        else:
            parent.chmod(parent.stat().st_mode | 0o001)
        log.info("granted the postgres user search permission", extra={"dir": str(parent)})


def prepare_dirs(paths: PgPaths, log_file: Path) -> None:
    uid, gid = _owner_ids()
    for d in (paths.root, paths.socket_dir):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, gid)
    paths.root.chmod(0o700)
    paths.socket_dir.chmod(0o700)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch(exist_ok=True)
    os.chown(log_file, uid, gid)
    _grant_traverse(paths.root)
    _grant_traverse(log_file)


def initialized(paths: PgPaths) -> bool:
    return (paths.data / "PG_VERSION").is_file()


def initdb(paths: PgPaths) -> None:
    _run([str(PG_BIN / "initdb"), "-D", str(paths.data), "-U", SUPERUSER, "-E", "UTF8",
          "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions"])
    with (paths.data / "postgresql.conf").open("a") as f:
        f.write("\ninclude_if_exists = 'execsight.conf'\n")
    log.info("initialized postgresql cluster", extra={"dir": str(paths.data)})


def write_conf(paths: PgPaths, ep: PgEndpoint, timescaledb: bool | None = None) -> None:
    """postgresql.conf additions; timescaledb None: preload it when it is installed."""
    if timescaledb is None:
        timescaledb = timescaledb_available()
    lines = [
        "# written by deploy/local/pg_cluster.py on every start; edits are lost",
        f"port = {ep.port}",
        f"listen_addresses = '{ep.host}'",
        f"unix_socket_directories = '{paths.socket_dir}'",
        "unix_socket_permissions = 0700",
        "max_connections = 200",
        "shared_buffers = 128MB",
        "password_encryption = 'scram-sha-256'",
        "timezone = 'UTC'",
    ]
    if timescaledb:
        lines += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off",
                  f"max_worker_processes = {TIMESCALEDB_MAX_WORKER_PROCESSES}"]
    paths.conf.write_text("\n".join(lines) + "\n")
    uid, gid = _owner_ids()
    os.chown(paths.conf, uid, gid)


def running(paths: PgPaths) -> bool:
    if not initialized(paths):
        return False
    return _run([str(PG_BIN / "pg_ctl"), "status", "-D", str(paths.data)], check=False).returncode == 0


def server_pid(paths: PgPaths) -> int | None:
    try:
        return int((paths.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start(paths: PgPaths, log_file: Path, timeout_s: int = 60) -> None:
    res = _run([str(PG_BIN / "pg_ctl"), "start", "-D", str(paths.data), "-l", str(log_file),
                "-w", "-t", str(timeout_s)], check=False)
    if res.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed ({res.returncode}): {res.stdout}{res.stderr}".strip())


def stop(paths: PgPaths, timeout_s: int = 60) -> bool:
    if not running(paths):
        return False
    _run([str(PG_BIN / "pg_ctl"), "stop", "-D", str(paths.data), "-m", "fast", "-w", "-t", str(timeout_s)])
    return True


def superuser_connect(
    paths: PgPaths, ep: PgEndpoint, dbname: str = "postgres"
) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=str(paths.socket_dir), port=ep.port, user=SUPERUSER, dbname=dbname,
                           autocommit=True, connect_timeout=5)


def _ensure_role(cur: psycopg.Cursor[tuple[object, ...]], role: PgRole, attrs: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.user,))
    created = cur.fetchone() is None
    verb = "CREATE" if created else "ALTER"
    cur.execute(
        sql.SQL("{} ROLE {} WITH LOGIN " + attrs + " PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(role.user), sql.Literal(role.password or None)
        )
    )
    return created


def bootstrap(paths: PgPaths, ep: PgEndpoint, writer: PgRole, reader: PgRole,
              timescaledb: bool | None = None) -> list[str]:
    """Roles, database, extension and read-only grants; idempotent. Returns what it created."""
    if timescaledb is None:
        timescaledb = timescaledb_available()
    created: list[str] = []
    with superuser_connect(paths, ep) as conn, conn.cursor() as cur:
        if _ensure_role(cur, writer, "CREATEDB NOSUPERUSER"):
            created.append(f"role {writer.user}")
        if _ensure_role(cur, reader, "NOCREATEDB NOSUPERUSER"):
            created.append(f"role {reader.user}")
        cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                    .format(sql.Identifier(reader.user)))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ep.dbname,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(ep.dbname), sql.Identifier(writer.user)))
            created.append(f"database {ep.dbname}")
    with superuser_connect(paths, ep, ep.dbname) as conn, conn.cursor() as cur:
        if timescaledb:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        ident = {"db": sql.Identifier(ep.dbname), "ui": sql.Identifier(reader.user),
                 "w": sql.Identifier(writer.user)}
        for stmt in (
            "GRANT CONNECT ON DATABASE {db} TO {ui}",
            "GRANT USAGE ON SCHEMA public TO {ui}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ui}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {w} GRANT SELECT ON TABLES TO {ui}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {w} GRANT USAGE ON SCHEMAS TO {ui}",
        ):
            cur.execute(sql.SQL(stmt).format(**ident))
    if created:
        log.info("bootstrapped postgresql", extra={"made": created})
    return created


def select_one(dsn: str, timeout_s: int = 3) -> str | None:
    """The server version when `SELECT 1` answers over dsn, else None."""
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1").fetchone()
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except psycopg.Error:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """One cluster outside the stack: `start` (initdb, conf, start, roles, database) or `stop`."""
    from execsight.deploy.local.endpoints import pg_endpoint, pg_role

    global PG_BIN, PG_SHARE
    p = argparse.ArgumentParser(prog="python -m execsight.deploy.local.pg_cluster", description=main.__doc__)
    p.add_argument("action", choices=("start", "stop"))
    p.add_argument("--dir", type=Path, required=True, help="cluster root (data/, run/, postgres.log)")
    p.add_argument("--dsn", required=True, help="writer DSN: port, database, writer role and password")
    p.add_argument("--ui-dsn", required=True, help="read-only DSN: the dashboard role and password")
    p.add_argument("--plain", action="store_true", help="never preload TimescaleDB, even when installed")
    p.add_argument("--pg-root", type=Path, default=Path("/"),
                   help="root of a (relocated) Debian PostgreSQL tree: ROOT/usr/lib/postgresql/15/bin")
    args = p.parse_args(argv)
    PG_BIN = args.pg_root / f"usr/lib/postgresql/{PG_MAJOR}/bin"
    PG_SHARE = args.pg_root / f"usr/share/postgresql/{PG_MAJOR}"
    paths, log_file = PgPaths(args.dir), args.dir / "postgres.log"
    if args.action == "stop":
        print("stopped" if initialized(paths) and stop(paths) else "not running")
        return 0
    ts = False if args.plain else timescaledb_available(PG_SHARE)
    ep = pg_endpoint(args.dsn)
    prepare_dirs(paths, log_file)
    if not initialized(paths):
        initdb(paths)
    write_conf(paths, ep, timescaledb=ts)
    if not running(paths):
        start(paths, log_file)
    bootstrap(paths, ep, pg_role(args.dsn), pg_role(args.ui_dsn), timescaledb=ts)
    print(f"postgresql {'with timescaledb' if ts else 'plain'} on {ep.address}, data {paths.data}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
