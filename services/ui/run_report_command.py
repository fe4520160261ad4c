"""`execsight report RUN_ID`: the run's shareable report, one self-contained HTML file. Reads only.

    execsight report RUN_ID -o run.html     # summary, breakdown, definitions, timeline, tools, findings, config
    execsight report RUN_ID --json          # the same data as one JSON object on stdout (or -o FILE)

Reads through the dashboard's read-only DSN (EXECSIGHT_UI_DATABASE_URL): a report never writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from execsight.lifecycle import settings_or_exit
from execsight.ui import db
from execsight.ui.run_report import render_html
from execsight.ui.run_report_data import as_json, load_report

log = logging.getLogger("execsight.report")


def default_path(run_id: str) -> Path:
    return Path(f"execsight-report-{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}.html")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", metavar="RUN_ID", help="the run (as on the Runs page)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write, - for stdout (default: execsight-report-RUN_ID.html; --json: stdout)")
    parser.add_argument("--json", action="store_true", help="the report's data as JSON instead of HTML")
    args = parser.parse_args(argv)
    settings = settings_or_exit("execsight report")
    t0 = time.perf_counter()
    try:
        with db.connect(settings.ui_database_url) as conn:
            data = load_report(conn, args.run_id)
    except db.DatabaseUnavailable as exc:
        print(f"execsight report: {exc}", file=sys.stderr)
        return 1
    if data is None:
        print(f"execsight report: run {args.run_id!r} is not in the database", file=sys.stderr)
        return 1
    text = json.dumps(as_json(data), indent=2) + "\n" if args.json else render_html(data)
    target = args.output or ("-" if args.json else str(default_path(args.run_id)))
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")
        print(f"wrote {target} ({len(text.encode()) / 1024:.0f} KiB, {time.perf_counter() - t0:.2f} s)")
    return 0
