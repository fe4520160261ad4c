"""`execsight tune config`: right-sized resources per process definition, as config to paste (adapter).

    execsight tune config --pipeline demo --format nextflow    # process { withName: ... } block
    execsight tune config --pipeline demo --format snakemake   # profile config.yaml: set-threads/set-resources
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from execsight.lifecycle import settings_or_exit
from execsight.run_analysis.breakdown import sampled_cpu
from execsight.run_analysis.config_export import FORMATS, DefinitionConfig, definition_configs, render
from execsight.run_analysis.rightsize import SampledCpu
from execsight.tune import store


def load_configs(conn: psycopg.Connection[Any], pipeline: str, runs: int = 20) -> list[DefinitionConfig]:
    """The pipeline's latest runs, right-sized per process definition (reads only)."""
    tasks = store.pipeline_tasks(conn, pipeline, runs)
    keys = [(str(t["run_id"]), str(t["task_id"])) for t in tasks]
    samples = store.process_samples(conn, keys)
    sampled: dict[tuple[str, str], SampledCpu] = {}
    for key, rows in samples.items():
        s = sampled_cpu(rows) if rows else None
        if s is not None:
            sampled[key] = s
    return definition_configs(tasks, sampled)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight tune config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="pipeline name (as on the Runs page)")
    parser.add_argument("--format", choices=FORMATS, default="nextflow", help="config dialect (default nextflow)")
    parser.add_argument("--runs", type=int, default=20, help="latest runs to size from (default 20)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    settings = settings_or_exit("execsight tune config")
    try:
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            configs = load_configs(conn, args.pipeline, args.runs)
    except psycopg.OperationalError as exc:
        print(f"execsight tune config: cannot read the database: {exc}", file=sys.stderr)
        return 1
    if not configs:
        print(f"execsight tune config: no task recorded for pipeline {args.pipeline!r}", file=sys.stderr)
        return 1
    sys.stdout.write(render(args.format, args.pipeline, configs))
    return 0
