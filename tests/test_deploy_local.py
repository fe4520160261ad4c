"""Pieces of deploy/local that need no servers: addresses, broker config, header links, processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from execsight.deploy.local import host_prep, procs
from execsight.deploy.local.endpoints import kafka_endpoint, pg_endpoint
from execsight.deploy.local.kafka_broker import kafka_version, new_cluster_id, server_properties


def test_endpoints_from_settings() -> None:
    ep = kafka_endpoint("127.0.0.1:19092,other:9092")
    assert (ep.host, ep.port, ep.controller_port) == ("127.0.0.1", 19092, 19093)
    assert kafka_endpoint("PLAINTEXT://localhost:9094").port == 9094
    pg = pg_endpoint("postgresql://w:secret@127.0.0.1:15432/db1")
    assert (pg.host, pg.port, pg.dbname, pg.user, pg.password) == ("127.0.0.1", 15432, "db1", "w", "secret")
    with pytest.raises(ValueError, match="bad port"):
        kafka_endpoint("host:notaport")


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    text = server_properties(kafka_endpoint("127.0.0.1:19092"), tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"


def test_pom_version_and_cluster_id() -> None:
    assert kafka_version() == "3.9.1"
    cid = new_cluster_id()
    assert len(cid) == 22 and "=" not in cid and cid != new_cluster_id()


def _headers(src: Path, *names: str) -> None:
    for n in names:
        (src / n).mkdir(parents=True)


def test_newest_headers_sorts_versions_numerically(tmp_path: Path) -> None:
    _headers(tmp_path, "linux-headers-6.1.0-9-amd64", "linux-headers-6.1.0-10-amd64",
             "linux-headers-6.1.0-9-common", "linux-headers-6.1.0-10-common")
    found = host_prep.newest_headers(tmp_path)
    assert found == (tmp_path / "linux-headers-6.1.0-10-amd64", tmp_path / "linux-headers-6.1.0-10-common")
    assert host_prep.newest_headers(tmp_path / "none") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="linking headers is a root-only step")
def test_link_kernel_headers_once(tmp_path: Path) -> None:
    src, modules = tmp_path / "src", tmp_path / "modules"
    _headers(src, "linux-headers-6.1.0-56-amd64", "linux-headers-6.1.0-56-common")
    made = host_prep.link_kernel_headers("6.18.0-test", modules, src)
    assert len(made) == 2
    assert (modules / "6.18.0-test" / "build").resolve() == src / "linux-headers-6.1.0-56-amd64"
    assert (modules / "6.18.0-test" / "source").resolve() == src / "linux-headers-6.1.0-56-common"
    assert host_prep.link_kernel_headers("6.18.0-test", modules, src) == []


def test_missing_packages_reports_unknown_package() -> None:
    if not Path("/usr/bin/dpkg-query").exists():
        pytest.skip("not a Debian host")
    assert host_prep.missing_packages(("execsight-no-such-package",))[0] == "execsight-no-such-package"


def test_background_process_lifecycle(tmp_path: Path) -> None:
    pid_file, log_file = tmp_path / "run" / "x.pid", tmp_path / "log" / "x.log"
    marker = "execsight_procs_test_marker"
    code = f"import time; print('{marker}', flush=True); time.sleep(60)"
    pid = procs.start([sys.executable, "-c", code], pid_file=pid_file, log_file=log_file)
    assert procs.read_pid(pid_file) == pid
    deadline = time.monotonic() + 20
    while marker not in procs.log_tail(log_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in procs.log_tail(log_file), "output goes to the log file"
    assert procs.running_pid(pid_file, marker) == pid
    assert procs.running_pid(pid_file, "some other program") is None, "a reused pid must not count"
    assert procs.stop(pid_file, marker, timeout_s=10)
    assert not procs.pid_alive(pid)
    assert not pid_file.exists()
    assert procs.stop(pid_file, marker) is False


def test_cluster_ids_never_read_as_an_option() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # about 47 would start with '-' if drawn plainly
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
