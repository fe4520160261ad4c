"""The execsight services as background processes of the local stack.

A service exists when its module does: `services/<name>/main.py` (with `main(argv) -> int`), and
for the dashboard `services/ui/app.py`, run by `streamlit run`.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from execsight.settings import REPO_ROOT, Settings

SERVICE_NAMES: tuple[str, ...] = ("collector", "correlator", "tune", "sweep", "ui")


def service_dir(name: str, root: Path = REPO_ROOT) -> Path:
    """A service's folder: services/<name>/ in the repository, execsight/<name>/ in an installed copy."""
    src = root / "services" / name
    return src if src.is_dir() else root / "execsight" / name


UI_APP = service_dir("ui") / "app.py"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: tuple[str, ...]
    marker: str  # a string in the command line that tells this process from a reused pid
    needs_root: bool = False
    health_url: str | None = None  # None: healthy once it has run SETTLE_S without a restart
    health_text: bytes = b""  # what the health URL's answer must contain
    port_setting: tuple[str, int] | None = None  # (variable, port) this service listens on


def service_exists(name: str, root: Path = REPO_ROOT) -> bool:
    if name == "ui":
        return (service_dir("ui", root) / "app.py").is_file()
    return (service_dir(name, root) / "main.py").is_file()


def ui_command(settings: Settings, extra: list[str] | None = None, root: Path = REPO_ROOT,
               address: str | None = None) -> list[str]:
    """streamlit run of the dashboard on address (default EXECSIGHT_UI_ADDRESS, itself 127.0.0.1)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(service_dir("ui", root) / "app.py"),
        "--server.port", str(settings.ui_port), "--server.address", address or settings.ui_address,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        *(["--", *extra] if extra else []),
    ]


def _local_host(address: str) -> str:
    """Where a client on this host reaches a server listening on address."""
    return "127.0.0.1" if address in {"", "0.0.0.0", "::"} else address


def ui_url(settings: Settings) -> str:
    return f"http://{_local_host(settings.ui_address)}:{settings.ui_port}/"


def metrics_port(name: str, settings: Settings) -> tuple[str, int] | None:
    """The /metrics port setting of a service, when it serves one."""
    if name == "collector" and settings.collector_metrics_port:
        return "EXECSIGHT_COLLECTOR_METRICS_PORT", settings.collector_metrics_port
    if name == "correlator" and settings.correlator_metrics_port:
        return "EXECSIGHT_CORRELATOR_METRICS_PORT", settings.correlator_metrics_port
    return None


def spec(name: str, settings: Settings, root: Path = REPO_ROOT) -> ServiceSpec:
    if name == "ui":
        app = service_dir("ui", root) / "app.py"
        return ServiceSpec(name, tuple(ui_command(settings, root=root)), marker=str(app),
                           health_url=f"{ui_url(settings)}_stcore/health",
                           port_setting=("EXECSIGHT_UI_PORT", settings.ui_port))
    # The stack's supervisor restarts the correlator: no second supervisor inside it.
    extra = ("--no-supervise",) if name == "correlator" else ()
    port = metrics_port(name, settings)
    health = f"http://{_local_host(settings.metrics_address)}:{port[1]}/metrics" if port else None
    # the correlator listens before Faust starts: healthy once its worker runs
    text = b"\nexecsight_correlator_worker_running 1.0" if name == "correlator" else b""
    return ServiceSpec(name, (sys.executable, "-m", "execsight.cli", name, *extra),
                       marker=f"execsight.cli {name}", needs_root=name == "collector", health_url=health,
                       health_text=text, port_setting=port)


def http_ok(url: str, timeout_s: float = 2.0, text: bytes = b"") -> bool:
    """The URL answers 200 (with text in its body, when given)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200) and (not text or text in resp.read())
    except (urllib.error.URLError, OSError):
        return False


def can_run(s: ServiceSpec) -> str | None:
    """Why this service cannot run here, or None."""
    if s.needs_root and os.geteuid() != 0:
        return "needs root (eBPF)"
    return None
