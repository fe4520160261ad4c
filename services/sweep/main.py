"""`execsight sweep`: the long-lived sweep worker, or one scan with --once (findings printed as a table)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from execsight.kafka_io import wait_for_broker
from execsight.lifecycle import settings_or_exit, stop_on_signals
from execsight.sweep.aws_scanner import AwsScanner
from execsight.sweep.readonly import guard_process
from execsight.sweep.report_table import format_table
from execsight.sweep.worker import run_forever, run_once

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight sweep", description=__doc__)
    parser.add_argument("--once", action="store_true", help="scan once, store/publish, print the findings and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --once: print only; write nothing to the database or the findings topic")
    parser.add_argument("--no-history", action="store_true",
                        help="with --once: do not read host heartbeats from Kafka (cloud inventory only)")
    parser.add_argument("--region", action="append", default=None,
                        help="AWS region to scan (repeatable; default EXECSIGHT_AWS_REGIONS)")
    parser.add_argument("--retry-mode", choices=("adaptive", "standard"), default="adaptive")
    parser.add_argument("--max-attempts", type=int, default=10, help="botocore attempts per call (throttling)")
    parser.add_argument("--json", action="store_true", help="with --once: print the findings as one JSON object")
    args = parser.parse_args(argv)
    guard_process()  # every AWS client this process makes, boto3.resource ones too, can only read
    settings = settings_or_exit("execsight sweep")
    regions = tuple(args.region) if args.region else settings.aws_regions
    scanner = AwsScanner(max_attempts=args.max_attempts, retry_mode=args.retry_mode) if regions else None
    if args.once:
        history = not args.no_history
        if history or not args.dry_run:
            wait_for_broker(settings, timeout_s=60)
        result = run_once(settings, scanner, write=not args.dry_run, history=history, regions=regions)
        no_scan = None if regions else ("no cloud scan ran: no AWS region is configured "
                                        "(set EXECSIGHT_AWS_REGIONS or pass --region)")
        if args.json:
            doc = {"cloud_scan": {"regions": list(regions), "ran": bool(regions), "note": no_scan,
                                  "failed_regions": dict(result.failed_regions)},
                   "findings": result.records}
            print(json.dumps(doc, indent=2, default=str))
        else:
            print(format_table(result.records))
        if no_scan:
            print(no_scan + ("; host findings only" if history else ""), file=sys.stderr)
        for region, error in result.failed_regions.items():
            print(f"region {region} not scanned: {error}", file=sys.stderr)
        return 1 if result.failed_regions else 0
    stop = stop_on_signals()
    wait_for_broker(settings)
    return run_forever(settings, scanner, stop, regions=regions)
