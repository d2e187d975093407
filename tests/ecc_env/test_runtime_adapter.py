"""The runtime adapter: a StepContext sequence gives the env's observations for the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ecc_env.latency import DeadlineConfig
from ecc_env.runtime_adapter import RuntimeObservationAdapter
from ecc_env.split_env import EdgeCloudSplitEnv
from executor.client import BandwidthSample
from executor.runtime import StepContext


def _context(env, step, stream, prev_info):
    """What the edge runtime would know at this step, read off the env's state (same inputs, other code path).

    Samples of missed steps and of background probes carry no downlink rate (NaN), as the client records them; only
    the oldest sample here carries the env's last downlink rate, so the adapter must search past the NaNs."""
    t = env._t_dec
    nan = float("nan")
    down = env._down_mbps if env._down_mbps is not None else nan
    n = len(env._bw)
    samples = tuple(
        BandwidthSample(
            uplink_done_s=done,
            uplink_mbps=mbps,
            downlink_mbps=down if i == n - 1 else nan,
            effective_mbps=0.0,
            rtt_ms=env._rtt_ms or 0.0,
            bytes_up=0,
            bytes_down=0,
        )
        for i, (mbps, done) in reversed(list(enumerate(zip(env._bw, env._bw_t))))  # oldest first, as the client
    )
    j = env._idx
    frame = {
        "images": stream.frames[j][None],
        "joint_vel": stream.joint_vel[j],
        "joint_torque": stream.joint_torque[j],
        "capture_time_s": j * env.period_s,
    }
    has_chunk = env._held is not None
    return StepContext(
        step=j,
        now_wall_s=t,
        frame=frame,
        previous_frame=None,
        bandwidth=samples,
        rtt_ms=env._rtt_ms,
        server_queue_length=env._server_q,
        connected=True,
        frames_waiting=env._waiting,
        newest_action_age_s=None,
        actions_left_in_chunk=env._actions_left,
        chunk_step=env._chunk_idx if has_chunk else None,
        previous_action=None if prev_info is None else (prev_info["cut"], int(prev_info["skip"])),
        prev_deadline_miss=False if prev_info is None else prev_info["deadline_miss"],
        prev_latency_ms=0.0 if prev_info is None else prev_info["latency_ms"],
        num_cuts=env.num_cuts,
        edge_only_cut=env.edge_only_index,
    )


@pytest.mark.parametrize("deadline_ms", [300.0, 110.0])  # 110 ms: every cloud-only step (126 ms) misses
def test_adapter_matches_env_observations(profiles, const_traces, toy, deadline_ms):
    stream = toy.known_stream(num_steps=30)
    env = EdgeCloudSplitEnv(
        *profiles,
        const_traces,
        streams=[stream],
        episode_s=3.0,
        trace_split="all",
        chunk_size=4,
        deadline=DeadlineConfig(deadline_ms, break_even=False),
    )
    obs, _ = env.reset(seed=0)
    assert env._offset == 0  # the stream is exactly as long as the episode: steps line up with stream indices
    adapter = RuntimeObservationAdapter(env.builder, dt_s=env.period_s)
    # network steps (bandwidth samples), edge-only, skips: every field gets exercised
    plan = [(0, 0), (1, 0), (3, 0), (0, 1), (0, 1), (2, 0), (3, 0), (1, 1), (0, 0), (3, 0), (3, 1), (1, 0)]
    info = None
    checked = 0
    misses = 0
    for cut, skip in plan:
        got = adapter(_context(env, env._idx, stream, info))
        np.testing.assert_allclose(got, obs, atol=1e-6, err_msg=f"step {env._idx}")
        checked += 1
        obs, _, _, truncated, info = env.step(np.array([cut, skip]))
        misses += info["deadline_miss"]
        if truncated:
            break
    assert checked >= 8
    assert misses >= 2 if deadline_ms < 126 else misses == 0  # both cloud-only inferences miss at 110 ms
    assert len(env._bw) > 4  # background probes (every 1 s) joined the inference samples
    decoded = env.builder.decode(obs)
    assert np.isfinite(decoded["uplink_mbps"][0])  # bandwidth fields were compared with real samples in them


def test_adapter_errors_name_the_missing_input(profiles, const_traces):
    env = EdgeCloudSplitEnv(*profiles, const_traces, episode_s=1.0, trace_split="all")
    with pytest.raises(ValueError, match="dt_s"):
        RuntimeObservationAdapter(env.builder, dt_s=0.0)
    adapter = RuntimeObservationAdapter(env.builder, dt_s=0.1)
    ctx = StepContext(
        step=0,
        now_wall_s=0.0,
        frame={"images": np.zeros((1, 8, 8, 3), np.uint8)},
        previous_frame=None,
        bandwidth=(),
        rtt_ms=None,
        server_queue_length=0,
        connected=False,
        frames_waiting=0,
        newest_action_age_s=None,
        actions_left_in_chunk=0,
        chunk_step=None,
        previous_action=None,
        prev_deadline_miss=False,
        prev_latency_ms=0.0,
        num_cuts=env.num_cuts,
        edge_only_cut=3,
    )
    with pytest.raises(ValueError, match="joint_vel"):
        adapter(ctx)
