"""`execsight demo`: run the demo pipeline under observation and say where to look in the dashboard.

With the stack up (`execsight up`), this runs the Snakemake workflow of deploy/demo (default),
the Nextflow-shaped variant (--nextflow-shaped) or both (--both) as labelled runs
(EXECSIGHT_PIPELINE, EXECSIGHT_RUN_ID on the engine process), checks that every task did what the
demo promises (all complete except one deliberate failure), waits for each run to reach the
database, and prints the dashboard address with the run ids.

Exit status: 0 when every run behaved as designed (and reached the database, unless --wait 0);
1 otherwise; 2 when the stack does not answer or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from execsight.deploy.demo import engines, labels, outcome, stack_check
from execsight.deploy.demo.scales import load_scale
from execsight.settings import Settings, SettingsError, load_settings


@dataclass(frozen=True)
class DemoRun:
    engine: str  # snakemake or nextflow
    pipeline: str
    run_id: str
    workdir: Path
    log: Path
    rc: int
    seconds: float
    problems: tuple[str, ...]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--nextflow-shaped", action="store_true", help="run the Nextflow-shaped variant only")
    which.add_argument("--both", action="store_true", help="run the Snakemake workflow, then the Nextflow-shaped one")
    p.add_argument("--scale", default="default", help="scale of deploy/demo/config.yaml: default (1-2 min) or small")
    p.add_argument("--seed", type=int, default=42, help="seed of the synthetic inputs")
    p.add_argument("--cores", type=int, default=min(2, os.cpu_count() or 1), help="cores the engine may use")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where runs put their files (default: <EXECSIGHT_STATE_DIR>/demo/<run id>)")
    p.add_argument("--run-id", default=None, help="run id (default: demo-<engine>-<UTC time>-<hex>); not with --both")
    p.add_argument("--pipeline", default=None,
                   help=f"pipeline label (default: {labels.SNAKEMAKE_PIPELINE} / {labels.NEXTFLOW_PIPELINE})")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for each run to be complete in the database (0: do not wait)")
    p.add_argument("--no-check", action="store_true", help="run even when the stack does not answer")
    return p


def missing_prerequisites(engine: str) -> list[str]:
    """What this host lacks to run the engine's demo: the snakemake module, the Debian tools."""
    missing = []
    if engine == "snakemake" and importlib.util.find_spec("snakemake") is None:
        missing.append("the snakemake Python package (pip install 'snakemake>=8')")
    for tool, package in (("bwa", "bwa"), ("samtools", "samtools"), ("gzip", "gzip"), ("dd", "coreutils")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian package {package})")
    return missing


def dashboard_url(settings: Settings, run_id: str | None = None) -> str:
    """The dashboard, or its Runs page opened on one run (services/ui/pages/runs.py reads ?run=)."""
    base = f"http://localhost:{settings.ui_port}/"
    return f"{base}runs?run={quote(run_id)}" if run_id else base


def run_one(engine: str, args: argparse.Namespace, settings: Settings, run_id: str, pipeline: str) -> DemoRun:
    scale = load_scale(args.scale, seed=args.seed)
    base = args.workdir if args.workdir is not None else settings.state_dir / "demo"
    workdir = (base / run_id).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if engine == "snakemake":
        cmd = engines.snakemake_command(workdir, scale.name, scale.seed, args.cores)
    else:
        cmd = engines.nextflow_shaped_command(workdir, scale.name, scale.seed, args.cores)
    env = labels.run_env(os.environ, pipeline, run_id)
    log = workdir / "engine.log"
    print(f"running {engine} demo: pipeline {pipeline}, run {run_id}, scale {scale.name}", flush=True)
    print(f"  work dir {workdir}", flush=True)
    started = time.monotonic()
    rc = engines.run_engine(cmd, env, log, cwd=workdir)
    seconds = time.monotonic() - started
    if engine == "snakemake":
        problems = outcome.snakemake_problems(workdir, scale, rc)
        failing = f"rule {outcome.FAILING_RULE}"
    else:
        problems = outcome.nextflow_problems(workdir, scale, rc)
        failing = f"process {outcome.FAILING_PROCESS}"
    if problems:
        print(f"  finished in {seconds:.0f} s, NOT as designed (engine exit {rc}, log {log}):", flush=True)
        for prob in problems:
            print(f"    - {prob}", flush=True)
    else:
        print(f"  finished in {seconds:.0f} s as designed: every task completed except {failing}, which fails on "
              f"purpose with exit {outcome.FAILING_EXIT_CODE} (engine exit {rc}; log {log})", flush=True)
    return DemoRun(engine, pipeline, run_id, workdir, log, rc, seconds, tuple(problems))


def report_run(settings: Settings, run: DemoRun, wait_s: float) -> bool:
    """Wait for the run in the database and print what is there; False when it did not arrive in time."""
    if wait_s <= 0:
        return True
    print(f"  waiting up to {wait_s:.0f} s for run {run.run_id} in the database ...", flush=True)
    row = stack_check.wait_for_run(settings.database_url, run.run_id, wait_s)
    if row is None:
        print(f"  run {run.run_id} is not complete in the database after {wait_s:.0f} s: "
              "check `execsight status` (collector, correlator)", flush=True)
        return False
    findings = ", ".join(f"{k} x{n}" for k, n in row.findings.items()) or "none yet (tune may still be working)"
    print(f"  in the database: {row.status}, {row.task_count} tasks ({row.failed_task_count} failed), "
          f"{row.process_count} processes; findings: {findings}", flush=True)
    return True


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.both and args.run_id:
        print("execsight demo: --run-id names one run; it cannot be used with --both", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        load_scale(args.scale, seed=args.seed)
        if args.run_id:
            labels.check_label("--run-id", args.run_id)
        if args.pipeline:
            labels.check_label("--pipeline", args.pipeline)
    except (SettingsError, ValueError) as exc:
        print(f"execsight demo: {exc}", file=sys.stderr)
        return 2
    chosen = ["snakemake", "nextflow"] if args.both else ["nextflow"] if args.nextflow_shaped else ["snakemake"]
    lacking = sorted({m for engine in chosen for m in missing_prerequisites(engine)})
    if lacking:
        print(f"execsight demo: this host lacks {'; '.join(lacking)}", file=sys.stderr)
        return 2
    if not args.no_check:
        state = stack_check.check_stack(settings)
        if state.problems:
            for prob in state.problems:
                print(f"execsight demo: {prob}", file=sys.stderr)
            print("execsight demo: start the stack first (`execsight up`), or pass --no-check", file=sys.stderr)
            return 2
        for warning in state.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    runs: list[DemoRun] = []
    for engine in chosen:
        default_pipeline = labels.SNAKEMAKE_PIPELINE if engine == "snakemake" else labels.NEXTFLOW_PIPELINE
        run_id = args.run_id or labels.new_run_id(engine)
        runs.append(run_one(engine, args, settings, run_id, args.pipeline or default_pipeline))
    arrived = [report_run(settings, run, args.wait) for run in runs]
    print(f"\nDashboard: {dashboard_url(settings)}")
    for run in runs:
        print(f"  {run.pipeline:<14} run {run.run_id}: {dashboard_url(settings, run.run_id)}")
    ok = all(not r.problems for r in runs) and all(arrived)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
