"""The local stack (deploy/local) for real: its own Kafka and PostgreSQL on free ports in a temp state dir.

Checks idempotency (a second up changes nothing), crash recovery (SIGKILLed Kafka and a SIGKILLed
service come back with `up`), durability (topics and committed offsets survive), and `down`.
"""

from __future__ import annotations

import os
import shutil
import socket
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.local import kafka_admin, pg_cluster
from deploy.local.stack import LocalStack
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
    """A repository with one service (tune) that only sleeps and a one-line dashboard."""
    pkg = root / "services" / "tune"
    pkg.mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(textwrap.dedent("""
        import time

        def main(argv: list[str]) -> int:
            while True:
                time.sleep(1)
    """))
    (root / "services" / "ui").mkdir()
    (root / "services" / "ui" / "app.py").write_text("import streamlit as st\n\nst.write('execsight')\n")


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
    try:
        yield st
    finally:
        st.down()
        shutil.rmtree(state, ignore_errors=True)


def _states(st: LocalStack) -> dict[str, str]:
    return {c.name: c.state for c in st.status()}


def test_up_is_idempotent_and_healthy(stack: LocalStack) -> None:
    first = stack.up(prepare_host=False)
    assert first.ok, first.components
    assert any(c.startswith("kafka: started") for c in first.changes)
    assert any(c.startswith("postgresql: started") for c in first.changes)
    assert set(stack.topic_names()) <= kafka_admin.existing_topics(stack.kafka_ep.address)
    states = _states(stack)
    assert states["kafka"] == "up" and states["postgresql"] == "up" and states["tune"] == "up"
    assert states["ui"] == "up", "the dashboard answers /_stcore/health"
    assert first.dashboard == f"http://127.0.0.1:{stack.settings.ui_port}/"
    assert states["correlator"] == "absent"

    second = stack.up(prepare_host=False)
    assert second.changes == []
    assert second.ok


def test_read_only_role(stack: LocalStack) -> None:
    import psycopg

    with psycopg.connect(stack.settings.ui_database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE ui_must_not_write (a int)")


def test_crashed_service_is_restarted(stack: LocalStack) -> None:
    before = stack.service_pid("tune")
    assert before is not None
    assert stack.kill("tune")
    assert _states(stack)["tune"] == "down"
    report = stack.up(prepare_host=False)
    assert [c for c in report.changes if c.startswith("tune: started")]
    after = stack.service_pid("tune")
    assert after is not None and after != before


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

    assert stack.kill("kafka")
    assert _states(stack)["kafka"] == "down"
    report = stack.up(prepare_host=False)
    assert any(c.startswith("kafka: started") for c in report.changes)
    assert not [c for c in report.changes if c.startswith("topic created")], "topics must survive"

    lags = {g.group: g for g in kafka_admin.consumer_group_lag(bootstrap)}
    assert lags[group].lag == 6
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    assert consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 4
    consumer.close()


def test_down_stops_everything(stack: LocalStack) -> None:
    stopped = stack.down()
    assert {"kafka", "postgresql", "tune", "ui"} <= set(stopped)
    states = _states(stack)
    assert states["kafka"] == "down" and states["postgresql"] == "down" and states["tune"] == "down"
    assert stack.down() == []
