"""Routing, de-duplication, formatting and retries of the notifier, without servers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from execsight.notify import delivery, messages
from execsight.notify.posted_state import load_state, save_state
from execsight.notify.routes import (
    ESCALATED,
    OPENED,
    REOPENED,
    RESOLVED,
    Delivery,
    NotifyConfig,
    Posted,
    RetryPolicy,
    RoutesError,
    after,
    decide,
    parse_config,
    plan,
)
from tests.notify.findings_data import sweep_finding, tune_finding

ENV = {"SLACK_URL": "https://hooks.example/T000/SECRET", "JSON_URL": "http://127.0.0.1:9/hook"}

ROUTES = """\
routes:
  - name: oncall
    min_severity: high
    kinds: [rightsize_memory, regression]
    url_env: SLACK_URL
    format: slack
  - name: rnaseq-all
    pipelines: rnaseq
    url_env: JSON_URL
    format: json
    resolved: false
  - name: waste
    min_severity: MEDIUM
    kinds: [idle_host]
    url_env: JSON_URL
    format: json
retry:
  attempts: 3
  initial_s: 0.5
  max_s: 1
"""


def config() -> NotifyConfig:
    return parse_config(ROUTES, "routes.yaml", ENV)


def names(deliveries: list[Delivery]) -> list[str]:
    return [d.route.name for d in deliveries]


def test_routes_match_on_severity_kind_and_pipeline() -> None:
    cfg = config()
    assert names(plan(cfg, {}, tune_finding("a", severity="HIGH"))) == ["oncall", "rnaseq-all"]
    assert names(plan(cfg, {}, tune_finding("b", severity="MEDIUM"))) == ["rnaseq-all"]
    assert names(plan(cfg, {}, tune_finding("c", kind="io_bound", pipeline="other"))) == []
    assert names(plan(cfg, {}, sweep_finding("d", severity="MEDIUM"))) == ["waste"]
    assert names(plan(cfg, {}, sweep_finding("e", severity="LOW"))) == []
    assert cfg.retry == RetryPolicy(attempts=3, initial_s=0.5, max_s=1.0, timeout_s=10.0)


def test_dedup_decisions() -> None:
    f = tune_finding("x", severity="MEDIUM")
    assert decide(None, f) == OPENED
    assert decide(None, tune_finding("x", status="RESOLVED")) is None
    assert decide(Posted("OPEN", "MEDIUM"), f) is None  # re-detected: not re-posted
    assert decide(Posted("OPEN", "HIGH"), f) is None  # severity fell: not posted
    assert decide(Posted("OPEN", "LOW"), f) == ESCALATED
    assert decide(Posted("OPEN", "MEDIUM"), tune_finding("x", status="RESOLVED")) == RESOLVED
    assert decide(Posted("RESOLVED", "MEDIUM"), f) == REOPENED
    assert decide(Posted("RESOLVED", "MEDIUM"), tune_finding("x", status="RESOLVED")) is None
    # the highest severity posted while open is kept, so falling and rising back is not re-posted
    assert after(Posted("OPEN", "HIGH"), tune_finding("x", status="RESOLVED", severity="LOW"), RESOLVED) == \
        Posted("RESOLVED", "HIGH")


def test_resolution_reaches_routes_that_posted_it_even_below_their_threshold() -> None:
    cfg = config()
    state = {("oncall", "a"): Posted("OPEN", "HIGH"), ("rnaseq-all", "a"): Posted("OPEN", "HIGH")}
    ds = plan(cfg, state, tune_finding("a", severity="LOW", status="RESOLVED"))
    assert [(d.route.name, d.event, d.silent) for d in ds] == [("oncall", RESOLVED, False),
                                                                ("rnaseq-all", RESOLVED, True)]


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("routes:\n  - name: a\n    url_env: SLACK_URL\n    format: teams\n", 2, "format 'teams'"),
    ("routes:\n  - name: a\n    url: https://x\n", 2, "literal 'url' is refused"),
    ("routes:\n  - name: a\n    url_env: NOPE\n", 2, "NOPE is not set"),
    ("routes:\n  - name: a\n    url_env: SLACK_URL\n  - name: a\n    url_env: SLACK_URL\n", 4, "used twice"),
    ("routes:\n  - name: a\n    url_env: SLACK_URL\n    min_severity: urgent\n", 2, "min_severity"),
    ("routes:\n  - name: a\n    url_env: SLACK_URL\n    kind: [x]\n", 2, "unknown key(s) kind"),
    ("routes:\n  - name: a\n   url_env: [\n", 3, "invalid YAML"),
    ("routes:\n  - name: a\n    url_env: SLACK_URL\nretry:\n  attempts: 0\n", 5, "retry.attempts"),
    ("route: []\n", 1, "'routes' list"),
])
def test_broken_routes_file_names_file_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RoutesError) as err:
        parse_config(text, "conf/routes.yaml", ENV)
    assert err.value.line == line
    assert str(err.value).startswith(f"conf/routes.yaml:{line}: ")
    assert reason in err.value.reason
    assert "SECRET" not in str(err.value)


def test_url_is_never_in_repr() -> None:
    assert "SECRET" not in repr(config())


def test_slack_payload() -> None:
    f = tune_finding("a", severity="HIGH")
    p = messages.slack_payload(f, OPENED, "tune")
    assert p["text"] == "New finding [HIGH] rightsize_memory (tune): rightsize_memory on ALIGN"
    kinds = [b["type"] for b in p["blocks"]]
    assert kinds[0] == "header" and "section" in kinds and "context" in kinds
    flat = json.dumps(p)
    assert "3.00 GiB" in flat and "25%" in flat and "memory = 6.GB" in flat and "`a`" in flat
    assert "*pipeline*\\nrnaseq" in flat and "$1.25 per run" in flat
    resolved = messages.slack_payload(tune_finding("a", status="RESOLVED"), RESOLVED, "tune")
    assert resolved["text"].startswith("Finding resolved") and "Recommendation" not in json.dumps(resolved)
    sweep = json.dumps(messages.slack_payload(sweep_finding("s"), OPENED, "sweep"))
    assert "$120.00 per month" in sweep and "3.0 h" not in sweep and "10800.0 s" in sweep


def test_json_payload_is_the_finding() -> None:
    f = sweep_finding("s")
    p = messages.payload("json", f, ESCALATED, "sweep")
    assert p == {"event": "escalated", "source": "sweep", "finding": f}
    json.dumps(p)  # serialisable as is


def test_retry_backoff_is_bounded() -> None:
    policy = RetryPolicy(attempts=4, initial_s=0.25, max_s=0.6)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 0.6, 0.6]
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise delivery.DeliveryError("HTTP 500", True)

    class NoWait(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(float(timeout or 0))
            return False

    out = delivery.deliver(flaky, policy, NoWait())
    assert out == delivery.Outcome(True, 3) and waits == [0.25, 0.5]

    def down() -> None:
        raise delivery.DeliveryError("HTTP 503", True)

    waits.clear()
    assert delivery.deliver(down, policy, NoWait()) == delivery.Outcome(False, 4, "HTTP 503")
    assert waits == [0.25, 0.5, 0.6]

    def refused() -> None:
        raise delivery.DeliveryError("HTTP 404", delivery.retryable_status(404))

    assert delivery.deliver(refused, policy, NoWait()).attempts == 1
    assert delivery.retryable_status(429) and delivery.retryable_status(502) and not delivery.retryable_status(400)


def test_stop_during_backoff_is_not_a_give_up() -> None:
    stop = threading.Event()
    stop.set()

    def down() -> None:
        raise delivery.DeliveryError("HTTP 503", True)

    out = delivery.deliver(down, RetryPolicy(attempts=5), stop)
    assert out.stopped and not out.delivered


def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s" / "notify-state.json"
    assert load_state(path) == {}
    state = {("oncall", "a"): Posted("OPEN", "HIGH"), ("waste", "b\tc"): Posted("RESOLVED", "LOW")}
    save_state(path, state)
    assert load_state(path) == state
    path.write_text("{broken")
    with pytest.raises(ValueError, match=r"notify-state\.json:1"):
        load_state(path)


def test_check_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from execsight.notify.main import main

    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EXECSIGHT_STATE_DIR", str(tmp_path / "state"))
    assert main(["--routes", str(routes), "--check"]) == 0
    out = capsys.readouterr().out
    assert "oncall\tseverity>=HIGH\tkinds=regression,rightsize_memory\tpipelines=*\tslack\t$SLACK_URL" in out
    assert "SECRET" not in out
    routes.write_text(ROUTES.replace("url_env: JSON_URL\n", "url_env: MISSING_URL\n", 1))
    assert main(["--routes", str(routes), "--check"]) == 2
    assert f"{routes}:7: route 'rnaseq-all': environment variable MISSING_URL is not set" in capsys.readouterr().err
