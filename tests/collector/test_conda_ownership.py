"""conda-meta ownership: the pure index and lookup, the stage's hold, and the real collector (marker ebpf)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from execsight.collector.conda_ownership import (
    MAX_HISTORY_BYTES,
    NOT_CONDA,
    ExePackageStage,
    OwnershipCache,
    Package,
    build_index,
    candidate_prefix,
    parse_meta,
    requested_from_history,
    spec_name,
)

from .feed import CollectorProcess, JsonlFeed


def _prefix(root: Path, tool: str = "zqxtool", pkg: str = "zqx-suite", ver: str = "1.2") -> Path:
    """A made-up conda prefix: bin/<tool> (a shell script) listed by conda-meta/<pkg>-<ver>-0.json."""
    prefix = root / f"env{uuid.uuid4().hex[:6]}"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "conda-meta").mkdir()
    exe = prefix / "bin" / tool
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    (prefix / "conda-meta" / f"{pkg}-{ver}-0.json").write_text(json.dumps(
        {"name": pkg, "version": ver, "build": "0", "files": [f"bin/{tool}", "share/zqx/data.txt"]}))
    (prefix / "conda-meta" / "other-lib-0.1-0.json").write_text(json.dumps(
        {"name": "other-lib", "version": "0.1", "files": ["lib/libother.so", "bin/other"]}))
    (prefix / "conda-meta" / "history").write_text("# not a json\n")
    return prefix


# ---- pure --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exe", "cwd", "want"), [
    ("/opt/conda/envs/zqx/bin/zqxtool", None, ("/opt/conda/envs/zqx", "bin/zqxtool")),
    ("/usr/local/bin/samtools", None, ("/usr/local", "bin/samtools")),  # biocontainers install into /usr/local
    ("/opt/conda/libexec/git-core/git-x", None, ("/opt/conda", "libexec/git-core/git-x")),
    ("bin/zqxtool", "/data/env", ("/data/env", "bin/zqxtool")),
    ("./x/../bin/zqxtool", "/data/env", ("/data/env", "bin/zqxtool")),
    ("/usr/bin/ls", None, None), ("/bin/sh", None, None), ("/data/run/script.sh", None, None),
    ("zqxtool", None, None), ("", None, None),
])
def test_candidate_prefix_is_the_directory_above_bin(exe: str, cwd: str | None, want: Any) -> None:
    assert candidate_prefix(exe, cwd) == want


def test_parse_meta_keeps_the_package_and_its_executable_paths_only() -> None:
    parsed = parse_meta(json.dumps({"name": "frob", "version": "3.0", "files": [
        "bin/frob", "lib/libfrob.so", "share/frob-3.0/frob.pl", "libexec/frob-helper", 7]}))
    assert parsed == (Package("frob", "3.0"), ["bin/frob", "share/frob-3.0/frob.pl", "libexec/frob-helper"])
    assert parse_meta("{not json") is None
    assert parse_meta(json.dumps({"version": "1", "files": []})) is None  # no name
    assert parse_meta(json.dumps({"name": "x", "files": "bin/x"})) is None  # files not a list
    assert parse_meta(b"\xff\xfe") is None


def test_build_index_maps_paths_to_the_first_package_listing_them() -> None:
    a, b = Package("a", "1"), Package("b", "2")
    index = build_index([(a, ["bin/x", "bin/y"]), (b, ["bin/y", "bin/z"])])
    assert index == {"bin/x": a, "bin/y": a, "bin/z": b}


def test_index_prefix_reads_conda_meta_and_skips_what_is_too_big(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    (prefix / "conda-meta" / "huge-9-0.json").write_text(json.dumps(
        {"name": "huge", "version": "9", "files": ["bin/huge", *(f"share/h/{i}" for i in range(2000))]}))
    cache = OwnershipCache(max_json_bytes=4096)
    index = cache.index_prefix("/", str(prefix))
    assert index is not None
    assert index["bin/zqxtool"] == Package("zqx-suite", "1.2") and index["bin/other"] == Package("other-lib", "0.1")
    assert "bin/huge" not in index and cache.counts.files_skipped == 1 and cache.counts.files_read == 2
    assert cache.index_prefix("/", str(tmp_path)) is NOT_CONDA  # no conda-meta: known, not a prefix
    assert cache.index_prefix(str(tmp_path / "gone-root"), "/opt") is None  # the process's root vanished


def test_the_json_file_budget_per_second_makes_the_worker_wait(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    for i in range(5):
        (prefix / "conda-meta" / f"p{i}-1-0.json").write_text(json.dumps({"name": f"p{i}", "version": "1",
                                                                           "files": [f"bin/p{i}"]}))
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    cache = OwnershipCache(max_files_per_s=3, clock=lambda: now[0], sleep=sleep)
    index = cache.index_prefix("/", str(prefix))
    assert index is not None and len({p.name for p in index.values()}) == 7
    assert len(slept) == 2 and all(s == pytest.approx(1.0) for s in slept)  # 7 files at 3 per second


def test_prefixes_kept_are_bounded_least_recently_used_out(tmp_path: Path) -> None:
    cache = OwnershipCache(max_prefixes=2)
    prefixes = [_prefix(tmp_path, tool=f"t{i}") for i in range(3)]
    for p in prefixes:
        key = ("", str(p))
        assert cache.request(key, (os.getpid(),))
        cache.wait(key, 5)
    assert cache.lookup(("", str(prefixes[0])), "bin/t0") is False  # evicted: unknown again
    assert cache.lookup(("", str(prefixes[2])), "bin/t2") == Package("zqx-suite", "1.2")
    cache.close()


def _exec(pid: int, exe: str, cid: str | None = None) -> tuple[str, dict[str, Any]]:
    return "ProcessExec", {"pid": pid, "exe": exe, "cwd": "/", "container_id": cid}


def test_stage_holds_the_stream_in_order_behind_a_lookup_and_fills_the_package(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    stage = ExePackageStage(hold_s=5.0)
    first = stage.offer([_exec(os.getpid(), f"{prefix}/bin/zqxtool"), ("ProcessExit", {"pid": 1})])
    deadline = time.monotonic() + 5
    while not first and time.monotonic() < deadline:
        time.sleep(0.01)
        first = stage.offer([])
    assert [n for n, _ in first] == ["ProcessExec", "ProcessExit"]  # nothing overtook the held exec
    assert first[0][1]["exe_package"] == {"name": "zqx-suite", "version": "1.2"}
    # later execs from the known prefix: answered at once from the cache, no hold
    again = stage.offer([_exec(os.getpid(), f"{prefix}/bin/other"), _exec(os.getpid(), f"{prefix}/bin/unlisted"),
                         _exec(os.getpid(), "/usr/bin/ls")])
    assert [r["exe_package"] for _, r in again] == [{"name": "other-lib", "version": "0.1"}, None, None]
    c = stage.counts
    assert (c.lookups, c.hits, c.misses, c.budget_skips) == (3, 2, 1, 0)
    stage.cache.close()


def test_stage_sends_without_a_package_when_the_hold_expires() -> None:
    now = [0.0]
    class NeverFilled(OwnershipCache):
        def request(self, key: tuple[str, str], pids: tuple[int, ...]) -> bool:
            self._pending.add(key)
            return True

    cache = NeverFilled()
    stage = ExePackageStage(cache, hold_s=0.3, clock=lambda: now[0])
    assert stage.offer([_exec(1, "/opt/slow/bin/tool"), ("ProcessFork", {"pid": 2})]) == []
    now[0] = 0.31
    out = stage.offer([])
    assert [n for n, _ in out] == ["ProcessExec", "ProcessFork"] and out[0][1]["exe_package"] is None
    assert stage.counts.budget_skips == 1


def test_a_containers_prefix_is_read_through_its_root_and_kept_apart(tmp_path: Path) -> None:
    """Same prefix path, two roots (container ids): each answers from its own conda-meta."""
    prefix = _prefix(tmp_path)
    cache = OwnershipCache(proc=str(tmp_path / "proc"))
    fake_root = tmp_path / "proc" / "4242" / "root"
    inner = fake_root / str(prefix).lstrip("/")
    shutil.copytree(prefix, inner)
    (inner / "conda-meta" / "zqx-suite-1.2-0.json").write_text(json.dumps(
        {"name": "zqx-fork", "version": "9.9", "files": ["bin/zqxtool"]}))
    cache.request(("c1", str(prefix)), (999999999, 4242))  # the first is gone
    cache.wait(("c1", str(prefix)), 5)
    assert cache.lookup(("c1", str(prefix)), "bin/zqxtool") == Package("zqx-fork", "9.9")
    assert cache.lookup(("", str(prefix)), "bin/zqxtool") is False
    cache.close()


# ---- the real collector ------------------------------------------------------------------------

@pytest.mark.ebpf
def test_collector_ships_the_conda_package_of_an_executable_and_counts_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")
    prefix = _prefix(tmp_path)
    (prefix / "conda-meta" / "history").write_text("==> 2026-01-01 10:00:00 <==\n"
                                                   "# update specs: ['zqx-suite=1.2', 'python=3.11']\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = tmp_path / "events.jsonl"
    c = CollectorProcess(["--output", "jsonl", str(out), "--no-imds", "--mode", "ebpf", "--metrics-port", str(port),
                          "--host-interval", "0.5"],
                         env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state")}, log_path=tmp_path / "c.log")
    try:
        c.wait_started()
        marker = f"m{uuid.uuid4().hex[:8]}"
        for _ in range(2):
            subprocess.run([str(prefix / "bin" / "zqxtool"), marker], check=True)
        subprocess.run(["/bin/true", marker], check=True)
        feed = JsonlFeed(out)
        recs = feed.wait_for(lambda rs: (lambda m: m if len(m) == 3 else None)(
            [r for r in rs if r["type"] == "ProcessExec" and marker in r["argv"]]), 20)
        time.sleep(1.2)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        assert c.stop() == 0
    tools = [r for r in recs if r["exe"].endswith("/zqxtool")]
    # the first exec from the new prefix too: the stream waited for the index
    assert [r["exe_package"] for r in tools] == [{"name": "zqx-suite", "version": "1.2"}] * 2, body
    assert [r["exe_package"] for r in recs if r["exe"] == "/bin/true"] == [None]
    # and the packages the env was created for, from its conda-meta/history (none outside a prefix)
    assert [r["env_packages"] for r in recs] == [["zqx-suite", "python"]] * 2 + [[]]
    hits = [ln for ln in body.splitlines()
            if ln.startswith('execsight_collector_conda_ownership_total{counter="hits"}')]
    assert hits and float(hits[0].split()[-1]) >= 2
    for counter in ("lookups", "misses", "budget_skips"):
        assert f'execsight_collector_conda_ownership_total{{counter="{counter}"}}' in body


def test_other_processes_roots_are_used_only_in_the_execs_mount_namespace(tmp_path: Path) -> None:
    """A short exec is gone before the worker runs: its parent's root, and others' sharing its namespace, stand in."""
    proc = tmp_path / "proc"
    for pid, ns in ((20, "mnt:[1]"), (30, "mnt:[2]"), (40, "mnt:[1]")):
        (proc / str(pid) / "ns").mkdir(parents=True)
        os.symlink(ns, proc / str(pid) / "ns" / "mnt")
    cache = OwnershipCache(proc=str(proc))
    # 10 (the exec) is gone, 20 its parent; 30 lives in another mount namespace (a sandbox), 40 shares it
    assert cache._same_namespace((10, 20, 30, 40, 20)) == [10, 20, 40]


# ---- the packages an env was created for (ProcessExec.env_packages) -----------------------------

@pytest.mark.parametrize(("spec", "name"), [
    ("zqx-ml=0.10", "zqx-ml"), ("bioconda::Frob_Tool==1.2=h0", "frob_tool"), ("numpy >=1.2", "numpy"),
    ("r-base[version='>=4']", "r-base"), ("conda-forge/linux-64::python-abi==3.11", "python-abi"), ("  ", None),
])
def test_spec_name_is_the_package_of_a_match_spec(spec: str, name: str | None) -> None:
    assert spec_name(spec) == name


def test_history_gives_the_update_specs_minus_the_removed_ones_else_the_create_command() -> None:
    history = """==> 2026-01-01 10:00:00 <==
