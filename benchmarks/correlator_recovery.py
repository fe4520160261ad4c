"""Correlator recovery benchmark: time from worker start to its first batch in the database, after a soak
of state updates on the state changelog, with the old changelog settings and the new ones side by side.

    .venv/bin/python benchmarks/correlator_recovery.py [--soak-s 300] [--rate 400] [--live 3000]

Each case gets a fresh topic prefix, a fresh database and its changelog
(``{prefix}execsight-correlator-state-changelog``) created first:
  empty  no state at all: the worker's own start-up cost;
  old    as Faust made it before #19.6: cleanup.policy=compact only, the broker's 1 GiB / 7 day segments;
  new    schemas/topics.yaml changelog_config (small segments, dirty ratio 0.1, max compaction lag).
The soak writes, for both old and new at once, ``--rate`` state updates/s for ``--soak-s`` seconds, in
the correlator's own format (JSON key ``{host}|proc:{pid}:{start}``, JSON value of a live process's
size), over a churning set of ``--live`` live keys: an update to a live process mostly, or one exits
(written gone, then its tombstone) and a new one starts. Straight after the soak, for each case, one
raw record of a probe host is put on raw.process, a worker is started, and the time until the probe's
row is committed is its recovery (changelog read, then the first batch). The worker applies the new
settings to an old changelog at start, but a segment rolls (and is cleaned) only on a later write, so
what it reads at start is the old log as it was.
Uses the local Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, EXECSIGHT_DATABASE_URL); everything it
made is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execsight.kafka_io import create_topics  # noqa: E402
from execsight.schemas.codec import default_codec  # noqa: E402
from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.topics import RAW_PROCESS, load_changelog_config, load_topics  # noqa: E402
from execsight.shutdown import stop_process  # noqa: E402
from tests.correlator.correlator_events import Host  # noqa: E402

ENTRY = "import sys; from execsight.correlator.main import main; sys.exit(main(sys.argv[1:]))"
CHANGELOG = "execsight-correlator-state-changelog"
OLD_CONFIG = {"cleanup.policy": "compact"}  # what Faust created: compacting=True, nothing else


@dataclass
class Case:
    name: str
    config: dict[str, str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"benchrec{self.tag}."

    @property
    def db(self) -> str:
        return f"execsight_benchrec_{self.tag}"

    @property
    def changelog(self) -> str:
        return self.prefix + CHANGELOG


def _dsn_with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def state_value(rng: random.Random, pid: int) -> bytes:
    """A live process's state entry, about the size the correlator writes (~550 bytes)."""
    value = {
        "kind": "proc", "pid": pid, "ppid": rng.randrange(1, 1 << 22), "start": rng.randrange(1 << 60),
        "comm": "bwa", "exe": "/usr/local/bin/bwa", "argv": ["bwa", "mem", "-t", "8", f"ref{pid}.fa", "r1.fq"],
        "cpu": rng.randrange(1 << 40), "runq": rng.randrange(1 << 30), "peak": rng.randrange(1 << 34),
        "read": rng.randrange(1 << 34), "write": rng.randrange(1 << 34), "tx": 0, "rx": 0,
        "run_id": uuid.UUID(int=pid).hex, "task_id": f"task-{pid % 977}", "tool": "bwa",
        "context": {"engine": "nextflow", "pipeline": "nf-core/sarek", "work_dir": f"/scratch/work/{pid:08x}"},
        "samples": [rng.randrange(1 << 20) for _ in range(12)],
    }
    return json.dumps(value, separators=(",", ":")).encode()


def soak(cases: list[Case], bootstrap: str, partitions: int, seconds: float, rate: float, live: int,
         seed: int = 7) -> int:
    """Writes the same stream of state updates to every case's changelog; returns how many per case."""
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "zstd",
                         "enable.idempotence": True})
    next_pid = 1000
    alive: list[int] = []

    def send(key: str, value: bytes | None, partition: int) -> None:
        k = json.dumps(key).encode()
        for case in cases:
            while True:
                try:
                    producer.produce(case.changelog, key=k, value=value, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)

    start = time.time()
    n = 0
    while time.time() - start < seconds:
        due = start + n / rate
        if (delay := due - time.time()) > 0:
            time.sleep(delay)
        if len(alive) < live or rng.random() < 0.9:
            if len(alive) < live:
                alive.append(next_pid)
                pid = next_pid
                next_pid += 1
            else:
                pid = rng.choice(alive)
            send(f"bench-state-{pid % partitions}|proc:{pid}", state_value(rng, pid), pid % partitions)
        else:  # a process exits: written gone, its tombstone follows (as services/correlator/changelog.py)
            pid = alive.pop(rng.randrange(len(alive)))
            key = f"bench-state-{pid % partitions}|proc:{pid}"
            send(key, json.dumps({"kind": "proc", "pid": pid, "gone": True}).encode(), pid % partitions)
            send(key, None, pid % partitions)
        n += 1
        if n % 2000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return n


