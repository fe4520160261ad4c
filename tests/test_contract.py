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

from execsight.schemas import topics as topic_names
from execsight.schemas.codec import (
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
from execsight.schemas.topics import load_topics

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


# --- every example of every topic through each of its consumers (pure: no broker, no database) -------

# Consumers in topics.yaml outside this repository: they get the .avsc files and the README's snippet.
EXTERNAL_CONSUMERS = frozenset({"subscribers", "operators"})


class FakeMessage:
    """What the workers read of a confluent-kafka Message."""

    def __init__(self, topic: str, value: bytes, key: bytes = b"h") -> None:
        self._topic, self._value, self._key = topic, value, key

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class RecordingProducer:
    """Stands for the dead-letter producer: a test fails if anything is produced."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, dict[str, Any]]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append((topic, kwargs))

    def flush(self, timeout: float = 0) -> int:
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


class RecordingConnection:
    """The part of a psycopg connection execsight.findings.upsert_findings uses: keeps SQL and rows."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[Any, ...]]]] = []

    def cursor(self) -> RecordingConnection:
        return self

    def __enter__(self) -> RecordingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def executemany(self, sql: str, rows: Any) -> None:
        self.calls.append((sql, list(rows)))


def _settings() -> Any:
    from execsight.settings import load_settings

    return load_settings({})


def correlator_consumes(topic: str, name: str, data: bytes) -> None:
    """The correlator's per-message path (services/correlator/batch.py): decode, type check, HostTree."""
    from execsight.correlator.batch import HOST_TYPES, PROCESS_TYPES
    from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
    from execsight.correlator.tool_rules import load_rules

    kind, rec = default_codec().decode(data)
    source, allowed = ("H", HOST_TYPES) if topic == topic_names.RAW_HOST else ("P", PROCESS_TYPES)
    assert kind == name and kind in allowed, f"the correlator dead-letters {kind} on {topic}"
    assert rec.get("host_id"), "the correlator dead-letters a record with an empty host_id"
    tree, out = HostTree(str(rec["host_id"]), TreeConfig(), load_rules([]).identify), Outputs()
    tree.apply(kind, rec, source, 1, out)  # KeyError/TypeError/ValueError here means a dead letter
    tree.finish(out)


def tune_consumes(topic: str, name: str, data: bytes) -> None:
    """The tune worker's decode step (services/tune/worker.py): expected type per topic, validate()."""
    from execsight.tune.worker import TuneWorker

    producer = RecordingProducer()
    worker = TuneWorker(_settings())
    decoded = worker.decode(producer, [FakeMessage(topic, data)])  # type: ignore[arg-type, list-item]
    assert producer.produced == [], f"tune dead-lettered it: {producer.produced[0][1].get('headers')}"
    assert [n for n, _ in decoded] == [name]


def sweep_consumes(topic: str, name: str, data: bytes) -> None:
    """The sweep worker's handle() (services/sweep/worker.py): decode, then fold into the host tracker."""
    from execsight.sweep.worker import SweepWorker

    producer = RecordingProducer()
    worker = SweepWorker(_settings())
    worker.handle(FakeMessage(topic, data), producer)  # type: ignore[arg-type]
    assert producer.produced == [], f"sweep dead-lettered it: {producer.produced[0][1].get('headers')}"
    assert (worker.messages, worker.deadlettered) == (1, 0)


def ui_consumes(topic: str, name: str, data: bytes) -> None:
    """The dashboard reads findings from the findings table: the row execsight.findings stores for it."""
    from execsight.findings import upsert_findings

    _, rec = default_codec().decode(data)
    conn = RecordingConnection()
    upsert_findings(conn, "tune" if topic == topic_names.FINDINGS_TUNE else "sweep", [rec])  # type: ignore[arg-type]
    [(sql, rows)] = conn.calls
    assert len(rows) == 1 and len(rows[0]) == sql.count("%s"), "a findings column without its value"
    assert rows[0][0] == rec["finding_id"]


CONSUMERS: dict[str, Any] = {
    "correlator": correlator_consumes,
    "tune": tune_consumes,
    "sweep": sweep_consumes,
    "ui": ui_consumes,
}


def consumer_cases() -> list[tuple[str, str, str, Path]]:
    return [
        (topic.name, consumer, name, path)
        for topic in load_topics().values()
        for consumer in topic.consumers
        if consumer not in EXTERNAL_CONSUMERS
        for name, path in all_examples()
        if name in topic.value_schemas
    ]


def test_every_consumer_in_the_topics_file_has_a_check_and_every_topic_examples() -> None:
    named = {c for t in load_topics().values() for c in t.consumers}
    assert named - EXTERNAL_CONSUMERS == set(CONSUMERS), "a consumer of topics.yaml without a contract check"
    cases = consumer_cases()
    for topic in load_topics().values():
        for schema in topic.value_schemas:
            for consumer in set(topic.consumers) - EXTERNAL_CONSUMERS:
                assert any(c[:3] == (topic.name, consumer, schema) for c in cases), (topic.name, consumer, schema)


@pytest.mark.parametrize(("topic", "consumer", "name", "path"), consumer_cases(),
                         ids=lambda v: getattr(v, "name", v))
def test_every_example_passes_through_each_consumer_of_its_topic(topic: str, consumer: str, name: str,
                                                                 path: Path) -> None:
    data = default_codec().encode(name, json.loads(path.read_text()))
    CONSUMERS[consumer](topic, name, data)


# --- schemas/compat_check.py: the CI step on changed .avsc files -------------------------------------

def _version(name: str, extra_fields: list[dict[str, Any]], extra_values: dict[str, Any]) -> Any:
    from execsight.schemas.compat_check import Version

    raw = json.loads((AVRO_DIR / "sweep_finding.avsc").read_text())
    assert raw["name"] == name
    raw["fields"] += extra_fields
    examples = {p.name: {**json.loads(p.read_text()), **extra_values} for p in sorted((EXAMPLES / name).glob("*.json"))}
    return Version(raw, examples)


def test_compat_check_accepts_a_field_added_with_a_default() -> None:
    from execsight.schemas.compat_check import problems

    old = _version("SweepFinding", [], {})
    new = _version("SweepFinding", [{"name": "owner", "type": ["null", "string"], "default": None}], {"owner": "ops"})
    assert problems(old, new) == []
    assert problems(new, old) == []  # removing a field that had a default is compatible too


def test_compat_check_names_a_field_without_default_and_a_changed_type() -> None:
    from execsight.schemas.compat_check import problems

    old = _version("SweepFinding", [], {})
    new = _version("SweepFinding", [{"name": "owner", "type": "string"}], {"owner": "ops"})
    found = problems(old, new)
    assert found[0] == "field 'owner' added without a default: records written before it cannot be read"
    assert any(p.startswith("old writer -> new reader: v1-1.json") for p in found)

    retyped = _version("SweepFinding", [], {})
    retyped.schema["fields"][[f["name"] for f in retyped.schema["fields"]].index("summary")]["type"] = "int"
    assert any("new reader" in p and "string is not int" in p for p in problems(old, retyped))


def _git_repo(root: Path) -> None:
    """A repository holding this checkout's schemas/avro and schemas/examples, committed twice."""
    import shutil
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    shutil.copytree(AVRO_DIR, root / "schemas" / "avro")
    shutil.copytree(EXAMPLES, root / "schemas" / "examples")
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "first")
    (root / "README").write_text("second commit, no schema change\n")
    git("add", ".")
    git("commit", "-qm", "second")