# cmd: /opt/conda/bin/conda create -y -p /x/envs/mulled-v1-ab12 python=3.11 zqx-ml=0.10 frob=1
# conda version: 23.7.4
+conda-forge::python-3.11.6-h0
# update specs: ['python=3.11', 'zqx-ml=0.10', 'frob=1']
==> 2026-01-02 10:00:00 <==
# cmd: conda remove -p /x/envs/mulled-v1-ab12 frob
# remove specs: ["frob"]
==> 2026-01-03 10:00:00 <==
# update specs: ["bioconda::quux==2", 'not a list'
"""
    assert requested_from_history(history) == ["python", "zqx-ml"]  # an unparsable line is skipped
    old = "# cmd: micromamba create -n zqx -c bioconda -c conda-forge --yes python zqx-ml=0.10\n"
    assert requested_from_history(old) == ["python", "zqx-ml"]  # channels and the env name are not packages
    assert requested_from_history("# cmd: conda list\n") is None and requested_from_history("") is None


def test_a_real_conda_meta_directory_gives_the_requested_packages_bounded(tmp_path: Path) -> None:
    """A mulled-style env: history names python + zqx-ml; the jsons list the dependencies too."""
    prefix = _prefix(tmp_path, tool="python", pkg="python", ver="3.11.6")
    meta = prefix / "conda-meta"
    (meta / "zqx-ml-0.10-py_0.json").write_text(json.dumps(
        {"name": "zqx-ml", "version": "0.10", "files": ["lib/python3.11/site-packages/zqx_ml/__init__.py"],
         "requested_spec": "zqx-ml=0.10"}))
    (meta / "history").write_text("==> 2026-01-01 <==\n# cmd: conda create -p x python=3.11 zqx-ml=0.10\n"
                                  "# update specs: ['python=3.11', 'zqx-ml=0.10']\n")
    cache = OwnershipCache()
    index = cache.index_prefix("/", str(prefix))
    assert index is not None and index.requested == ("python", "zqx-ml") and index["bin/python"].name == "python"
    # no history: the jsons whose requested_spec is set ("None" is conda's old "not requested")
    (meta / "history").unlink()
    (meta / "other-lib-0.1-0.json").write_text(json.dumps(
        {"name": "other-lib", "version": "0.1", "files": ["bin/other"], "requested_spec": "None"}))
    index = cache.index_prefix("/", str(prefix))
    assert index is not None and index.requested == ("zqx-ml",)
    # more than the bound: none at all (a cut list would make "the only non-runtime package" wrong)
    (meta / "history").write_text("# update specs: [" + ", ".join(f"'p{i}'" for i in range(40)) + "]\n")
    index = cache.index_prefix("/", str(prefix))
    assert index is not None and index.requested == ()
    # a history over the byte bound is not read: the jsons stand in
    (meta / "history").write_text("# update specs: ['zzz']\n" + "#\n" * (MAX_HISTORY_BYTES // 2 + 1))
    index = cache.index_prefix("/", str(prefix))
    assert index is not None and index.requested == ("zqx-ml",)


def test_stage_fills_env_packages_of_execs_in_a_conda_prefix_only(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, tool="python", pkg="python", ver="3.11.6")
    (prefix / "conda-meta" / "history").write_text("# update specs: ['python=3.11', 'zqx-ml=0.10']\n")
    stage = ExePackageStage(hold_s=5.0)
    out = stage.offer([_exec(os.getpid(), f"{prefix}/bin/python"), _exec(os.getpid(), "/usr/bin/ls")])
    deadline = time.monotonic() + 5
    while len(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        out += stage.offer([])
    assert [r["env_packages"] for _, r in out] == [["python", "zqx-ml"], []]
    assert out[0][1]["exe_package"] == {"name": "python", "version": "3.11.6"}
    stage.cache.close()
