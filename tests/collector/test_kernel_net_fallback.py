"""Real kernel, root: network bytes from the send/recv syscall tracepoints, the fallback where the
sock:sock_send_length/sock_recv_length tracepoints are missing (forced here with --net-probes syscalls)."""

from __future__ import annotations

import pytest

from .feed import JsonlFeed, Rec, exit_of, tcp_loopback_transfer

pytestmark = pytest.mark.ebpf

MiB = 1 << 20


def test_syscall_fallback_attributes_20_mib_loopback_tcp_within_2_percent(syscall_net_collector: JsonlFeed) -> None:
    send_pid, recv_pid = tcp_loopback_transfer(20 * MiB)
    es, er = exit_of(syscall_net_collector, send_pid), exit_of(syscall_net_collector, recv_pid)
    assert 20 * MiB <= es["kernel"]["net_tx_bytes"] <= 20 * MiB * 1.02, es["kernel"]
    assert 20 * MiB <= er["kernel"]["net_rx_bytes"] <= 20 * MiB * 1.02, er["kernel"]
    assert es["kernel"]["net_rx_bytes"] < MiB and er["kernel"]["net_tx_bytes"] < MiB

    def status(rs: list[Rec]) -> list[Rec]:
        return [r for r in rs if r["type"] == "CollectorStatus"]

    st = syscall_net_collector.wait_for(status, 10)[-1]
    assert st["mode"] == "EBPF"
    assert "syscalls/sys_exit_sendto" in st["probes_attached"]
    assert "sock/sock_send_length" not in st["probes_attached"]
    assert any("write()/read() on sockets" in m for m in st["probes_missing"]), st["probes_missing"]