def test_compat_check_compares_changed_files_with_the_previous_commit(tmp_path: Path) -> None:
    from execsight.schemas.compat_check import base_commit, changed_schemas, check

    _git_repo(tmp_path)
    base = base_commit(repo=tmp_path)  # on main itself: HEAD~1
    assert base is not None
    assert changed_schemas(base, tmp_path) == [] and check(base, tmp_path) == []

    path = tmp_path / "schemas" / "avro" / "tune_finding.avsc"
    raw = json.loads(path.read_text())
    raw["fields"].append({"name": "ticket", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(raw))
    assert changed_schemas(base, tmp_path) == ["schemas/avro/tune_finding.avsc"]
    assert check(base, tmp_path) == []

    raw["fields"].append({"name": "owner", "type": "string"})
    path.write_text(json.dumps(raw))
    found = check(base, tmp_path)
    assert found and all(p.startswith("schemas/avro/tune_finding.avsc: ") for p in found)
    assert "field 'owner' added without a default" in found[0]

    (tmp_path / "schemas" / "avro" / "sweep_finding.avsc").unlink()
    assert any("sweep_finding.avsc: removed" in p for p in check(base, tmp_path))


def test_compat_check_without_a_previous_commit_has_nothing_to_compare(tmp_path: Path) -> None:
    import subprocess

    from execsight.schemas.compat_check import base_commit

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert base_commit(repo=tmp_path) is None
    assert base_commit("no-such-commit", repo=tmp_path) is None
