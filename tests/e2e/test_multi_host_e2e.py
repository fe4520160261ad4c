"""Runs across hosts, end to end (issue 15): three collectors under different host ids, one correlator
that cannot see the pipeline's files, a Nextflow-shaped run whose driver is on host A and whose tasks run
on hosts B and C as Slurm jobs of their own (Nextflow's slurm executor: not children of the driver).

A "host" here is a cgroup: each collector (real eBPF probes, its own EXECSIGHT_HOST_ID) reports only the
processes of its host's cgroup and those below it (collector rules, include.cgroup), as a collector on its own
machine sees only that machine's. The pipeline's files live on a tmpfs mounted in a private mount namespace (a
shared file system all three hosts mount); the correlator runs outside it, where that directory is empty, so
every task name it writes came through a ProcessContext record (the collectors read the files through
/proc/<pid>/root), and every container name through a ContainerInfo record.

The tasks start as the executors start them: B's SORT is `bash -ue .command.run`; B's COUNT is the docker
executor's wrapper, which runs the task script in a real container (`docker run ... /bin/bash -ue
<task dir>/.command.sh`, on a Docker engine of the test's own, in the shared file system's namespace, its
containers under host B's cgroup); C's SORT is slurmd's copy of the wrapper (`<spool>/job<N>/slurm_script`,
cwd the task dir). Asserted: one run (the same id on every host's part), every task named from its wrapper's
header and on the host it ran on, the container's processes in their task with the container's name and
image, per-host lanes for A, B and C, the run SUCCEEDED.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

from execsight.correlator.engines import nextflow
from execsight.deploy.demo import nextflow_wrapper as wrapper
from execsight.settings import REPO_ROOT, Settings

from ..collector.dockerd import Engine, _wait_for_socket, stop_daemon
from ..mount_namespace import private_tmpfs
from .test_demo_e2e import _service_env

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db, pytest.mark.docker]
ARRIVAL_S = 120.0
IMAGE = "execsight-test/nf-task:1"
IN_IMAGE = ("bash", "wc", "sleep")  # what the container's task script runs
TASKS = (  # (host, process, tag, script, how the job starts it)
    ("B", "SORT", "s1", "sort -n {data} | gzip -c > out.gz", "wrapper"),
    # the container's task lasts a few seconds, as real ones do: on this machine's hybrid hierarchy Docker puts
    # containers in v1 cgroups, which the collector reads from /proc/<pid>/cgroup while the process lives (a
    # cgroup v2 host also resolves a process already gone, by the cgroup id its events carry: cgroup_index.py)
    ("B", "COUNT", "s1", "wc -l {data} > n.txt\nsleep 3", "docker"),
    ("C", "SORT", "s2", "sort -rn {data} | gzip -c > out.gz", "slurmd"),
)
SBATCH = "#SBATCH -D {wd}\n#SBATCH -J nf-{name}\n#SBATCH -c 2\n"  # the slurm executor's directives


def _cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


def _query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def _remove_cgroups(top: str) -> None:
    """The test's cgroups, deepest first, in every hierarchy (Docker made v1 ones for its --cgroup-parent)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        base = Path(parts[1]) / top if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2") else None
        if base is None or not base.is_dir():
            continue
        for d in sorted((d for d in base.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
            with suppress(OSError):
                d.rmdir()
        with suppress(OSError):
            base.rmdir()


def _rootfs(tar_path: Path, programs: Sequence[str]) -> None:
    """A root file system of the programs and the shared libraries they link (ldd): there is no registry."""
    libs: set[str] = set()
    with tarfile.open(tar_path, "w") as tar:
        for prog in programs:
            path = shutil.which(prog) or f"/usr/bin/{prog}"
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
            libs |= {tok for row in ldd.splitlines() for tok in row.split() if tok.startswith("/")}
            tar.add(os.path.realpath(path), arcname=f"bin/{prog}")
        for lib in sorted(libs):
            tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))


@contextmanager
def _dockerd_in(ns_pid: int) -> Iterator[Engine]:
    """A Docker engine of the test's own in the shared file system's mount namespace, so that the docker
    executor's `-v <dir>:<dir>` binds the files the tasks see. It gets a mount namespace of its own below that
    one, with an empty /run/containerd: it starts its own containerd, never a system one of the host's
    namespace. Socket and state are under /tmp, which both namespaces see: host B's collector asks it."""
    root = Path(tempfile.mkdtemp(prefix="esmh-", dir="/tmp"))  # short: a unix socket path is at most 107 bytes
    sock, log = root / "docker.sock", root / "dockerd.log"
    start = "mkdir -p /run/containerd && mount -t tmpfs none /run/containerd && exec dockerd \"$@\""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--mount=/proc/{ns_pid}/ns/mnt", "--", "unshare", "--mount", "--propagation", "private",
             "sh", "-c", start, "sh", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "pid"), "-H", f"unix://{sock}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_socket(proc, sock, log, timeout=120)
        engine = Engine(root, sock)
        _rootfs(root / "rootfs.tar", IN_IMAGE)
        engine.docker("import", str(root / "rootfs.tar"), IMAGE, timeout=120)
        yield engine
    finally:
        with suppress(AssertionError, subprocess.TimeoutExpired):
            ids = Engine(root, sock).docker("ps", "-aq").split()
            if ids:
                Engine(root, sock).docker("rm", "-f", *ids)
        stop_daemon(proc)
        shutil.rmtree(root, ignore_errors=True)


