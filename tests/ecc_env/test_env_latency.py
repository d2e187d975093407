"""The step-latency model: hand-computed timings on a constant trace, round trips, deadline fallback, server queue."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecc_env.backends import ProfileBackend, ServerLoadConfig
from ecc_env.latency import DeadlineConfig, cut_rows, step_timing
from executor.costs import cut_table
from traces import synthetic

UP, DOWN, RTT = 10.0, 20.0, 40.0  # Mbit/s, Mbit/s, ms


def ms(nbytes: float, mbps: float) -> float:
    """Serialisation time from first principles: bits / (bits per second), in ms."""
    return nbytes * 8 / (mbps * 1e6) * 1e3


NO_DEADLINE = DeadlineConfig(deadline_ms=math.inf)


@pytest.fixture
def rows(toy):
    return cut_rows(*toy.make_profiles())


@pytest.fixture
def const_trace():
    return synthetic.constant(UP, DOWN, rtt_ms=RTT, duration_s=600.0)


def test_hand_computed_latency_every_cut(rows, const_trace):
    one_way = RTT / 2
    expected = {
        # cloud-only: raw upload, all three blocks on the cloud, actions down
        0: ms(100_000, UP) + one_way + (1 + 2 + 3) + ms(56, DOWN) + one_way,
        # cut 1: block a on the edge, 50 kB up, blocks b, c on the cloud
        1: 10 + ms(50_000, UP) + one_way + (2 + 3) + ms(56, DOWN) + one_way,
        # cut 2: blocks a, b on the edge, 20 kB up, block c, then 2 extra round trips (10 B down, 1 kB up each)
        2: (10 + 20)
        + ms(20_000, UP)
        + one_way
        + 3
        + 2 * (ms(10, DOWN) + one_way + ms(1_000, UP) + one_way)
        + ms(56, DOWN)
        + one_way,
        # edge-only: no network
        3: 10 + 20 + 30,
    }
    for k, want in expected.items():
        t = step_timing(rows[k], const_trace, 12.345, deadline=NO_DEADLINE, fallback_ms=60.0)
        assert t.service_ms == pytest.approx(want, rel=1e-12), k
        assert not t.deadline_miss and not t.fallback
        parts = t.edge_ms + t.uplink_ms + t.server_queue_ms + t.cloud_ms + t.downlink_ms
        assert parts == pytest.approx(t.service_ms, rel=1e-12)
    t1 = step_timing(rows[1], const_trace, 0.0, deadline=NO_DEADLINE, fallback_ms=60.0)
    assert t1.edge_ms == 10 and t1.cloud_ms == 5
    assert t1.uplink_ms == pytest.approx(ms(50_000, UP) + one_way)
    assert t1.downlink_ms == pytest.approx(ms(56, DOWN) + one_way)
    assert t1.delay_ms == pytest.approx(2 * one_way)
    assert t1.uplink_mbps == pytest.approx(UP)  # the edge measures the link rate from the completed upload
    assert t1.uplink_done_s == pytest.approx((10 + ms(50_000, UP)) / 1e3)


def test_constant_trace_agrees_with_executor_cut_table(toy, const_trace):
    """On a constant trace without queue or deadline, the model equals executor.costs' closed form."""
    edge, cloud = toy.make_profiles()
    closed = cut_table(edge, cloud).latency_ms(UP, DOWN, RTT / 2)
    got = [
        step_timing(r, const_trace, 3.0, deadline=NO_DEADLINE, fallback_ms=60.0).service_ms
        for r in cut_rows(edge, cloud)
    ]
    np.testing.assert_allclose(got, closed, rtol=1e-12)


