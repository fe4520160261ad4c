"""Pipeline, run and task context of a process at exec (pure; the files it names come from the stream).

Run level, first that applies: explicit labels (EXECSIGHT_RUN_ID, EXECSIGHT_PIPELINE) ->
the parent's run -> scheduler ids (AWS_BATCH_JOB_ID, SLURM_JOB_ID) -> a workflow engine's
driver (Nextflow, Snakemake) -> a generic root (a process started from a shell, a terminal,
cron, ... becomes a run once it has a subtree).
Task level, first that applies: explicit label (EXECSIGHT_TASK) -> the parent's task ->
a workflow engine's task (Nextflow .command.run in a work dir; a Snakemake job) -> the
scheduler job -> the command of an explicit run (one task) -> a direct child of a generic root.
Below the command task of an explicit run, an engine's driver and tasks are the engine's (checked
before the command task is inherited), so `execsight run -- CMD` splits an engine's run as without it.
Children inherit their parent's context; ids are derived deterministically from the
process identity, so a replay derives the same ids.

The correlator reads no file: a Nextflow task header or a Snakefile is what the collector shipped in a
ProcessContext record (``read`` looks it up; it may arrive after the exec, and the process tree then
names the task). Run ids hold no host where the run may span hosts (a Nextflow work dir, a scheduler
job or array, an explicit label), so each worker derives the same id for its host's part.

Each engine and scheduler is a detector in execsight.correlator.engines; derive() runs them in
order. The names below are re-exported for the process tree and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from execsight.correlator.engines import DETECTORS
from execsight.correlator.engines.base import (
    DEFAULT_GENERIC,
    ROLE_GENERIC_CANDIDATE,
    ROLE_GENERIC_ROOT,
    ROLE_NF_DRIVER,
    ROLE_SMK_DRIVER,
    Context,
    Exec,
    FileReader,
    GenericPolicy,
    Parent,
    SnakefileRule,
    no_files,
    parent_roots_tasks,
    short_id,
)
from execsight.correlator.engines.generic import (
    generic_candidate,
    generic_pipeline_name,
    generic_task_name,
    is_launcher,
    session_launcher,
    shell_command_program,
)
from execsight.correlator.engines.nextflow import nextflow_driver, nextflow_task, nextflow_task_name
from execsight.correlator.engines.snakemake import (
    SnakemakeJob,
    match_snakefile_rule,
    parse_snakefile,
    snakemake_driver,
    snakemake_job,
)

__all__ = [
    "DEFAULT_GENERIC",
    "ROLE_GENERIC_CANDIDATE",
    "ROLE_GENERIC_ROOT",
    "ROLE_NF_DRIVER",
    "ROLE_SMK_DRIVER",
    "Context",
    "Exec",
    "FileReader",
    "GenericPolicy",
    "Parent",
    "SnakefileRule",
    "SnakemakeJob",
    "derive",
    "generic_candidate",
    "generic_pipeline_name",
    "generic_task_name",
    "is_launcher",
    "match_snakefile_rule",
    "nextflow_driver",
    "nextflow_task",
    "nextflow_task_name",
    "no_files",
    "parent_roots_tasks",
    "parse_snakefile",
    "session_launcher",
    "shell_command_program",
    "short_id",
    "snakemake_driver",
    "snakemake_job",
]


def derive(
    host_id: str,
    pid: int,
    start_ns: int,
    exe: str,
    argv: Sequence[str],
    cwd: str | None,
    env: Mapping[str, str],
    cgroup_path: str | None,
    parent: Parent | None,
    read: FileReader = no_files,
    snakefiles: dict[str, list[SnakefileRule]] | None = None,
    tool: str | None = None,
    policy: GenericPolicy = DEFAULT_GENERIC,
) -> Context:
    ex = Exec(host_id, pid, start_ns, exe, argv, cwd, env, cgroup_path, parent, read, snakefiles, tool, policy)
    return classify(ex)


def classify(ex: Exec) -> Context:
    """The context of ex: run level, then drivers, then task level, each over the ordered detectors."""
    ctx = Context()
    for d in DETECTORS:
        if d.run is not None and d.run(ex, ctx):
            break
    label = ex.env.get("EXECSIGHT_PIPELINE")
    if label and ctx.pipeline is None:
        ctx.pipeline = label  # an explicit pipeline label names whatever recognised the run
    if ex.parent_task(ctx) is None or ex.in_command_task(ctx):
        for d in DETECTORS:
            if d.driver is not None and d.driver(ex, ctx):
                break
    for d in DETECTORS:
        if d.task is not None and d.task(ex, ctx):
            break
    return ctx
