"""Retrying while the database is away: one wait policy and one loop (and its asyncio twin).

Workers wait for a database that restarts or is not up yet instead of failing: start-up migrations,
connections and batch writes all retry the same way. Each failure is logged as a warning with the
caller's message and the fields ``error`` and ``retry_in_s``; the last error is raised again when the
budget is spent or the caller's stop event is set, so a caller that stops knows nothing was done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")
UNAVAILABLE: tuple[type[BaseException], ...] = (psycopg.OperationalError,)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait after each failure: initial_s every time, or doubled after each failure up to max_s.

    budget_s: give up at the first failure this long after the first attempt (None: never; 0: no retry).
    """

    initial_s: float
    max_s: float | None = None
    budget_s: float | None = None

    def wait_s(self, failures: int, elapsed_s: float) -> float | None:
        """The wait after the failures-th failure in a row, elapsed_s after the first attempt; None: give up."""
        if self.budget_s is not None and elapsed_s >= self.budget_s:
            return None
        if self.max_s is None:
            return self.initial_s
        return float(min(self.max_s, self.initial_s * 2 ** (failures - 1)))


def error_text(exc: BaseException) -> str:
    """The error as logged: psycopg's message, trimmed (a server's can run long)."""
    return str(exc).strip()[:300]


class _Failures:
    """The failures in a row of one retry loop: counted, logged, each answered with the wait before the next."""

    def __init__(self, backoff: Backoff, what: str, logger: logging.Logger,
                 on_failure: Callable[[BaseException], object] | None = None) -> None:
        self.backoff, self.what, self.logger, self.on_failure = backoff, what, logger, on_failure
        self.started, self.count = time.monotonic(), 0

    def after(self, exc: BaseException) -> float:
        """The wait after exc (logged, then on_failure); raises exc again when the budget is spent."""
        self.count += 1
        wait_s = self.backoff.wait_s(self.count, time.monotonic() - self.started)
        if wait_s is None:
            raise exc
        self.logger.warning(self.what, extra={"error": error_text(exc), "retry_in_s": wait_s})
        if self.on_failure is not None:
            self.on_failure(exc)
        return wait_s


def retry(attempt: Callable[[], T], what: str, backoff: Backoff, *,
          errors: tuple[type[BaseException], ...] = UNAVAILABLE, stop: threading.Event | None = None,
          on_failure: Callable[[BaseException], object] | None = None, logger: logging.Logger = log) -> T:
    """attempt() until it returns, waiting out each failure (logged as ``what``) by the backoff.

    on_failure runs after each failure that is retried (drop a broken connection, count it). The last
    error is raised when the budget is spent, or when stop is set before or during a wait. logger: the
    caller's, so that its warnings keep the caller's logger name.
    """
    failures = _Failures(backoff, what, logger, on_failure)
    while True:
        try:
            return attempt()
        except errors as exc:
            wait_s = failures.after(exc)
            if stop is None:
                time.sleep(wait_s)
            elif stop.is_set() or stop.wait(wait_s):
                raise


async def retry_async(attempt: Callable[[], Awaitable[T]], what: str, backoff: Backoff,
                      on_failure: Callable[[BaseException], Awaitable[object]], *,
                      errors: tuple[type[BaseException], ...] = UNAVAILABLE, logger: logging.Logger = log) -> T:
    """retry() for a coroutine, with an awaited on_failure; the waits do not block the event loop (no
    stop event: cancel the task)."""
    failures = _Failures(backoff, what, logger)
    while True:
        try:
            return await attempt()
        except errors as exc:
            wait_s = failures.after(exc)
            await on_failure(exc)
            await asyncio.sleep(wait_s)
