"""Hedged execution: the edge runs the cloud's blocks while the payload travels; the first actions win."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")

from executor.client import ClientConfig, EdgeClient  # noqa: E402
from executor.edge_cli import FixedCutPlanner  # noqa: E402
from executor.emulation import HardwareEmulator  # noqa: E402
from executor.hedge import HedgeCancelled, cut_is_hedgeable  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profile import Profile  # noqa: E402
from executor.runtime import EdgeRuntime, RuntimeConfig  # noqa: E402
from executor.server import CloudServer, ServerConfig  # noqa: E402

CLIENT = ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, connect_timeout_s=5.0, probe_interval_s=None)


def _profile(model, block_ms: float, device: str) -> Profile:
    return Profile(
        model_id=model.family,
        preset=model.preset,
        device=device,
        dtype="float32",
        source="roofline",
        block_names=model.block_names,
        block_ms=(block_ms,) * model.num_blocks,
        cuts=tuple(model.cut_specs()),
    )


def _slow_cloud():
    cloud = build_model("openvla", "tiny", seed=0)
    return cloud, HardwareEmulator(cloud, _profile(cloud, 100.0, "slow-cloud")).attach()  # >= 1.1 s per inference


@pytest.fixture(scope="module")
def observations():
    m = build_model("openvla", "tiny", seed=0)
    obs = [m.make_observation(seed) for seed in range(3)]
    return obs, [m.forward(o) for o in obs]


def test_hedgeable_cuts_follow_the_env_rule():
    from ecc_env.latency import cut_rows, hedgeable

    m = build_model("openvla", "tiny", seed=0)
    specs = m.cut_specs()
    got = [cut_is_hedgeable(m, i) for i in range(m.num_cuts)]
    assert got == [m.placement(i)[0] == "edge_then_cloud" and specs[i].round_trips == 0 for i in range(m.num_cuts)]
    assert got[1] and not got[7]  # vision cut: one request; in-LLM cut: a round trip per token
    rows = cut_rows(_profile(m, 1.0, "a"), _profile(m, 1.0, "b"))
    assert [hedgeable(r.edge_first, r.round_trips) for r in rows] == got


def test_local_continuation_wins_against_a_slow_cloud(observations):
    """Cloud >= 1.1 s per inference, tiny edge a few ms: the hedged call returns the local actions, exactly the
    unsplit model's, records the miss's upper-bound uplink sample, and the late reply does not reach the next call."""
    obs, expected = observations
    edge = build_model("openvla", "tiny", seed=0)
    cloud, _emulator = _slow_cloud()
    with CloudServer(cloud, ServerConfig(port=0)) as server, EdgeClient(edge, server.url, CLIENT) as client:
        client.connect()
        for i in range(2):
            t0 = time.perf_counter()
            res = client.infer(obs[i], 1, deadline=time.perf_counter() + 30.0, hedge=True)
            elapsed = time.perf_counter() - t0
            assert res.hedged and not res.networked and res.cut == 1
            np.testing.assert_array_equal(res.actions, expected[i])
            assert elapsed < 1.0  # the cloud cannot answer in under 1.1 s
            sample = client.bandwidth[-1]
            assert sample.bytes_up > 0 and sample.bytes_down == 0 and np.isnan(sample.downlink_mbps)
        # without the hedge the same cut waits for the (slow, correct) reply: the late replies were dropped
        res = client.infer(obs[2], 1, deadline=time.perf_counter() + 30.0)
        assert res.networked and not res.hedged
        np.testing.assert_array_equal(res.actions, expected[2])


def test_the_cloud_reply_wins_and_the_continuation_stops_at_a_block_boundary(observations):
    """Edge emulated at 200 ms per block: the continuation of cut 1 would take 10 blocks (2 s); the fast cloud's
    reply wins and the continuation is cancelled before finishing."""
    obs, expected = observations
    edge = build_model("openvla", "tiny", seed=0)
    emulator = HardwareEmulator(edge, _profile(edge, 200.0, "slow-edge")).attach()
    full_calls = sum(emulator.calls_per_inference)
    with CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0)) as server:
        with EdgeClient(edge, server.url, CLIENT) as client:
            client.connect()
            before = emulator.stats().calls
            res = client.infer(obs[0], 1, deadline=time.perf_counter() + 30.0, hedge=True)
            cont = client.hedger.current
            client.hedger.reap()
            calls = emulator.stats().calls - before
    assert res.networked and not res.hedged
    np.testing.assert_array_equal(res.actions, expected[0])
    assert isinstance(cont.future.exception(), HedgeCancelled)
    assert calls < full_calls  # prefix + the continuation's blocks up to the cancel, not a whole forward


def test_a_round_trip_cut_is_not_hedged(observations):
    obs, expected = observations
    edge = build_model("openvla", "tiny", seed=0)
    with CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0)) as server:
        with EdgeClient(edge, server.url, CLIENT) as client:
            client.connect()
            res = client.infer(obs[0], 7, deadline=time.perf_counter() + 30.0, hedge=True)
            assert client.hedger.current is None
    assert res.networked and not res.hedged
    np.testing.assert_array_equal(res.actions, expected[0])


def test_a_deadline_before_the_local_finish_waits_for_the_local_actions(observations):
    """Edge 50 ms per block (continuation of cut 1: 0.5 s), cloud >= 1.1 s, deadline 0.15 s: the network is
    abandoned at the deadline and the call returns the local actions instead of raising TransportTimeout."""
    obs, expected = observations
    edge = build_model("openvla", "tiny", seed=0)
    HardwareEmulator(edge, _profile(edge, 50.0, "edge")).attach()
    cloud, _emulator = _slow_cloud()
    with CloudServer(cloud, ServerConfig(port=0)) as server, EdgeClient(edge, server.url, CLIENT) as client:
        client.connect()
        res = client.infer(obs[0], 1, deadline=time.perf_counter() + 0.15, hedge=True)
    assert res.hedged
    np.testing.assert_array_equal(res.actions, expected[0])


def test_runtime_records_a_local_win_as_a_hedge_fallback(observations):
    obs, expected = observations
    edge = build_model("openvla", "tiny", seed=0)
    cloud, _emulator = _slow_cloud()

    config = RuntimeConfig(deadline_s=5.0, realtime=False, connect_timeout_s=10.0, hedge=True)
    with CloudServer(cloud, ServerConfig(port=0)) as server:
        with EdgeRuntime(
            edge,
            FixedCutPlanner(1),
            lambda ctx: np.zeros(4, np.float32),
            server_url=server.url,
            client_config=CLIENT,
            config=config,
        ) as runtime:
            records = [runtime.step(o) for o in obs[:2]]
            report = runtime.report()
    for r, exp in zip(records, expected, strict=False):
        assert r.mode == "fallback" and r.fallback_reason == "hedge" and r.cut_used == 1
        np.testing.assert_array_equal(r.action, exp[0])
    assert runtime._prev_miss  # the next observation sees the miss, as in the env
    assert report["fallback_reasons"] == {"hedge": 2}


def _exchange_future(recv_perf: float | None, error: Exception | None = None):
    import concurrent.futures

    from executor.client_timing import Exchange as _Exchange

    f: concurrent.futures.Future = concurrent.futures.Future()
    if error is not None:
        f.set_exception(error)
    elif recv_perf is not None:
        f.set_result(_Exchange(b"", 0.0, 0.0, 0.0, recv_perf))
    return f


def test_a_reply_counts_only_when_received_by_the_deadline():
    """The race is checked a little after the deadline: a reply already there but received after it lost (the local
    actions count, as in the env's rule); one received before it won, even though the check itself is late."""
    from executor.client_connection import reply_counts as _reply_counts
    from executor.protocol import ServerUnavailable

    deadline = 10.0
    assert _reply_counts(_exchange_future(9.99), deadline)
    assert _reply_counts(_exchange_future(10.0), deadline)
    assert not _reply_counts(_exchange_future(10.01), deadline)
    assert not _reply_counts(_exchange_future(None), deadline)  # still in flight
    assert _reply_counts(_exchange_future(1e9), None)  # no deadline: any reply counts
    assert _reply_counts(_exchange_future(None, ServerUnavailable("closed")), deadline)  # a failure is the outcome
    cancelled = _exchange_future(None)
    cancelled.cancel()
    assert not _reply_counts(cancelled, deadline)


def test_wait_returns_a_reply_received_in_time_even_when_checked_after_the_deadline():
    from executor.protocol import TransportTimeout

    client = EdgeClient(build_model("openvla", "tiny", seed=0), "ws://127.0.0.1:9", CLIENT)
    now = time.perf_counter()
    on_time = _exchange_future(now - 0.5)
    assert client.connection.wait(on_time, now - 0.1) is on_time.result()
    with pytest.raises(TransportTimeout, match="before the deadline"):
        client.connection.wait(_exchange_future(now - 0.05), now - 0.1)  # received after the deadline
    with pytest.raises(TransportTimeout, match="before the deadline"):
        client.connection.wait(_exchange_future(None), now - 0.1)  # not received at all
