"""The runtime decides as the env does: stream frames through the runtime adapter give the env's observation field by
field, and the same policy makes the same decisions on both (no wall clock involved: contexts carry trace time)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ecc_env.latency import DeadlineConfig
from ecc_env.runtime_adapter import RuntimeObservationAdapter, resize_nearest, stream_frame
from ecc_env.split_env import EdgeCloudSplitEnv

_spec = importlib.util.spec_from_file_location("_adapter_ctx", Path(__file__).with_name("test_runtime_adapter.py"))
_mod = importlib.util.module_from_spec(_spec)
sys.modules["_adapter_ctx"] = _mod
_spec.loader.exec_module(_mod)
_context = _mod._context  # what the runtime knows at a step, read off the env's state


def test_resize_nearest_repeats_pixels():
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    big = resize_nearest(img, 4, 4)
    assert big.shape == (4, 4, 3) and np.array_equal(big[::2, ::2], img) and np.array_equal(big[1::2, 1::2], img)
    assert np.array_equal(resize_nearest(big, 2, 2), img)


def test_stream_frame_feeds_the_model_and_keeps_the_raw_frame(toy):
    stream = toy.known_stream(num_steps=5, hw=16)
    template = {"images": np.zeros((2, 8, 8, 3), np.uint8), "prompt_ids": np.arange(4)}
    f = stream_frame(stream, template, 3)
    assert f["images"].shape == (2, 8, 8, 3) and np.array_equal(f["images"][0], f["images"][1])
    assert np.array_equal(f["images"][0], stream.frames[3][::2, ::2]) and np.array_equal(f["camera"], stream.frames[3])
    assert np.array_equal(f["joint_vel"], stream.joint_vel[3]) and np.array_equal(f["prompt_ids"], np.arange(4))
    with pytest.raises(ValueError, match="outside 0..4"):
        stream_frame(stream, template, 5)


def _planners(env):
    from sb3_contrib import MaskablePPO

    from agents.heuristics import HeuristicPlanner
    from agents.planner import ObsView, PlannerContext
    from agents.policy import PPOPlanner

    ctx = PlannerContext.from_env(env)
    model = MaskablePPO("MlpPolicy", env, seed=3, device="cpu", policy_kwargs={"net_arch": [16, 16]})
    return {
        "heuristic": HeuristicPlanner(ctx),
        "ppo": PPOPlanner(model, env.unwrapped.cut_fits, ObsView(ctx.obs_config)),
    }


@pytest.mark.parametrize("name", ["heuristic", "ppo"])
def test_same_policy_same_stream_same_decisions(profiles, const_traces, toy, name):
    _same_decisions(profiles, const_traces, toy.known_stream(num_steps=40), name)


@pytest.mark.parametrize("name", ["heuristic", "ppo"])
def test_same_decisions_on_a_recorded_stream_and_trace(profiles, toy, shared_traces, tmp_path, name):
    """A stream saved to and read back from its .npz file, and a recorded Mahimahi LTE trace (with an RTT)."""
    import dataclasses

    from ecc_env.streams import ObservationStream
    from traces import load_trace
    from traces.traceset import TraceSet

    trace = load_trace(shared_traces / "mahimahi_cellular_us" / "ATT-LTE-driving.up")
    trace_set = TraceSet.from_traces([dataclasses.replace(trace, rtt_ms=40.0)], "recorded")
    recorded = ObservationStream.load(toy.known_stream(num_steps=40).save(tmp_path / "episode.npz"))
    _same_decisions(profiles, trace_set, recorded, name)


def _same_decisions(profiles, trace_set, stream, name):
    env = EdgeCloudSplitEnv(
        *profiles,
        trace_set,
        streams=[stream],
        episode_s=4.0,
        trace_split="all",
        chunk_size=4,
        deadline=DeadlineConfig(300.0, break_even=False),
    )
    planner = _planners(env)[name]
    obs, _ = env.reset(seed=0)
    assert env._offset == 0
    adapter = RuntimeObservationAdapter(env.builder, dt_s=env.period_s, image_key="camera")
    template = {"images": np.zeros((1, 8, 8, 3), np.uint8)}
    info, steps, skips, cuts = None, 0, 0, set()
    while True:
        ctx = _context(env, env._idx, stream, info)
        frame = dict(stream_frame(stream, template, env._idx), capture_time_s=ctx.frame["capture_time_s"])
        ctx = type(ctx)(**{**ctx.__dict__, "frame": frame})
        got = adapter(ctx)
        np.testing.assert_allclose(got, obs, atol=1e-6, err_msg=f"step {env._idx}")
        a_env, _ = planner.predict(obs, deterministic=True)
        a_rt, _ = planner.predict(got, deterministic=True)
        assert np.array_equal(a_env, a_rt), f"step {env._idx}: env {a_env}, runtime {a_rt}"
        obs, _, _, truncated, info = env.step(a_env)
        steps += 1
        skips += int(info["skip"])
        cuts.add(info["cut"])
        if truncated:
            break
    assert steps >= 30
    if name == "heuristic":
        assert skips > 0  # the comparison covered skips, not only inferences
