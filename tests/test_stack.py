"""The local stack (deploy/local) for real: its own Kafka and PostgreSQL on free ports in a temp state dir.

Checks idempotency (a second up changes nothing), supervision (SIGKILLed Kafka and SIGKILLed services
come back by themselves and `status` counts the restart; a crash loop shows with its exit and last
line, and `up` fails on it), durability (topics and committed offsets survive), private state, and
`down`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from execsight import kafka_admin
from execsight.deploy.local import pg_cluster, services
from execsight.deploy.local.stack import ComponentStatus, LocalStack, StackError
from execsight.settings import load_settings

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK"),
    pytest.mark.skipif(not pg_cluster.PG_BIN.is_dir(), reason="needs the postgresql-15 package"),
]


def _free_port(pair: bool = False) -> int:
    """A free TCP port on loopback (and the next one too when pair is set: Kafka's controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port > 65000:
            continue
        if not pair:
            return port
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def _fake_services(root: Path) -> None:
    """A repository with two services that only sleep and a one-line dashboard. sweep exits 3 at once
    while a file `crash-sweep` is in the state dir (a crash loop on demand)."""
    (root / "services").mkdir(parents=True)
    for name in ("tune", "sweep"):
        pkg = root / "services" / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "main.py").write_text(textwrap.dedent(f"""
            import os, pathlib, sys, time

            def main(argv: list[str]) -> int:
                if pathlib.Path(os.environ["EXECSIGHT_STATE_DIR"], "crash-{name}").exists():
                    print("{name}: cannot start, crash-{name} is there", file=sys.stderr, flush=True)
                    return 3
                while True:
                    time.sleep(1)
        """))
    (root / "services" / "ui").mkdir()
    (root / "services" / "ui" / "app.py").write_text("import streamlit as st\n\nst.write('execsight')\n")
    # As in the repository, execsight/<name> is services/<name>; this execsight comes first on the path
    # (the stack starts services in the repository root) and finds everything else in the real one.
    (root / "execsight").mkdir()
    (root / "execsight" / "__init__.py").write_text(f"__path__.append({str(Path(kafka_admin.__file__).parent)!r})\n")
    for name in ("tune", "sweep", "ui"):
        (root / "execsight" / name).symlink_to(f"../services/{name}", target_is_directory=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    base = tmp_path_factory.mktemp("stack")
    # The postgres OS user must reach the state dir; pytest's temp root is private to root.
    state = Path(f"/tmp/execsight-stacktest-{uuid.uuid4().hex[:8]}") if os.geteuid() == 0 else base / "state"
    repo = base / "repo"
    _fake_services(repo)
    kport, pport = _free_port(pair=True), _free_port()
    settings = load_settings({
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kport}",
        "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:execsight@127.0.0.1:{pport}/execsight",
        "EXECSIGHT_UI_DATABASE_URL": f"postgresql://execsight_ui:execsight_ui@127.0.0.1:{pport}/execsight",
        "EXECSIGHT_STATE_DIR": str(state),
        "EXECSIGHT_UI_PORT": str(_free_port()),
        "EXECSIGHT_LOG_FORMAT": "text",
    })
    st = LocalStack(settings, repo_root=repo)
    st.start_timeout_s = 30.0
    try:
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)


def _states(st: LocalStack) -> dict[str, str]:
    return {c.name: c.state for c in st.status()}


def _component(st: LocalStack, name: str) -> ComponentStatus:
    return next(c for c in st.status(with_lag=False) if c.name == name)


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until check() held; fails the test after timeout_s."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, f"{what}: not within {timeout_s} s"
        time.sleep(0.25)
    return time.monotonic() - start


def test_up_is_idempotent_and_healthy(stack: LocalStack) -> None:
    first = stack.up(prepare_host=False)
    assert first.ok, first.components
    assert any(c.startswith("kafka: started") for c in first.changes)
    assert any(c.startswith("postgresql: started") for c in first.changes)
    assert set(stack.topic_names()) <= kafka_admin.existing_topics(stack.kafka_ep.address)
    states = _states(stack)
    assert states["kafka"] == "up" and states["postgresql"] == "up" and states["tune"] == "up"
    assert states["sweep"] == "up"
    assert states["ui"] == "up", "the dashboard answers /_stcore/health"
    assert first.dashboard == f"http://127.0.0.1:{stack.settings.ui_port}/"
    assert states["correlator"] == "absent"
    for name in ("kafka", "tune", "sweep", "ui"):
        assert stack.supervisor_pid(name) is not None, f"{name} runs without a supervisor"
        assert _component(stack, name).restarts == 0

    second = stack.up(prepare_host=False)
    assert second.changes == []
    assert second.ok


def test_state_is_private(stack: LocalStack) -> None:
    """Raw events live in the state dir: nobody but its owner (and PostgreSQL's search ACL) gets in."""
    # with an ACL (u:postgres:x on the dirs on its way), the group bits show the ACL mask: search only
    for d in (stack.state, stack.settings.log_dir):
        assert stat.S_IMODE(d.stat().st_mode) & 0o067 == 0, d
    for d in (stack.run_dir, stack.settings.spool_dir, stack.kafka_paths.root):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in [*stack.settings.log_dir.glob("*.log"), *stack.kafka_paths.data.rglob("*")]:
        if f.is_file() and f.owner() != pg_cluster.SUPERUSER:
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f"{f} is readable by others"


