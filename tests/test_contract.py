"""schemas/ is a tested contract: every example encodes and decodes, schemas evolve safely."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form

from schemas import topics as topic_names
from schemas.codec import (
    AVRO_DIR,
    Codec,
    CodecError,
    Schema,
    UnknownSchemaError,
    crc64_avro,
    default_codec,
    parse_schema_file,
    schema_fingerprint,
)
from schemas.topics import load_topics

EXAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "examples"


def all_examples() -> list[tuple[str, Path]]:
    return [(p.parent.name, p) for p in sorted(EXAMPLES.glob("*/*.json"))]


@pytest.mark.parametrize(("name", "path"), all_examples(), ids=lambda v: getattr(v, "name", v))
def test_example_round_trips(name: str, path: Path) -> None:
    codec = default_codec()
    record = json.loads(path.read_text())
    data = codec.encode(name, record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.schema(name).fingerprint
    decoded_name, decoded = codec.decode(data)
    assert decoded_name == name
    assert decoded == record


def test_every_schema_has_examples_and_a_topic() -> None:
    codec = default_codec()
    with_examples = {name for name, _ in all_examples()}
    assert set(codec.names) == with_examples
    carried = {s for t in load_topics().values() for s in t.value_schemas}
    assert carried == set(codec.names)


def test_topic_constants_are_in_the_topics_file() -> None:
    names = set(load_topics())
    constants = {v for k, v in vars(topic_names).items() if k.isupper() and isinstance(v, str)}
    constants.discard(str(topic_names.TOPICS_FILE))
    assert constants <= names
    assert all(n.startswith("execsight.") for n in names)


def test_fingerprint_is_crc64_avro_of_canonical_form_little_endian() -> None:
    # Test vector from the Avro specification's reference implementation: "int" -> 0x7275d51a3f395c8f
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    for schema in (parse_schema_file(p) for p in sorted(AVRO_DIR.glob("*.avsc"))):
        canonical = to_parsing_canonical_form(schema.parsed).encode()
        assert schema.fingerprint == struct.pack("<Q", crc64_avro(canonical))


def test_unknown_fingerprint_is_named_in_the_error() -> None:
    codec = default_codec()
    data = bytearray(codec.encode("ProcessFork", json.loads((EXAMPLES / "ProcessFork" / "v1-1.json").read_text())))
    data[2:10] = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        codec.decode(bytes(data))


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3\x01\x00", b"\xc3\x02" + b"\x00" * 20])
def test_garbage_is_rejected_with_a_reason(data: bytes) -> None:
    with pytest.raises(CodecError):
        default_codec().decode(data)


def test_truncated_body_is_rejected() -> None:
    codec = default_codec()
    record = json.loads((EXAMPLES / "ProcessExec" / "v1-1.json").read_text())
    data = codec.encode("ProcessExec", record)
    with pytest.raises(CodecError, match="corrupt ProcessExec"):
        codec.decode(data[:-20])


def test_encoding_rejects_a_record_that_does_not_match() -> None:
    with pytest.raises(CodecError, match="ProcessFork"):
        default_codec().encode("ProcessFork", {"host_id": "h", "pid": "not an int"})


def _evolved(schema: Schema, extra_field: dict[str, Any]) -> Schema:
    raw = json.loads(schema.path.read_text()) if schema.path else {}
    raw["fields"].append(extra_field)
    parsed = fastavro.parse_schema(raw, _write_hint=False)
    return Schema(schema.name, parsed, schema_fingerprint(parsed))


def test_old_reader_reads_new_writer_and_new_reader_reads_old_writer() -> None:
    current = default_codec()
    old = current.schema("TuneFinding")
    new = _evolved(old, {"name": "ticket_url", "type": ["null", "string"], "default": None})
    assert new.fingerprint != old.fingerprint
    record = json.loads((EXAMPLES / "TuneFinding" / "v1-1.json").read_text())

    # A newer producer writes with the evolved schema; an old consumer knows it as an extra writer.
    new_writer = Codec([new])
    data = new_writer.encode("TuneFinding", {**record, "ticket_url": "https://tracker/1"})
    old_reader = Codec([old], extra_writers=[new])
    name, decoded = old_reader.decode(data)
    assert name == "TuneFinding"
    assert decoded == record  # the new field is dropped, everything else intact

    # An upgraded consumer reads records written before the change: the default fills in.
    new_reader = Codec([new], extra_writers=[old])
    _, decoded_new = new_reader.decode(current.encode("TuneFinding", record))
    assert decoded_new == {**record, "ticket_url": None}


def test_a_field_without_default_breaks_old_records_loudly() -> None:
    """The evolution rule is enforced by Avro resolution itself: no default, no reading old data."""
    current = default_codec()
    old = current.schema("SweepFinding")
    bad = _evolved(old, {"name": "owner", "type": "string"})
    record = json.loads((EXAMPLES / "SweepFinding" / "v1-1.json").read_text())
    reader = Codec([bad], extra_writers=[old])
    with pytest.raises(CodecError):
        reader.decode(current.encode("SweepFinding", record))


def test_readme_subscriber_snippet_decodes_a_finding(tmp_path: Path) -> None:
    """The README shows how to decode findings with fastavro and the .avsc files alone: run it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    match = re.search(r"```python\n(# subscriber.*?)```", readme, re.S)
    assert match, "README must contain the subscriber snippet"
    snippet = match.group(1)
    record = json.loads((EXAMPLES / "SweepFinding" / "v1-2.json").read_text())
    payload = default_codec().encode("SweepFinding", record)
    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(snippet, "README.md", "exec"), namespace)
    decode = namespace["decode"]
    assert decode(payload, str(AVRO_DIR)) == record


def test_readme_documents_every_setting() -> None:
    from execsight.settings import SETTINGS_DOC

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for var in SETTINGS_DOC:
        assert f"| `{var.env}` | `{var.default}` |" in readme, var.env


def test_records_written_with_a_previous_schema_version_still_decode() -> None:
    """schemas/avro/previous/ keeps the earlier version of a record type that gained a field: a record
    from a producer not yet upgraded (or already on a topic) decodes, the new field at its default."""
    codec = default_codec()
    previous = sorted((AVRO_DIR / "previous").glob("*.avsc"))
    assert previous
    for path in previous:
        old = parse_schema_file(path)
        assert old.fingerprint != codec.schema(old.name).fingerprint
        example = json.loads(sorted((EXAMPLES / old.name).glob("*.json"))[0].read_text())
        known = {f["name"] for f in old.parsed["fields"]}
        data = Codec([old]).encode(old.name, {k: v for k, v in example.items() if k in known})
        name, decoded = codec.decode(data)
        assert name == old.name and set(decoded) == set(example)
