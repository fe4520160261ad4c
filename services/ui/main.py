"""`execsight ui`: serves the dashboard with Streamlit on settings.ui_port."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from execsight.logs import setup_logging
from execsight.settings import load_settings

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(port: int, address: str, headless: bool = True) -> list[str]:
    """The command line that serves the app (pure, for tests)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", address,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--theme.base", "light",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight ui", description="Serve the execsight dashboard.")
    parser.add_argument("--address", default=None,
                        help="address to listen on (default: EXECSIGHT_UI_ADDRESS, itself 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: EXECSIGHT_UI_PORT)")
    args = parser.parse_args(argv)
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    port = args.port if args.port is not None else settings.ui_port
    address = args.address or settings.ui_address
    logging.getLogger("execsight.ui.main").info("serving the dashboard on %s:%d", address, port)
    cmd = streamlit_argv(port, address)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
