"""A local user cannot crash the collector or block its spool (issue 19, point 2).

A process with 1,500 NXF_* variables (1.5 MB, legal for execve) used to make one record larger than
Kafka accepts: MSG_SIZE_TOO_LARGE ended the collector, and the record sat at the head of the spool.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from execsight.collector.publisher import KafkaSink
from execsight.collector.spool import Spool, SpoolRecord
from execsight.schemas import record_bounds
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS

from .feed import CollectorProcess


def _consume(bootstrap: str, topics: list[str], until: Any, timeout: float) -> list[tuple[str, dict[str, Any]]]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(topics)
    codec = default_codec()
    out: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if not m.error():
                    out.append(codec.decode(m.value() or b""))
            if until(out):
                return out
    finally:
        c.close()
    raise AssertionError(f"timed out: {len(out)} messages")


@pytest.mark.kafka
@pytest.mark.ebpf
def test_process_with_1500_variables_is_reported_bounded_and_the_collector_goes_on(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")
    host_id = f"abuse-{uuid.uuid4().hex[:10]}"
    c = CollectorProcess(
        ["--output", "kafka", "--no-imds", "--host-interval", "1", "--spool-dir", str(tmp_path / "spool")],
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "EXECSIGHT_TOPIC_PREFIX": topic_prefix,
             "EXECSIGHT_HOST_ID": host_id, "EXECSIGHT_STATE_DIR": str(tmp_path / "state")},
        log_path=tmp_path / "collector.log",
    )
    marker = f"ab{uuid.uuid4().hex[:8]}"
    try:
        c.wait_started()
        big_env = {**os.environ, **{f"NXF_ABUSE_{i:04d}": "v" * 1000 for i in range(1500)}}
        big = subprocess.run([sys.executable, "-S", "-c", "import time; time.sleep(1)", marker + "-big",
                              "A" * 100_000], env=big_env, timeout=30)
        assert big.returncode == 0
        after = subprocess.run(["sh", "-c", "exit 3", marker + "-after"], timeout=30)
        assert after.returncode == 3

        def mine(msgs: list[tuple[str, dict[str, Any]]], tag: str) -> list[dict[str, Any]]:
            return [r for n, r in msgs if n == "ProcessExec" and r["host_id"] == host_id
                    and any(a == f"{marker}-{tag}" for a in r["argv"])]

        msgs = _consume(kafka_bootstrap, [topic_prefix + RAW_PROCESS, topic_prefix + RAW_HOST],
                        lambda m: mine(m, "big") and mine(m, "after"), 60)
        (rec,) = mine(msgs, "big")
        assert rec["env_truncated"] and rec["argv_truncated"]
        assert 0 < len(rec["env"]) <= record_bounds.ENV_MAX_VARS
        assert all(k.startswith("NXF_ABUSE_") or k.startswith(("EXECSIGHT_", "NXF_", "SNAKEMAKE")) for k in rec["env"])
        assert len(default_codec().encode("ProcessExec", rec)) < 64 * 1024
        assert c.proc.poll() is None, "the collector must still run"
        assert len(Spool(tmp_path / "spool", 1 << 30)) == 0
    finally:
        rc = c.stop()
    assert rc == 0, (tmp_path / "collector.log").read_text()[-3000:]


@pytest.mark.kafka
def test_undeliverable_records_are_dropped_and_counted_never_blocking_the_spool(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    """Every produce error is handled: a record Kafka can never take (here: over a 4 KB message.max.bytes)
    is dropped and counted, whether sent live or found at the head of the spool; what follows is delivered."""
    topic = topic_prefix + RAW_PROCESS
    spool = Spool(tmp_path / "spool", 1 << 30)
    spool.append(SpoolRecord(topic, b"k", b"x" * 10_000))  # spooled by an older collector: too large
    spool.append(SpoolRecord(topic, b"k", b"spooled-small"))
    sink = KafkaSink(kafka_bootstrap, spool, extra_config={"message.max.bytes": 4096})
    sink.send(topic, b"k", b"y" * 10_000, "ProcessExec", {})
    sink.send(topic, b"k", b"live-small", "ProcessExec", {})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(spool) or sink.stats()["queued"] or sink.delivered < 2):
        sink.poll()
        time.sleep(0.05)
    stats = sink.stats()
    sink.close(10)
    assert stats["undeliverable"] == 2 and stats["spool_records"] == 0 and sink.delivered == 2, stats

    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    end = time.monotonic() + 30
    while time.monotonic() < end and len(got) < 2:
        got += [m.value() or b"" for m in c.consume(10, 1.0) if not m.error()]
    c.close()
    assert sorted(got) == [b"live-small", b"spooled-small"]
