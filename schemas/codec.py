"""Avro single-object encoding (Avro 1.10+ specification) without a registry.

Wire format: ``C3 01`` marker, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's Parsing Canonical Form, then the Avro binary body. A reader
finds the writer schema by fingerprint and resolves it against its own reader
schema, so schemas can grow fields with defaults without breaking old readers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
AVRO_DIR = Path(__file__).resolve().parent / "avro"

Record = dict[str, Any]


class CodecError(ValueError):
    """A message could not be encoded or decoded; the text says why."""


class UnknownSchemaError(CodecError):
    def __init__(self, fp: bytes) -> None:
        super().__init__(
            f"unknown writer schema fingerprint {fp.hex()} "
            f"(CRC-64-AVRO, little-endian); is a newer schemas/ directory needed?"
        )
        self.fingerprint = fp


@dataclass(frozen=True)
class Schema:
    name: str
    parsed: Any
    fingerprint: bytes
    path: Path | None = None

    @property
    def header(self) -> bytes:
        """The 10 bytes before every body written with this schema."""
        return MAGIC + self.fingerprint

    @cached_property
    def record_unions(self) -> tuple[tuple[str, str], ...]:
        """(field, record name) of the top-level fields typed ``["null", SomeRecord]``.

        Handed a plain dict, fastavro tries each branch of a union and validates the record against
        it, which costs more than writing it (16 against 10 µs for a ProcessExit with accounting);
        the tuple form names the branch outright."""
        out = []
        for f in self.parsed.get("fields", []) if isinstance(self.parsed, dict) else []:
            t = f["type"]
            if isinstance(t, list) and len(t) == 2 and t[0] == "null" and isinstance(t[1], dict) \
                    and t[1].get("type") == "record":
                out.append((f["name"], t[1]["name"]))
        return tuple(out)


def schema_fingerprint(parsed: Any) -> bytes:
    """8-byte little-endian CRC-64-AVRO fingerprint of the parsing canonical form."""
    # fastavro's hex digest is already the little-endian byte sequence the spec puts on the wire
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def crc64_avro(data: bytes) -> int:
    """Reference CRC-64-AVRO from the specification (used to check fastavro's)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def parse_schema_file(path: Path) -> Schema:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CodecError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    try:
        # Parsed once, with fastavro's "already parsed" hint, so encode/decode never re-parse it.
        parsed = fastavro.parse_schema(raw)
    except Exception as exc:  # fastavro raises several exception types for bad schemas
        raise CodecError(f"{path}: invalid Avro schema: {exc}") from exc
    return Schema(name=raw["name"], parsed=parsed, fingerprint=schema_fingerprint(parsed), path=path)


class Codec:
    """Encodes with the local schema of a record type; decodes any known writer schema.

    ``extra_writers`` lets a reader know older or newer writer schemas (for example
    the ones a subscriber has collected) besides the ones it writes with.
    """

    def __init__(self, schemas: Iterable[Schema], extra_writers: Iterable[Schema] = ()) -> None:
        self._by_name: dict[str, Schema] = {}
        self._by_fp: dict[bytes, Schema] = {}
        for schema in schemas:
            self._by_name[schema.name] = schema
            self._by_fp[schema.fingerprint] = schema
        for schema in extra_writers:
            self._by_fp.setdefault(schema.fingerprint, schema)

    @classmethod
    def from_directory(cls, directory: Path = AVRO_DIR) -> Codec:
        """The schemas of ``directory``; those in its ``previous/`` folder (earlier versions of a record
        type, kept when a field is added) are known as writers, so records written before an upgrade
        (still on the topics, or from producers not upgraded yet) keep decoding."""
        return cls((parse_schema_file(p) for p in sorted(directory.glob("*.avsc"))),
                   extra_writers=[parse_schema_file(p) for p in sorted((directory / "previous").glob("*.avsc"))])

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def schema(self, name: str) -> Schema:
        try:
            return self._by_name[name]
        except KeyError:
            raise CodecError(f"no schema named {name!r}; known: {', '.join(self.names)}") from None

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.schema(name)
        unions = schema.record_unions
        if unions and any(isinstance(record.get(f), dict) for f, _ in unions):
            record = dict(record)
            for f, branch in unions:
                value = record.get(f)
                if isinstance(value, dict):
                    record[f] = (branch, value)
        buf = io.BytesIO()
        buf.write(schema.header)
        try:
            fastavro.schemaless_writer(buf, schema.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CodecError(f"record does not match schema {name}: {exc}") from exc
        return buf.getvalue()

    def writer_of(self, data: bytes) -> Schema:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise CodecError("not Avro single-object encoded (missing C3 01 marker)")
        fp = data[2:HEADER_LEN]
        schema = self._by_fp.get(fp)
        if schema is None:
            raise UnknownSchemaError(fp)
        return schema

    def decode(self, data: bytes) -> tuple[str, Record]:
        """Returns (record type name, record) resolved against this codec's schema of that name."""
        writer = self.writer_of(data)
        reader = self._by_name.get(writer.name, writer)
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER_LEN:]), writer.parsed, reader.parsed
            )
        except Exception as exc:  # truncated or corrupt bodies raise EOFError, ValueError, ...
            raise CodecError(f"corrupt {writer.name} body: {exc!r}") from exc
        if not isinstance(record, dict):
            raise CodecError(f"{writer.name} body is not a record")
        return writer.name, record


_DEFAULT: Codec | None = None


def default_codec() -> Codec:
    """The codec over this checkout's schemas/avro, built once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Codec.from_directory()
    return _DEFAULT
