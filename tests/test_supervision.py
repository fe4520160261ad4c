"""Supervision and exposure of the local stack without servers: the supervisor restarts any exit with
backoff and records it; metrics and the dashboard listen on loopback unless told otherwise; the stack
refuses built-in passwords beyond loopback; ports are checked before anything starts."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from execsight.deploy.local import procs, services, supervisor
from execsight.deploy.local.endpoints import exposure_problems, is_loopback, port_free
from execsight.deploy.local.stack import LocalStack, StackError
from execsight.lifecycle import describe_exit, failures_in_a_row, restart_delay_s
from execsight.settings import SettingsError, load_settings
from tests.test_compose import config  # noqa: F401  (the fixture)


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)


def test_backoff_and_exit_descriptions() -> None:
    assert [restart_delay_s(n) for n in range(0, 8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert failures_in_a_row(4, ran_s=2.0) == 5
    assert failures_in_a_row(4, ran_s=300.0) == 1, "a stable run starts the backoff again"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(70) == "exit 70"


def test_last_log_line_of_json_and_text_logs(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("plain start\n"
                   + json.dumps({"logger": "execsight.correlator", "msg": "failed",
                                 "exc": "Traceback...\nOSError: [Errno 98] Address already in use"}) + "\n"
                   + json.dumps({"logger": "execsight.deploy.local.supervisor", "msg": "exited; starting it again"}) + "\n\n")
    assert supervisor.last_log_line(log) == "failed: OSError: [Errno 98] Address already in use"
    log.write_text("Traceback\nValueError: boom\n")
    assert supervisor.last_log_line(log) == "ValueError: boom"


def _supervise(tmp_path: Path, code: str) -> tuple[Path, Path, int]:
    run, log = tmp_path / "run", tmp_path / "log" / "svc.log"
    cmd = supervisor.command("svc", [sys.executable, "-c", code], run, log, stop_grace_s=5)
    pid = procs.start(cmd, pid_file=supervisor.supervisor_pid_file(run, "svc"), log_file=log)
    return run, log, pid


def test_supervisor_restarts_a_killed_child_and_stops_cleanly(tmp_path: Path) -> None:
    run, log, sup_pid = _supervise(tmp_path, "import time; print('svc up', flush=True); time.sleep(600)")
    child_file = supervisor.child_pid_file(run, "svc")
    try:
        _until(lambda: procs.running_pid(child_file) is not None and "svc up" in log.read_text(), 20, "first child")
        first = procs.running_pid(child_file)
        assert procs.kill(child_file)
        _until(lambda: (procs.running_pid(child_file) or first) != first, 20, "a new child after kill -9")
        st = supervisor.read_state(run, "svc")
        assert st is not None and st.phase == "running" and st.restarts == 1
        assert st.last_exit == "killed by SIGKILL" and st.last_log_line == "svc up"
        assert procs.pid_alive(sup_pid, supervisor.marker("svc"))
    finally:
        second = procs.running_pid(child_file)
        assert procs.stop(supervisor.supervisor_pid_file(run, "svc"), supervisor.marker("svc"), timeout_s=15)
    assert second is not None and not procs.pid_alive(second), "stopping the supervisor stops its child"
    st = supervisor.read_state(run, "svc")
    assert st is not None and st.phase == "stopped"
    assert "started" in log.read_text() and "exited; starting it again" in log.read_text()


def test_supervisor_backs_off_a_crash_loop(tmp_path: Path) -> None:
    run, log, _ = _supervise(tmp_path, "import sys; print('bad config', file=sys.stderr); sys.exit(3)")
    try:
        def delays() -> list[float]:
            return [json.loads(x)["retry_in_s"] for x in log.read_text().splitlines() if '"retry_in_s"' in x]

        _until(lambda: len(delays()) >= 3, 20, "three exits")
        st = supervisor.read_state(run, "svc")
        assert st is not None and st.crash_loop and st.last_exit == "exit 3" and st.last_log_line == "bad config"
        assert st.restarts >= 3
        assert delays()[:3] == [1.0, 2.0, 4.0]
    finally:
        procs.stop(supervisor.supervisor_pid_file(run, "svc"), supervisor.marker("svc"), timeout_s=15)


def _settings(tmp_path: Path, **env: str) -> Any:
    return load_settings({"EXECSIGHT_STATE_DIR": str(tmp_path / "state"), **env})


def test_loopback_by_default(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert (s.ui_address, s.metrics_address) == ("127.0.0.1", "127.0.0.1")
    ui = services.ui_command(s)
    assert ui[ui.index("--server.address") + 1] == "127.0.0.1", "`execsight ui` listens on loopback"
    assert services.spec("ui", s).command == tuple(ui)
    assert (s.collector_metrics_port, s.correlator_metrics_port) == (0, 9464), "one port per service"
    assert services.spec("correlator", s).health_url == "http://127.0.0.1:9464/metrics"
    assert services.spec("collector", s).health_url is None, "off by default: healthy once it runs 5 s"
    on = _settings(tmp_path, EXECSIGHT_COLLECTOR_METRICS_PORT="9465")
    assert services.spec("collector", on).health_url == "http://127.0.0.1:9465/metrics"
    wide = _settings(tmp_path, EXECSIGHT_UI_ADDRESS="0.0.0.0")
    assert services.ui_url(wide) == f"http://127.0.0.1:{wide.ui_port}/"


def _listeners(port: int) -> set[str]:
    """Local addresses of the sockets listening on port (from /proc/net/tcp, IPv4)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, _, hexport = local.partition(":")
        if state == "0A" and int(hexport, 16) == port:
            out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


