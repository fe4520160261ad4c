"""`execsight run [--pipeline NAME] [--run-id ID] [--task NAME] -- CMD...`: run a command under observation.

CMD runs with EXECSIGHT_PIPELINE, EXECSIGHT_RUN_ID and EXECSIGHT_TASK set, so the collector
and correlator attribute its processes to this run. When it exits, the command waits
(up to --timeout seconds) for the run to be completed in the database and costed by the
tune worker, then prints the run's time breakdown, its top tasks and tools by time and
cost, and its findings. The exit status is CMD's (128 + signal when a signal ended it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from execsight.settings import SettingsError, load_settings
from services.tune import store
from services.tune.report import RunReport, render


def new_run_id(pipeline: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in pipeline)[:40] or "run"
    return f"{safe}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def labelled_env(base: Mapping[str, str], pipeline: str, run_id: str, task: str) -> dict[str, str]:
    env = dict(base)
    env.update({"EXECSIGHT_PIPELINE": pipeline, "EXECSIGHT_RUN_ID": run_id, "EXECSIGHT_TASK": task})
    return env


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_command(cmd: list[str], env: Mapping[str, str]) -> int:
    """Runs cmd in the foreground, passing SIGINT/SIGTERM on to it; returns its exit status."""
    try:
        proc = subprocess.Popen(cmd, env=dict(env))
    except FileNotFoundError:
        print(f"execsight run: {cmd[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"execsight run: {cmd[0]}: permission denied", file=sys.stderr)
        return 126

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return exit_status(proc.wait())
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_ready(conn: psycopg.Connection[Any], run_id: str) -> bool:
    """The run is completed and the tune worker has costed it and every task of it."""
    row = conn.execute(
        "SELECT r.status, c.run_id IS NOT NULL, "
        "(SELECT count(*) FROM tasks t WHERE t.run_id = r.run_id), "
        "(SELECT count(*) FROM task_costs tc WHERE tc.run_id = r.run_id) "
        "FROM runs r LEFT JOIN run_costs c USING (run_id) WHERE r.run_id = %s",
        (run_id,),
    ).fetchone()
    return row is not None and row[0] != "RUNNING" and bool(row[1]) and row[3] >= row[2]


def fetch_report(conn: psycopg.Connection[Any], run_id: str) -> RunReport | None:
    run = store.run_row(conn, run_id)
    if run is None:
        return None
    tasks = store.run_tasks(conn, [run_id])[run_id]
    return RunReport(run=run, tasks=tasks, findings=store.run_findings(conn, run_id, run.get("pipeline")),
                     processes=store.run_processes(conn, run_id))


def wait_for_report(
    database_url: str, run_id: str, timeout_s: float, poll_s: float = 1.0
) -> tuple[RunReport | None, str]:
    """Polls until the run is ready (or the timeout); returns the report and a note for the reader."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                if run_ready(conn, run_id):
                    return fetch_report(conn, run_id), ""
                if time.monotonic() >= deadline:
                    report = fetch_report(conn, run_id)
                    note = ("run not completed and costed within the timeout; showing what is recorded so far"
                            if report else "run not found in the database; are the collector, correlator and tune "
                            "worker running (execsight status)?")
                    return report, note
        except psycopg.OperationalError as exc:
            last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            if time.monotonic() >= deadline:
                return None, f"database not reachable: {last_error}"
        time.sleep(poll_s)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight run", description=__doc__.splitlines()[0],
                                     usage="execsight run [options] -- CMD [ARGS...]")
    parser.add_argument("--pipeline", help="pipeline name (default: the command's name)")
    parser.add_argument("--run-id", help="run id (default: generated)")
    parser.add_argument("--task", help="task name (default: the command's name)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the run to be analysed after CMD exits (default 60)")
    parser.add_argument("--no-report", action="store_true", help="do not wait for or print the report")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given: execsight run [options] -- CMD [ARGS...]")
    name = Path(cmd[0]).name
    pipeline = args.pipeline or name
    run_id = args.run_id or new_run_id(pipeline)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"execsight run: {exc}", file=sys.stderr)
        return 2
    print(f"execsight run: pipeline {pipeline}, run {run_id}", file=sys.stderr)
    status = run_command(cmd, labelled_env(os.environ, pipeline, run_id, args.task or name))
    if args.no_report:
        return status
    report, note = wait_for_report(settings.database_url, run_id, args.timeout)
    if report is not None:
        sys.stdout.write(render(report))
    if note:
        print(f"execsight run: {note}", file=sys.stderr)
    return status
