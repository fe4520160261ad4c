"""`execsight sweep --once` end to end: moto account, real Kafka history and PostgreSQL, table on stdout."""

from __future__ import annotations

import time

import boto3
import psycopg
import pytest

from execsight.kafka_io import make_producer
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST
from execsight.settings import Settings
from execsight.sweep.main import main

from .sweep_aws_guard import seeding
from .sweep_records import NS, host_sample

pytestmark = [pytest.mark.aws, pytest.mark.kafka, pytest.mark.db]


def test_once_prints_and_stores_findings(
    aws: None, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with seeding():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        vol = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=200, VolumeType="gp3")["VolumeId"]
    producer = make_producer(settings)
    now = time.time_ns()
    for k in range(40, -1, -1):
        producer.produce(settings.topic(RAW_HOST), key=b"lab-9",
                         value=default_codec().encode("HostSample", host_sample("lab-9", now - k * NS)))
    assert producer.flush(30) == 0
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap, "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "EXECSIGHT_DATABASE_URL": settings.database_url, "EXECSIGHT_LOG_FORMAT": "text",
           "EXECSIGHT_IDLE_AFTER_S": "30", "EXECSIGHT_AWS_REGIONS": "eu-west-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert main(["--once"]) == 0
    out = capsys.readouterr().out
    assert vol in out and "unattached_volume" in out
    assert "lab-9" in out and "idle_host" in out
    assert "2 open finding(s)" in out
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT kind, resource_id, status FROM findings ORDER BY kind").fetchall()
    assert rows == [("idle_host", "lab-9", "OPEN"), ("unattached_volume", vol, "OPEN")]

    # a second run finds the same two (same ids, no duplicates)
    assert main(["--once"]) == 0
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM findings").fetchone() == (2,)


def test_sweep_main_guards_the_whole_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`execsight sweep` fences every AWS client of its process, boto3.resource ones too."""
    from execsight.sweep import readonly

    monkeypatch.setattr("execsight.sweep.main.settings_or_exit", lambda _name: (_ for _ in ()).throw(SystemExit(9)))
    with pytest.raises(SystemExit):
        main(["--once"])
    assert readonly.process_guarded()
