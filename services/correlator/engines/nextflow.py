"""Nextflow: the launcher (java nextflow.cli.Launcher / nextflow run) is a run's driver; a process
running a task wrapper (.command.run in a work dir, or a Slurm job's copy of it) roots the task, named from
the wrapper's header; a task script (.command.sh) run in a container of the docker/podman executors, which
descends from the runtime's shim and not from the wrapper, joins the task of its work dir.

The header is what the collector shipped (a ProcessContext record, services/collector/context_files.py):
the correlator reads no files. A run's id is derived from its work-dir root (a task dir minus its two
hash levels; the driver's -w / NXF_WORK / <cwd>/work), with no host in it: a driver on host A and its
tasks on hosts B and C (AWS Batch, Kubernetes, Slurm executors) derive the same id, in whichever worker
their host's partition is, and on a replay."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from execsight.correlator.engines.base import (
    ROLE_NF_DRIVER,
    Context,
    Detector,
    Exec,
    FileReader,
    base_name,
    short_id,
)

SCHEDULER_ENGINES = ("aws_batch", "slurm")
SLURM_SCRIPT = "slurm_script"  # slurmd's copy of a job's batch script

NF_WORKDIR = re.compile(r"(?P<root>.*/work)/(?P<h1>[0-9a-f]{2})/(?P<h2>[0-9a-f]{30})(?:/|$)")
NF_HEADER_OLD = re.compile(r"^# NEXTFLOW TASK: (?P<name>.+?)\s*$", re.M)
NF_HEADER_NEW = re.compile(r"^### name: '(?P<name>(?:[^'\\]|\\.)*)'\s*$", re.M)
NF_CPUS = re.compile(r"^### cpus: (?P<n>\d+(?:\.\d+)?)\s*$", re.M)
NF_MEMORY = re.compile(r"^### memory: '?(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?B)'?\s*$", re.M | re.I)
SBATCH_CPUS = re.compile(r"^#SBATCH\s+(?:-c\s*|--cpus-per-task[= ])(?P<n>\d+)\s*$", re.M)
SBATCH_MEM = re.compile(r"^#SBATCH\s+--mem[= ](?P<n>\d+)(?P<unit>[KMGT]?)B?\s*$", re.M | re.I)
PBS_CPUS = re.compile(r"^#PBS\s+-l\s+.*?\b(?:ppn|ncpus)=(?P<n>\d+)", re.M)
PBS_MEM = re.compile(r"^#PBS\s+-l\s+.*?\bmem=(?P<n>\d+)(?P<unit>[kmgt]?)b?\b", re.M | re.I)
SGE_CPUS = re.compile(r"^#\$\s+-pe\s+\S+\s+(?P<n>\d+)", re.M)
_UNITS = {"": 1 << 20, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40}


def nextflow_driver(exe: str, argv: Sequence[str]) -> str | None:
    """The pipeline of a Nextflow launcher process, '' when unknown, None when it is not one."""
    if not argv:
        return None
    is_java = base_name(exe) == "java" or base_name(argv[0]) == "java"
    if is_java and "nextflow.cli.Launcher" not in argv:
        return None
    if not is_java and base_name(argv[0]) != "nextflow" and not (len(argv) > 1 and base_name(argv[1]) == "nextflow"):
        return None
    try:
        i = argv.index("run")
    except ValueError:
        return None
    for arg in argv[i + 1 :]:
        if not arg.startswith("-"):
            name = arg[:-3] if arg.endswith(".nf") else arg
            if name.endswith("/main"):
                name = name[: -len("/main")]
            return base_name(name) if "/" in name and not re.match(r"^[\w.-]+/[\w.-]+$", name) else name
    return ""


def nextflow_task(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(work dir, task hash) when this process runs a Nextflow task wrapper: .command.run, or a Slurm job's
    copy of it (slurmd's <spool>/job<N>/slurm_script, run with the task dir as cwd: what the slurm executor
    submits is the wrapper)."""
    if any(base_name(a) == SLURM_SCRIPT for a in argv[:2]):
        for d in (cwd, env.get("NXF_TASK_WORKDIR")):
            m = NF_WORKDIR.search(f"{d}/") if d else None
            if d and m:
                return d.rstrip("/"), f"{m['h1']}/{m['h2']}"
        return None
    if not any(base_name(a) == ".command.run" for a in argv[1:3]) and not (
        len(argv) > 2 and argv[1] == "-c" and ".command.run" in argv[2]
    ):
        return None
    candidates = [a for a in argv if a.endswith(".command.run")]
    paths = [c for c in candidates if c.startswith("/")]
    paths += [f"{cwd}/{c}" for c in candidates if not c.startswith("/") and cwd]
    if env.get("NXF_TASK_WORKDIR"):
        paths.append(env["NXF_TASK_WORKDIR"] + "/.command.run")
    for path in paths:
        m = NF_WORKDIR.search(path)
        if m:
            return path.rsplit("/", 1)[0], f"{m['h1']}/{m['h2']}"
    if cwd:
        m = NF_WORKDIR.search(cwd + "/")
        if m:
            return cwd, f"{m['h1']}/{m['h2']}"
    return None


