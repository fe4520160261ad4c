"""``--output jsonl PATH|-``: the records as JSON lines, without Kafka (debugging, benchmarks)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    return v


# one encoder for all lines: json.dumps(default=...) would build a new one per call
_ENCODER = json.JSONEncoder(default=_jsonable)


@dataclass
class JsonlSink:
    """``--output jsonl PATH|-``: the same records as JSON lines ({"type": name, ...record})."""

    path: str
    written: int = 0
    _fh: TextIO | None = None

    def __post_init__(self) -> None:
        self._fh = sys.stdout if self.path == "-" else open(Path(self.path), "a", buffering=1 << 16)  # noqa: SIM115

    def send(self, topic: str, key: bytes, value: bytes, name: str, record: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(_ENCODER.encode({"type": name, "topic": topic, **record}) + "\n")
        self.written += 1

    def poll(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self, timeout_s: float) -> None:
        if self._fh is not None:
            self._fh.flush()
            if self._fh is not sys.stdout:
                self._fh.close()
            self._fh = None

    def stats(self) -> dict[str, int]:
        return {"delivered": self.written, "delivery_errors": 0, "spool_records": 0, "spool_bytes": 0,
                "spool_dropped": 0, "queued": 0}