def changelog_records(bootstrap: str, topic: str, partitions: int) -> int:
    """How many records a recovery reads now: every record from the log start to the end, all partitions."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"benchrec-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.max.bytes": 52428800})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        pending = {p for p, end in ends.items() if end > 0}
        n = 0
        while pending:
            for msg in c.consume(10000, timeout=5):
                if msg.error():
                    continue
                n += 1
                partition, offset = msg.partition(), msg.offset()
                if partition is not None and offset is not None and offset >= ends[partition] - 1:
                    pending.discard(partition)
        return n
    finally:
        c.close()


def recover(case: Case, bootstrap: str, server_dsn: str, timeout_s: float) -> float:
    """Starts a worker on the case's topics; seconds until the probe's row is committed."""
    dsn = _dsn_with_db(server_dsn, case.db)
    probe = Host("bench-probe")
    probe.seed(4242, ["sleep", "1"])
    kind, rec = probe.events[0]
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(case.prefix + RAW_PROCESS, key=b"bench-probe", value=default_codec().encode(kind, rec))
    assert p.flush(30) == 0
    state = Path(tempfile.mkdtemp(prefix="execsight-benchrec-"))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "EXECSIGHT_TOPIC_PREFIX": case.prefix,
           "EXECSIGHT_DATABASE_URL": dsn, "EXECSIGHT_STATE_DIR": str(state), "EXECSIGHT_LOG_FORMAT": "text",
           "EXECSIGHT_LOG_LEVEL": "WARNING"}
    log_path = state / "worker.log"
    started = time.time()
    worker = subprocess.Popen([sys.executable, "-c", ENTRY, "--no-supervise", "--no-metrics"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                row = conn.execute(b"SELECT count(*) FROM processes WHERE host_id = 'bench-probe'").fetchone()
                if row and row[0]:
                    return time.time() - started
                if worker.poll() is not None:
                    raise RuntimeError(log_path.read_text()[-3000:])
                if time.time() - started > timeout_s:
                    raise TimeoutError(f"{case.name}: no first batch in {timeout_s}s")
                time.sleep(0.05)
    finally:
        stop_process(worker, 30)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--soak-s", type=float, default=300.0, help="seconds of state updates before the restart")
    ap.add_argument("--rate", type=float, default=400.0, help="state updates/s during the soak")
    ap.add_argument("--live", type=int, default=3000, help="live state keys (processes) at steady state")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    args = ap.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    server = os.environ.get("EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight")
    partitions = load_topics()[RAW_PROCESS].partitions
    cases = [Case("empty", load_changelog_config()), Case("old", OLD_CONFIG), Case("new", load_changelog_config())]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        for case in cases:
            create_topics(bootstrap, case.prefix)
            admin.create_topics([NewTopic(case.changelog, partitions, 1, config=case.config)])[
                case.changelog].result(timeout=60)
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{case.db}"'.encode())
            apply_migrations(_dsn_with_db(server, case.db))
        soaked = [c for c in cases if c.name != "empty"]
        print(f"soak: {args.rate:.0f} state updates/s for {args.soak_s:.0f}s over {args.live} live keys,"
              f" into {', '.join(c.name for c in soaked)}", flush=True)
        n = soak(soaked, bootstrap, partitions, args.soak_s, args.rate, args.live)
        print(f"soak done: {n} updates each", flush=True)
        results = []
        for case in (cases[2], cases[1], cases[0]):  # new straight after the soak: no idle time to compact in
            records = changelog_records(bootstrap, case.changelog, partitions)
            seconds = recover(case, bootstrap, server, args.timeout_s)
            results.append((case.name, records, seconds))
            print(f"{case.name}: {records} changelog records read at start, first batch after {seconds:.1f}s",
                  flush=True)
        print("\nchangelog settings        records at restart   worker start -> first batch")
        for name, records, seconds in sorted(results):
            print(f"{name:<25} {records:>18,}   {seconds:>10.1f}s")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            for case in cases:
                conn.execute(f'DROP DATABASE IF EXISTS "{case.db}" WITH (FORCE)'.encode())
        names = [case.prefix + t for case in cases for t in load_topics()] + [c.changelog for c in cases]
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
