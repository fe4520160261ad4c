"""The local stack's PostgreSQL configuration: TimescaleDB preloaded with enough worker processes, or not at all."""

from __future__ import annotations

from pathlib import Path

from execsight.deploy.local import pg_cluster
from execsight.deploy.local.endpoints import PgEndpoint


def _conf(tmp_path: Path, timescaledb: bool) -> str:
    paths = pg_cluster.PgPaths(tmp_path)
    paths.data.mkdir(parents=True)
    pg_cluster.write_conf(paths, PgEndpoint("127.0.0.1", 5434, "execsight", "execsight", "x"), timescaledb=timescaledb)
    return paths.conf.read_text()


def test_preloading_timescaledb_raises_max_worker_processes(tmp_path: Path) -> None:
    conf = _conf(tmp_path, timescaledb=True)
    assert "shared_preload_libraries = 'timescaledb'" in conf
    # timescaledb.max_background_workers (16) + launcher + one scheduler per database exceed the default 8
    assert f"max_worker_processes = {pg_cluster.TIMESCALEDB_MAX_WORKER_PROCESSES}" in conf
    assert pg_cluster.TIMESCALEDB_MAX_WORKER_PROCESSES >= 16 + 2 + 8


def test_plain_cluster_never_preloads(tmp_path: Path) -> None:
    conf = _conf(tmp_path, timescaledb=False)
    assert "timescaledb" not in conf and "max_worker_processes" not in conf
    assert "port = 5434" in conf


def test_relocated_tree_is_detected_by_its_share_dir(tmp_path: Path) -> None:
    share = tmp_path / "usr/share/postgresql/15"
    (share / "extension").mkdir(parents=True)
    assert not pg_cluster.timescaledb_available(share)
    (share / "extension" / "timescaledb.control").write_text("default_version = '2.28.3'\n")
    assert pg_cluster.timescaledb_available(share)
