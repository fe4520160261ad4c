"""Secrets never leave the host: real processes carrying secrets in argv and environment run under the
test's own collector and correlator, then every raw and enriched topic, the dead-letter topic, the
correlator's state changelog and every database table are searched for the secret values (issue 19)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_PROCESS
from execsight.settings import Settings

from ..correlator.worker_process import WorkerProcess, query, wait_for
from .feed import CollectorProcess

pytestmark = [pytest.mark.kafka, pytest.mark.db, pytest.mark.ebpf]


def _all_messages(bootstrap: str, topics: list[str]) -> list[Any]:
    """Every message of every partition of ``topics``, up to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False})
    out: list[Any] = []
    try:
        for topic in topics:
            meta = c.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if hi <= lo:
                    continue
                c.assign([TopicPartition(topic, p, lo)])
                deadline = time.monotonic() + 60
                last = lo - 1
                while last < hi - 1 and time.monotonic() < deadline:
                    for m in c.consume(5000, 1.0):
                        if not m.error():
                            out.append(m)
                            last = max(last, m.offset() or 0)
                assert last >= hi - 1, f"{topic}[{p}]: read to {last}, high watermark {hi}"
    finally:
        c.close()
    return out


def test_secret_corpus_reaches_no_topic_changelog_or_table(settings: Settings, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")
    tag = uuid.uuid4().hex[:8]
    secret = {name: f"S3cr{name}{tag}x" for name in (
        "flag", "mysql", "sshpass", "curlpw", "apikey", "bearer", "pgenv", "url", "passphrase", "shell", "nxftoken",
        "apitoken", "dsn", "awssecret")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mysql", "sshpass", "curl", "gpg", "psql"):
        (bin_dir / tool).symlink_to("/bin/true")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "NXF_TOWER_TOKEN": secret["nxftoken"],
           "EXECSIGHT_API_TOKEN": secret["apitoken"], "NXF_TASK_WORKDIR": f"/w/{tag}",
           "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:{secret['dsn']}@127.0.0.1:5432/execsight",
           "NXF_AWS_SECRET_ACCESS_KEY": secret["awssecret"]}
    corpus = [
        ["psql", f"--password={secret['flag']}", tag],
        ["mysql", "-uroot", f"-p{secret['mysql']}", tag],
        ["sshpass", "-p", secret["sshpass"], "ssh", tag],
        ["curl", "-u", f"bob:{secret['curlpw']}", "-H", f"X-Api-Key: {secret['apikey']}",
         "-H", f"Authorization: Bearer {secret['bearer']}", f"https://{tag}.example/"],
        ["env", f"PGPASSWORD={secret['pgenv']}", "psql", f"postgresql://u:{secret['url']}@db/{tag}"],
        ["gpg", "--passphrase", secret["passphrase"], tag],
        ["sh", "-c", f"mysql -p{secret['shell']} {tag}; true"],
    ]
    collector = CollectorProcess(
        ["--output", "kafka", "--no-imds", "--host-interval", "1", "--spool-dir", str(tmp_path / "spool")],
        env={"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap, "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
             "EXECSIGHT_HOST_ID": f"secrets-{tag}", "EXECSIGHT_STATE_DIR": str(tmp_path / "cstate")},
        log_path=tmp_path / "collector.log",
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        collector.wait_started()
        worker.start()
        for argv in corpus:
            subprocess.run(argv, env=env, timeout=30, check=False)
        dsn = settings.database_url
        # every corpus process is in the database (tag in its argv), exited
        wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE %s = ANY(argv) AND end_time IS NOT NULL",
                               (tag,)), lambda r: r[0][0] >= 4, timeout_s=90)
        time.sleep(3)  # a little longer: enriched records and state of the last batch
    finally:
        worker.stop()
        collector.stop()

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix))
    assert settings.topic(RAW_PROCESS) in topics
    assert any(t.endswith("-state-changelog") for t in topics), topics
    messages = _all_messages(settings.kafka_bootstrap, topics)
    codec = default_codec()
    raw_execs = [codec.decode(m.value())[1] for m in messages if m.topic() == settings.topic(RAW_PROCESS)
                 and m.value() and codec.writer_of(m.value()).name == "ProcessExec"]
    corpus_execs = [r for r in raw_execs if any(tag in a for a in r["argv"])]
    assert len(corpus_execs) >= len(corpus), [r["argv"] for r in corpus_execs]
    # the environment was read (names kept, values redacted), so its secrets were really on the way
    assert any(r["env"].get("NXF_TOWER_TOKEN") == "<redacted>" for r in corpus_execs), corpus_execs[0]["env"]

    leaks = []
    for m in messages:
        blob = (m.key() or b"") + (m.value() or b"") + b"".join(v or b"" for _, v in (m.headers() or []))
        leaks += [(m.topic(), name) for name, value in secret.items() if value.encode() in blob]
    tables = [r[0] for r in query(dsn, "SELECT table_name FROM information_schema.tables"
                                       " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    assert "processes" in tables
    for table in tables:
        for (text,) in query(dsn, f'SELECT t::text FROM "{table}" t'):
            leaks += [(table, name) for name, value in secret.items() if value in text]
    assert not leaks, sorted(set(leaks))
