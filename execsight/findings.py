"""Findings shared by tune and sweep: stable ids, storage (upsert/resolve) and publication."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from confluent_kafka import Producer

from execsight.schemas.codec import Codec, default_codec
from execsight.settings import Settings

Record = dict[str, Any]

# Columns of the findings table filled from the Avro record of either kind.
_SUBJECT_COLS = (
    "pipeline", "run_id", "task", "tool", "host_id", "resource_type", "resource_id", "region",
    "last_run_id", "monthly_waste_usd", "accrued_waste_usd", "confidence", "estimated_savings_usd",
)


def finding_id(kind: str, subject: Mapping[str, object]) -> str:
    """Stable id from the kind and the subject's identifying fields (order-independent)."""
    canon = json.dumps({"kind": kind, **{k: subject[k] for k in sorted(subject)}}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def evidence(*items: tuple[str, float, str]) -> list[Record]:
    return [{"name": n, "value": float(v), "unit": u} for n, v, u in items]


def now_ns() -> int:
    return time.time_ns()


def _ts(ns: int | None) -> str | None:
    return None if ns is None else f"{ns / 1e9:.6f}"


def upsert_findings(conn: psycopg.Connection[Any], source: str, findings: Sequence[Record]) -> None:
    """Inserts or updates findings by id; keeps the first detection time. Caller commits."""
    if not findings:
        return
    sql = f"""
        INSERT INTO findings (finding_id, source, kind, status, severity, detected_at, updated_at,
            resolved_at, summary, recommendation, evidence, recommended, since, {", ".join(_SUBJECT_COLS)})
        VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s),
            CASE WHEN %s = 'RESOLVED' THEN to_timestamp(%s) END, %s, %s, %s, %s, to_timestamp(%s),
            {", ".join(["%s"] * len(_SUBJECT_COLS))})
        ON CONFLICT (finding_id) DO UPDATE SET
            status = EXCLUDED.status, severity = EXCLUDED.severity, updated_at = EXCLUDED.updated_at,
            resolved_at = EXCLUDED.resolved_at, summary = EXCLUDED.summary,
            recommendation = EXCLUDED.recommendation, evidence = EXCLUDED.evidence,
            recommended = EXCLUDED.recommended, since = EXCLUDED.since,
            {", ".join(f"{c} = EXCLUDED.{c}" for c in _SUBJECT_COLS)}
    """
    rows = []
    for f in findings:
        rows.append(
            (
                f["finding_id"], source, f["kind"], f["status"], f["severity"], _ts(f["detected_ns"]),
                _ts(f["updated_ns"]), f["status"], _ts(f["updated_ns"]), f["summary"], f.get("recommendation"),
                json.dumps(f.get("evidence", [])), json.dumps(f.get("recommended", {})),
                _ts(f.get("since_ns")), *(f.get(c) for c in _SUBJECT_COLS),
            )
        )
    with conn.cursor() as cur:
        cur.executemany(sql, rows)


def load_finding(conn: psycopg.Connection[Any], fid: str) -> Record | None:
    cur = conn.execute("SELECT * FROM findings WHERE finding_id = %s", (fid,))
    row = cur.fetchone()
    if row is None:
        return None
    names = [d.name for d in cur.description or []]
    return dict(zip(names, row, strict=True))


def publish_findings(
    producer: Producer, settings: Settings, topic: str, schema: str, findings: Sequence[Record],
    codec: Codec | None = None,
) -> None:
    """Publishes findings keyed by finding_id (the topic is compacted) and waits for the acks."""
    c = codec or default_codec()
    for f in findings:
        producer.produce(settings.topic(topic), key=f["finding_id"].encode(), value=c.encode(schema, f))
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} findings not acknowledged by Kafka")
