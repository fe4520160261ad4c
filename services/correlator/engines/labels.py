"""Explicit labels (EXECSIGHT_RUN_ID, EXECSIGHT_PIPELINE, EXECSIGHT_TASK) and inheritance from the parent.

Run level: an explicit run id wins, else the parent's run. Task level: an explicit task label,
else the parent's task; a workflow engine's driver stops here (it is run level, never a task). Below the
command task of an explicit run (engines.generic.command_task) the engine detectors go first: a workflow
engine's task is the engine's, under `execsight run` as without it.
"""

from __future__ import annotations

from execsight.correlator.engines.base import (
    COMMAND_TASK_ENGINE,
    DRIVER_ROLES,
    Context,
    Detector,
    Exec,
    inherit_requests,
)


def run(ex: Exec, ctx: Context) -> bool:
    parent, env = ex.parent, ex.env
    explicit_run = env.get("EXECSIGHT_RUN_ID")
    if explicit_run:
        ctx.run_id = explicit_run
        ctx.pipeline = env.get("EXECSIGHT_PIPELINE") or (parent.pipeline if parent else None)
        ctx.engine = COMMAND_TASK_ENGINE
        ctx.run_root = parent is None or parent.run_id != explicit_run
        return True
    if parent is not None and parent.run_id:
        ctx.run_id, ctx.pipeline, ctx.engine = parent.run_id, parent.pipeline, parent.engine
        return True
    return False


def task(ex: Exec, ctx: Context) -> bool:
    parent = ex.parent
    parent_task = ex.parent_task(ctx)
    explicit_task = ex.env.get("EXECSIGHT_TASK")
    if explicit_task and ctx.run_id:
        if parent_task and parent is not None and parent.task == explicit_task:
            ctx.task_id, ctx.task, ctx.engine = parent.task_id, parent.task, parent.engine
            inherit_requests(ctx, parent)
        else:
            ctx.task_id = ex.env.get("EXECSIGHT_TASK_ID") or f"{explicit_task}:{ex.pid}.{ex.start_ns}"
            ctx.task = explicit_task
            ctx.task_root = True
        return True
    if ctx.role in DRIVER_ROLES:
        return True  # a driver is run-level, never a task (also below a command task: context.classify)
    if parent_task and parent is not None:
        if ex.in_command_task(ctx):
            return False  # an engine's task below CMD is the engine's; else generic.task keeps the command task
        # A task's processes keep the engine that recognised the task, under an explicitly labelled run too.
        ctx.task_id, ctx.task, ctx.engine = parent.task_id, parent.task, parent.engine
        inherit_requests(ctx, parent)
        return True
    return bool(ctx.role)  # a driver is run-level, never a task


DETECTOR = Detector("labels", run=run, task=task)