def task_script(argv: Sequence[str], cwd: str | None) -> tuple[str, str] | None:
    """(work dir, task hash) when this process runs a task's script (.command.sh) itself. In a container of
    the docker or podman executor (`docker run ... -w <task dir> <image> /bin/bash -ue <task dir>/.command.sh`)
    it descends from the runtime's shim, not from the task's wrapper, so it has no task to inherit."""
    for arg in argv[1:4]:
        if base_name(arg) != ".command.sh":
            continue
        path = arg if arg.startswith("/") or not cwd else f"{cwd}/{arg}"
        m = NF_WORKDIR.search(path)
        if m:
            return path.rsplit("/", 1)[0], f"{m['h1']}/{m['h2']}"
    return None


def header_name(header: str | None) -> str | None:
    """The task name in a .command.run header (### name: '...', or the older # NEXTFLOW TASK: ...)."""
    if not header:
        return None
    head = header[:8192]
    m = NF_HEADER_NEW.search(head) or NF_HEADER_OLD.search(head)
    return m["name"].replace("\\'", "'") if m else None


def _bytes(n: str, unit: str) -> int:
    return int(float(n) * _UNITS.get(unit.upper(), 1 << 20))


def header_requests(header: str | None) -> tuple[float | None, int | None]:
    """(cpus, memory bytes) the task asked for: Nextflow's ### cpus/memory lines, else the executor's
    directives (#SBATCH -c/--mem, #PBS -l ppn/ncpus/mem, #$ -pe)."""
    if not header:
        return None, None
    cpus: float | None = None
    mem: int | None = None
    for rx in (NF_CPUS, SBATCH_CPUS, PBS_CPUS, SGE_CPUS):
        m = rx.search(header)
        if m:
            cpus = float(m["n"])
            break
    for rx in (NF_MEMORY, SBATCH_MEM, PBS_MEM):
        m = rx.search(header)
        if m:
            mem = _bytes(m["n"], m["unit"])
            break
    return cpus, mem


def nextflow_task_name(workdir: str, read: FileReader) -> str | None:
    """The name in the header the collector shipped for this work dir, when it is known yet."""
    return header_name(read(workdir + "/.command.run"))


def work_root(task_dir: str) -> str:
    """A task dir minus its two hash levels: the run's work dir."""
    return task_dir.rsplit("/", 2)[0] if task_dir.count("/") >= 2 else task_dir


def driver_work_root(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> str | None:
    """The work dir a Nextflow launcher runs its tasks in: -w/-work-dir, NXF_WORK, else <cwd>/work."""
    wd: str | None = None
    for i, arg in enumerate(argv):
        if arg in ("-w", "-work-dir") and i + 1 < len(argv):
            wd = argv[i + 1]
        elif arg.startswith("-work-dir="):
            wd = arg.split("=", 1)[1]
    wd = wd or env.get("NXF_WORK") or (f"{cwd}/work" if cwd else None)
    if wd and not wd.startswith("/") and cwd:
        wd = f"{cwd}/{wd}"
    return wd.rstrip("/") if wd else None


def run_id_of(root: str) -> str:
    """The run id of a Nextflow work-dir root (host-independent)."""
    return f"nextflow-{short_id(root)}"


def _pipeline_from_nxf_env(env: Mapping[str, str]) -> str | None:
    cli = env.get("NXF_CLI")
    if cli:
        name = nextflow_driver("", ["nextflow", *cli.split()[1:]])
        if name:
            return name
    return None


def driver(ex: Exec, ctx: Context) -> bool:
    pipeline = nextflow_driver(ex.exe, ex.argv)
    if pipeline is None:
        return False
    ctx.role = ROLE_NF_DRIVER
    if ctx.run_id is None or ctx.engine in SCHEDULER_ENGINES:
        # a driver in a scheduler job of its own takes its work dir's run too: its tasks' jobs derive that
        root = driver_work_root(ex.argv, ex.cwd, ex.env)
        ctx.run_id = run_id_of(root) if root else f"nextflow-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.pipeline = ex.env.get("EXECSIGHT_PIPELINE") or pipeline or None
        ctx.engine = "nextflow"
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or pipeline or None
    return True


def task(ex: Exec, ctx: Context) -> bool:
    nf = nextflow_task(ex.argv, ex.cwd, ex.env)
    if nf is None and ex.parent_task(ctx) is None:
        # a task's script in a container (the docker/podman executors): it joins the task of its work dir
        nf = task_script(ex.argv, ex.cwd)
    if nf is None:
        return False
    workdir, task_hash = nf
    if ctx.run_id is None or (ctx.engine in SCHEDULER_ENGINES and ex.parent_task(ctx) is None):
        # a task without its driver here (another host, or a scheduler job of its own): the run of its
        # work dir, not one run per task job
        ctx.run_id = run_id_of(work_root(workdir))
        ctx.engine = "nextflow"
        ctx.run_root = True
        ctx.pipeline = ex.env.get("EXECSIGHT_PIPELINE") or _pipeline_from_nxf_env(ex.env)
    ctx.engine = "nextflow"
    ctx.task_id = task_hash
    header = ex.read(workdir + "/.command.run")
    ctx.task = header_name(header) or task_hash
    cpus, mem = header_requests(header)
    ctx.requested_cpus = cpus if cpus is not None else ctx.requested_cpus
    ctx.requested_memory_bytes = mem if mem is not None else ctx.requested_memory_bytes
    ctx.task_root = True
    return True


DETECTOR = Detector("nextflow", driver=driver, task=task)
