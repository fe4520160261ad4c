"""The `execsight` command: the local stack (up, status, down) and one subcommand per service.

Service subcommands are imported lazily, so that `execsight status` works without bcc or Faust and
a service that is not written yet gives a clear message instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO, cast

from execsight.lifecycle import settings_or_exit
from execsight.settings import Settings

# subcommand -> (module, function, help). Each function takes argv (list[str]) and returns an exit code.
DISPATCH: dict[str, tuple[str, str, str]] = {
    "collector": ("services.collector.main", "main", "run the eBPF collector on this host (root)"),
    "correlator": ("services.correlator.main", "main", "run the Faust correlator worker"),
    "tune": ("services.tune.main", "main", "run the tune worker (findings: how to make runs faster/cheaper)"),
    "sweep": ("services.sweep.main", "main", "run the sweep worker (findings: wasted compute)"),
    "notify": ("services.notify.main", "main", "post findings to webhooks (Slack, JSON), routed by a YAML file"),
    "run": ("services.tune.observe", "main", "run a command under observation: execsight run -- CMD"),
    "demo": ("deploy.demo.main", "main", "run the demo pipeline against the local stack"),
    "report": ("services.ui.run_report_command", "main", "write a run's shareable report (one self-contained HTML)"),
}


def _load(module: str, func: str) -> Callable[[list[str]], int] | None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "this module is not there"; a missing third-party import inside it is a real error.
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise
    fn = getattr(mod, func, None)
    return cast(Callable[[list[str]], int], fn) if callable(fn) else None


def dispatch(name: str, argv: list[str]) -> int:
    module, func, _ = DISPATCH[name]
    fn = _load(module, func)
    if fn is None:
        path = module.replace(".", "/") + ".py"
        print(f"execsight {name}: not available: {path} with `def {func}(argv) -> int` is not in this "
              "installation yet", file=sys.stderr)
        return 2
    return int(fn(argv) or 0)


UI_HELP = """usage: execsight ui [-h] [-- APP_ARGS...]

Run the Streamlit dashboard in the foreground on EXECSIGHT_UI_PORT (reading EXECSIGHT_UI_DATABASE_URL).
Arguments after -- go to the dashboard app. `execsight up` starts it in the background instead.

options:
  -h, --help  show this help message and exit (no server is started)
"""


def run_ui(settings: Settings, argv: list[str]) -> int:
    from deploy.local import services

    if any(a in ("-h", "--help") for a in argv[: argv.index("--") if "--" in argv else len(argv)]):
        sys.stdout.write(UI_HELP)
        return 0
    argv = argv[1:] if argv[:1] == ["--"] else argv
    if not services.UI_APP.is_file():
        print(f"execsight ui: not available: {services.UI_APP} is not in this installation yet", file=sys.stderr)
        return 2
    from deploy.local.endpoints import ui_exposure_problem

    problem = ui_exposure_problem(settings)
    if problem:  # in a container the published port decides: warn, do not refuse
        logging.getLogger("execsight.ui").warning(problem)
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
    from deploy.local.stack import LocalStack, StackError

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
    from deploy.local.stack import LocalStack

    components = LocalStack(settings).status()
    if args.json:
        json.dump([dataclasses.asdict(c) | {"healthy": c.healthy} for c in components], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_components(components, sys.stdout)
    return 0 if all(c.healthy for c in components) else 1


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.local.stack import LocalStack

    stopped = LocalStack(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create the missing topics of schemas/topics.yaml (waits up to --wait seconds for the broker)."""
    from deploy.local import kafka_admin
    from execsight.kafka_io import create_topics
    from schemas.topics import load_topics

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


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.migrate import apply_migrations

    applied = apply_migrations(settings.database_url)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def version() -> str:
    try:
        return importlib.metadata.version("execsight")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight", description="Execution observability for pipelines.")
    p.add_argument("--version", action="version", version=f"execsight {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="install what is missing, start the local stack, wait until healthy")
    up.add_argument("--no-install", action="store_true",
                    help="do not touch the host (apt, kernel header links, mounts)")
    up.add_argument("--no-services", action="store_true", help="start Kafka and PostgreSQL only")
    up.set_defaults(func=cmd_up)
    st = sub.add_parser("status", help="each component: up/down, version, address, consumer lag")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop everything the local stack started").set_defaults(func=cmd_down)
    tp = sub.add_parser("topics", help="create the missing topics of schemas/topics.yaml")
    tp.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    tp.set_defaults(func=cmd_topics)
    sub.add_parser("migrate", help="apply the pending database migrations").set_defaults(func=cmd_migrate)
    for name, (_, _, help_text) in DISPATCH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    sub.add_parser("ui", help="run the Streamlit dashboard in the foreground", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # The reader went away (`execsight status | head`): not an error of ours, and no traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(args_list: list[str]) -> int:
    if not args_list or args_list[0].startswith("-"):
        build_parser().parse_args(args_list)  # --help, --version or a usage error: no settings needed
    settings = settings_or_exit("execsight")
    # Service subcommands take their own arguments, unparsed here.
    if args_list and args_list[0] in DISPATCH:
        return dispatch(args_list[0], args_list[1:])
    if args_list and args_list[0] == "ui":
        return run_ui(settings, args_list[1:])
    args = build_parser().parse_args(args_list)
    func = cast(Callable[[Settings, argparse.Namespace], int], args.func)
    return func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
