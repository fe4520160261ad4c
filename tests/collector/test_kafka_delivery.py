"""Kafka unreachable during a burst: every event delivered exactly once afterwards (markers: kafka, ebpf)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from execsight.collector.spool import Spool
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS

from .feed import CollectorProcess, burst_script
from .netproxy import NetnsProxy

pytestmark = [pytest.mark.kafka, pytest.mark.ebpf]

OUTAGE_S = float(os.environ.get("EXECSIGHT_TEST_OUTAGE_S", "30"))


Msgs = list[tuple[bytes, str, dict[str, Any]]]


def _consume_all(bootstrap: str, topics: list[str], until: Any, timeout: float) -> Msgs:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(topics)
    codec = default_codec()
    out: list[tuple[bytes, str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error():
                    continue
                name, rec = codec.decode(m.value() or b"")
                out.append((m.key() or b"", name, rec))
            if until(out):
                # read a little longer: duplicates would arrive now
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    for m in c.consume(1000, 0.5):
                        if not m.error():
                            name, rec = codec.decode(m.value() or b"")
                            out.append((m.key() or b"", name, rec))
                return out
    finally:
        c.close()
    raise AssertionError(f"timed out: {len(out)} messages")


def test_outage_during_burst_then_exactly_once_and_spool_empty(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    host_id = f"test-{uuid.uuid4().hex[:10]}"
    proxy = NetnsProxy(int(kafka_bootstrap.rsplit(":", 1)[1]), ("127.0.0.1", int(kafka_bootstrap.rsplit(":", 1)[1])))
    spool_dir = tmp_path / "spool"
    c = None
    try:
        proxy.up()
        c = CollectorProcess(
            ["--output", "kafka", "--no-imds", "--host-interval", "1", "--spool-dir", str(spool_dir)],
            env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy.listen_port}", "EXECSIGHT_TOPIC_PREFIX": topic_prefix,
                 "EXECSIGHT_HOST_ID": host_id, "EXECSIGHT_STATE_DIR": str(tmp_path / "state")},
            prefix=proxy.nsenter(), log_path=tmp_path / "collector.log",
        )
        c.wait_started()
        marker = f"kb{uuid.uuid4().hex[:8]}"
        assert subprocess.run(["sh", "-c", burst_script(200, marker + "a")]).returncode == 0
        time.sleep(1)
        proxy.down()
        t0 = time.monotonic()
        time.sleep(2)
        assert subprocess.run(["sh", "-c", burst_script(500, marker + "b")]).returncode == 0
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
        spooled = Spool(spool_dir, 1 << 30)
        spooled_during = len(spooled)
        spooled.close()
        proxy.up()

        def marked(msgs: list[tuple[bytes, str, dict[str, Any]]]) -> list[dict[str, Any]]:
            return [r for k, n, r in msgs if n == "ProcessExit" and k == host_id.encode()
                    and r["comm"] == "sh" and r["pid"] in exec_pids(msgs)]

        def exec_pids(msgs: list[tuple[bytes, str, dict[str, Any]]]) -> set[int]:
            return {r["pid"] for k, n, r in msgs if n == "ProcessExec" and len(r["argv"]) >= 4
                    and r["argv"][3].startswith(marker)}

        topics = [topic_prefix + RAW_PROCESS, topic_prefix + RAW_HOST]
        msgs = _consume_all(kafka_bootstrap, topics, lambda m: len(marked(m)) >= 700, 120)
        # spool drained and reported as such
        def spool_empty_status(m: list[tuple[bytes, str, dict[str, Any]]]) -> bool:
            st = [r for k, n, r in m if n == "CollectorStatus" and k == host_id.encode()]
            return bool(st) and st[-1]["spool_records"] == 0 and st[-1]["delivery_errors"] >= 0
        msgs = _consume_all(kafka_bootstrap, topics, spool_empty_status, 30)
        assert c.stop() == 0
        c = None
    finally:
        if c is not None:
            c.stop()
        proxy.close()
    log = (tmp_path / "collector.log").read_text()
    assert spooled_during > 0, "the outage must have sent events to the spool\n" + log[-2000:]
    mine = [(n, r) for k, n, r in msgs if k == host_id.encode()]
    execs = [r for n, r in mine if n == "ProcessExec" and len(r["argv"]) >= 4 and r["argv"][3].startswith(marker)]
    assert len(execs) == 700
    # exactly once: no record appears twice (count by identity and event time)
    counts = Counter((n, r.get("pid"), r.get("start_time_ns"), r["time_ns"]) for n, r in mine)
    dups = [k for k, v in counts.items() if v > 1]
    assert not dups, dups[:5]
    pids = {r["pid"] for r in execs}
    exits = [r for n, r in mine if n == "ProcessExit" and r["pid"] in pids]
    assert len(exits) == 700
    assert len(Spool(spool_dir, 1 << 30)) == 0
