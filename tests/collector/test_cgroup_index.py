"""A cgroup's path from the id BPF reports (services/collector/cgroup_index.py), for a process that exited
before its /proc/<pid>/cgroup was read."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from execsight.collector.cgroup_index import CgroupIndex, cgroup2_mount, walk_ids
from execsight.collector.daemon import ProcLookups


def test_the_walk_maps_directory_inodes_to_cgroup_paths(tmp_path: Path) -> None:
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "system.slice").mkdir()
    (tmp_path / "cgroup.procs").write_text("")  # a file, not a cgroup
    ids = walk_ids(str(tmp_path))
    assert sorted(ids.values()) == ["/", "/kubepods", "/kubepods/pod1", "/system.slice"]
    assert ids[(tmp_path / "kubepods" / "pod1").stat().st_ino] == "/kubepods/pod1"
    assert len(walk_ids(str(tmp_path), max_entries=2)) <= 3  # bounded (the last level read may overshoot)
    assert walk_ids(str(tmp_path / "gone")) == {}


def test_a_miss_walks_again_after_the_interval(tmp_path: Path) -> None:
    now = [0.0]
    index = CgroupIndex(str(tmp_path), min_interval_s=1.0, clock=lambda: now[0])
    new = tmp_path / "docker" / "abc"
    assert index.path_of(12345) is None and index.walks == 1
    new.mkdir(parents=True)
    assert index.path_of(new.stat().st_ino) is None and index.walks == 1  # within the interval: no walk
    now[0] = 1.1
    assert index.path_of(new.stat().st_ino) == "/docker/abc" and index.walks == 2
    assert index.path_of(new.stat().st_ino) == "/docker/abc" and index.walks == 2  # a hit does not walk
    assert CgroupIndex(None).path_of(5) is None and index.path_of(0) is None


def test_an_id_a_walk_did_not_find_is_not_walked_for_again_within_a_second(tmp_path: Path) -> None:
    now = [0.0]
    index = CgroupIndex(str(tmp_path), min_interval_s=0.0, clock=lambda: now[0])
    assert index.path_of(12345) is None and index.walks == 1
    now[0] = 0.5
    assert index.path_of(12345) is None and index.walks == 1  # a removed cgroup's processes: no walk each
    (tmp_path / "k8s").mkdir()
    assert index.path_of((tmp_path / "k8s").stat().st_ino) == "/k8s" and index.walks == 2  # a new id walks
    now[0] = 1.2
    assert index.path_of(12345) is None and index.walks == 3


def test_a_real_cgroup_is_found_by_its_id_after_its_process_is_gone() -> None:
    root = cgroup2_mount()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup2 hierarchy")
    cg = Path(root) / f"execsight-cgidx-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        lookups = ProcLookups()
        # pid 2**22 + 1 is above pid_max's default: no /proc entry, as for a process already gone
        assert lookups.cgroup_path(4194305, cg.stat().st_ino) == f"/{cg.name}"
        assert lookups.cgroup_path(os.getpid()) is not None  # a live process: from /proc, as before
    finally:
        cg.rmdir()
