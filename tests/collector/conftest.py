from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from .feed import CollectorProcess, JsonlFeed


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")


@pytest.fixture(scope="module")
def ebpf_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonlFeed]:
    """One eBPF collector writing JSON lines for a module's tests."""
    _require_root()
    d = tmp_path_factory.mktemp("collector")
    out = d / "events.jsonl"
    c = CollectorProcess(
        ["--output", "jsonl", str(out), "--no-imds", "--sample-interval", "1", "--host-interval", "2",
         "--mode", "ebpf"],
        env={"EXECSIGHT_STATE_DIR": str(d / "state")}, log_path=d / "collector.log",
    )
    try:
        c.wait_started()
        yield JsonlFeed(out)
    finally:
        c.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Local stand-in until tests/conftest.py provides it: the dev broker."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture()
def topic_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A unique topic prefix with the raw topics created (6 partitions, as in topics.yaml)."""
    import uuid

    from confluent_kafka.admin import AdminClient, NewTopic

    from schemas.topics import RAW_HOST, RAW_PROCESS, load_topics

    prefix = f"test-collector-{uuid.uuid4().hex[:8]}."
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = load_topics()
    new = [NewTopic(prefix + t, num_partitions=topics[t].partitions, replication_factor=1)
           for t in (RAW_PROCESS, RAW_HOST)]
    for f in admin.create_topics(new).values():
        f.result(30)
    yield prefix
    for f in admin.delete_topics([prefix + t for t in (RAW_PROCESS, RAW_HOST)]).values():
        with contextlib.suppress(Exception):
            f.result(30)