def test_deadline_miss_costs_deadline_plus_edge_time(rows, const_trace):
    full_2 = step_timing(rows[2], const_trace, 0.0, deadline=NO_DEADLINE, fallback_ms=60.0).service_ms
    assert full_2 > 150
    t = step_timing(rows[2], const_trace, 0.0, deadline=DeadlineConfig(150.0), fallback_ms=60.0)
    assert t.deadline_miss and t.fallback
    assert t.service_ms == pytest.approx(150.0 + 60.0)
    assert (t.deadline_wait_ms, t.edge_ms) == (150.0, 60.0)
    assert t.uplink_ms == t.cloud_ms == t.downlink_ms == 0.0
    # the runtime may keep the two edge blocks it already ran (30 ms) and only run block c (30 ms) after the deadline
    r = step_timing(
        rows[2], const_trace, 0.0, deadline=DeadlineConfig(150.0, resume_edge_prefix=True), fallback_ms=60.0
    )
    assert r.service_ms == pytest.approx(150.0 + (60.0 - 30.0))
    # a step that makes it by the deadline is untouched
    ok = step_timing(rows[2], const_trace, 0.0, deadline=DeadlineConfig(full_2 + 1e-6), fallback_ms=60.0)
    assert not ok.deadline_miss and ok.service_ms == pytest.approx(full_2)
    # edge-only never misses, even with a deadline shorter than its compute
    e = step_timing(rows[3], const_trace, 0.0, deadline=DeadlineConfig(1.0), fallback_ms=60.0)
    assert not e.deadline_miss and e.service_ms == 60.0


def test_outage_costs_the_deadline_not_the_outage(rows):
    # 10 Mbit/s for 1 s, then 100 s of outage
    trace = synthetic.step([UP] + [0.0] * 100, 1.0, rtt_ms=RTT)
    start = 0.99  # 10 ms of bandwidth left: 12.5 kB of the 100 kB raw upload
    through = trace.transfer_time_s(100_000, start, "up", max_wait_s=1e9)
    assert through > 100  # what waiting through the outage would cost
    t = step_timing(rows[0], trace, start, deadline=DeadlineConfig(300.0), fallback_ms=60.0)
    assert t.deadline_miss and t.fallback
    assert t.service_ms == pytest.approx(300.0 + 60.0)
    # no reply by the deadline: the edge records the upper bound 100 kB / 300 ms = 2.667 Mbit/s at the deadline
    assert t.uplink_mbps == pytest.approx(100_000 * 8 / 0.3 / 1e6)
    assert t.uplink_done_s == pytest.approx(start + 0.3)


def test_a_miss_records_the_upper_bound_even_when_the_upload_completed(rows, const_trace):
    # cut 0: upload done at 80 ms, reply at 126.0224 ms; deadline 110 ms. The edge never hears back, so (as the
    # runtime's client) it records bits / (deadline - upload start), not the upload's true rate.
    t = step_timing(rows[0], const_trace, 0.0, deadline=DeadlineConfig(110.0), fallback_ms=60.0)
    assert t.deadline_miss
    assert t.uplink_done_s == pytest.approx(0.110)
    assert t.uplink_mbps == pytest.approx(100_000 * 8 / 0.110 / 1e6)
    assert t.uplink_mbps < UP


def test_edge_first_bound_counts_from_the_upload_start_and_none_when_it_never_started(rows, const_trace):
    edge_first = next(r for r in rows if r.uses_network and r.edge_first and r.edge_ms > 0)
    deadline_ms = edge_first.edge_ms + 1.0  # 1 ms left for the upload: a miss
    t = step_timing(edge_first, const_trace, 2.0, deadline=DeadlineConfig(deadline_ms), fallback_ms=60.0)
    assert t.deadline_miss
    assert t.uplink_mbps == pytest.approx(edge_first.up_bytes * 8 / 1e-3 / 1e6, rel=1e-6)
    assert t.uplink_done_s == pytest.approx(2.0 + deadline_ms / 1e3)
    late = step_timing(edge_first, const_trace, 2.0, deadline=DeadlineConfig(edge_first.edge_ms / 2), fallback_ms=60.0)
    assert late.deadline_miss and math.isnan(late.uplink_mbps) and math.isnan(late.uplink_done_s)


