"""Bounded on-disk spool: Kafka records kept in order while the broker is unreachable.

Records are appended to segment files (length-prefixed topic, key, value); ``peek``
reads from the head without consuming, ``commit`` consumes what was delivered and
persists the head position, so a restarted collector resumes where it stopped.
When the bound is reached, new records are dropped and counted, never silently.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SEGMENT_BYTES = 8 << 20
_LEN = struct.Struct("<I")
_SHORT = struct.Struct("<H")


@dataclass(frozen=True)
class SpoolRecord:
    topic: str
    key: bytes
    value: bytes

    def encode(self) -> bytes:
        t = self.topic.encode()
        body = _SHORT.pack(len(t)) + t + _SHORT.pack(len(self.key)) + self.key + self.value
        return _LEN.pack(len(body)) + body

    @staticmethod
    def decode(body: bytes) -> SpoolRecord:
        (tl,) = _SHORT.unpack_from(body, 0)
        topic = body[2 : 2 + tl].decode()
        (kl,) = _SHORT.unpack_from(body, 2 + tl)
        k0 = 4 + tl
        return SpoolRecord(topic, body[k0 : k0 + kl], body[k0 + kl :])


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dropped = 0
        self._head_seg, self._head_off = self._load_head()
        segs = self._segments()
        for s in segs:  # segments before the head were consumed
            if s < self._head_seg:
                (self.dir / f"{s:010d}.seg").unlink(missing_ok=True)
        segs = [s for s in segs if s >= self._head_seg]
        if not segs:
            segs = [self._head_seg]
            self._head_off = 0
        self._tail_seg = segs[-1]
        self._tail: BinaryIO = open(self._seg_path(self._tail_seg), "ab")  # noqa: SIM115
        self.records, self.bytes = self._scan()
        self._peeked: list[int] = []

    def _seg_path(self, seg: int) -> Path:
        return self.dir / f"{seg:010d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.seg") if p.stem.isdigit())

    def _load_head(self) -> tuple[int, int]:
        try:
            doc = json.loads((self.dir / "head.json").read_text())
            return int(doc["segment"]), int(doc["offset"])
        except (OSError, ValueError, KeyError):
            return 0, 0

    def _save_head(self) -> None:
        tmp = self.dir / "head.tmp"
        tmp.write_text(json.dumps({"segment": self._head_seg, "offset": self._head_off}))
        tmp.replace(self.dir / "head.json")

    def _scan(self) -> tuple[int, int]:
        n = size = 0
        for seg in self._segments():
            if seg < self._head_seg:
                continue
            data = self._seg_path(seg).read_bytes()
            off = self._head_off if seg == self._head_seg else 0
            while off + 4 <= len(data):
                (length,) = _LEN.unpack_from(data, off)
                if off + 4 + length > len(data):
                    break  # torn write at a crash: ignored
                n += 1
                size += 4 + length
                off += 4 + length
        return n, size

    def __len__(self) -> int:
        return self.records

    def append(self, rec: SpoolRecord) -> bool:
        raw = rec.encode()
        if self.bytes + len(raw) > self.max_bytes:
            self.dropped += 1
            return False
        if self._tail.tell() + len(raw) > self.segment_bytes and self._tail.tell() > 0:
            self._tail.close()
            self._tail_seg += 1
            self._tail = open(self._seg_path(self._tail_seg), "ab")  # noqa: SIM115
        self._tail.write(raw)
        self.records += 1
        self.bytes += len(raw)
        return True

    def peek(self, n: int) -> list[SpoolRecord]:
        """Up to n records from the head, in order, without consuming them."""
        self._tail.flush()
        out: list[SpoolRecord] = []
        self._peeked = []
        seg, off = self._head_seg, self._head_off
        while len(out) < n and seg <= self._tail_seg:
            path = self._seg_path(seg)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    while len(out) < n:
                        hdr = f.read(4)
                        if len(hdr) < 4:
                            break
                        (length,) = _LEN.unpack(hdr)
                        body = f.read(length)
                        if len(body) < length:
                            break
                        out.append(SpoolRecord.decode(body))
                        self._peeked.append(4 + length)
            except FileNotFoundError:
                pass
            seg, off = seg + 1, 0
        return out

    def commit(self, n: int) -> None:
        """Consumes the first n records of the last peek."""
        for size in self._peeked[:n]:
            seg_size = self._seg_path(self._head_seg).stat().st_size
            if self._head_off >= seg_size and self._head_seg < self._tail_seg:
                self._seg_path(self._head_seg).unlink(missing_ok=True)
                self._head_seg, self._head_off = self._head_seg + 1, 0
            self._head_off += size
            self.records -= 1
            self.bytes -= size
        self._peeked = self._peeked[n:]
        # drop exhausted segments before the tail; reset an empty spool
        while self._head_seg < self._tail_seg and self._head_off >= self._seg_path(self._head_seg).stat().st_size:
            self._seg_path(self._head_seg).unlink(missing_ok=True)
            self._head_seg, self._head_off = self._head_seg + 1, 0
        if self.records == 0:
            self._tail.close()
            for s in self._segments():
                self._seg_path(s).unlink(missing_ok=True)
            self._head_seg = self._tail_seg = self._tail_seg + 1
            self._head_off = 0
            self._tail = open(self._seg_path(self._tail_seg), "ab")  # noqa: SIM115
        self._save_head()

    def close(self) -> None:
        self._tail.flush()
        os.fsync(self._tail.fileno())
        self._tail.close()
        self._save_head()