@pytest.mark.parametrize("name", ["tune", "sweep", "ui"])
def test_killed_service_comes_back_by_itself(stack: LocalStack, name: str) -> None:
    before = stack.service_pid(name)
    restarts = _component(stack, name).restarts
    assert before is not None
    assert stack.kill(name)
    took = _until(lambda: stack.service_ready(name), 30, f"{name} back after kill -9")
    after = _component(stack, name)
    assert after.state == "up"
    assert stack.service_pid(name) != before
    assert after.restarts == restarts + 1
    assert after.last_exit.startswith("killed by SIGKILL"), after.last_exit
    print(f"{name}: healthy again {took:.1f} s after kill -9")


def test_crash_loop_shows_in_status_and_fails_up(stack: LocalStack) -> None:
    flag = stack.state / "crash-sweep"
    flag.touch()
    try:
        assert stack.kill("sweep")
        _until(lambda: (_component(stack, "sweep").restarts or 0) >= 4, 30, "sweep crash-looping")
        sweep = _component(stack, "sweep")
        assert sweep.state in {"restarting", "crashloop"}
        assert not sweep.healthy
        assert "exit 3" in sweep.last_exit and "crash-sweep is there" in sweep.last_exit, sweep.last_exit
        # backoff: the supervisor waits 1, 2, 4 ... seconds between starts
        delays = [json.loads(line)["retry_in_s"] for line in stack.log_file("sweep").read_text().splitlines()
                  if line.startswith("{") and '"retry_in_s"' in line]
        assert delays[-3:] == sorted(delays[-3:]) and delays[-1] >= 4.0, delays
        stack.start_timeout_s = 8.0
        with pytest.raises(StackError, match=r"sweep: not healthy .*exit 3"):
            stack.up(prepare_host=False)
    finally:
        stack.start_timeout_s = 30.0
        flag.unlink()
    # it comes back by itself after the next backoff, without `up`
    _until(lambda: stack.service_ready("sweep"), 60, "sweep back after the crash loop")


def test_port_taken_fails_up_naming_the_setting(stack: LocalStack) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        other = LocalStack(load_settings({**_env(stack), "EXECSIGHT_UI_PORT": str(port),
                                          "EXECSIGHT_STATE_DIR": str(stack.state / "other")}),
                           repo_root=stack.repo_root)
        with pytest.raises(StackError, match=f"port {port} \\(EXECSIGHT_UI_PORT\\) is already in use"):
            other._check_ports([services.spec("ui", other.settings, other.repo_root)])


def _env(st: LocalStack) -> dict[str, str]:
    s = st.settings
    return {"KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap, "EXECSIGHT_DATABASE_URL": s.database_url,
            "EXECSIGHT_UI_DATABASE_URL": s.ui_database_url, "EXECSIGHT_STATE_DIR": str(s.state_dir),
            "EXECSIGHT_UI_PORT": str(s.ui_port), "EXECSIGHT_LOG_FORMAT": "text"}


def test_read_only_role(stack: LocalStack) -> None:
    import psycopg

    with psycopg.connect(stack.settings.ui_database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE ui_must_not_write (a int)")


def test_kafka_restart_keeps_topics_and_offsets(stack: LocalStack) -> None:
    bootstrap = stack.kafka_ep.address
    topic = stack.settings.topic("execsight.deadletter")
    group = f"stacktest-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"m{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    while seen < 4:
        msg = consumer.poll(10)
        assert msg is not None, "no message within 10 s"
        if msg.error() is None:
            seen += 1
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    consumer.close()
    assert committed == 4

    restarts = _component(stack, "kafka").restarts
    assert stack.kill("kafka")
    took = _until(lambda: _component(stack, "kafka").state == "up", 120, "kafka back after kill -9")
    kafka = _component(stack, "kafka")
    assert kafka.restarts == restarts + 1 and kafka.last_exit.startswith("killed by SIGKILL")
    print(f"kafka: answering again {took:.1f} s after kill -9")
    report = stack.up(prepare_host=False)
    assert not [c for c in report.changes if c.startswith(("kafka: started", "topic created"))], \
        "the supervisor restarted kafka, and topics survive"

    lags = {g.group: g for g in kafka_admin.consumer_group_lag(bootstrap)}
    assert lags[group].lag == 6
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    assert consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 4
    consumer.close()


def test_down_stops_everything(stack: LocalStack) -> None:
    stopped = stack.down()
    assert {"kafka", "postgresql", "tune", "sweep", "ui"} <= set(stopped)
    states = _states(stack)
    assert states["kafka"] == "down" and states["postgresql"] == "down" and states["tune"] == "down"
    for name in ("kafka", "tune", "sweep", "ui"):
        assert stack.supervisor_pid(name) is None and stack.service_pid(name) is None, name
    assert stack.down() == []
