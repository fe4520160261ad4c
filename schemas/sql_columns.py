"""SQL columns derived from the Avro records, so that the database side of a record cannot drift
from the contract: a field added to an .avsc (with its default) becomes a staging column of the
correlator's sink without a second hand-kept list."""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import cache
from typing import Any

from execsight.schemas.codec import AVRO_DIR

_PRIMITIVE = {"string": "text", "long": "bigint", "int": "integer", "boolean": "boolean",
              "double": "double precision", "float": "real", "bytes": "bytea", "enum": "text"}


def sql_type(avro: Any) -> str:
    """The PostgreSQL type of an Avro field type (a nullable union is its other branch)."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ValueError(f"no SQL type for the union {avro}")
        return sql_type(branches[0])
    if isinstance(avro, dict):
        kind = avro["type"]
        if kind == "array":
            return sql_type(avro["items"]) + "[]"
        return sql_type(kind)
    if avro not in _PRIMITIVE:
        raise ValueError(f"no SQL type for the Avro type {avro!r}")
    return _PRIMITIVE[avro]


@cache
def _records() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        schema = json.loads(path.read_text())
        out[schema["name"]] = schema["fields"]
    return out


def record_columns(record: str, exclude: Collection[str] = ()) -> tuple[tuple[str, str], ...]:
    """(name, SQL type) of every field of ``record`` in schema order, less ``exclude`` (fields that live
    in another table); naming a field that does not exist is an error, so an exclusion cannot go stale."""
    fields = _records()[record]
    names = {f["name"] for f in fields}
    unknown = set(exclude) - names
    if unknown:
        raise ValueError(f"{record} has no field {sorted(unknown)}")
    return tuple((f["name"], sql_type(f["type"])) for f in fields if f["name"] not in exclude)
