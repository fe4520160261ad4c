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
    doc = json.loads(res.stdout)
    states = {c["name"]: c for c in doc["components"]}
    assert doc["collector_gaps"] == []  # the database is not reachable: none shown, the status still answers
    assert states["kafka"]["state"] == "down" and not states["kafka"]["healthy"]
    assert states["postgresql"]["state"] == "down"
    assert states["kafka"]["address"] == f"127.0.0.1:{port}"
    res = subprocess.run([sys.executable, "-m", "execsight.cli", "down"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0 and "nothing was running" in res.stdout


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execsight.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_version_needs_no_valid_settings() -> None:
    from importlib.metadata import version

    res = _cli("--version", env={"EXECSIGHT_UI_PORT": "eighty"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"execsight {version('execsight')}"


def test_every_subcommand_has_a_help_line_and_its_help_runs_nothing(tmp_path: Path) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}  # type: ignore[attr-defined]
    assert set(helps) >= {"up", "status", "down", "topics", "migrate", "ui", *cli.DISPATCH}
    assert all(h and len(h) > 10 for h in helps.values()), helps
    port = _free_port()
    env = {"EXECSIGHT_UI_PORT": str(port), "EXECSIGHT_STATE_DIR": str(tmp_path / "state")}
    for name in helps:
        res = _cli(name, "--help", env=env)
        assert res.returncode == 0, (name, res.stderr[-2000:])
        assert res.stdout.startswith(f"usage: execsight {name}"), (name, res.stdout[:200])
        assert "Traceback" not in res.stderr
    # `ui --help` said what it does and started no dashboard
    assert "no server is started" in _cli("ui", "--help", env=env).stdout
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert not (tmp_path / "state").exists()  # nor did `up --help` or `down --help` touch the state dir


def test_output_piped_to_a_closed_reader_ends_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "fake_chatty_main.py").write_text("def main(argv):\n    for i in range(200000):\n"
                                                  "        print(f'line {i} ' + 'x' * 60)\n    return 0\n")
    code = ("import sys; from execsight import cli; cli.DISPATCH['sweep'] = ('fake_chatty_main', 'main', 'x'); "
            "sys.exit(cli.main(['sweep']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100).startswith(b"line 0 ")  # like `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + 13, err  # as a process killed by SIGPIPE reports it
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


def test_sweep_once_without_a_region_says_no_cloud_scan_ran(tmp_path: Path) -> None:
    env = {"EXECSIGHT_AWS_REGIONS": "", "EXECSIGHT_STATE_DIR": str(tmp_path), "EXECSIGHT_LOG_FORMAT": "text"}
    res = _cli("sweep", "--once", "--dry-run", "--no-history", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["cloud_scan"]["ran"] is False and doc["cloud_scan"]["regions"] == []
    assert "no cloud scan ran" in doc["cloud_scan"]["note"] and doc["findings"] == []
    assert "no cloud scan ran: no AWS region is configured" in res.stderr
    table = _cli("sweep", "--once", "--dry-run", "--no-history", env=env, timeout=120)
    assert table.returncode == 0 and "no cloud scan ran" in table.stderr