def _in_container(command_run: str, wd: Path, mnt: Path, cgroup_parent: str) -> str:
    """The docker executor's wrapper: its nxf_launch runs the task script in a container (Nextflow's
    `docker run -i ... -e "NXF_TASK_WORKDIR" -v <dir>:<dir> -w "$PWD" --name $NXF_BOXID <image> /bin/bash -ue
    <task dir>/.command.sh`; docker.runOptions adds --network/--cgroup-parent, as a cluster's config would)."""
    script = shlex.quote(str(wd / ".command.sh"))
    local = f"    /bin/bash -ue {script}\n"
    assert local in command_run
    docker = (f"    docker run --network none --cgroup-parent {cgroup_parent} -e \"NXF_TASK_WORKDIR\" "
              f"-v {mnt}:{mnt} -w \"$PWD\" --name $NXF_BOXID {IMAGE} /bin/bash -ue {script}\n")
    return command_run.replace(local, docker)


@contextmanager
def _services(settings: Settings, tag: str, cgroups: dict[str, Path], cg_root: Path, logs: Path,
              docker: dict[str, Path]) -> Iterator[dict[str, str]]:
    """The correlator and one collector per host (asking the Docker engine its host has, if any); yields host
    letter -> host id once all report."""
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
            rules.write_text(f"include:\n  cgroup: ['^/{cg.relative_to(cg_root)}(/|$)']\n")
            env = {**base, "EXECSIGHT_HOST_ID": hosts[h], "EXECSIGHT_STATE_DIR": str(logs / f"state-{h}"),
                   "EXECSIGHT_DOCKER_SOCKETS": str(docker.get(h, "")), "EXECSIGHT_CRI_SOCKETS": "",
                   "EXECSIGHT_KUBELET_PODS_URL": ""}
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