def test_correlator_metrics_listen_on_loopback() -> None:
    from execsight.correlator.metrics import CorrelatorMetrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    CorrelatorMetrics().serve(port)
    assert _listeners(port) == {"127.0.0.1"}


def test_default_passwords_refused_beyond_loopback(tmp_path: Path) -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.5", "kafka.example.org")))
    assert exposure_problems(_settings(tmp_path)) == [], "a developer's machine: defaults are fine on loopback"
    wide = _settings(tmp_path, EXECSIGHT_UI_ADDRESS="0.0.0.0")
    [problem] = exposure_problems(wide)
    assert "EXECSIGHT_UI_ADDRESS (0.0.0.0)" in problem
    assert "EXECSIGHT_DATABASE_URL and EXECSIGHT_UI_DATABASE_URL keep the built-in password" in problem
    with pytest.raises(StackError, match="refusing to start"):
        LocalStack(wide).up(prepare_host=False)
    assert not wide.state_dir.exists(), "refused before anything was created"
    strong = _settings(tmp_path, EXECSIGHT_METRICS_ADDRESS="0.0.0.0",
                       EXECSIGHT_DATABASE_URL="postgresql://execsight:Xk3-long@127.0.0.1:5432/execsight",
                       EXECSIGHT_UI_DATABASE_URL="postgresql://execsight_ui:Yq9-long@127.0.0.1:5432/execsight")
    assert exposure_problems(strong) == []
    half = _settings(tmp_path, KAFKA_BOOTSTRAP_SERVERS="10.1.2.3:9092",
                     EXECSIGHT_DATABASE_URL="postgresql://execsight:Xk3-long@127.0.0.1:5432/execsight")
    assert "EXECSIGHT_UI_DATABASE_URL keep" in exposure_problems(half)[0]


def test_port_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)


def test_compose_restarts_every_long_lived_service_and_keeps_the_ui_local(config: dict[str, Any]) -> None:  # noqa: F811
    svcs = config["services"]
    for name in ("kafka", "db", "collector", "correlator", "tune", "sweep", "ui"):
        assert svcs[name].get("restart") in {"always", "unless-stopped"}, f"{name} is not restarted after a crash"
    for name in ("topics", "migrate"):
        assert svcs[name].get("restart") == "no", "one-shot steps run once"
    ui = svcs["ui"]
    assert ui["environment"]["EXECSIGHT_UI_ADDRESS"] == "0.0.0.0", "reachable through the published port"
    assert [p.get("host_ip") for p in ui["ports"]] == ["127.0.0.1"], "published on the host's loopback only"


def test_exposed_dashboard_needs_a_login(tmp_path: Path) -> None:
    from execsight.deploy.local.endpoints import ui_exposure_problem

    strong = {"EXECSIGHT_DATABASE_URL": "postgresql://execsight:Xk3-long@127.0.0.1:5432/execsight",
              "EXECSIGHT_UI_DATABASE_URL": "postgresql://execsight_ui:Yq9-long@127.0.0.1:5432/execsight",
              "EXECSIGHT_UI_ADDRESS": "0.0.0.0"}
    open_ui = _settings(tmp_path, **strong)
    assert exposure_problems(open_ui) == [], "real passwords"
    assert "without a login" in (ui_exposure_problem(open_ui) or "")
    with pytest.raises(StackError, match="exposes the dashboard without a login"):
        LocalStack(open_ui).up(prepare_host=False)
    guarded = _settings(tmp_path, **strong, EXECSIGHT_UI_AUTH="password", EXECSIGHT_UI_PASSWORD="s3cret-pw")
    assert ui_exposure_problem(guarded) is None
    assert ui_exposure_problem(_settings(tmp_path)) is None, "loopback needs no login"
    with pytest.raises(SettingsError, match="EXECSIGHT_UI_PASSWORD is empty"):
        _settings(tmp_path, EXECSIGHT_UI_AUTH="password")
    with pytest.raises(SettingsError, match="expected none, password or oidc"):
        _settings(tmp_path, EXECSIGHT_UI_AUTH="basic")


def test_a_killed_supervisor_leaves_no_orphan(tmp_path: Path) -> None:
    """The child dies with its supervisor (then `execsight up` starts both again)."""
    run, _, sup_pid = _supervise(tmp_path, "import time; time.sleep(600)")
    child_file = supervisor.child_pid_file(run, "svc")
    _until(lambda: procs.running_pid(child_file) is not None, 20, "child")
    child = procs.running_pid(child_file)
    assert child is not None
    assert procs.kill(supervisor.supervisor_pid_file(run, "svc"), supervisor.marker("svc"))
    _until(lambda: not procs.pid_alive(child), 10, "the child to end with its supervisor")
    assert not procs.pid_alive(sup_pid)
