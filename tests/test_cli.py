"""The `execsight` command line: lazy service dispatch, clear errors, status/down on an empty state dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from execsight import cli


def _fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_dispatch_passes_raw_argv_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _fake_module(tmp_path, monkeypatch, "fake_tune_main", """
        SEEN = []
        def main(argv):
            SEEN.append(list(argv))
            return 7
    """)
    monkeypatch.setitem(cli.DISPATCH, "tune", (mod, "main", "fake"))
    assert cli.main(["tune", "--since", "1h", "-v"]) == 7
    assert sys.modules[mod].SEEN == [["--since", "1h", "-v"]]


def test_missing_service_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.DISPATCH, "demo", ("deploy.no_such_demo.main", "main", "x"))
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "deploy/no_such_demo/main.py" in err and "Traceback" not in err


def test_missing_dependency_inside_a_service_is_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _fake_module(tmp_path, monkeypatch, "fake_broken_main", """
        import no_such_third_party_package_xyz
        def main(argv):
            return 0
    """)
    monkeypatch.setitem(cli.DISPATCH, "sweep", (mod, "main", "fake"))
    with pytest.raises(ModuleNotFoundError, match="no_such_third_party_package_xyz"):
        cli.main(["sweep"])


def test_help_lists_every_subcommand() -> None:
    res = subprocess.run([sys.executable, "-m", "execsight.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for name in ("up", "status", "down", "topics", "migrate", "collector", "correlator", "tune", "sweep",
                 "ui", "run", "demo"):
        assert name in res.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_and_down_on_an_empty_state_dir(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "EXECSIGHT_STATE_DIR": str(tmp_path / "state"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:x@127.0.0.1:{port}/execsight",
        "EXECSIGHT_LOG_FORMAT": "text",
    }
    res = subprocess.run([sys.executable, "-m", "execsight.cli", "status", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 1, res.stderr
    states = {c["name"]: c for c in json.loads(res.stdout)}
    assert states["kafka"]["state"] == "down" and not states["kafka"]["healthy"]
    assert states["postgresql"]["state"] == "down"
    assert states["kafka"]["address"] == f"127.0.0.1:{port}"
    res = subprocess.run([sys.executable, "-m", "execsight.cli", "down"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0 and "nothing was running" in res.stdout
