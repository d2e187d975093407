"""Kernel shaping in namespaces the test creates and removes itself (skipped without root / iproute2)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from executor import netns
from traces import synthetic

pytestmark = pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))

SERVER = r"""
import socket, sys
up, down = int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9500)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20); got = 0
while got < up:
    b = c.recv(65536)
    if not b: break
    got += len(b)
c.sendall(b"y" * down); c.close()
"""
CLIENT = r"""
import socket, sys, time
up, down = int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        c = socket.create_connection((sys.argv[1], 9500), timeout=20); break
    except OSError: time.sleep(0.05)
t0 = time.perf_counter(); c.sendall(b"x" * up); got = 0
while got < down:
    b = c.recv(65536)
    if not b: break
    got += len(b)
print(time.perf_counter() - t0, got)
"""


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout


def test_kernel_link_rate_matches_trace_and_cleans_up() -> None:
    trace = synthetic.constant(8.0, 40.0, duration_s=60.0)
    up, down = 1_000_000, 2_000_000
    with netns.KernelShapedLink(trace, netns.KernelLinkConfig(name="ecct1", subnet_octet=231)) as link:
        assert "ecct1-edge" in _namespaces()
        server = link.run_in_cloud([sys.executable, "-c", SERVER, link.cloud_ip, str(up), str(down)])
        client = link.run_in_edge(
            [sys.executable, "-c", CLIENT, link.cloud_ip, str(up), str(down)], stdout=subprocess.PIPE, text=True
        )
        out, _ = client.communicate(timeout=30)
        server.wait(timeout=10)
    elapsed_s, got = out.split()
    assert int(got) == down
    ideal_s = up * 8 / 8e6 + down * 8 / 40e6  # 1.0 s up + 0.4 s down (payload only; headers add ~3-5%)
    assert ideal_s * 0.9 <= float(elapsed_s) <= ideal_s * 1.25, (elapsed_s, ideal_s)
    assert "ecct1" not in _namespaces()


def test_kernel_link_follows_rate_changes() -> None:
    trace = synthetic.step([2.0, 20.0], step_s=0.5, down_levels_mbps=[5.0, 50.0])
    cfg = netns.KernelLinkConfig(name="ecct2", subnet_octet=232, update_interval_s=0.05)
    with netns.KernelShapedLink(trace, cfg) as link:
        deadline = time.monotonic() + 5.0
        shown = ""
        while time.monotonic() < deadline:
            shown = subprocess.run(
                ["ip", "netns", "exec", link.edge_ns, "tc", "qdisc", "show", "dev", link.edge_dev],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            if "20Mbit" in shown:
                break
            time.sleep(0.05)
        assert "20Mbit" in shown, shown
        assert link.rate_updates >= 2
    assert "ecct2" not in _namespaces()


def test_config_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="1-10 letters"):
        netns.KernelLinkConfig(name="bad name!")
