"""The shared wait-while-the-database-is-away loop (execsight/db_retry.py): pure, no database.

The adapters' own tests (correlator sink, tune and sweep workers, `execsight migrate`) run it against
a real PostgreSQL that goes away; these pin the policy: the waits, the budget, stop, and the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from execsight.db_retry import Backoff, error_text, retry, retry_async


class Flaky:
    """Fails `failures` times with `error`, then returns "done"."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.left = failures
        self.calls = 0
        self.error = error or psycopg.OperationalError("connection refused\n  is the server running?")

    def __call__(self) -> str:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        return "done"


def test_fixed_waits_by_default_and_doubling_up_to_the_cap() -> None:
    assert [Backoff(2.0).wait_s(n, 0.0) for n in (1, 2, 5)] == [2.0, 2.0, 2.0]
    assert [Backoff(0.5, 10.0).wait_s(n, 0.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_budget_ends_the_waits_and_zero_means_no_retry() -> None:
    assert Backoff(2.0, budget_s=60.0).wait_s(3, 59.9) == 2.0
    assert Backoff(2.0, budget_s=60.0).wait_s(3, 60.0) is None
    assert Backoff(2.0, budget_s=0.0).wait_s(1, 0.0) is None
    assert Backoff(2.0).wait_s(1000, 1e9) == 2.0  # no budget: forever


def test_retries_until_it_works_logging_each_failure_under_the_callers_logger(
        caplog: pytest.LogCaptureFixture) -> None:
    attempt, failed = Flaky(2), list[BaseException]()
    caller = logging.getLogger("execsight.some_worker")
    with caplog.at_level(logging.WARNING):
        assert retry(attempt, "database away, retrying", Backoff(0.0), on_failure=failed.append,
                     logger=caller) == "done"
    assert attempt.calls == 3 and failed == [attempt.error, attempt.error]
    warnings = [r for r in caplog.records if r.msg == "database away, retrying"]
    assert [r.name for r in warnings] == ["execsight.some_worker"] * 2
    assert warnings[0].__dict__["error"] == error_text(attempt.error) == str(attempt.error).strip()
    assert warnings[0].__dict__["retry_in_s"] == 0.0


def test_a_spent_budget_raises_the_last_error_without_waiting_or_logging(caplog: pytest.LogCaptureFixture) -> None:
    attempt = Flaky(5)
    with caplog.at_level(logging.WARNING), pytest.raises(psycopg.OperationalError):
        retry(attempt, "retrying", Backoff(30.0, budget_s=0.0))
    assert attempt.calls == 1 and not [r for r in caplog.records if r.msg == "retrying"]


def test_other_errors_are_not_retried() -> None:
    attempt = Flaky(1, ValueError("a bug, not an outage"))
    with pytest.raises(ValueError):
        retry(attempt, "retrying", Backoff(0.0))
    assert attempt.calls == 1


def test_stop_during_a_wait_raises_at_once() -> None:
    stop, attempt, failed = threading.Event(), Flaky(100), list[BaseException]()
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        retry(attempt, "retrying", Backoff(30.0), stop=stop, on_failure=failed.append)
    assert time.monotonic() - t0 < 5.0
    assert attempt.calls == 1 and len(failed) == 1  # the failure was handled (connection dropped) first


def test_stop_already_set_does_not_try_again() -> None:
    stop, attempt = threading.Event(), Flaky(100)
    stop.set()
    with pytest.raises(psycopg.OperationalError):
        retry(attempt, "retrying", Backoff(0.0), stop=stop)
    assert attempt.calls == 1


def test_async_twin_awaits_its_failure_handler_and_backs_off() -> None:
    attempt, failed = Flaky(3), list[BaseException]()

    async def run() -> str:
        async def call() -> str:
            return attempt()

        async def on_failure(exc: BaseException) -> None:
            failed.append(exc)

        return await retry_async(call, "retrying", Backoff(0.001, 0.004), on_failure)

    assert asyncio.run(run()) == "done"
    assert attempt.calls == 4 and len(failed) == 3


def test_async_budget_raises() -> None:
    async def call() -> str:
        raise psycopg.InterfaceError("the connection is closed")

    async def on_failure(_exc: BaseException) -> None:
        raise AssertionError("not retried: no failure to handle")

    with pytest.raises(psycopg.InterfaceError):
        asyncio.run(retry_async(call, "retrying", Backoff(0.0, budget_s=0.0), on_failure,
                                errors=(psycopg.OperationalError, psycopg.InterfaceError)))


def test_migrate_waits_out_its_budget_for_an_unreachable_database_then_fails() -> None:
    """The CLI edge: `execsight migrate --wait S` against a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: connections are refused
    env = {**os.environ, "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:x@127.0.0.1:{port}/execsight",
           "EXECSIGHT_LOG_FORMAT": "json"}
    t0 = time.monotonic()
    cli = "import sys; from execsight.cli import main; sys.exit(main(sys.argv[1:]))"  # as the installed script
    done = subprocess.run([sys.executable, "-c", cli, "migrate", "--wait", "3"], env=env,
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert done.returncode != 0
    retries = [json.loads(line) for line in done.stderr.splitlines()
               if line.startswith("{") and "database not reachable yet" in line]
    assert len(retries) == 2, done.stderr[-2000:]  # at 0 s and 2 s; at 4 s the 3 s budget is spent
    assert {r["logger"] for r in retries} == {"execsight.cli"}
    assert all(r["retry_in_s"] == 2.0 and r["error"] for r in retries)
    assert 3.0 <= took < 30.0
