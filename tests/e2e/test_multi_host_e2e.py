"""Runs across hosts, end to end (issue 15): three collectors under different host ids, one correlator
that cannot see the pipeline's files, a Nextflow-shaped run whose driver is on host A and whose tasks run
on hosts B and C as Slurm jobs of their own (Nextflow's slurm executor: not children of the driver).

A "host" here is a cgroup: each collector (real eBPF probes, its own EXECSIGHT_HOST_ID) reports only the
processes of its host's cgroup (collector rules, include.cgroup), as a collector on its own machine sees
only that machine's. The pipeline's files live on a tmpfs mounted in a private mount namespace (a shared
file system all three hosts mount); the correlator runs outside it, where that directory is empty, so every
task name it writes came through a ProcessContext record (the collectors read the files through
/proc/<pid>/root). Asserted: one run (the same id on every host's part), every task named from its
wrapper's header and on the host it ran on, per-host lanes for A, B and C, the run SUCCEEDED.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

from execsight.correlator.engines import nextflow
from execsight.deploy.demo import nextflow_wrapper as wrapper
from execsight.settings import REPO_ROOT, Settings

from .test_demo_e2e import _service_env

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]
ARRIVAL_S = 120.0
TASKS = (  # (host, process, tag, script)
    ("B", "SORT", "s1", "sort -n {data} | gzip -c > out.gz"),
    ("B", "COUNT", "s1", "wc -l {data} > n.txt"),
    ("C", "SORT", "s2", "sort -rn {data} | gzip -c > out.gz"),
)


def _cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


def _query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


@contextmanager
def _private_tmpfs(mnt: Path) -> Iterator[int]:
    """A process holding a mount namespace with a tmpfs at mnt; yields its pid."""
    mnt.mkdir(parents=True)
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f"mount -t tmpfs none {mnt} && touch {mnt}/.ready && exec sleep 1800"])
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{holder.pid}/root{mnt}/.ready").exists():
            assert holder.poll() is None and time.monotonic() < deadline, "no private mount namespace"
            time.sleep(0.05)
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def _services(settings: Settings, tag: str, cgroups: dict[str, Path], cg_root: Path,
              logs: Path) -> Iterator[dict[str, str]]:
    """The correlator and one collector per host; yields host letter -> host id once all report."""
    logs.mkdir(parents=True)
    base = _service_env(settings)
    procs: list[subprocess.Popen[bytes]] = []
    hosts = {h: f"mh-{tag}-{h}" for h in cgroups}
    try:
        with (logs / "correlator.log").open("wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "execsight.cli", "correlator", "--no-metrics"],
                                          env=base, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                          start_new_session=True))
        for h, cg in cgroups.items():
            rules = logs / f"rules-{h}.yaml"
            rules.write_text(f"include:\n  cgroup: ['^/{cg.relative_to(cg_root)}$']\n")
            env = {**base, "EXECSIGHT_HOST_ID": hosts[h], "EXECSIGHT_STATE_DIR": str(logs / f"state-{h}")}
            with (logs / f"collector-{h}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "execsight.collector.main", "--output", "kafka", "--no-imds",
                     "--host-interval", "1", "--metrics-port", "0", "--rules", str(rules), "--mode", "ebpf",
                     "--spool-dir", str(logs / f"spool-{h}")],
                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True))
        deadline = time.monotonic() + 240
        while True:
            seen = {r[0] for r in _query(settings.database_url, "SELECT DISTINCT host_id FROM collector_status")}
            if set(hosts.values()) <= seen:
                break
            dead = [p.args for p in procs if p.poll() is not None]
            assert not dead, f"services exited: {dead}; logs in {logs}"
            assert time.monotonic() < deadline, f"collectors not all reporting after 240 s ({seen}); logs in {logs}"
            time.sleep(1)
        yield hosts
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def _on_host(ns_pid: int, cgroup: Path, cwd: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """argv started on a host: in the shared file system's mount namespace, in the host's cgroup.

    An outer shell, outside the host's cgroup, stands in for slurmstepd: argv's parent, in a mount namespace
    that sees the shared file system, living on a little after the job (as slurmstepd does for its epilog), so
    the collector can read a short task's wrapper through its parent's root, as on a real host. An inner
    shell moves itself into the host's cgroup and then execs argv, so the host's collector may see that shell
    too (it reads a process's cgroup after its exec). The job's SLURM_* variables are given to argv alone
    (`env` sets them for its exec), as slurmd gives them to the job: a shell of the harness that carried them
    would open a Slurm job run of its own."""
    job = [f"{k}={v}" for k, v in env.items() if k.startswith("SLURM_")]
    base = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    inner = f"echo $$ > {cgroup}/cgroup.procs && cd {cwd} && exec env \"$@\""
    outer = 'sh -c "$0" sh "$@"; rc=$?; sleep 2; exit $rc'
    return subprocess.Popen(["nsenter", f"--mount=/proc/{ns_pid}/ns/mnt", "--", "sh", "-c", outer, inner, *job,
                             *argv], env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_run_across_three_hosts_is_one_run_with_its_tasks_named_on_their_hosts(settings: Settings,
                                                                                   tmp_path: Path) -> None:
    cg_root = _cgroup2_root()
    if os.geteuid() != 0 or cg_root is None or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs root, a cgroup2 hierarchy, unshare(1) and nsenter(1)")
    tag = uuid.uuid4().hex[:8]
    parent = cg_root / f"execsight-mh-{tag}"
    cgroups = {h: parent / f"host-{h}" for h in ("A", "B", "C")}
    for cg in cgroups.values():
        cg.mkdir(parents=True)
    mnt = tmp_path / "shared"
    try:
        with _private_tmpfs(mnt) as ns:
            seen_by_ns = Path(f"/proc/{ns}/root{mnt}")
            run_dir, work = mnt / "run", mnt / "run" / "work"
            (seen_by_ns / "bin").mkdir()
            (seen_by_ns / "run").mkdir()
            data = run_dir / "in.txt"
            (seen_by_ns / "run" / "in.txt").write_text("".join(f"{i * 7919 % 1000}\n" for i in range(20000)))
            driver = seen_by_ns / "bin" / "nextflow"
            driver.write_text("#!/bin/bash\n# stands in for `nextflow run`: its tasks run as Slurm jobs elsewhere\n"
                              "while [ ! -e done ]; do sleep 0.2; done\n")
            driver.chmod(0o755)
            session = str(uuid.uuid4())
            dirs: list[tuple[str, str, Path]] = []
            for host, process, tag_, script in TASKS:
                body = script.format(data=data)
                digest = wrapper.task_hash(session, process, tag_, body, [])
                wd = wrapper.task_dir(work, digest)
                (seen_by_ns / wd.relative_to(mnt)).mkdir(parents=True)
                (seen_by_ns / wd.relative_to(mnt) / ".command.sh").write_text(wrapper.render_command_sh(body))
                (seen_by_ns / wd.relative_to(mnt) / ".command.run").write_text(
                    wrapper.render_command_run(wrapper.task_name(process, tag_), wd, {}, []))
                dirs.append((host, wrapper.task_name(process, tag_), wd))
            assert list(mnt.iterdir()) == []  # the correlator's view of the shared file system: empty

            env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECSIGHT_", "NXF_", "SLURM_"))}
            with _services(settings, tag, cgroups, cg_root, tmp_path / "logs") as hosts:
                drv = _on_host(ns, cgroups["A"], run_dir, ["/bin/bash", str(mnt / "bin" / "nextflow"), "run",
                                                           "main.nf"], env)
                time.sleep(2)  # the driver is up before its first job starts
                jobs = [_on_host(ns, cgroups[h], wd, wrapper.launch_argv(),
                                 {**env, "SLURM_JOB_ID": str(700 + i), "SLURM_JOB_NAME": f"nf-{name}"})
                        for i, (h, name, wd) in enumerate(dirs)]
                assert [j.wait(timeout=120) for j in jobs] == [0, 0, 0]
                (seen_by_ns / "run" / "done").touch()
                assert drv.wait(timeout=60) == 0
                run_id = nextflow.run_id_of(str(work))
                deadline = time.monotonic() + ARRIVAL_S
                while True:
                    runs = _query(settings.database_url, "SELECT status, task_count FROM runs WHERE run_id = %s",
                                  run_id)
                    if runs == [("SUCCEEDED", 3)] or time.monotonic() > deadline:
                        break
                    time.sleep(2)
                assert list(mnt.iterdir()) == []
            host_ids = tuple(hosts.values())
            assert runs == [("SUCCEEDED", 3)], (runs, _query(
                settings.database_url, "SELECT host_id, root_pid, status, task_count, process_count, start_time, "
                "end_time FROM run_lanes"), _query(settings.database_url, "SELECT run_id, host_id, task, status "
                                                                          "FROM tasks"),
                _query(settings.database_url, "SELECT host_id, run_id, task, argv FROM processes "
                                              "WHERE host_id = ANY(%s) ORDER BY start_time", list(host_ids)))
            # one run: every host's part is that run, no orphan run of a task's Slurm job
            assert _query(settings.database_url, "SELECT DISTINCT run_id FROM run_lanes WHERE host_id = ANY(%s)",
                          list(host_ids)) == [(run_id,)]
            assert _query(settings.database_url, "SELECT host_id, pipeline FROM runs WHERE run_id = %s",
                          run_id) == [(hosts["A"], "main")]
            tasks = _query(settings.database_url, "SELECT task, task_id, host_id, status FROM tasks "
                                                  "WHERE run_id = %s ORDER BY task", run_id)
            want = sorted((name, f"{wd.parent.name}/{wd.name}", hosts[h], "SUCCEEDED") for h, name, wd in dirs)
            assert sorted(tasks) == want
            lanes = _query(settings.database_url, "SELECT host_id, task_count FROM run_host_lanes WHERE run_id = %s "
                                                  "ORDER BY host_id", run_id)
            assert lanes == [(hosts["A"], 0), (hosts["B"], 2), (hosts["C"], 1)]
    finally:
        for cg in cgroups.values():
            with suppress(OSError):
                cg.rmdir()
        with suppress(OSError):
            parent.rmdir()