def test_server_queue_adds_requests_ahead_times_service(rows, const_trace):
    backend = ProfileBackend(rows, NO_DEADLINE, 60.0, ServerLoadConfig(mean_queue_len=3.0, per_request_ms=7.0))
    backend.reset(const_trace, np.random.default_rng(1), horizon_s=60.0, period_s=0.1)
    assert sum(backend.queue_len) > 0
    base = step_timing(rows[1], const_trace, 0.0, deadline=NO_DEADLINE, fallback_ms=60.0).service_ms
    seen = 0
    for i in range(0, 600, 7):
        start = i * 0.1 + 0.01
        timing, q = backend.infer(1, start)
        assert q == backend.queue_len[i]
        assert timing.server_queue_ms == q * 7.0
        assert timing.service_ms == pytest.approx(base + q * 7.0)
        seen += q > 0
    assert seen > 0
    timing, q = backend.infer(3, 0.5)  # edge-only never queues at the server
    assert q == 0 and timing.service_ms == 60.0


def test_server_queue_default_service_is_cloud_only_time(rows):
    backend = ProfileBackend(rows, NO_DEADLINE, 60.0, ServerLoadConfig(mean_queue_len=1.0))
    assert backend.per_request_ms == 1 + 2 + 3


def test_deadline_config_rejects_non_positive():
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="deadline_ms"):
            DeadlineConfig(bad)


def test_break_even_caps_the_deadline_at_the_edge_only_time():
    rule = DeadlineConfig(300.0)
    assert rule.break_even  # the default
    assert rule.resolve(60.0).deadline_ms == 60.0
    assert rule.resolve(450.0).deadline_ms == 300.0  # a shorter deadline_ms stays
    assert rule.resolve(None).deadline_ms == 300.0  # edge-only does not fit: no break-even point
    assert DeadlineConfig(300.0, break_even=False).resolve(60.0).deadline_ms == 300.0
    once = rule.resolve(60.0)
    assert not once.break_even and once.resolve(10.0) == once  # resolving is done once
    assert DeadlineConfig(300.0, resume_edge_prefix=True).resolve(60.0).resume_edge_prefix
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="edge_only_ms"):
            rule.resolve(bad)


def test_env_abandons_a_network_step_at_the_edge_only_time(toy):
    """Toy edge-only = 10 + 20 + 30 = 60 ms. Cloud-only at 10 Mbit/s: 100 kB take 80 ms + 20 ms one-way delay, so
    the reply cannot be back by 60 ms: with the break-even rule the step is abandoned at 60 ms and runs edge-only
    (60 + 60 = 120 ms); with the plain 300 ms deadline it completes in 80 + 20 + 6 + (56 B at 20 Mbit/s) + 20 ms."""
    from ecc_env.split_env import EdgeCloudSplitEnv

    def first_cloud_step(**kw):
        env = EdgeCloudSplitEnv(
            *toy.make_profiles(),
            trace_set=toy.constant_set(up=UP, down=DOWN, rtt=RTT),
            streams=[toy.known_stream()],
            trace_split="all",
            episode_s=1.0,
            chunk_size=1,
            **kw,
        )
        env.reset(seed=0)
        return env, env.step(np.array([0, 0]))[4]

    env, info = first_cloud_step()
    assert env.deadline.deadline_ms == 60.0
    assert info["deadline_miss"] and info["service_ms"] == pytest.approx(120.0)
    env, info = first_cloud_step(deadline=DeadlineConfig(300.0, break_even=False))
    assert env.deadline.deadline_ms == 300.0
    assert not info["deadline_miss"]
    assert info["service_ms"] == pytest.approx(ms(100_000, UP) + RTT / 2 + 6.0 + ms(56, DOWN) + RTT / 2)
    # edge-only does not fit 250 MB of edge memory: a miss holds the last action, so there is no break-even point
    env, _ = first_cloud_step(edge_memory_bytes=250 * toy.MB)
    assert env.fallback_holds and env.deadline.deadline_ms == 300.0


