"""The local stack's commands (`execsight up/status/down/topics/ui`): the CLI names them in its table.

They live here, with the stack they drive, so that execsight's own modules never import deploy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from execsight import kafka_admin
from execsight.deploy.local import services
from execsight.deploy.local.endpoints import ui_exposure_problem
from execsight.deploy.local.stack import LocalStack, StackError
from execsight.kafka_io import create_topics
from execsight.schemas import collector_gaps
from execsight.schemas.topics import load_topics
from execsight.settings import Settings

UI_HELP = """usage: execsight ui [-h] [-- APP_ARGS...]

Run the Streamlit dashboard in the foreground on EXECSIGHT_UI_PORT (reading EXECSIGHT_UI_DATABASE_URL).
Arguments after -- go to the dashboard app. `execsight up` starts it in the background instead.

options:
  -h, --help  show this help message and exit (no server is started)
"""


def run_ui(settings: Settings, argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv[: argv.index("--") if "--" in argv else len(argv)]):
        sys.stdout.write(UI_HELP)
        return 0
    argv = argv[1:] if argv[:1] == ["--"] else argv
    if not services.UI_APP.is_file():
        print(f"execsight ui: not available: {services.UI_APP} is not in this installation yet", file=sys.stderr)
        return 2
    problem = ui_exposure_problem(settings)
    if problem:  # in a container the published port decides: warn, do not refuse
        logging.getLogger(__name__).warning(problem)
    cmd = services.ui_command(settings, argv)
    os.execv(cmd[0], cmd)


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _supervision_cells(d: dict[str, object]) -> tuple[str, str]:
    """RESTARTS and LAST EXIT: what the local stack's supervisor recorded (a crash loop shows here)."""
    restarts = int(str(d.get("restarts") or 0))
    return (str(restarts) if restarts or d.get("last_exit") else "", str(d.get("last_exit") or ""))


def _print_components(components: Sequence[object], out: TextIO) -> None:
    rows = [("COMPONENT", "STATE", "VERSION", "ADDRESS", "RESTARTS", "DETAIL", "LAST EXIT")]
    for c in components:
        d = dataclasses.asdict(c)  # type: ignore[call-overload]
        restarts, last_exit = _supervision_cells(d)
        rows.append((d["name"], d["state"], d["version"], d["address"], restarts, d["detail"], last_exit))
    _table(rows, out)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    stack = LocalStack(settings)
    try:
        report = stack.up(prepare_host=not args.no_install, start_services=not args.no_services)
    except StackError as exc:
        print(f"execsight up: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout
    if report.changes:
        out.write("changes:\n" + "".join(f"  {c}\n" for c in report.changes))
    else:
        out.write("nothing to change: everything was up\n")
    _print_components(report.components, out)
    out.write(f"state dir: {settings.state_dir}\n")
    if report.dashboard:
        out.write(f"dashboard: {report.dashboard}\n")
    out.write("topics:\n" + "".join(f"  {t}\n" for t in report.topics))
    return 0 if report.ok else 1


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    components = LocalStack(settings).status()
    gaps = collector_gaps.status_gaps(settings.database_url)  # collector restarts of the last 24 h
    if args.json:
        json.dump({"components": [dataclasses.asdict(c) | {"healthy": c.healthy} for c in components],
                   "collector_gaps": [collector_gaps.as_json(g) for g in gaps]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_components(components, sys.stdout)
        if gaps:
            # a stop someone asked for is information; a crash or reboot a warning (processes went unseen)
            sys.stdout.write("collector gaps (last 24 h):\n" + "".join(
                f"  {collector_gaps.level(g)}: {collector_gaps.describe(g)}\n" for g in gaps))
    return 0 if all(c.healthy for c in components) else 1


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = LocalStack(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create the missing topics of schemas/topics.yaml (waits up to --wait seconds for the broker)."""
    deadline = time.monotonic() + args.wait
    while not kafka_admin.metadata_ok(settings.kafka_bootstrap):
        if time.monotonic() >= deadline:
            print(f"execsight topics: no broker answers at {settings.kafka_bootstrap}", file=sys.stderr)
            return 1
        time.sleep(1)
    created = set(create_topics(settings.kafka_bootstrap, settings.topic_prefix))
    for name in load_topics():
        topic = settings.topic(name)
        print(f"{topic}\t{'created' if topic in created else 'exists'}")
    return 0
