"""WDL (miniwdl): the `miniwdl run` process is a run's driver; each call's container CLI, which miniwdl
starts in the call's run directory (`<run dir>/call-<name>`, `call-<name>-<scatter index>`), roots the
call's task.

miniwdl has no container-less backend; its CLI backends (singularity, podman, udocker) start
`<cli> exec ... <image> /bin/sh -c '<shell> ../command ...'` with cwd = the call's directory, so
the call is told from the exec's cwd alone. Under the default docker_swarm backend the commands run in
a container outside miniwdl's process tree, and only the driver is recognised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from execsight.correlator.engines.base import (
    ROLE_WDL_DRIVER,
    Context,
    Detector,
    Exec,
    base_name,
    short_id,
)

# WDL names are [A-Za-z][A-Za-z0-9_]*: a '-' after the name can only start the scatter index.
WDL_CALL_DIR = re.compile(r"/call-(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:-(?P<index>\d+))?/?$")


def wdl_driver(argv: Sequence[str]) -> str | None:
    """The pipeline of a `miniwdl run` process (the .wdl file's stem), '' when unknown, None when not one."""
    if not argv:
        return None
    if base_name(argv[0]) == "miniwdl":
        rest = argv[1:]
    elif len(argv) > 1 and base_name(argv[1]) == "miniwdl":
        rest = argv[2:]
    elif len(argv) > 2 and argv[1] == "-m" and argv[2] == "WDL":
        rest = argv[3:]
    else:
        return None
    if not rest or rest[0] != "run":
        return None
    for arg in rest[1:]:
        if not arg.startswith("-") and arg.endswith(".wdl"):
            return base_name(arg)[: -len(".wdl")]
    return ""


def wdl_call(cwd: str | None) -> tuple[str, str | None] | None:
    """(call name, scatter index) when cwd is a miniwdl call directory."""
    m = WDL_CALL_DIR.search(cwd or "")
    return (m["name"], m["index"]) if m else None


def driver(ex: Exec, ctx: Context) -> bool:
    pipeline = wdl_driver(ex.argv)
    if pipeline is None:
        return False
    ctx.role = ROLE_WDL_DRIVER
    if ctx.run_id is None:
        ctx.run_id = f"wdl-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.engine = "wdl"
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or pipeline or None
    return True


def task(ex: Exec, ctx: Context) -> bool:
    parent = ex.parent
    if parent is None or parent.role != ROLE_WDL_DRIVER or ctx.role:
        return False
    call = wdl_call(ex.cwd)
    if call is None:
        return True  # miniwdl's own helpers (`<cli> --version`, image pulls): run level only
    name, index = call
    ctx.engine = "wdl"
    ctx.task = f"{name} ({index})" if index is not None else name
    ctx.task_id = f"{name}:{short_id(ex.host_id, ex.cwd, ex.pid, ex.start_ns)}"
    ctx.task_root = True
    return True


DETECTOR = Detector("wdl", driver=driver, task=task)
