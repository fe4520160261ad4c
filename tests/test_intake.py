"""The workers' decode step: only what a record gets wrong is dead-lettered, with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from execsight.intake import Refused, decode_expected
from execsight.schemas.codec import default_codec
from execsight.settings import load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "schemas" / "examples" / "TuneFinding" / "v1-1.json"


class Msg:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


class Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})

    def flush(self, timeout: float = 0) -> int:
        return 0


def test_wrong_type_undecodable_and_refused_records_are_dead_lettered_with_reasons() -> None:
    settings = load_settings({"EXECSIGHT_TOPIC_PREFIX": "p."})
    codec = default_codec()
    finding = json.loads(EXAMPLE.read_text())
    good = codec.encode("TuneFinding", finding)
    no_id = codec.encode("TuneFinding", {**finding, "finding_id": ""})

    def check(name: str, rec: dict[str, Any]) -> None:
        if not rec["finding_id"]:
            raise Refused(f"{name} without a finding_id")

    dead: list[int] = []
    producer = Producer()
    msgs: list[Any] = [Msg("p.execsight.findings.tune", good), Msg("p.execsight.findings.sweep", good),
                       Msg("p.execsight.findings.tune", b"\x00junk"), Msg("p.execsight.findings.tune", no_id)]
    out = decode_expected(
        msgs, codec=codec, settings=settings, producer=producer,  # type: ignore[arg-type]
        expected={"execsight.findings.tune": "TuneFinding", "execsight.findings.sweep": "SweepFinding"},
        origin="test", check=check, on_dead=lambda: dead.append(1))
    assert [(t, n, r["finding_id"]) for t, n, r in out] == [("execsight.findings.tune", "TuneFinding",
                                                             finding["finding_id"])]
    reasons = [dict(m["headers"])["execsight.reason"].decode() for m in producer.sent]
    assert {m["topic"] for m in producer.sent} == {"p.execsight.deadletter"} and len(dead) == 3
    assert reasons[0] == "TuneFinding on execsight.findings.sweep: expected SweepFinding"
    assert reasons[2] == "TuneFinding without a finding_id"
    assert reasons[1]  # the codec's own words for the undecodable value


def test_an_error_outside_the_record_is_not_swallowed() -> None:
    settings = load_settings({})
    good = default_codec().encode("TuneFinding", json.loads(EXAMPLE.read_text()))

    def broken(name: str, rec: dict[str, Any]) -> None:
        raise KeyError("a bug, not a bad record")

    msgs: list[Any] = [Msg("execsight.findings.tune", good)]
    producer: Any = Producer()
    with pytest.raises(KeyError):
        decode_expected(msgs, codec=default_codec(), settings=settings, producer=producer,
                        expected={"execsight.findings.tune": "TuneFinding"}, origin="test", check=broken)
