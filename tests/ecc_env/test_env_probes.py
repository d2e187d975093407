"""Background bandwidth probes: hand-computed samples while the planner stays on the edge."""

from __future__ import annotations


import numpy as np
import pytest

from ecc_env.latency import ProbeConfig, probe_sample
from ecc_env.split_env import EdgeCloudSplitEnv
from traces import synthetic
from traces.traceset import TraceSet

UP, RTT = 10.0, 40.0
PROBE_S = 32_768 * 8 / (UP * 1e6)  # 26.2144 ms at 10 Mbit/s


def _env(toy, trace_set=None, **kw):
    return EdgeCloudSplitEnv(*toy.make_profiles(), trace_set=trace_set or toy.constant_set(up=UP, rtt=RTT),
                             streams=[toy.known_stream(num_steps=40)], trace_split="all", episode_s=4.0,
                             chunk_size=1, **kw)


def _edge_steps(env, n):
    info = {}
    for _ in range(n):
        obs, _, _, _, info = env.step(np.array([env.edge_only_index, 0]))
    return obs, info


def test_probe_sample_is_bits_over_transfer_time_or_none():
    trace = synthetic.constant(UP, 20.0, rtt_ms=RTT, duration_s=60.0)
    done, mbps = probe_sample(trace, 32_768, 1.0, 1.0)
    assert done == pytest.approx(1.0 + PROBE_S) and mbps == pytest.approx(UP)
    assert probe_sample(trace, 32_768, 1.0, PROBE_S) is None  # the one-way delay does not fit the timeout
    outage = synthetic.step([UP, 0.0, 0.0], 1.0, rtt_ms=RTT)
    assert probe_sample(outage, 32_768, 1.0, 1.0) is None  # nothing gets through an outage


def test_edge_only_planner_sees_one_sample_per_second(toy):
    env = _env(toy)
    obs, _ = env.reset(seed=0)
    assert env.builder.decode(obs)["uplink_age_s"][0] != env.builder.decode(obs)["uplink_age_s"][0]  # none yet
    obs, info = _edge_steps(env, 25)  # edge-only: 60 ms per step, one observation per 100 ms period
    d = env.builder.decode(obs)
    now = env._t_dec
    probes = [1.0 + PROBE_S, 2.0 + PROBE_S]  # probes at 1 s and 2 s of trace time
    assert now > 2.0 + PROBE_S
    n = int(np.isfinite(d["uplink_mbps"]).sum())
    assert n == 2
    np.testing.assert_allclose(d["uplink_mbps"][:2], [UP, UP], rtol=1e-4)
    np.testing.assert_allclose(d["uplink_age_s"][:2], [now - probes[1], now - probes[0]], atol=1e-4)
    assert info["uplink_ms"] == 0.0 and info["latency_ms"] == pytest.approx(60.0)  # probes never delay a step


def test_samples_are_ordered_by_measurement_time(toy):
    env = _env(toy)
    env.reset(seed=0)
    _edge_steps(env, 10)  # t = 1.0 s: the first probe was sent, it is through at 1.026 s
    obs, _, _, _, info = env.step(np.array([0, 0]))  # cloud-only: 100 kB raw upload, done at 1.0 + 80 ms
    assert not info["deadline_miss"]
    d = env.builder.decode(obs)
    assert np.isfinite(d["uplink_age_s"][:2]).all()
    assert d["uplink_age_s"][0] < d["uplink_age_s"][1]  # newest first
    assert env._bw_t == sorted(env._bw_t, reverse=True)


def test_probes_can_be_disabled_and_outages_leave_no_sample(toy):
    env = _env(toy, probe=ProbeConfig(interval_s=0.0))
    env.reset(seed=0)
    obs, _ = _edge_steps(env, 30)
    assert not np.isfinite(env.builder.decode(obs)["uplink_mbps"]).any()
    outage = TraceSet.from_traces([synthetic.constant(0.0, 0.0, rtt_ms=RTT, duration_s=600.0)], "outage")
    env = _env(toy, trace_set=outage)
    env.reset(seed=0)
    obs, _ = _edge_steps(env, 30)
    assert not np.isfinite(env.builder.decode(obs)["uplink_mbps"]).any()
    with pytest.raises(ValueError, match="interval_s"):
        ProbeConfig(interval_s=-1.0)
    with pytest.raises(ValueError, match="nbytes"):
        ProbeConfig(nbytes=0)
