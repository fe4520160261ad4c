"""The live view in headless Chromium, watching a real run: `execsight run` of a command with labelled tasks,
observed by this test's own collector, correlator and tune worker (own topics and database, as in tests/e2e),
while the dashboard reads that database as the read-only role.

Seen in the browser, with no reload: the run's tasks running now, the done count going up as they end while
another still runs, and the live section saying that the run has ended. Then a reload shows the ended run
with every task, and the counts the live view showed match the database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from execsight.settings import Settings

from ..e2e.test_demo_e2e import _service_env, running_services
from .chromium_cdp import CHROMIUM, Chromium
from .conftest import as_role, grant_readonly
from .served_dashboard import served_dashboard
from .test_run_page_browser import ARTIFACTS, rendered

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium package")]

# A plain command is one task; three children labelled as tasks of their own (EXECSIGHT_TASK) are three
# more: a short one, a long one, and one that starts later. The script's own task (its sh, the subshell and
# sleep) ends last. Each child hashes in bursts (some CPU to show, little load on a shared machine) for its
# number of seconds.
WORK = "import hashlib, sys, time\nend = time.time() + float(sys.argv[1])\n" \
       "while time.time() < end:\n    hashlib.sha256(b'x' * 4_000_000).digest()\n    time.sleep(0.1)\n"
SCRIPT = """#!/bin/sh
EXECSIGHT_TASK=short python3 {work} 8 &
EXECSIGHT_TASK=long python3 {work} 40 &
(sleep 12; EXECSIGHT_TASK=late python3 {work} 10) &
wait
"""
TASKS = 4

# The live tiles as numbers, the caption's state, whether the live section is there at all.
LIVE_STATE = """(() => {
  const tiles = {};
  document.querySelectorAll('[data-testid="stMetric"]').forEach(m => {
    const label = m.querySelector('[data-testid="stMetricLabel"]');
    const value = m.querySelector('[data-testid="stMetricValue"]');
    if (label && value) tiles[label.innerText.trim()] = value.innerText.trim();
  });
  const text = document.body.innerText;
  return JSON.stringify({live: text.includes('Live: tasks now'), running: tiles['Running now'], done: tiles['Done'],
                         failed: tiles['Failed'], ended: text.includes('the run has ended'),
                         at: (text.match(/Live as of ([0-9:]+) UTC/) || [])[1] || null,
                         page_at: (text.match(/Page rendered at ([0-9:]+) UTC/) || [])[1] || null});
})()"""


def _run_status(dsn: str, run_id: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def test_live_view_watches_a_real_run_to_its_end(
    settings: Settings, readonly_role: tuple[str, str], browser: Chromium, tmp_path: Path
) -> None:
    run_id = f"live-{settings.topic_prefix.strip('.')}"
    work, script = tmp_path / "work.py", tmp_path / "tasks.sh"
    work.write_text(WORK)
    script.write_text(SCRIPT.format(work=work))
    script.chmod(0o755)
    grant_readonly(settings.database_url, readonly_role[0])
    ui_env = {**os.environ, "EXECSIGHT_UI_DATABASE_URL": as_role(settings.database_url, readonly_role),
              "HOME": str(tmp_path)}
    seen: list[dict[str, object]] = []
    with running_services(settings, tmp_path / "logs"), served_dashboard(ui_env, tmp_path) as base:
        run = subprocess.Popen(
            [sys.executable, "-m", "execsight.cli", "run", "--pipeline", "live-watch", "--run-id", run_id,
             "--timeout", "120", "--json", str(tmp_path / "report.json"), "--", str(script)],
            env=_service_env(settings), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while _run_status(settings.database_url, run_id) != "RUNNING":
                assert run.poll() is None and time.monotonic() < deadline, "the run never showed up as RUNNING"
                time.sleep(0.5)
            browser.navigate(f"{base}/runs?run={run_id}")
            rendered(browser, ["Live: tasks now", "Running now"], "the live run page", timeout_s=90)
            browser.screenshot(ARTIFACTS / "live_run_real.png")
            deadline = time.monotonic() + 180
            while True:  # one look per second; the live section refreshes itself every 5 s
                state = json.loads(browser.evaluate(LIVE_STATE))
                if not seen or {k: v for k, v in state.items() if k != "at"} != \
                        {k: v for k, v in seen[-1].items() if k != "at"}:
                    seen.append(state)
                if state["ended"] and state["done"] == str(TASKS):
                    break
                assert time.monotonic() < deadline, seen
                time.sleep(1)
            out, _ = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, out.decode(errors="replace")[-3000:]

        # watched without a reload: the page itself was rendered once, the live section many times
        assert len({s["page_at"] for s in seen}) == 1, seen
        running = [int(str(s["running"])) for s in seen if s["running"] is not None]
        done = [int(str(s["done"])) for s in seen if s["done"] is not None]
        assert max(running) >= 1, seen
        # a task ended while another still ran: the done count went up during the run
        assert any(int(str(s["done"])) >= 1 and int(str(s["running"])) >= 1 for s in seen
                   if s["done"] is not None and s["running"] is not None), seen
        assert done == sorted(done) and done[-1] > done[0], seen
        assert seen[-1]["ended"] and seen[-1]["failed"] == "0"

        # reloaded: the ended run with its tasks, what the database holds
        browser.navigate(f"{base}/runs?run={run_id}")
        rendered(browser, ["At a glance", "Where the time went", "SUCCEEDED"], "the ended run's page", timeout_s=90)
        assert "Live: tasks now" not in browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "live_run_real_ended.png")
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT status, task_count FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        statuses = [r[0] for r in conn.execute("SELECT status FROM tasks WHERE run_id = %s", (run_id,))]
    assert row is not None and row[0] == "SUCCEEDED" and row[1] == TASKS, row
    assert statuses == ["SUCCEEDED"] * TASKS
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["complete"] and len(doc["report"]["tasks"]) == TASKS, doc["note"]
    assert re.fullmatch(r"[0-9:]+", str(seen[-1]["at"])), seen
