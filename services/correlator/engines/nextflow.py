"""Nextflow: the launcher (java nextflow.cli.Launcher / nextflow run) is a run's driver; a process
running a task wrapper (.command.run in a work dir) roots the task, named from the wrapper's header."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from execsight.correlator.engines.base import ROLE_NF_DRIVER, Context, Detector, Exec, FileReader, base_name, short_id

NF_WORKDIR = re.compile(r"(?P<root>.*/work)/(?P<h1>[0-9a-f]{2})/(?P<h2>[0-9a-f]{30})(?:/|$)")
NF_HEADER_OLD = re.compile(r"^# NEXTFLOW TASK: (?P<name>.+?)\s*$", re.M)
NF_HEADER_NEW = re.compile(r"^### name: '(?P<name>(?:[^'\\]|\\.)*)'\s*$", re.M)


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
    """(work dir, task hash) when this process runs a Nextflow task wrapper (.command.run)."""
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


def nextflow_task_name(workdir: str, read: FileReader) -> str | None:
    text = read(workdir + "/.command.run")
    if not text:
        return None
    head = text[:8192]
    m = NF_HEADER_NEW.search(head) or NF_HEADER_OLD.search(head)
    return m["name"].replace("\\'", "'") if m else None


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
    if ctx.run_id is None:
        ctx.run_id = f"nextflow-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.engine = "nextflow"
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or pipeline or None
    return True


def task(ex: Exec, ctx: Context) -> bool:
    nf = nextflow_task(ex.argv, ex.cwd, ex.env)
    if nf is None:
        return False
    workdir, task_hash = nf
    if ctx.run_id is None:
        root = workdir.rsplit("/", 2)[0] if workdir.count("/") >= 2 else workdir
        ctx.run_id = f"nextflow-{short_id(ex.host_id, root)}"
        ctx.engine = "nextflow"
        ctx.run_root = True
        ctx.pipeline = ctx.pipeline or _pipeline_from_nxf_env(ex.env)
    ctx.engine = "nextflow"
    ctx.task_id = task_hash
    ctx.task = nextflow_task_name(workdir, ex.read) or task_hash
    ctx.task_root = True
    return True


DETECTOR = Detector("nextflow", driver=driver, task=task)
