"""HTTP POST of a JSON payload to a webhook (urllib), with bounded retries and backoff.

Errors never carry the URL (it holds the webhook's secret): only the route name, the status and
the reason."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from execsight.notify.routes import RetryPolicy

USER_AGENT = "execsight-notify"


class DeliveryError(Exception):
    """One failed POST; ``retryable`` is False for an answer that a retry would not change (4xx)."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def retryable_status(status: int) -> bool:
    """5xx, 408 (timeout) and 429 (rate limited) may pass later; any other 4xx will not."""
    return status >= 500 or status in (408, 429)


def post_json(url: str, payload: Mapping[str, Any], timeout_s: float) -> int:
    """POSTs the payload; returns the 2xx status or raises DeliveryError (without the URL)."""
    body = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", retryable_status(exc.code)) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"unreachable: {type(exc.reason).__name__}: {exc.reason}", True) from None
    except (TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", True) from None


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str | None = None  # the last failure (when not delivered)
    stopped: bool = False  # the service was asked to stop between attempts: not delivered, not given up


def deliver(send: Callable[[], object], policy: RetryPolicy, stop: threading.Event,
            on_retry: Callable[[int, DeliveryError, float], None] | None = None) -> Outcome:
    """Calls ``send`` until it returns, up to policy.attempts times, waiting policy.delay_s between tries.

    A non-retryable failure gives up at once; a stop request ends the waiting (stopped=True), so
    that the caller leaves the offsets where they are and the post is tried again after a restart."""
    attempt = 0
    while True:
        attempt += 1
        try:
            send()
            return Outcome(True, attempt)
        except DeliveryError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                return Outcome(False, attempt, exc.reason)
            delay = policy.delay_s(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            if stop.wait(delay):
                return Outcome(False, attempt, exc.reason, stopped=True)
