"""A call's timing from its exchanges (executor.client_timing.CallAccount), with no network: clocks in numbers."""

from __future__ import annotations

import math

import pytest

from executor.client_timing import CallAccount, Exchange
from executor.protocol import ServerTiming


def _server(recv_s: float, send_s: float, queue_ms: float = 2.0, compute_ms: float = 8.0) -> ServerTiming:
    return ServerTiming(
        queue_ms=queue_ms,
        compute_ms=compute_ms,
        residence_ms=(send_s - recv_s) * 1e3,
        queue_length=3,
        recv_time_s=recv_s,
        send_time_s=send_s,
    )


def test_one_exchange_splits_into_uplink_server_downlink() -> None:
    # sent at 100.000 (both clocks), server clock 5 s ahead: received 105.030, replied 105.040; back at 100.050
    ex = Exchange(reply=b"x" * 500, send_wall=100.0, send_perf=1.0, recv_wall=100.05, recv_perf=1.05)
    acc = CallAccount()
    acc.add_exchange(ex, _server(105.03, 105.04), sent=10_000, clock_offset_s=5.0)
    assert acc.network_s == pytest.approx(0.04)  # 50 ms round trip - 10 ms residence
    assert (acc.uplink_s, acc.downlink_s) == (pytest.approx(0.03), pytest.approx(0.01))
    assert (acc.bytes_up, acc.bytes_down, acc.trips, acc.queue_length) == (10_000, 500, 1, 3)
    timing = acc.timing(t_start=0.0)
    assert timing.uplink_ms == pytest.approx(30.0) and timing.network_ms == pytest.approx(40.0)
    assert timing.uplink_mbps == pytest.approx(10_000 * 8 / 0.03 / 1e6)
    assert timing.round_trips == 0 and timing.cloud_compute_ms == 8.0
    sample = acc.sample(timing, base_rtt_ms=20.0)  # 10 ms one way: 20 ms of the uplink's 30 is serialisation
    assert sample.uplink_mbps == pytest.approx(10_000 * 8 / 0.02 / 1e6)
    assert sample.uplink_done_s == pytest.approx(100.02) and sample.rtt_ms == 20.0


def test_disagreeing_clocks_stay_within_the_network_time() -> None:
    ex = Exchange(reply=b"", send_wall=0.0, send_perf=0.0, recv_wall=0.05, recv_perf=0.05)
    acc = CallAccount()
    acc.add_exchange(ex, _server(1.0, 1.01), sent=100, clock_offset_s=0.0)  # server clock 1 s ahead, unknown
    assert acc.uplink_s == pytest.approx(acc.network_s) and acc.downlink_s == 0.0
    assert acc.uplink_s + acc.downlink_s <= acc.network_s + 1e-12


def test_an_edge_only_call_has_no_rates_but_zero() -> None:
    timing = CallAccount(edge_s=0.012).timing(t_start=0.0)
    assert timing.edge_ms == pytest.approx(12.0)
    assert (timing.effective_mbps, timing.uplink_mbps, timing.downlink_mbps) == (0.0, 0.0, 0.0)
    assert not any(math.isnan(v) for v in (timing.effective_mbps, timing.uplink_mbps))
