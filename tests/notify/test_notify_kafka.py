"""The notifier against real Kafka (a test topic prefix) and a local HTTP server receiving the posts."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from execsight.findings import publish_findings
from execsight.kafka_io import make_producer
from execsight.notify.worker import NotifyWorker
from execsight.schemas.topics import FINDINGS_SWEEP, FINDINGS_TUNE
from execsight.settings import Settings, load_settings
from tests.notify.findings_data import sweep_finding, tune_finding

pytestmark = [pytest.mark.kafka]


class Hooks:
    """Webhook paths on 127.0.0.1: every POST is recorded; /flaky answers 500 to its first POST."""

    def __init__(self) -> None:
        self.posts: dict[str, list[dict[str, Any]]] = {}
        self.fail_first = {"/flaky": 1}
        self.always_fail: set[str] = {"/down"}
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hooks.lock:
                    hooks.posts.setdefault(self.path, []).append(body)
                    fail = hooks.fail_first.get(self.path, 0) > 0 or self.path in hooks.always_fail
                    if hooks.fail_first.get(self.path, 0) > 0:
                        hooks.fail_first[self.path] -= 1
                self.send_response(500 if fail else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts.get(path, []))


@pytest.fixture()
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture()
def kafka_settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    return load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "EXECSIGHT_TOPIC_PREFIX": topic_prefix,
                          "EXECSIGHT_STATE_DIR": str(tmp_path / "state"), "EXECSIGHT_LOG_FORMAT": "text"})


ROUTES = """\
routes:
  - name: slack-high
    min_severity: HIGH
    url_env: HOOK_SLACK
    format: slack
  - name: flaky-json
    kinds: [idle_host]
    url_env: HOOK_FLAKY
    format: json
  - name: down
    kinds: [unattached_volume]
    url_env: HOOK_DOWN
    format: json
retry:
  attempts: 3
  initial_s: 0.05
  max_s: 0.2
  timeout_s: 5