def _arrived(dsn: str, run_id: str, task: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The run's row, and the processes of a task that ran in a container (with the container's row)."""
    runs = _query(dsn, "SELECT status, task_count FROM runs WHERE run_id = %s", run_id)
    boxed = _query(dsn, "SELECT p.host_id, p.argv, p.container_id, c.host_id, c.name, c.image FROM processes p "
                        "LEFT JOIN containers c ON c.container_id = p.container_id "
                        "WHERE p.run_id = %s AND p.task = %s AND p.container_id IS NOT NULL", run_id, task)
    return runs, boxed


def test_a_run_across_three_hosts_is_one_run_with_its_tasks_named_on_their_hosts(settings: Settings,
                                                                                   tmp_path: Path) -> None:
    cg_root = _cgroup2_root()
    if os.geteuid() != 0 or cg_root is None or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs root, a cgroup2 hierarchy, unshare(1) and nsenter(1)")
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.fail("a task runs in a container on the test's own Docker engine: apt-get install -y docker.io")
    tag = uuid.uuid4().hex[:8]
    top = f"execsight-mh-{tag}"
    cgroups = {h: cg_root / top / f"host-{h}" for h in ("A", "B", "C")}
    for cg in cgroups.values():
        cg.mkdir(parents=True)
    mnt = tmp_path / "shared"
    try:
        with private_tmpfs(mnt) as ns, _dockerd_in(ns) as engine:
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
            # (host, name, task dir, how, argv of the job)
            jobs_of: list[tuple[str, str, Path, str, list[str]]] = []
            for i, (host, process, tag_, script, how) in enumerate(TASKS):
                body = script.format(data=data)
                digest = wrapper.task_hash(session, process, tag_, body, [])
                wd = wrapper.task_dir(work, digest)
                name = wrapper.task_name(process, tag_)
                in_ns = seen_by_ns / wd.relative_to(mnt)
                in_ns.mkdir(parents=True)
                (in_ns / ".command.sh").write_text(wrapper.render_command_sh(body))
                command_run = wrapper.render_command_run(name, wd, {}, [])
                argv = wrapper.launch_argv()
                if how == "docker":
                    command_run = _in_container(command_run, wd, mnt, f"/{top}/host-{host}/docker")
                elif how == "slurmd":
                    # the slurm executor's directives in the header; slurmd runs its copy of the submitted
                    # wrapper from its spool, in the job's -D directory
                    first, rest = command_run.split("\n", 1)
                    command_run = f"{first}\n{SBATCH.format(wd=wd, name=name.replace(' ', '_'))}{rest}"
                    spool = Path("spool") / f"slurmd-{host}" / f"job{700 + i:05d}"
                    (seen_by_ns / spool).mkdir(parents=True)
                    (seen_by_ns / spool / "slurm_script").write_text(command_run)
                    (seen_by_ns / spool / "slurm_script").chmod(0o700)
                    argv = [str(mnt / spool / "slurm_script")]
                (in_ns / ".command.run").write_text(command_run)
                jobs_of.append((host, name, wd, how, argv))
            assert list(mnt.iterdir()) == []  # the correlator's view of the shared file system: empty

            env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECSIGHT_", "NXF_", "SLURM_"))}
            with _services(settings, tag, cgroups, cg_root, tmp_path / "logs", {"B": engine.socket}) as hosts:
                drv = _on_host(ns, cgroups["A"], run_dir, ["/bin/bash", str(mnt / "bin" / "nextflow"), "run",
                                                           "main.nf"], env)
                time.sleep(2)  # the driver is up before its first job starts
                jobs = [_on_host(ns, cgroups[h], wd, argv,
                                 {**env, "SLURM_JOB_ID": str(700 + i), "SLURM_JOB_NAME": f"nf-{name}",
                                  **({"DOCKER_HOST": f"unix://{engine.socket}"} if how == "docker" else {})})
                        for i, (h, name, wd, how, argv) in enumerate(jobs_of)]
                assert [j.wait(timeout=180) for j in jobs] == [0, 0, 0]
                (seen_by_ns / "run" / "done").touch()
                assert drv.wait(timeout=60) == 0
                [cid] = engine.docker("ps", "-aq", "--no-trunc").split()  # the docker executor's task container
                box = engine.docker("inspect", "-f", "{{.Name}}", cid).lstrip("/")
                [boxed_task] = [name for _, name, _, how, _ in jobs_of if how == "docker"]
                run_id = nextflow.run_id_of(str(work))
                deadline = time.monotonic() + ARRIVAL_S
                while True:
                    runs, boxed = _arrived(settings.database_url, run_id, boxed_task)
                    named = bool(boxed) and all(b[4] == box for b in boxed)
                    if (runs == [("SUCCEEDED", 3)] and named) or time.monotonic() > deadline:
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
            # one run: every host's part is that run, no orphan run of a task's Slurm job or container
            assert _query(settings.database_url, "SELECT DISTINCT run_id FROM run_lanes WHERE host_id = ANY(%s)",
                          list(host_ids)) == [(run_id,)]
            assert _query(settings.database_url, "SELECT host_id, pipeline FROM runs WHERE run_id = %s",
                          run_id) == [(hosts["A"], "main")]
            tasks = _query(settings.database_url, "SELECT task, task_id, host_id, status FROM tasks "
                                                  "WHERE run_id = %s ORDER BY task", run_id)
            want = sorted((name, f"{wd.parent.name}/{wd.name}", hosts[h], "SUCCEEDED") for h, name, wd, _, _ in jobs_of)
            assert sorted(tasks) == want
            # slurmd's copy of the wrapper: its header's #SBATCH -c 2 is the task's request
            [slurm_task] = [name for _, name, _, how, _ in jobs_of if how == "slurmd"]
            assert _query(settings.database_url, "SELECT requested_cpus FROM tasks WHERE run_id = %s AND task = %s",
                          run_id, slurm_task) == [(2.0,)]
            # the container's processes: on host B, in their task, the container named and its image known
            assert {(b[0], b[2], b[3], b[4], b[5]) for b in boxed} == {(hosts["B"], cid, hosts["B"], box, IMAGE)}, (
                boxed, _query(settings.database_url, "SELECT * FROM containers"), _query(
                    settings.database_url, "SELECT run_id, task, container_id, argv FROM processes WHERE host_id = %s "
                    "ORDER BY start_time", hosts["B"]))
            [boxed_wd] = [wd for _, _, wd, how, _ in jobs_of if how == "docker"]
            assert ["/bin/bash", "-ue", str(boxed_wd / ".command.sh")] in [b[1] for b in boxed], boxed
            assert any(b[1] and b[1][0].endswith("wc") for b in boxed), boxed
            lanes = _query(settings.database_url, "SELECT host_id, task_count FROM run_host_lanes WHERE run_id = %s "
                                                  "ORDER BY host_id", run_id)
            assert lanes == [(hosts["A"], 0), (hosts["B"], 2), (hosts["C"], 1)]
    finally:
        _remove_cgroups(top)
