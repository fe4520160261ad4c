"""CWL (cwltool): the `cwltool` process is a run's driver; each process it starts is a step's command
(a task), named by the program it runs.

What a step carries, as seen running cwltool 3.3 with --no-container: its parent is the cwltool
process, its cwd is a fresh output dir (`tempfile.mkdtemp`, /tmp/xxxxxxxx by default, also its HOME),
and its environment is reduced to HOME, TMPDIR and PATH (no labels survive). The step's name is only
in the workflow file, which the correlator does not read: the task is named by the step's program,
and one task id per step execution (its output dir), so two steps running `sort` stay two tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

from execsight.correlator.engines.base import (
    ROLE_CWL_DRIVER,
    Context,
    Detector,
    Exec,
    base_name,
    first_name,
    short_id,
)

CWL_RUNNERS = frozenset({"cwltool", "cwl-runner"})
# cwltool's own helpers: the JavaScript expression evaluator; run level, never a step.
CWL_HELPERS = frozenset({"node", "nodejs"})
WORKFLOW_SUFFIXES = (".cwl", ".yml", ".yaml", ".json")


def cwl_driver(argv: Sequence[str]) -> str | None:
    """The pipeline of a cwltool process (the workflow file's stem), '' when unknown, None when not one."""
    if not argv:
        return None
    if base_name(argv[0]) in CWL_RUNNERS:
        rest = argv[1:]
    elif len(argv) > 1 and base_name(argv[1]) in CWL_RUNNERS:
        rest = argv[2:]  # python /path/to/cwltool ...
    elif len(argv) > 2 and argv[1] == "-m" and argv[2] in CWL_RUNNERS:
        rest = argv[3:]
    else:
        return None
    for arg in rest:
        if arg.startswith("-"):
            continue
        name = base_name(arg.split("#", 1)[0])
        for suffix in WORKFLOW_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return ""


def _step_program(ex: Exec) -> str | None:
    argv = ex.argv
    if len(argv) >= 3 and base_name(argv[0]) in ("sh", "bash") and argv[1] == "-c":
        words = argv[2].split()  # ShellCommandRequirement: `/bin/sh -c "<command line>"`
        return base_name(words[0]) if words else None
    return ex.tool or (base_name(argv[0]) if argv else None)


def driver(ex: Exec, ctx: Context) -> bool:
    pipeline = cwl_driver(ex.argv)
    if pipeline is None:
        return False
    ctx.role = ROLE_CWL_DRIVER
    if ctx.run_id is None:
        ctx.run_id = f"cwl-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.engine = "cwl"
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or pipeline or None
    return True


def task(ex: Exec, ctx: Context) -> bool:
    parent = ex.parent
    if parent is None or parent.role != ROLE_CWL_DRIVER or ctx.role:
        return False
    program = _step_program(ex)
    if program in CWL_HELPERS:
        return True  # run level only
    name = first_name(program, base_name(ex.exe)) or "step"
    ctx.engine = "cwl"
    ctx.task = name
    ctx.task_id = f"{name}:{short_id(ex.host_id, ex.cwd or '', ex.pid, ex.start_ns)}"
    ctx.task_root = True
    return True


DETECTOR = Detector("cwl", driver=driver, task=task)
