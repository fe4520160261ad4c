"""The correlator is pure over the stream (issue 15): no module under services/correlator opens a file or a
socket, except the Kafka and database adapters and the start-up config load; and a correlator that cannot
see a pipeline's files still names every Nextflow and Snakemake task, from the collector's ProcessContext
records (the files read through /proc/<pid>/root of a process in a mount namespace the test does not share).
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from execsight.collector.context_files import ContextReader
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from ..mount_namespace import private_tmpfs
from . import fixture_streams

CORRELATOR = Path(__file__).resolve().parents[2] / "services" / "correlator"

# module -> why it may touch files, sockets or processes
ALLOWED = {
    "app.py": "the Faust app: Kafka (through Faust/aiokafka)",
    "batch_consumer.py": "the Kafka consumer adapter",
    "kafka_publisher.py": "the Kafka producer adapter (confluent-kafka)",
    "metrics.py": "the /metrics HTTP server and the Kafka lag query",
    "sink.py": "the PostgreSQL adapter (psycopg)",
    "main.py": "the supervisor: starts the worker process",
    "tool_rules.py": "its own packaged tool_rules.yaml and EXECSIGHT_TOOL_RULES files, at start-up and on change",
}
FILE_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "listdir", "scandir",
              "glob", "rglob", "readlink", "stat", "exists", "is_file", "is_dir", "walk", "Popen",
              "check_output", "urlopen", "create_connection"}
# io stays allowed for io.StringIO (an in-memory text); io.open is an open() call and caught as one
MODULES = {"socket", "http", "urllib", "requests", "subprocess", "shutil", "docker", "pathlib", "os", "glob",
           "tempfile", "mmap"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in MODULES:
                    found.append(f"{path.name}:{node.lineno}: imports {name}")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in FILE_CALLS:
                found.append(f"{path.name}:{node.lineno}: calls {name}()")
    return found


def test_no_correlator_module_opens_files_or_sockets_outside_the_adapters() -> None:
    modules = sorted(CORRELATOR.rglob("*.py"))
    assert len(modules) > 20
    bad = [v for m in modules if m.name not in ALLOWED or m.parent != CORRELATOR for v in _violations(m)]
    assert bad == [], "file, socket or process access outside the allowed adapters:\n" + "\n".join(bad)
    # the check finds what it looks for: the allowed config loader does read files
    assert any("open" in v or "read_text" in v for v in _violations(CORRELATOR / "tool_rules.py"))


def test_the_check_catches_a_file_read(tmp_path: Path) -> None:
    bad = tmp_path / "engine.py"
    bad.write_text("def name(p):\n    with open(p) as fh:\n        return fh.read()\n")
    assert _violations(bad) == ["engine.py:2: calls open()"]


@pytest.fixture
def private_work(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A process in its own mount namespace with a tmpfs at ``mnt`` holding the pipelines' files: through
    /proc/<pid>/root they are there; in this process (the correlator's) ``mnt`` is an empty directory."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    mnt = tmp_path / "private"
    fx = fixture_streams.FIXTURES
    with private_tmpfs(mnt, f"cp -r {fx / 'nf'} {mnt}/nf && cp -r {fx / 'smk'} {mnt}/smk") as pid:
        yield pid, mnt


def _stream(name: str, ns_pid: int, mnt: Path, place: str) -> list[tuple[str, dict[str, object]]]:
    """The recorded stream with its work dir and fixture paths moved into the private namespace, and the
    ProcessContext records the collector's reader makes there (through /proc/<ns_pid>/root)."""
    work = mnt / "nf" if name == "nextflow" else mnt / "smk-work"
    events = fixture_streams.load(name, context=None, work=str(work), fixtures=str(mnt))
    reader = ContextReader("ns", roots=lambda pid, ppid: [f"/proc/{ns_pid}/root"], files_per_s=1e9, burst=10**9)
    return fixture_streams.with_context(events, place, reader=reader)


@pytest.mark.parametrize("place", ["after_exec", "before_exit", "end"])
def test_a_correlator_that_cannot_see_the_files_names_every_task(private_work: tuple[int, Path], place: str) -> None:
    ns_pid, mnt = private_work
    assert list(mnt.iterdir()) == []  # what the correlator's process sees of the pipelines' files: nothing
    names = {}
    for name in ("nextflow", "snakemake"):
        events = _stream(name, ns_pid, mnt, place)
        contexts = [r for k, r in events if k == "ProcessContext"]
        assert contexts and all(r["text"] and r["error"] is None for r in contexts), contexts
        tree = HostTree("fixture-host", TreeConfig(run_timeout_ns=2_000_000_000), load_rules([]).identify)
        out = Outputs()
        for i, (kind, rec) in enumerate(events):
            tree.apply(kind, rec, "H" if kind in ("HostSample", "CollectorStatus") else "P", i, out)
        tree.finish(out)
        names[name] = sorted(t["task"] for t in out.tasks.values())
    assert names["nextflow"] == ["GZIP (ref)", "INDEX (ref)", "STATS (ref)"]
    smk = names["snakemake"]
    assert "snakemake_job" not in smk and {"reference", "index", "align (s=s1)", "align (s=s2)"} <= set(smk), smk


def test_without_the_context_records_the_tasks_stay_unnamed(private_work: tuple[int, Path]) -> None:
    """The same streams without ProcessContext: the correlator cannot name them (it reads no files)."""
    _, mnt = private_work
    events = fixture_streams.load("nextflow", context=None, work=str(mnt / "nf"), fixtures=str(mnt))
    tree = HostTree("fixture-host", TreeConfig(run_timeout_ns=2_000_000_000), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(events):
        tree.apply(kind, rec, "H" if kind in ("HostSample", "CollectorStatus") else "P", i, out)
    tree.finish(out)
    assert sorted(t["task"] for t in out.tasks.values()) == sorted(t["task_id"] for t in out.tasks.values())
