"""Background bandwidth probes: hand-computed samples while the planner stays on the edge."""

from __future__ import annotations


import numpy as np
import pytest

from ecc_env.latency import DeadlineConfig, ProbeConfig, probe_sample
from ecc_env.split_env import EdgeCloudSplitEnv
from traces import synthetic
from traces.traceset import TraceSet

UP, RTT = 10.0, 40.0
PROBE_S = 32_768 * 8 / (UP * 1e6)  # 26.2144 ms at 10 Mbit/s


ONE_PER_SECOND = ProbeConfig(interval_s=1.0, nbytes=32_768)  # the hand computations below use this config
PLAIN_300MS = DeadlineConfig(300.0, break_even=False)  # and this deadline (the toy's edge-only time is only 60 ms)


def _env(toy, trace_set=None, **kw):
    kw.setdefault("probe", ONE_PER_SECOND)
    kw.setdefault("deadline", PLAIN_300MS)
    return EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=trace_set or toy.constant_set(up=UP, rtt=RTT),
        streams=[toy.known_stream(num_steps=40)],
        trace_split="all",
        episode_s=4.0,
        chunk_size=1,
        **kw,
    )


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


def test_the_first_observation_holds_the_connect_probe(toy):
    """The client probes once while connecting (``EdgeClient._connect_probe``): the first decision sees the link's
    rate at the segment's start, measured at t = 0; with probes off, or through an outage, it sees none."""
    levels = synthetic.step([UP, 2.0, 5.0], 30.0, rtt_ms=RTT)  # 30 s at each rate; episodes start anywhere
    env = _env(toy, trace_set=TraceSet.from_traces([levels], "levels"))
    seen = set()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        d = env.builder.decode(obs)
        rate = env.link.bandwidth_mbps(0.0, "up")
        seen.add(rate)
        assert int(np.isfinite(d["uplink_mbps"]).sum()) == 1
        assert d["uplink_mbps"][0] == pytest.approx(rate, rel=1e-4)
        assert d["uplink_age_s"][0] == 0.0
    assert len(seen) > 1  # the sample follows the segment, it is not a constant
    obs, _ = _env(toy, probe=ProbeConfig(interval_s=0.0)).reset(seed=0)
    assert not np.isfinite(env.builder.decode(obs)["uplink_mbps"]).any()
    outage = TraceSet.from_traces([synthetic.constant(0.0, 0.0, rtt_ms=RTT, duration_s=600.0)], "outage")
    obs, _ = _env(toy, trace_set=outage).reset(seed=0)
    assert not np.isfinite(env.builder.decode(obs)["uplink_mbps"]).any()


def test_edge_only_planner_sees_one_sample_per_second(toy):
    env = _env(toy)
    env.reset(seed=0)
    obs, info = _edge_steps(env, 25)  # edge-only: 60 ms per step, one observation per 100 ms period
    d = env.builder.decode(obs)
    now = env._t_dec
    probes = [0.0, 1.0 + PROBE_S, 2.0 + PROBE_S]  # the connect probe, then probes at 1 s and 2 s of trace time
    assert now > 2.0 + PROBE_S
    n = int(np.isfinite(d["uplink_mbps"]).sum())
    assert n == 3
    np.testing.assert_allclose(d["uplink_mbps"][:3], [UP, UP, UP], rtol=1e-4)
    np.testing.assert_allclose(d["uplink_age_s"][:3], [now - p for p in probes[::-1]], atol=1e-4)
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


def test_default_probes_keep_the_newest_sample_a_quarter_second_old(toy):
    """Default: 8 kB every 0.25 s (the same 0.26 Mbit/s as one 32 kB probe per second); the client sends the same."""
    from executor.client import ClientConfig

    cfg = ProbeConfig()
    assert (cfg.interval_s, cfg.nbytes) == (ClientConfig().probe_interval_s, ClientConfig().probe_bytes)
    assert cfg.nbytes / cfg.interval_s == pytest.approx(ONE_PER_SECOND.nbytes / ONE_PER_SECOND.interval_s)
    env = _env(toy, probe=cfg)
    env.reset(seed=0)
    obs, _ = _edge_steps(env, 12)  # 60 ms per step: t = 1.2 s, probes sent at 0.25, 0.5, 0.75 and 1.0 s
    d = env.builder.decode(obs)
    now = env._t_dec
    probe_s = 8_192 * 8 / (UP * 1e6)  # 6.55 ms at 10 Mbit/s
    n = int(np.isfinite(d["uplink_mbps"]).sum())
    assert n == 5  # and the connect probe, measured at t = 0
    np.testing.assert_allclose(
        d["uplink_age_s"][:5], [now - (t + probe_s) for t in (1.0, 0.75, 0.5, 0.25)] + [now], atol=1e-4
    )
    assert d["uplink_age_s"][0] <= cfg.interval_s


def test_no_probe_is_sent_while_a_network_inference_is_in_flight(toy):
    """Probes every 25 ms; a cloud-only step from t = 1.0 s: the probes due inside its exchange are skipped (the
    client skips them as well), the ones before and after it are sent."""
    nbytes, interval = 1_000, 0.025  # through within the interval: 0.8 ms + 20 ms one way
    probe_s = nbytes * 8 / (UP * 1e6)  # 0.8 ms at 10 Mbit/s
    env = _env(toy, probe=ProbeConfig(interval_s=interval, nbytes=nbytes))
    env.reset(seed=0)
    _edge_steps(env, 10)
    t0 = env._t_dec
    assert t0 == pytest.approx(1.0)
    _, _, _, _, info = env.step(np.array([0, 0]))  # cloud-only: 100 kB raw upload at 10 Mbit/s
    t1 = t0 + info["service_ms"] * 1e-3
    assert not info["deadline_miss"] and t1 - t0 > 3 * interval
    _edge_steps(env, 1)  # the observation queued at 1.1 s, taken at 1.126 s; then the one at 1.2 s
    now = env._t_dec
    sent = sorted(
        round(x - probe_s, 6)
        for x in env._bw_t
        if abs((x - probe_s) / interval - round((x - probe_s) / interval)) < 1e-6
    )
    due = [round(k * interval, 6) for k in range(1, int(now / interval) + 1) if k * interval + probe_s <= now]
    # the probe due exactly at the step's start is sent or not depending on float rounding of the probe clock
    sent = [t for t in sent if t != pytest.approx(t0)]
    expected = [t for t in due if not t0 - 1e-9 <= t < t1]
    n = len(sent)  # the history keeps the newest samples only
    assert n >= 5 and sent == expected[-n:]
    assert sent[0] < t0 and sent[-1] > t1  # samples from before and after the exchange, none from within it
    assert sum(t0 < t < t1 for t in due) == 5  # 1.025 .. 1.125 s were due during the exchange


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
