"""Processes that exit while the collector is down (issue 19.4), against the real stack: the test's own
collector (eBPF, its own topic prefix and host id) and its own correlator and database.

A labelled run (a shell and N `sleep` children) is seen at exec; the collector is stopped (SIGKILL, or a
clean SIGTERM), the children and the shell are ended in the gap, the collector is started again on the
same state dir. Asserted: one ProcessExitUnobserved per process of ours (expected vs found), one
CollectorGap whose window covers the downtime, the processes closed in the database at the bound and
flagged exit_unobserved, the run no longer RUNNING and marked by run_collector_gaps, the counters on
the restarted collector's /metrics.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from execsight.collector import live_set
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_PROCESS
from execsight.settings import Settings
from tests.collector.feed import CollectorProcess
from tests.correlator.worker_process import WorkerProcess, consume_all, query, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.db, pytest.mark.ebpf, pytest.mark.e2e]

N = 12
S = 1_000_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^(execsight_\S+) (\S+)$", text, re.M)}


@pytest.mark.parametrize("stop", ["sigkill", "clean"])
def test_exits_in_a_collector_gap_are_reported_unobserved_and_the_run_finishes(
        settings: Settings, tmp_path: Path, stop: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")
    host_id = f"gap-{uuid.uuid4().hex[:10]}"
    run_id = f"gap-run-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap, "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
           "EXECSIGHT_HOST_ID": host_id, "EXECSIGHT_STATE_DIR": str(tmp_path / "collector-state")}
    args = ["--output", "kafka", "--no-imds", "--host-interval", "1", "--spool-dir", str(tmp_path / "spool"),
            "--metrics-port", str(port)]
    worker = WorkerProcess(settings, tmp_path / "worker.log")  # run timeout 1 h: only an exit can end the run
    first = CollectorProcess(args, env=env, log_path=tmp_path / "collector-1.log")
    second: CollectorProcess | None = None
    root: subprocess.Popen[bytes] | None = None
    dsn = settings.database_url
    try:
        worker.start()
        first.wait_started()
        root = subprocess.Popen(["sh", "-c", f"i=0; while [ $i -lt {N} ]; do sleep 600 & i=$((i+1)); done; wait"],
                                env={**os.environ, "EXECSIGHT_RUN_ID": run_id, "EXECSIGHT_PIPELINE": "gap-test"})
        kids = wait_for(lambda: _children(root.pid), lambda k: len(k) == N, 30)
        ours = {root.pid, *kids}
        # the correlator has them open: their execs were reported before the collector went away
        wait_for(lambda: query(dsn, "SELECT count(*) FROM processes WHERE run_id = %s AND end_time IS NULL",
                               (run_id,)), lambda r: r[0][0] == N + 1, 90)
        time.sleep(live_set.SAVE_INTERVAL_S + 1)  # at least one periodic save holds them
        down_ns = time.time_ns()
        if stop == "sigkill":
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(30)
        else:
            assert first.stop() == 0
        stopped_ns = time.time_ns()
        for pid in kids:  # they exit while nothing observes them; then the shell's wait returns
            os.kill(pid, signal.SIGTERM)
        root.wait(30)
        time.sleep(2)
        up_ns = time.time_ns()
        second = CollectorProcess(args, env=env, log_path=tmp_path / "collector-2.log")
        second.wait_started()

        codec = default_codec()

        def records() -> list[tuple[str, dict[str, Any]]]:
            msgs = consume_all(settings, RAW_PROCESS, 1, timeout_s=10)
            return [r for r in (codec.decode(m.value()) for m in msgs) if r[1]["host_id"] == host_id]

        got = wait_for(records, lambda rs: any(k == "CollectorGap" for k, _ in rs), 60)
        exits = [r for k, r in got if k == "ProcessExitUnobserved"]
        found = {r["pid"] for r in exits} & ours
        assert found == ours, f"expected {len(ours)} unobserved exits of ours, found {len(found)}"
        assert not [r for k, r in got if k == "ProcessExit" and r["pid"] in ours], "their exits were never seen"
        (gap,) = [r for k, r in got if k == "CollectorGap"]
        assert gap["reason"] == ("crash" if stop == "sigkill" else "stop")
        # the window starts at the last save before the kill, or at the end of a clean stop; ends at the restart
        if stop == "sigkill":
            assert down_ns - int((live_set.SAVE_INTERVAL_S + 1) * S) <= gap["from_ns"] <= down_ns, (gap, down_ns)
        else:
            assert down_ns <= gap["from_ns"] <= stopped_ns, (gap, down_ns, stopped_ns)
        assert up_ns <= gap["to_ns"] <= time.time_ns()
        assert gap["unobserved_exits"] == len(exits) >= N + 1
        for r in exits:
            assert r["last_seen_ns"] == gap["from_ns"] and r["time_ns"] == gap["to_ns"]

        # the correlator closed them at the bound, flagged, and the run ended instead of staying RUNNING
        rows = wait_for(lambda: query(dsn, "SELECT pid, exit_code, signal, exit_unobserved,"
                                           " (extract(epoch FROM end_time) * 1e9)::bigint FROM processes"
                                           " WHERE run_id = %s AND end_time IS NOT NULL", (run_id,)),
                        lambda r: len(r) == N + 1, 60)
        assert {r[0] for r in rows} == ours
        for _pid, code, sig, flagged, end_ns in rows:
            assert (code, sig, flagged) == (None, None, True)
            assert abs(end_ns - gap["from_ns"]) < 1_000_000  # to the microsecond of timestamptz
        ((status,),) = wait_for(lambda: query(dsn, "SELECT status FROM runs WHERE run_id = %s", (run_id,)),
                                lambda r: bool(r) and r[0][0] != "RUNNING", 60)
        assert status in ("SUCCEEDED", "FAILED")
        (marked,) = query(dsn, "SELECT run_unobserved_exits, reason FROM run_collector_gaps WHERE run_id = %s",
                          (run_id,))
        assert marked == (N + 1, gap["reason"])
        ((stored,),) = query(dsn, "SELECT unobserved_exits FROM collector_gaps WHERE host_id = %s", (host_id,))
        assert stored == gap["unobserved_exits"]

        m = _metrics(port)
        assert m["execsight_collector_exits_unobserved_total"] == gap["unobserved_exits"]
        assert m["execsight_collector_gaps_total"] == 1
        blind = (gap["to_ns"] - gap["from_ns"]) / 1e9
        assert m["execsight_collector_blind_seconds_total"] == pytest.approx(blind, abs=0.01) and blind >= 2
        assert m['execsight_collector_lost_events_total{buffer="exit_unobserved"}'] == gap["unobserved_exits"]
        print(f"\n{stop}: {len(found)}/{len(ours)} unobserved exits of ours, {gap['unobserved_exits']} on the host, "
              f"blind window {blind:.1f} s (down {(up_ns - down_ns) / 1e9:.1f} s)")
    finally:
        if root is not None and root.poll() is None:
            root.kill()
        for c in (first, second):
            if c is not None:
                c.stop()
        worker.stop()
