"""The executor latency backend: real split inference over a trace-shaped loopback link, the deadline rule, and
the sim-to-real comparison with the profile backend (tiny model, OS-chosen ports)."""

from __future__ import annotations

import socket

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")

from ecc_env.backends import ExecutorBackend, ExecutorConfig  # noqa: E402
from ecc_env.latency import DeadlineConfig  # noqa: E402
from ecc_env.sim2real import sim_to_real  # noqa: E402
from ecc_env.split_env import EdgeCloudSplitEnv  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profiler import ProfilerConfig, profile_model  # noqa: E402
from traces import synthetic  # noqa: E402
from traces.traceset import TraceSet  # noqa: E402

RTT_MS = 40.0
PLAIN = DeadlineConfig(300.0, break_even=False)  # the tiny model runs edge-only in ms: no break-even cap here
INFO_KEYS = (
    "edge_ms",
    "uplink_ms",
    "cloud_ms",
    "server_queue_ms",
    "queue_ms",
    "downlink_ms",
    "service_ms",
    "latency_ms",
    "deadline_miss",
    "fallback",
    "deviation",
)


@pytest.fixture(scope="module")
def tiny_profile():
    """The tiny OpenVLA measured on this CPU: the same Profile for edge and cloud (one machine)."""
    torch.set_num_threads(1)
    return profile_model(build_model("openvla", "tiny", seed=0), ProfilerConfig(warmup_runs=1, measured_runs=3))


def const_set(up=20.0, down=50.0) -> TraceSet:
    return TraceSet.from_traces([synthetic.constant(up, down, rtt_ms=RTT_MS, duration_s=600.0)], "const")


def test_short_episode_measures_every_step_and_cleans_up(tiny_profile):
    p = tiny_profile
    env = EdgeCloudSplitEnv(
        p,
        p,
        const_set(),
        backend="executor",
        trace_split="all",
        episode_s=2.0,
        executor=ExecutorConfig(),
        deadline=PLAIN,
    )
    try:
        assert isinstance(env.backend, ExecutorBackend)
        obs, _ = env.reset(seed=3)
        assert env.observation_space.contains(obs)
        edge_only = env.edge_only_index
        # cloud-only, single-exchange splits, edge-only and a skip: no multi-round-trip cut (they miss at 40 ms RTT)
        plan = [(0, 0), (2, 0), (edge_only, 0), (4, 0), (1, 1), (6, 0)]
        infos = []
        for i in range(20):
            obs, reward, terminated, truncated, info = env.step(np.array(plan[i % len(plan)]))
            assert env.observation_space.contains(obs)
            assert not terminated
            infos.append(info)
            if truncated:
                break
        assert len(infos) >= 15
        for info in infos:
            assert set(INFO_KEYS) <= set(info)
            if info["skip"]:
                assert info["service_ms"] == env.config.skip_ms
                continue
            parts = (
                info["edge_ms"]
                + info["uplink_ms"]
                + info["server_queue_ms"]
                + info["cloud_ms"]
                + info["downlink_ms"]
                + info["deadline_wait_ms"]
            )
            assert info["service_ms"] == pytest.approx(parts, rel=1e-9, abs=1e-9)
            if info["cut"] == edge_only:
                assert info["uplink_ms"] == info["downlink_ms"] == 0.0
            elif not info["fallback"]:
                # the shaped link adds the trace's one-way delay in each direction: a hard lower bound
                assert info["uplink_ms"] >= RTT_MS / 2
                assert info["downlink_ms"] >= RTT_MS / 2
                assert info["service_ms"] >= RTT_MS
        # measured, not copied from the Profile: network steps see at least the link's delays, the Profile has none
        assert any(not i["skip"] and i["cut"] != edge_only and not i["fallback"] for i in infos)
        # bandwidth estimates come from the measured uploads (about 20 Mbit/s after removing the delay)
        est = env.builder.decode(obs)["uplink_mbps"]
        assert np.isfinite(est[0]) and 2.0 < est[0] < 200.0
        backend = env.backend
        server, port = backend.server, backend.shaped.port
    finally:
        env.close()
    assert backend.server is None and backend.client is None and backend.shaped is None
    assert not server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    env.close()  # twice is fine


