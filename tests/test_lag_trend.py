"""`execsight status` marks a consumer group whose lag keeps growing as DEGRADED (pure trend + real Kafka)."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from execsight.deploy.local import lag_trend
from execsight.schemas.topics import ENRICHED_TASK
from execsight.settings import Settings


def test_growth_over_more_than_a_minute_is_reported_with_the_amount() -> None:
    assert lag_trend.growth([(0, 10), (30, 400), (61, 900)]) == lag_trend.Growth(grew_by=890, over_s=61, lag=900)
    assert "grew by 890 over 61 s" in lag_trend.growth([(0, 10), (30, 400), (61, 900)]).describe()  # type: ignore[union-attr]


@pytest.mark.parametrize("samples", [
    [(0, 10), (59, 900)],                 # growing, but for less than a minute
    [(0, 10), (40, 900), (80, 200)],      # fell since: it catches up
    [(0, 500), (90, 500)],                # steady, not growing
    [(100, 7)],                           # one sample says nothing about a trend
    [],
])
def test_no_growth(samples: list[tuple[float, int]]) -> None:
    assert lag_trend.growth(samples) is None


def test_growth_counts_from_the_last_fall() -> None:
    # fell at t=50; grew from 20 (t=50) to 80 (t=130): 80 s of growth
    assert lag_trend.growth([(0, 100), (50, 20), (90, 50), (130, 80)]) == lag_trend.Growth(60, 80, 80)


def test_samples_are_kept_for_a_while_and_vanished_groups_dropped() -> None:
    history = {"a": [(0.0, 1), (500.0, 2)], "gone": [(900.0, 3)]}
    out = lag_trend.add_samples(history, 1000.0, {"a": 5, "new": 0}, keep_s=600)
    assert out == {"a": [(500.0, 2), (1000.0, 5)], "new": [(1000.0, 0)]}


@pytest.mark.kafka
@pytest.mark.db
def test_status_marks_a_group_whose_lag_grew_for_over_a_minute(settings: Settings) -> None:
    from execsight.deploy.local.stack import LocalStack

    topic = settings.topic(ENRICHED_TASK)
    group = f"{settings.topic_prefix}tune"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    consumer.close()
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(5):
        p.produce(topic, value=b"x%d" % i, partition=0)
    assert p.flush(30) == 0
    history = settings.state_dir / "lag_history.json"
    history.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()

    def group_row() -> tuple[str, str]:
        [row] = [c for c in LocalStack(settings).status() if c.name == f"group {group}"]
        return row.state, row.detail

    history.write_text(json.dumps({group: [[now - 130, 1], [now - 70, 2]]}))
    state, detail = group_row()
    assert state == "degraded" and "lag 5" in detail and "grew by 4 over" in detail, detail
    assert not next(c for c in LocalStack(settings).status() if c.name == f"group {group}").healthy

    history.write_text(json.dumps({group: [[now - 130, 9]]}))  # it was further behind: catching up
    state, detail = group_row()
    assert state == "up" and "grew" not in detail, detail
    saved = json.loads(history.read_text())[group]
    assert saved[-1][1] == 5 and len(saved) >= 2  # each status call adds a sample
