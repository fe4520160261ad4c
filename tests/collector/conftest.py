from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .feed import CollectorProcess, JsonlFeed


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("collector kernel tests need root (they are marked ebpf)")


@contextmanager
def _ebpf_collector(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[JsonlFeed]:
    _require_root()
    d = tmp_path_factory.mktemp("collector")
    out = d / "events.jsonl"
    c = CollectorProcess(
        ["--output", "jsonl", str(out), "--no-imds", "--sample-interval", "1", "--host-interval", "2",
         "--mode", "ebpf", *extra],
        env={"EXECSIGHT_STATE_DIR": str(d / "state")}, log_path=d / "collector.log",
    )
    try:
        c.wait_started()
        yield JsonlFeed(out)
    finally:
        c.stop()


@pytest.fixture(scope="module")
def ebpf_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonlFeed]:
    """One eBPF collector writing JSON lines for a module's tests."""
    with _ebpf_collector(tmp_path_factory) as feed:
        yield feed


@pytest.fixture(scope="module")
def syscall_net_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonlFeed]:
    """An eBPF collector forced onto the network fallback (send/recv syscall tracepoints)."""
    with _ebpf_collector(tmp_path_factory, "--net-probes", "syscalls") as feed:
        yield feed