def test_outage_step_falls_back_with_the_deadline_rule_cost(tiny_profile):
    p = tiny_profile
    # 1 s of 20 Mbit/s, then 9 s without any uplink: most steps start inside the outage
    trace = synthetic.step([20.0] + [0.0] * 9, 1.0, down_levels_mbps=[50.0] * 10, rtt_ms=RTT_MS)
    deadline = DeadlineConfig(250.0, break_even=False)
    env = EdgeCloudSplitEnv(
        p,
        p,
        TraceSet.from_traces([trace], "outage"),
        backend="executor",
        trace_split="all",
        episode_s=1.5,
        segment_margin_s=5.0,
        deadline=deadline,
    )
    try:
        env.reset(seed=0)
        link = env.link
        up_bytes = env.rows[0].up_bytes
        outage_steps = 0
        for _ in range(8):
            _, reward, _, truncated, info = env.step(np.array([0, 0]))
            t = info["time_s"]
            if link.bytes_deliverable(t, deadline.deadline_ms / 1e3, "up") < up_bytes:
                outage_steps += 1
                assert info["deadline_miss"] and info["fallback"]
                assert info["uplink_ms"] == info["cloud_ms"] == info["downlink_ms"] == 0.0
                # the rule's cost: the deadline plus the (measured) edge-only fallback
                assert info["deadline_wait_ms"] == deadline.deadline_ms
                assert info["service_ms"] == pytest.approx(deadline.deadline_ms + info["edge_ms"])
                assert info["edge_ms"] > 0
                assert info["r_deadline"] == -env.config.reward.deadline_miss_penalty
            if truncated:
                break
        assert outage_steps >= 1
        assert env.backend.misses >= outage_steps
    finally:
        env.close()


def test_sim_to_real_reports_per_step_gaps(tiny_profile):
    p = tiny_profile
    edge_only = p.num_blocks
    actions = [(0, 0), (3, 0), (edge_only, 0), (5, 0), (0, 1), (1, 0)] * 2
    report = sim_to_real(
        p,
        p,
        const_set(),
        actions=actions,
        seed=5,
        trace_split="all",
        episode_s=3.0,
        deadline=PLAIN,
        baseline=(p, p),
        baselines={"same": (p, p), "slower": (replace(p, block_ms=tuple(2 * x for x in p.block_ms)), p)},
    )
    n_infer = sum(1 for _, s in actions if not s)
    assert report.steps_total == len(actions)
    assert len(report.cut) == n_infer == len(report.executor_ms) == len(report.gap_paired)
    assert np.all(np.isfinite(report.gap_paired)) and np.all(report.gap_paired >= 0)
    np.testing.assert_allclose(
        report.gap_paired, np.abs(report.profile_paired_ms - report.executor_ms) / report.executor_ms
    )
    network = report.cut != edge_only
    # the Profile prices edge-only at its block times; the network cuts at least at the trace's RTT
    np.testing.assert_allclose(report.profile_paired_ms[~network], p.total_ms)
    assert np.all(report.profile_paired_ms[network] >= RTT_MS)
    assert np.all(report.executor_ms[network] >= RTT_MS)
    # the baseline pair prices the same executor steps paired: here the same pair, so the same prices
    np.testing.assert_array_equal(report.profile_baseline_ms, report.profile_paired_ms)
    # named pairs price the same steps too: the same pair identically, an edge twice as slow longer at every cut
    # where the edge runs blocks (by its extra block time exactly at edge-only)
    np.testing.assert_array_equal(report.baselines_ms["same"], report.profile_paired_ms)
    np.testing.assert_array_equal(report.gap_of("same"), report.gap_paired)
    slower = report.baselines_ms["slower"]
    np.testing.assert_allclose(slower[~network] - report.profile_paired_ms[~network], p.total_ms)
    assert np.all(slower >= report.profile_paired_ms)
    s = report.summary()
    assert s["inference_steps"] == n_infer
    assert (s["gap_baseline_median"], s["gap_baseline_p90"]) == (s["gap_paired_median"], s["gap_paired_p90"])
    assert 0 <= s["gap_paired_median"] <= s["gap_paired_p90"]
    assert report.backend["emulation"] is None
    with pytest.raises(ValueError, match="exactly one"):
        sim_to_real(p, p, const_set(), seed=0)
