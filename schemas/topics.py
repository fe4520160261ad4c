"""The topics file (schemas/topics.yaml) as typed data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOPICS_FILE = Path(__file__).resolve().parent / "topics.yaml"


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    value_schemas: tuple[str, ...]
    partitions: int
    retention_ms: int
    producer: str
    consumers: tuple[str, ...]
    cleanup_policy: str = "delete"
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        cfg.update(self.config)
        return cfg


def load_topics(path: Path = TOPICS_FILE) -> dict[str, Topic]:
    doc: Any = yaml.safe_load(path.read_text())
    topics: dict[str, Topic] = {}
    for i, entry in enumerate(doc["topics"]):
        try:
            topic = Topic(
                name=entry["name"],
                key=entry["key"],
                value_schemas=tuple(entry["value_schemas"]),
                partitions=int(entry["partitions"]),
                retention_ms=int(entry["retention_ms"]),
                producer=str(entry["producer"]),
                consumers=tuple(entry["consumers"]),
                cleanup_policy=entry.get("cleanup_policy", "delete"),
                config={str(k): str(v) for k, v in entry.get("config", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: topic entry {i}: {exc!r}") from exc
        topics[topic.name] = topic
    return topics


def load_changelog_config(path: Path = TOPICS_FILE) -> dict[str, str]:
    """The Kafka configs of the Faust tables' changelog topics (``changelog_config`` in topics.yaml)."""
    doc: Any = yaml.safe_load(path.read_text())
    cfg = doc.get("changelog_config")
    if not isinstance(cfg, dict) or cfg.get("cleanup.policy") != "compact":
        raise ValueError(f"{path}: changelog_config must be a mapping with cleanup.policy: compact")
    return {str(k): str(v) for k, v in cfg.items()}


# Names used by code; a test checks that each one is in topics.yaml.
RAW_PROCESS = "execsight.raw.process"
RAW_HOST = "execsight.raw.host"
ENRICHED_PROCESS = "execsight.enriched.process"
ENRICHED_TASK = "execsight.enriched.task"
ENRICHED_RUN = "execsight.enriched.run"
ENRICHED_HOST = "execsight.enriched.host"
FINDINGS_TUNE = "execsight.findings.tune"
FINDINGS_SWEEP = "execsight.findings.sweep"
DEADLETTER = "execsight.deadletter"
