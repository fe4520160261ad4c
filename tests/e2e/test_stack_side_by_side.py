"""The real services under the local stack's supervisor, in a second stack next to any other one.

This stack gets its own Kafka, PostgreSQL, state dir and ports (dashboard, and one /metrics port per
service), so it runs beside the stack of `make up` on the same host (before, both correlators took
port 9464 and the second died 10 s after `up` said rc=0). Each service is SIGKILLed and must come
back by itself with the restart counted in `status`; a port already taken fails `up` at once,
naming the setting.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from execsight.deploy.local import pg_cluster, services
from execsight.deploy.local.stack import LocalStack, StackError
from execsight.settings import REPO_ROOT, load_settings
from tests.test_stack import _free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK"),
    pytest.mark.skipif(not pg_cluster.PG_BIN.is_dir(), reason="needs the postgresql-15 package"),
]


def _env(state: Path, kport: int, pport: int) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kport}",
        "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:execsight@127.0.0.1:{pport}/execsight",
        "EXECSIGHT_UI_DATABASE_URL": f"postgresql://execsight_ui:execsight_ui@127.0.0.1:{pport}/execsight",
        "EXECSIGHT_STATE_DIR": str(state),
        "EXECSIGHT_UI_PORT": str(_free_port()),
        "EXECSIGHT_COLLECTOR_METRICS_PORT": str(_free_port()),
        "EXECSIGHT_CORRELATOR_METRICS_PORT": str(_free_port()),
        "EXECSIGHT_LOG_FORMAT": "json",
    }


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # The postgres OS user must reach the state dir; pytest's temp root is private to root.
    state = Path(f"/tmp/execsight-sbs-{uuid.uuid4().hex[:8]}")
    st = LocalStack(load_settings(_env(state, _free_port(pair=True), _free_port())), repo_root=REPO_ROOT)
    st.start_timeout_s = 240.0  # the collector compiles its probes, Faust starts: slow on a loaded host
    try:
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)


def _running(st: LocalStack) -> list[str]:
    return [n for n in services.SERVICE_NAMES if services.can_run(services.spec(n, st.settings)) is None]


def _metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return b"execsight_" in resp.read()
    except OSError:
        return False


def test_real_services_are_supervised_and_stay_up(stack: LocalStack) -> None:
    report = stack.up(prepare_host=False)
    assert report.ok, report.components
    names = _running(stack)
    assert {"correlator", "tune", "sweep", "ui"} <= set(names)
    assert _metrics_answer(stack.settings.correlator_metrics_port)
    if "collector" in names:
        assert _metrics_answer(stack.settings.collector_metrics_port)
    time.sleep(12)  # the old failure: the correlator died ~10 s after `up` returned
    by_name = {c.name: c for c in stack.status(with_lag=False)}
    for name in names:
        assert by_name[name].state == "up" and by_name[name].restarts == 0, by_name[name]


def test_each_killed_service_comes_back(stack: LocalStack) -> None:
    names = _running(stack)
    before = {n: stack.service_pid(n) for n in names}
    for name in names:
        assert stack.kill(name), name
    start = time.monotonic()
    back: dict[str, float] = {}
    while len(back) < len(names) and time.monotonic() - start < 240:
        for name in names:
            if name not in back and stack.service_ready(name):
                back[name] = time.monotonic() - start
        time.sleep(0.5)
    print("healthy again after kill -9 (s): " + ", ".join(f"{n} {t:.1f}" for n, t in sorted(back.items())))
    assert set(back) == set(names), f"not back: {set(names) - set(back)}"
    by_name = {c.name: c for c in stack.status(with_lag=False)}
    for name in names:
        c = by_name[name]
        assert c.state == "up" and c.restarts == 1 and c.last_exit.startswith("killed by SIGKILL"), c
        assert stack.service_pid(name) != before[name]
    assert _metrics_answer(stack.settings.correlator_metrics_port)


def test_a_second_stack_on_a_taken_metrics_port_fails_up_loudly(stack: LocalStack, tmp_path: Path) -> None:
    """Same Kafka and PostgreSQL (used as external servers), its own state; the correlator's port is taken."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        env = {**_env(tmp_path / "state", stack.kafka_ep.port, stack.pg_ep.port),
               "EXECSIGHT_CORRELATOR_METRICS_PORT": str(taken), "EXECSIGHT_TOPIC_PREFIX": "second."}
        other = LocalStack(load_settings(env), repo_root=REPO_ROOT)
        with pytest.raises(StackError, match=f"correlator: port {taken} \\(EXECSIGHT_CORRELATOR_METRICS_PORT\\)"):
            other.up(prepare_host=False)
    assert all(other.supervisor_pid(n) is None for n in services.SERVICE_NAMES), "nothing was started"
    assert os.path.isdir(stack.state)
