"""Batch schedulers: an AWS Batch or Slurm job is a run, and its first process the job's task."""

from __future__ import annotations

from execsight.correlator.engines.base import Context, Detector, Exec, base_name, first_name

# engine -> (job id variable, job name variable, run id prefix); the first present wins
SCHEDULERS = (
    ("aws_batch", "AWS_BATCH_JOB_ID", "AWS_BATCH_JQ_NAME", "aws-batch"),
    ("slurm", "SLURM_JOB_ID", "SLURM_JOB_NAME", "slurm"),
)
_JOB_NAME = {engine: name_var for engine, _, name_var, _ in SCHEDULERS}


def run(ex: Exec, ctx: Context) -> bool:
    env = ex.env
    for engine, id_var, name_var, prefix in SCHEDULERS:
        job = env.get(id_var)
        if job:
            ctx.run_id = f"{prefix}-{job}"
            ctx.pipeline = env.get("EXECSIGHT_PIPELINE") or env.get(name_var)
            ctx.engine = engine
            ctx.run_root = True
            return True
    return False


def task(ex: Exec, ctx: Context) -> bool:
    name_var = _JOB_NAME.get(ctx.engine or "")
    if name_var is None or not ctx.run_root:
        return False
    argv0 = base_name(ex.argv[0]) if ex.argv else None
    ctx.task = ex.env.get(name_var) or first_name(ex.tool, base_name(ex.exe), argv0) or "job"
    ctx.task_id = f"{ctx.run_id}:{ex.pid}.{ex.start_ns}"
    ctx.task_root = True
    return True


DETECTOR = Detector("schedulers", run=run, task=task)