def test_hedged_miss_costs_the_edge_only_time(rows, const_trace):
    """Toy cut 1 (block a on the edge, 50 kB up, no round trips) at 10 Mbit/s: the reply is back at 10 + 40 + 20 + 5
    + 0.0224 + 20 ms = 95.02 ms. Hedged, the edge runs blocks b, c itself while the payload travels and has the
    actions at 10 + 20 + 30 = 60 ms, so the step takes 60 ms instead of 95 ms (or 60 + 60 ms with the break-even
    deadline and no hedge)."""
    row = rows[1]
    full = step_timing(row, const_trace, 0.0, deadline=NO_DEADLINE, fallback_ms=60.0).service_ms
    assert full == pytest.approx(10 + ms(50_000, UP) + RTT / 2 + 5 + ms(56, DOWN) + RTT / 2)
    plain = step_timing(row, const_trace, 0.0, deadline=DeadlineConfig(300.0).resolve(60.0), fallback_ms=60.0)
    assert plain.deadline_miss and plain.service_ms == pytest.approx(120.0)
    for rule in (DeadlineConfig(300.0, hedge=True).resolve(60.0), DeadlineConfig(300.0, break_even=False, hedge=True)):
        t = step_timing(row, const_trace, 0.0, deadline=rule, fallback_ms=60.0)
        assert t.deadline_miss and t.fallback
        assert (t.service_ms, t.edge_ms, t.deadline_wait_ms) == (60.0, 60.0, 0.0)
        # no reply by the local finish: the upper bound is counted from the upload start (10 ms) to 60 ms
        assert t.uplink_mbps == pytest.approx(50_000 * 8 / 0.050 / 1e6)
        assert t.uplink_done_s == pytest.approx(0.060)
    # a deadline before the local finish abandons the network, but the local actions still come at 60 ms
    short = step_timing(row, const_trace, 0.0, deadline=DeadlineConfig(30.0, hedge=True), fallback_ms=60.0)
    assert short.deadline_miss and short.service_ms == 60.0
    # a reply back before the local finish wins, unchanged by the hedge
    fast = synthetic.constant(1000.0, 1000.0, rtt_ms=2.0, duration_s=600.0)
    won = step_timing(row, fast, 0.0, deadline=DeadlineConfig(300.0, hedge=True), fallback_ms=60.0)
    assert not won.deadline_miss
    assert won.service_ms == pytest.approx(
        step_timing(row, fast, 0.0, deadline=NO_DEADLINE, fallback_ms=60.0).service_ms
    )
    assert won.service_ms < 60.0


def test_hedge_skips_round_trip_cuts_and_needs_a_local_fallback(rows, const_trace):
    assert rows[2].round_trips == 2 and rows[2].edge_first
    rule = DeadlineConfig(150.0, hedge=True)
    t = step_timing(rows[2], const_trace, 0.0, deadline=rule, fallback_ms=60.0)
    assert t.deadline_miss and t.service_ms == pytest.approx(150.0 + 60.0)  # the plain rule
    assert not DeadlineConfig(300.0, hedge=True).resolve(None).hedge  # edge-only does not fit: nothing to continue
    assert DeadlineConfig(300.0, hedge=True).resolve(60.0).hedge
    from ecc_env.latency import hedgeable

    assert hedgeable(True, 0) and not hedgeable(True, 1) and not hedgeable(False, 0)


def test_env_hedges_a_slow_cloud_step(toy):
    """The env with ``DeadlineConfig(hedge=True)``: a cloud-only step that cannot be back by the edge-only time costs
    the edge-only time (60 ms), not the deadline plus edge-only (120 ms)."""
    from ecc_env.split_env import EdgeCloudSplitEnv

    env = EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=toy.constant_set(up=UP, down=DOWN, rtt=RTT),
        streams=[toy.known_stream()],
        trace_split="all",
        episode_s=1.0,
        chunk_size=1,
        deadline=DeadlineConfig(300.0, hedge=True),
    )
    env.reset(seed=0)
    assert env.deadline.hedge
    info = env.step(np.array([0, 0]))[4]
    assert info["deadline_miss"] and info["service_ms"] == pytest.approx(60.0)