"""


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # mtime granularity: make sure the stamp moves even on a coarse clock
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_findings_are_routed_retried_deduplicated_and_reloaded(
        kafka_settings: Settings, hooks: Hooks, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    env = {"HOOK_SLACK": f"{hooks.base}/slack", "HOOK_FLAKY": f"{hooks.base}/flaky", "HOOK_DOWN": f"{hooks.base}/down",
           "HOOK_OTHER": f"{hooks.base}/other"}
    worker = NotifyWorker(kafka_settings, routes, env=env)
    producer = make_producer(kafka_settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding",
                         [tune_finding("t-high", severity="HIGH"), tune_finding("t-low", severity="LOW")])
        publish_findings(producer, kafka_settings, FINDINGS_SWEEP, "SweepFinding", [sweep_finding("s-idle")])
        wait_for(lambda: len(hooks.got("/slack")) >= 1 and len(hooks.got("/flaky")) >= 2, "first posts")

        # exactly one post per finding, to the right webhook
        slack = hooks.got("/slack")
        assert [p["text"].split(":")[0] for p in slack] == ["New finding [HIGH] rightsize_memory (tune)"]
        assert "t-high" in json.dumps(slack[0]["blocks"])
        # the flaky webhook: 500, then the retry got 200
        flaky = hooks.got("/flaky")
        assert len(flaky) == 2 and all(p["finding"]["finding_id"] == "s-idle" for p in flaky)
        assert flaky[0]["event"] == "opened" and flaky[0]["source"] == "sweep"
        wait_for(lambda: worker.stats.delivered == 2, "both deliveries counted")
        assert worker.stats.retries == 1 and worker.stats.given_up == 0

        # re-published, same severity: not re-posted; escalated (sweep MEDIUM -> HIGH): posted again
        publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding",
                         [tune_finding("t-high", severity="HIGH", updated_ns=1_800_000_000_000_000_000)])
        publish_findings(producer, kafka_settings, FINDINGS_SWEEP, "SweepFinding",
                         [sweep_finding("s-idle", severity="HIGH")])
        wait_for(lambda: worker.stats.findings == 5, "re-published findings consumed")
        # the sweep finding is HIGH now: new to slack-high, escalated on flaky-json
        assert len(hooks.got("/slack")) == 2
        assert hooks.got("/slack")[1]["text"].startswith("New finding [HIGH] idle_host (sweep)")
        assert [p["event"] for p in hooks.got("/flaky")] == ["opened", "opened", "escalated"]

        # a webhook that stays down: bounded retries, given up, counted, and the worker moves on
        publish_findings(producer, kafka_settings, FINDINGS_SWEEP, "SweepFinding",
                         [sweep_finding("s-vol", kind="unattached_volume")])
        wait_for(lambda: worker.stats.given_up == 1, "give-up on /down")
        assert len(hooks.got("/down")) == 3
        assert worker.metrics.registry.get_sample_value(
            "execsight_notify_given_up_total", {"route": "down"}) == 1.0

        # a reload of the routes file changes routing
        write(routes, ROUTES.replace("min_severity: HIGH", "min_severity: HIGH\n    pipelines: [other]")
              .replace("url_env: HOOK_SLACK", "url_env: HOOK_OTHER"))
        wait_for(lambda: worker.stats.reloads == 1, "reload")
        publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding",
                         [tune_finding("t-rnaseq", severity="HIGH"),
                          tune_finding("t-other", severity="HIGH", pipeline="other")])
        wait_for(lambda: len(hooks.got("/other")) >= 1 and worker.stats.findings == 8, "routing after reload")
        assert len(hooks.got("/slack")) == 2
        assert [p["text"].split(":")[0] for p in hooks.got("/other")] == ["New finding [HIGH] rightsize_memory (tune)"]
        assert "t-other" in json.dumps(hooks.got("/other")[0]["blocks"])

        # a broken file is refused with file and line; the routes in force stay
        write(routes, ROUTES.replace("format: json\n", "format: teams\n", 1))
        wait_for(lambda: worker.stats.config_errors == 1, "refused reload")
        assert worker.stats.last_config_error == \
            f"{routes}:6: route 'flaky-json': format 'teams': expected one of slack, json"
        refused = [r for r in caplog.records if r.getMessage().startswith("routes file refused")]
        assert refused and refused[0].__dict__["file"] == str(routes) and refused[0].__dict__["line"] == 6
        publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding",
                         [tune_finding("t-other-2", severity="HIGH", pipeline="other")])
        wait_for(lambda: len(hooks.got("/other")) == 2, "routing by the routes in force")
        # no log line carries a webhook URL
        assert not [r for r in caplog.records if hooks.base in r.getMessage() or hooks.base in json.dumps(
            {k: str(v) for k, v in r.__dict__.items()})]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    # a restart (same group, same state file) re-posts nothing
    before = {k: len(v) for k, v in hooks.posts.items()}
    again = NotifyWorker(kafka_settings, _fixed(routes), env=env)
    publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding", [tune_finding("t-other", severity="HIGH",
                                                                                           pipeline="other")])
    again.run(threading.Event(), idle_exit_s=15)
    assert {k: len(v) for k, v in hooks.posts.items()} == before
    assert again.stats.findings == 1


def _fixed(routes: Path) -> Path:
    """The routes file with the broken line repaired (a worker does not start on a broken file)."""
    routes.write_text(routes.read_text().replace("format: teams\n", "format: json\n"))
    return routes


def test_stopped_while_the_webhook_is_down_loses_nothing(
        kafka_settings: Settings, hooks: Hooks, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: down\n    url_env: HOOK\n    format: json\n"
                      "retry: {attempts: 100, initial_s: 0.1, max_s: 0.2}\n")
    env = {"HOOK": f"{hooks.base}/down"}
    producer = make_producer(kafka_settings)
    publish_findings(producer, kafka_settings, FINDINGS_TUNE, "TuneFinding", [tune_finding("t-1")])
    worker = NotifyWorker(kafka_settings, routes, env=env)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: len(hooks.got("/down")) >= 3, "retries against the down webhook")
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert worker.stats.given_up == 0 and worker.stats.delivered == 0

    hooks.always_fail.clear()  # the webhook is back: the next start posts what was pending
    tries = len(hooks.got("/down"))
    again = NotifyWorker(kafka_settings, routes, env=env)
    again.run(threading.Event(), idle_exit_s=10)
    assert again.stats.delivered == 1
    last = hooks.got("/down")[tries:]
    assert [(p["event"], p["finding"]["finding_id"]) for p in last] == [("opened", "t-1")]
