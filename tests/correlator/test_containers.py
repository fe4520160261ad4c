"""Container context in the correlator: a per-host store fed by ContainerInfo records (no socket, no host)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from execsight.correlator import validation
from execsight.correlator.batch import PROCESS_TYPES
from execsight.correlator.changelog import ChangeLog
from execsight.correlator.containers import HostContainers, workload_of
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import load_rules
from execsight.correlator.tree_state import EventGate

from .correlator_events import MS, Host, S
from .worker_process import query

RULES = load_rules([])
CID = "c" * 64


def info(host: str, t: int, cid: str = CID, **kw: Any) -> tuple[str, dict[str, Any]]:
    rec = {"host_id": host, "time_ns": t, "container_id": cid, "runtime": "containerd", "source": "cri",
           "name": "bwa", "image": "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "pod": "align-7f9c8d6b5-x2k9p",
           "namespace": "genomics", "labels": {"app": "align"}, "labels_truncated": False}
    rec.update(kw)
    return "ContainerInfo", rec


def apply(tree: HostTree, events: list[tuple[str, dict[str, Any]]], first_offset: int) -> Outputs:
    out = Outputs()
    for i, (kind, rec) in enumerate(events, start=first_offset):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return out


def pipeline(host: str) -> tuple[Host, int, int]:
    h = Host(host)
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "align.sh"], exe="/usr/bin/bash")
    bwa = h.spawn(root, ["bwa", "mem", "ref.fa", "r.fq"], container_id=CID)
    return h, root, bwa


def test_a_container_info_after_the_processes_were_written_still_names_them() -> None:
    h, root, bwa = pipeline("late")
    tree = HostTree("late", TreeConfig(), RULES.identify)
    first = apply(tree, list(h.events), 0)
    row = first.processes[("late", bwa, h.starts[bwa])]
    assert (row["container_id"], row["container_name"], row["image"]) == (CID, None, None)
    assert first.containers[CID]["name"] is None  # the containers row, anonymous so far

    second = apply(tree, [info("late", h.tick())], len(h.events))
    row = second.processes[("late", bwa, h.starts[bwa])]  # written again, now named
    assert (row["container_name"], row["image"], row["pod"], row["namespace"]) == (
        "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "align-7f9c8d6b5-x2k9p", "genomics")
    assert ("late", root, h.starts[root]) not in second.processes  # not in the container: not rewritten
    assert {k: second.containers[CID][k] for k in ("name", "pod", "namespace", "workload", "labels")} == {
        "name": "bwa", "pod": "align-7f9c8d6b5-x2k9p", "namespace": "genomics", "workload": "align",
        "labels": {"app": "align"}}

    n = len(h.events) + 1
    h.exit(bwa, "bwa", after=2 * S, cpu_ns=S)
    h.exit(root, "bash", after=MS)
    done = apply(tree, list(h.events[n - 1:]), n)
    assert [r["container_name"] for r in done.enriched_process if r["pid"] == bwa] == ["bwa"]  # published at exit
    [task] = [t for t in done.tasks.values() if t["container_id"] == CID]
    assert (task["container_name"], task["image"], task["namespace"]) == (
        "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "genomics")


def test_a_container_info_before_the_exec_names_it_at_once_and_its_image_names_the_tool() -> None:
    h = Host("early")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    tree = HostTree("early", TreeConfig(), RULES.identify)
    apply(tree, list(h.events), 0)
    n = len(h.events)
    events = [info("early", h.tick(), image="quay.io/biocontainers/zqxsuite:1.2.3--h1234_0")]
    tool = h.spawn(sh, ["zqxtool", "run"], exe="/usr/local/bin/zqxtool", container_id=CID)
    events += h.events[n:]
    out = apply(tree, events, n)
    row = out.processes[("early", tool, h.starts[tool])]
    assert row["container_name"] == "bwa" and row["image"].startswith("quay.io/biocontainers/zqxsuite")
    assert row["tool_package"] == "zqxsuite"  # the image is what recognises the tool


def test_container_state_survives_a_restart_and_a_replay_changes_nothing() -> None:
    tree = HostTree("rs", TreeConfig(), RULES.identify)
    out = apply(tree, [info("rs", 1_700_000_000 * S)], 7)
    assert out.containers[CID]["name"] == "bwa"
    changes = tree.changes()
    assert [k for k, _ in changes if k.startswith("c|")] == [f"c|{CID}"]
    restarted = HostTree("rs", TreeConfig(), RULES.identify)
    restarted.load(iter([(k, v) for k, v in changes if v is not None]))
    assert restarted.container_info(CID) == tree.container_info(CID)
    replay = apply(restarted, [info("rs", 1_700_000_000 * S, name="other")], 7)  # the same offset again
    assert replay.containers == {} and restarted.container_info(CID)["name"] == "bwa"  # type: ignore[index]
    assert [k for k, _ in restarted.changes() if k.startswith("c|")] == []


def test_an_answer_without_a_field_keeps_what_an_earlier_one_said() -> None:
    tree = HostTree("merge", TreeConfig(), RULES.identify)
    apply(tree, [info("merge", 1_700_000_000 * S)], 0)
    apply(tree, [info("merge", 1_700_000_001 * S, source="docker", pod=None, namespace=None, labels={})], 1)
    got = tree.container_info(CID)
    assert got is not None and (got["pod"], got["namespace"], got["labels"]) == (
        "align-7f9c8d6b5-x2k9p", "genomics", {"app": "align"})


def test_the_store_is_bounded_per_host() -> None:
    gate, log = EventGate(), ChangeLog()
    store = HostContainers(gate, log, max_entries=3)
    for i in range(5):
        gate.begin("P", i)
        store.apply(info("b", 1_700_000_000 * S + i, cid=f"{i:064x}")[1])
    assert len(store) == 3
    assert store.get(f"{0:064x}") is None and store.get(f"{4:064x}") is not None
    assert {k for k, v in log.changes() if v is not None} == {f"c|{i:064x}" for i in (2, 3, 4)}


def test_workload_of_a_pod() -> None:
    assert workload_of("align-7f9c8d6b5-x2k9p", {}) == "align"  # a Deployment's pod
    assert workload_of("etl-28901234-abcde", {}) == "etl"  # a CronJob's job pod
    assert workload_of("x", {"app.kubernetes.io/name": "api"}) == "api"
    assert workload_of(None, {}) is None


def test_boundary_validation_of_container_info() -> None:
    now = time.time_ns()
    assert "ContainerInfo" in PROCESS_TYPES  # on raw.process, in the host's order
    _, rec = info("v", now, name="bw\x00a", labels={f"k{i:03}": "v" * 900 for i in range(100)})
    checked = validation.validate("ContainerInfo", rec, now)
    assert checked.record is not None
    assert checked.record["name"] == "bw\ufffda"
    assert len(checked.record["labels"]) <= 64 and checked.record["labels_truncated"] is True
    assert all(len(v) <= 512 for v in checked.record["labels"].values())
    _, empty = info("v", now, cid="")
    assert validation.validate("ContainerInfo", empty, now).reason == "invalid: ContainerInfo: empty container_id"
    _, ahead = info("v", now + 10 * 3600 * S)
    assert "ahead" in validation.validate("ContainerInfo", ahead, now).reason


@pytest.mark.db
def test_the_containers_row_is_completed_by_a_late_container_info(database_url: str) -> None:
    h, _root, _bwa = pipeline("sink-late")
    tree = HostTree("sink-late", TreeConfig(), RULES.identify)
    first = apply(tree, list(h.events), 0)
    second = apply(tree, [info("sink-late", h.tick(), runtime="docker")], len(h.events))
    sink = Sink(database_url)

    async def write() -> None:
        await sink.write(first)
        assert query(database_url, "SELECT name FROM containers") == [(None,)]
        await sink.write(second)
        await sink.close()

    asyncio.run(write())
    assert query(database_url, "SELECT container_id, host_id, runtime, name, image, pod, namespace, workload, "
                               "labels FROM containers") == [
        (CID, "sink-late", "docker", "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "align-7f9c8d6b5-x2k9p",
         "genomics", "align", {"app": "align"})]


def test_no_correlator_module_asks_a_runtime_or_opens_a_socket() -> None:
    """Container context reaches the correlator in ContainerInfo records only (Kafka and the database aside)."""
    import ast
    from pathlib import Path

    import execsight.correlator

    banned = {"socket", "http", "urllib", "grpc", "requests", "docker"}
    for path in Path(execsight.correlator.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not {n.split(".")[0] for n in names} & banned, f"{path.name} imports {names}"


@pytest.mark.kafka
@pytest.mark.db
def test_the_worker_names_containers_from_the_stream_and_after_a_restart(settings: Any, tmp_path: Any) -> None:
    """The real worker (Kafka, Faust changelog, PostgreSQL): a ContainerInfo that follows the container's first
    process names it; after the worker is killed, a later process of that container is named from the state
    recovered from the changelog (the collector sends ContainerInfo once per container)."""
    from execsight.schemas.codec import default_codec
    from execsight.schemas.topics import ENRICHED_PROCESS

    from .worker_process import WorkerProcess, consume_all, produce, wait_for

    host = f"ctr-{time.time_ns()}"
    h, root, bwa = pipeline(host)
    h.events.append(info(host, h.tick(), runtime="docker"))
    h.exit(bwa, "bwa", after=S, cpu_ns=S)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    dsn = settings.database_url
    try:
        worker.start()
        produce(settings, h.events)
        wait_for(lambda: query(dsn, "SELECT name, pod, namespace, workload FROM containers"),
                 lambda rows: rows == [("bwa", "align-7f9c8d6b5-x2k9p", "genomics", "align")])
        time.sleep(2)  # commit interval 0.5 s: the offsets are committed, the restart does not read them again
        worker.kill()
        n = len(h.events)
        again = h.spawn(root, ["samtools", "sort", "x.bam"], container_id=CID)
        h.exit(again, "samtools", after=S, cpu_ns=S)
        h.exit(root, "bash", after=MS)
        worker.start()
        produce(settings, h.events[n:])
        codec = default_codec()
        msgs = [codec.decode(m.value())[1] for m in consume_all(settings, ENRICHED_PROCESS, 3)]
        named = {r["pid"]: (r["container_name"], r["namespace"]) for r in msgs if r["container_id"] == CID}
        assert named == {bwa: ("bwa", "genomics"), again: ("bwa", "genomics")}
    finally:
        worker.stop()
