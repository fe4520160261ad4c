"""The state changelog's compaction settings reach the broker, on a new changelog and on an old one (#19.6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from execsight.kafka_io import config_differences, ensure_topic
from execsight.schemas.topics import RAW_PROCESS, load_changelog_config, load_topics
from execsight.settings import Settings

from .worker_process import WorkerProcess

# the name Faust gives the table "state" of the app "execsight-correlator" (services/correlator/app.py)
CHANGELOG = "execsight-correlator-state-changelog"


def topic_configs(bootstrap: str, name: str, timeout_s: float = 30.0) -> dict[str, str | None]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            entries = admin.describe_configs([resource])[resource].result(timeout=30)
            return {k: e.value for k, e in entries.items()}
        except KafkaException:  # a topic just created is not known to every part of the broker at once
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_changelog_config_keeps_segments_small_and_compacted() -> None:
    cfg = load_changelog_config()
    assert cfg["cleanup.policy"] == "compact"
    # the active segment is never compacted: it must roll well inside the 10 s recovery budget's worth of writes
    assert int(cfg["segment.ms"]) <= 5 * 60_000
    assert int(cfg["segment.bytes"]) <= 64 << 20
    assert 0 < float(cfg["min.cleanable.dirty.ratio"]) <= 0.5
    assert int(cfg["max.compaction.lag.ms"]) <= 15 * 60_000
    assert int(cfg["delete.retention.ms"]) >= 60_000  # tombstones outlive any recovery that might miss them


def test_config_differences_names_only_what_differs() -> None:
    have: dict[str, str | None] = {"cleanup.policy": "compact", "segment.ms": "604800000", "retention.ms": "5"}
    want = {"cleanup.policy": "compact", "segment.ms": "60000", "segment.bytes": "16777216"}
    assert config_differences(have, want) == {"segment.ms": "60000", "segment.bytes": "16777216"}
    assert config_differences({**have, **want}, want) == {}


@pytest.fixture()
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(settings, tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.mark.kafka
@pytest.mark.db
def test_worker_creates_the_changelog_with_the_configs(settings: Settings, worker: WorkerProcess) -> None:
    name = settings.topic_prefix + CHANGELOG
    worker.start()
    have = topic_configs(settings.kafka_bootstrap, name)
    assert config_differences(have, load_changelog_config()) == {}
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = admin.list_topics(name, timeout=30).topics[name].partitions
    assert len(partitions) == load_topics()[RAW_PROCESS].partitions  # co-partitioned with the raw topics


@pytest.mark.kafka
@pytest.mark.db
def test_worker_alters_a_changelog_made_with_the_old_settings(settings: Settings, worker: WorkerProcess) -> None:
    """An existing deployment: the changelog as Faust made it before (compact only, broker default segments),
    plus a setting an operator chose, which the alter must leave as it is."""
    name = settings.topic_prefix + CHANGELOG
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    old = {"cleanup.policy": "compact", "segment.bytes": str(1 << 30), "max.message.bytes": "2000000"}
    partitions = load_topics()[RAW_PROCESS].partitions
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=old)])[name].result(
        timeout=30)
    before = topic_configs(settings.kafka_bootstrap, name)
    want = load_changelog_config()
    assert set(config_differences(before, want)) >= {"segment.ms", "segment.bytes", "min.cleanable.dirty.ratio"}
    worker.start()
    after = topic_configs(settings.kafka_bootstrap, name)
    assert config_differences(after, want) == {}
    assert after["max.message.bytes"] == "2000000"
    # a second start has nothing left to change
    assert ensure_topic(settings.kafka_bootstrap, name, partitions, want) == {}
