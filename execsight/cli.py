"""The `execsight` command: the local stack (up, status, down) and one subcommand per service.

Service subcommands are imported lazily, so that `execsight status` works without bcc or Faust and
a service that is not written yet gives a clear message instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import cast

from execsight.lifecycle import settings_or_exit
from execsight.settings import Settings

log = logging.getLogger(__name__)

# subcommand -> (module, function, help). Each function takes argv (list[str]) and returns an exit code.
DISPATCH: dict[str, tuple[str, str, str]] = {
    "collector": ("execsight.collector.main", "main", "run the eBPF collector on this host (root)"),
    "correlator": ("execsight.correlator.main", "main", "run the Faust correlator worker"),
    "tune": ("execsight.tune.main", "main", "run the tune worker (findings: how to make runs faster/cheaper)"),
    "sweep": ("execsight.sweep.main", "main", "run the sweep worker (findings: wasted compute)"),
    "notify": ("execsight.notify.main", "main", "post findings to webhooks (Slack, JSON), routed by a YAML file"),
    "run": ("execsight.tune.observe", "main", "run a command under observation: execsight run -- CMD"),
    "demo": ("execsight.deploy.demo.main", "main", "run the demo pipeline against the local stack"),
    "report": ("execsight.ui.run_report_command", "main", "write a run's shareable report (one self-contained HTML)"),
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


# The local stack's commands live with the stack (deploy/local/commands.py): deploy is the layer on
# top (it uses execsight's settings and Kafka helpers), so the CLI names them and never imports them.
STACK_COMMANDS = "execsight.deploy.local.commands"


def stack_command(func: str) -> Callable[[Settings, argparse.Namespace], int]:
    fn = _load(STACK_COMMANDS, func)
    if fn is None:
        raise SystemExit(f"execsight: not available: {STACK_COMMANDS}.{func} is not in this installation")
    return cast(Callable[[Settings, argparse.Namespace], int], fn)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from execsight.db_retry import Backoff, retry
    from execsight.schemas.migrate import apply_migrations

    # a database still starting (compose, Kubernetes) is waited for, not a reason to fail
    applied = retry(lambda: apply_migrations(settings.database_url), "database not reachable yet; retrying",
                    Backoff(2.0, budget_s=args.wait), logger=log)
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
    up.set_defaults(func="cmd_up")
    st = sub.add_parser("status", help="each component: up/down, version, address, consumer lag")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func="cmd_status")
    sub.add_parser("down", help="stop everything the local stack started").set_defaults(func="cmd_down")
    tp = sub.add_parser("topics", help="create the missing topics of schemas/topics.yaml")
    tp.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    tp.set_defaults(func="cmd_topics")
    migrate = sub.add_parser("migrate", help="apply the pending database migrations")
    migrate.add_argument("--wait", type=float, default=60.0, metavar="S",
                         help="wait up to S seconds for the database to accept connections (default 60)")
    migrate.set_defaults(func=cmd_migrate)
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
        return cast(Callable[[Settings, list[str]], int], stack_command("run_ui"))(settings, args_list[1:])
    args = build_parser().parse_args(args_list)
    if isinstance(args.func, str):
        return stack_command(args.func)(settings, args)
    func = cast(Callable[[Settings, argparse.Namespace], int], args.func)
    return func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
