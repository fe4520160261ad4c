"""`execsight run [--pipeline NAME] [--run-id ID] [--task NAME] [--json] -- CMD...`: run a command under observation.

CMD runs with EXECSIGHT_PIPELINE and EXECSIGHT_RUN_ID set, so the collector and correlator attribute
its processes to this run. Tasks are what the correlator recognises: a workflow engine's tasks
(Nextflow, Snakemake), also below a script that starts the engine, or, for any other command, one
task: CMD (its processes under their own tools). EXECSIGHT_TASK is set only when --task is given (it
makes the whole tree one task of that name, which hides an engine's tasks).

Before CMD runs: the command must exist (else exit 127 at once), the settings must parse, the
database must answer, the run id must be new (a reused --run-id would merge two runs: refused),
and a collector heartbeat from this host is looked for (a warning when there is none).
When CMD exits, the command waits (up to --timeout seconds, with a progress line naming what it
waits for) for the run to be completed in the database and costed by the tune worker, then prints
the run's time breakdown, its top tasks and tools by time and cost, its findings and its dashboard
link. On timeout it names the component that is behind. The exit status is always CMD's (128 +
signal when a signal ended it); only a check that fails before CMD runs gives 2 (or 126/127).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg.conninfo import conninfo_to_dict

from execsight.run_analysis.report import RunReport, as_json, render
from execsight.schemas import collector_gaps
from execsight.settings import Settings, SettingsError, load_settings
from execsight.shutdown import on_stop_signals
from execsight.tune import store

# Labels a caller's environment may carry from an outer observed run; CMD gets this run's only.
LABELS = ("EXECSIGHT_PIPELINE", "EXECSIGHT_RUN_ID", "EXECSIGHT_TASK", "EXECSIGHT_TASK_ID")
TUNE_GROUP = "tune"
CORRELATOR_GROUP = "execsight-correlator"


def new_run_id(pipeline: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in pipeline)[:40] or "run"
    return f"{safe}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def labelled_env(base: Mapping[str, str], pipeline: str, run_id: str, task: str | None = None) -> dict[str, str]:
    """`base` with this run's labels; a task label only when one is given (engines' tasks stay theirs)."""
    env = {k: v for k, v in base.items() if k not in LABELS}
    env.update({"EXECSIGHT_PIPELINE": pipeline, "EXECSIGHT_RUN_ID": run_id})
    if task:
        env["EXECSIGHT_TASK"] = task
    return env


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def resolve_command(cmd: list[str], env: Mapping[str, str]) -> tuple[int, str] | None:
    """None when cmd[0] can be executed; else (exit status, reason) as a shell would give them."""
    name = cmd[0]
    if os.sep in name:
        path = Path(name)
        if not path.exists():
            return 127, f"{name}: no such file"
        if path.is_dir() or not os.access(path, os.X_OK):
            return 126, f"{name}: not executable"
        return None
    if shutil.which(name, path=env.get("PATH", os.defpath)) is None:
        return 127, f"{name}: command not found (not on PATH)"
    return None


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

    restore = on_stop_signals(proc.send_signal)  # passed on: CMD decides how it stops
    try:
        return exit_status(proc.wait())
    finally:
        restore()


# --- checks before CMD runs ----------------------------------------------------------------------------


class PreflightError(RuntimeError):
    """A check before CMD runs failed; CMD is not run."""


def existing_run(conn: psycopg.Connection[Any], run_id: str) -> tuple[str, Any] | None:
    row = conn.execute("SELECT status, start_time FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None else (str(row[0]), row[1])


def collector_heartbeat_age_s(conn: psycopg.Connection[Any], host_id: str) -> float | None:
    """Seconds since this host's collector last reported (collector_status), or None if it never did."""
    row = conn.execute(
        "SELECT extract(epoch FROM now() - max(time)) FROM collector_status WHERE host_id = %s", (host_id,)
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def collector_note(age_s: float | None, host_id: str, interval_s: float) -> str | None:
    """A warning when this host's collector is not reporting (its heartbeat comes every interval_s)."""
    stale_after = max(30.0, 3 * interval_s)
    if age_s is None:
        return (f"no collector has reported from this host ({host_id}): CMD's processes will not be recorded "
                "(start one: execsight up, or execsight collector as root)")
    if age_s > stale_after:
        return (f"the collector of this host ({host_id}) last reported {age_s:.0f} s ago: it may be stopped, "
                "and CMD's processes not recorded (execsight status)")
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def preflight(settings: Settings, run_id: str, explicit_run_id: bool) -> tuple[bool, str | None]:
    """Checks the database and the run id; returns (collector seen, warning). PreflightError when CMD must not run."""
    try:
        conninfo_to_dict(settings.database_url)
    except psycopg.ProgrammingError as exc:
        raise PreflightError(f"EXECSIGHT_DATABASE_URL is not a valid PostgreSQL DSN: {first_line(exc)}") from None
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            prior = existing_run(conn, run_id)
            if prior is not None:
                how = "--run-id" if explicit_run_id else "the generated run id"
                raise PreflightError(
                    f"run {run_id} already exists ({prior[0]}, started {prior[1]:%Y-%m-%d %H:%M:%S %Z}); "
                    f"a second run under the same id would merge the two. Choose a new {how} "
                    "(or leave --run-id out for a generated one)")
            age = collector_heartbeat_age_s(conn, settings.host_id)
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise PreflightError(f"the database does not answer ({first_line(exc)}); check "
                                 "EXECSIGHT_DATABASE_URL and `execsight status`") from None
        raise PreflightError(f"the database cannot be read ({first_line(exc)}); is it migrated "
                             "(execsight migrate)?") from None
    note = collector_note(age, settings.host_id, settings.host_interval_s)
    return note is None, note


# --- waiting for the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where the run is in the pipeline collector -> correlator -> tune worker."""

    found: bool
    status: str | None = None
    tasks: int = 0
    costed_tasks: int = 0
    run_costed: bool = False

    @property
    def ready(self) -> bool:
        return self.found and self.status != "RUNNING" and self.run_costed and self.costed_tasks >= self.tasks


def progress(conn: psycopg.Connection[Any], run_id: str) -> Progress:
    row = conn.execute(
        "SELECT r.status, c.run_id IS NOT NULL, "
        "(SELECT count(*) FROM tasks t WHERE t.run_id = r.run_id), "
        "(SELECT count(*) FROM task_costs tc WHERE tc.run_id = r.run_id) "
        "FROM runs r LEFT JOIN run_costs c USING (run_id) WHERE r.run_id = %s",
        (run_id,),
    ).fetchone()
    if row is None:
        return Progress(found=False)
    return Progress(True, str(row[0]), int(row[2]), int(row[3]), bool(row[1]))


def waiting_for(p: Progress, collector_seen: bool = True) -> tuple[str, str]:
    """(component, what it has not done yet) for a run that is not ready."""
    if not p.found:
        if not collector_seen:
            return "collector", "no process of the run has been recorded (no collector heartbeat from this host)"
        return "correlator", "the run is not in the database yet"
    if p.status == "RUNNING":
        return "correlator", f"the run is recorded with {p.tasks} tasks but not closed yet"
    if not p.run_costed or p.costed_tasks < p.tasks:
        return "tune worker", f"{p.costed_tasks} of {p.tasks} tasks costed" + ("" if p.run_costed else
                                                                               ", run not costed")
    return "", "ready"


LagLookup = Callable[[], dict[str, int]]


def group_lags(settings: Settings) -> dict[str, int]:
    """Consumer lag of the correlator and tune groups of this topic prefix (empty when Kafka does not say)."""
    from execsight import kafka_admin

    wanted = {f"{settings.topic_prefix}{TUNE_GROUP}": "tune worker", CORRELATOR_GROUP: "correlator",
              f"{settings.topic_prefix}{CORRELATOR_GROUP}": "correlator"}
    try:
        lags = kafka_admin.consumer_group_lag(settings.kafka_bootstrap, timeout_s=5.0,
                                               security=settings.kafka_security)
    except Exception:  # informative only: the timeout message is still given without it
        return {}
    return {wanted[g.group]: g.lag for g in lags if g.group in wanted}


class ProgressLine:
    """One status line on stderr: rewritten in place on a terminal, printed when it changes otherwise."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out, self.quiet, self.last = out, quiet, ""
        self.tty = out.isatty()

    def show(self, text: str) -> None:
        if self.quiet or text == self.last:
            return
        if self.tty:
            self.out.write("\r\033[K" + text)
        elif text.split(" (")[0] != self.last.split(" (")[0]:  # a new stage, not a new second count
            self.out.write(text + "\n")
        self.out.flush()
        self.last = text

    def done(self) -> None:
        if self.tty and self.last and not self.quiet:
            self.out.write("\r\033[K")
            self.out.flush()


def fetch_report(conn: psycopg.Connection[Any], run_id: str) -> RunReport | None:
    run = store.run_row(conn, run_id)
    if run is None:
        return None
    tasks = store.run_tasks(conn, [run_id])[run_id]
    return RunReport(run=run, tasks=tasks, findings=store.run_findings(conn, run_id, run.get("pipeline")),
                     processes=store.run_processes(conn, run_id))


def timeout_note(p: Progress, collector_seen: bool, lags: Mapping[str, int], timeout_s: float) -> str:
    component, what = waiting_for(p, collector_seen)
    lag = lags.get(component)
    behind = f"; its consumer lag is {lag} messages" if lag else ""
    shown = "showing what is recorded so far" if p.found else "nothing to show"
    return f"not ready after {timeout_s:.0f} s: the {component} is behind ({what}{behind}); {shown}"


def wait_for_report(
    database_url: str, run_id: str, timeout_s: float, poll_s: float = 1.0,
    line: ProgressLine | None = None, collector_seen: bool = True, lags: LagLookup | None = None,
) -> tuple[RunReport | None, str]:
    """Polls until the run is ready (or the timeout); returns the report and a note for the reader."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                p = progress(conn, run_id)
                if p.ready:
                    return fetch_report(conn, run_id), ""
                if time.monotonic() >= deadline:
                    return fetch_report(conn, run_id), timeout_note(p, collector_seen, lags() if lags else {},
                                                                    timeout_s)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                return None, f"database not reachable: {first_line(exc)}"
            p = None
        if line is not None:
            component, what = waiting_for(p, collector_seen) if p is not None else ("database", "not reachable")
            line.show(f"execsight run: waiting for the {component}: {what} "
                      f"({time.monotonic() - start:.0f}/{timeout_s:.0f} s)")
        time.sleep(poll_s)


def run_gaps(database_url: str, run_id: str) -> list[str]:
    """Collector gaps overlapping the run (schemas/collector_gaps.py), one line each."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            return [collector_gaps.describe(g) for g in collector_gaps.of_run(conn, run_id)]
    except psycopg.Error:
        return []  # the report itself says when the database is away


def dashboard_link(settings: Settings, run_id: str) -> str:
    from urllib.parse import quote

    return f"http://127.0.0.1:{settings.ui_port}/runs?run={quote(run_id)}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="execsight run", description=__doc__.splitlines()[0],
                                     usage="execsight run [options] -- CMD [ARGS...]")
    parser.add_argument("--pipeline", help="pipeline name (default: the command's name)")
    parser.add_argument("--run-id", help="run id (default: generated); an id already recorded is refused")
    parser.add_argument("--task", help="make the whole command one task of this name (default: the tasks the "
                                       "correlator recognises: the engine's, else CMD as one task)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the run to be analysed after CMD exits (default 60)")
    parser.add_argument("--no-report", action="store_true", help="do not wait for or print the report")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="the report as one JSON object: on stdout after CMD's own output, or into FILE")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given: execsight run [options] -- CMD [ARGS...]")
    missing = resolve_command(cmd, os.environ)
    if missing is not None:
        print(f"execsight run: {missing[1]}; nothing was run", file=sys.stderr)
        return missing[0]
    name = Path(cmd[0]).name
    pipeline = args.pipeline or name
    run_id = args.run_id or new_run_id(pipeline)
    try:
        settings = load_settings()
        collector_seen, warning = preflight(settings, run_id, explicit_run_id=args.run_id is not None)
    except (SettingsError, PreflightError) as exc:
        print(f"execsight run: {exc}; nothing was run", file=sys.stderr)
        return 2
    link = dashboard_link(settings, run_id)
    print(f"execsight run: pipeline {pipeline}, run {run_id} ({link})", file=sys.stderr)
    if warning:
        print(f"execsight run: warning: {warning}", file=sys.stderr)
    status = run_command(cmd, labelled_env(os.environ, pipeline, run_id, args.task))
    if args.no_report:
        print(f"execsight run: dashboard {link}", file=sys.stderr)
        return status
    line = ProgressLine(sys.stderr)
    report: RunReport | None = None
    try:
        report, note = wait_for_report(settings.database_url, run_id, args.timeout, line=line,
                                       collector_seen=collector_seen, lags=lambda: group_lags(settings))
    except psycopg.Error as exc:  # whatever the database does now, the exit status stays CMD's
        note = f"the report could not be read: {first_line(exc)}"
    except KeyboardInterrupt:
        note = "stopped waiting for the report (interrupted)"
    finally:
        line.done()
    gaps = run_gaps(settings.database_url, run_id) if report is not None else []  # collector down meanwhile
    if args.json:
        doc = {"run_id": run_id, "pipeline": pipeline, "exit_status": status, "dashboard": link,
               "complete": not note, "note": note or None, "report": as_json(report) if report else None,
               "collector_gaps": gaps}
        text = json.dumps(doc, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    elif report is not None:
        sys.stdout.write(render(report))
        sys.stdout.write(f"\ndashboard: {link}\n")
    if note:
        print(f"execsight run: {note}", file=sys.stderr)
    for gap in gaps:  # a stop someone asked for is information, a crash or reboot a warning
        what = "note" if gap.startswith(collector_gaps.STOPPED_LINE) else "warning"
        print(f"execsight run: {what}: {gap}", file=sys.stderr)
    if not args.json and report is None:
        print(f"execsight run: dashboard {link}", file=sys.stderr)
    return status
