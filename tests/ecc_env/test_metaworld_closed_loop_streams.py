"""Closed-loop-like MetaWorld streams (optional dependency): recorded through the closed loop's robot and events,
deterministic per seed, the event visible in the frames and the joint state; usable for PPO training."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")

from ecc_env.metaworld_streams import MetaWorldConfig, closed_loop_streams, record_closed_loop_stream  # noqa: E402


@pytest.fixture(scope="module")
def pick_place_sim():
    from ecc_env.metaworld_sim import MetaWorldSim

    sim = MetaWorldSim("pick-place-v3")
    yield sim
    sim.close()


def test_event_stream_is_deterministic_per_seed_and_shows_the_event(pick_place_sim):
    cfg = MetaWorldConfig(task="pick-place-v3", seed=0, num_frames=8, image_hw=(64, 64), closed_loop_events="on")
    on = record_closed_loop_stream(cfg, pick_place_sim)
    again = record_closed_loop_stream(cfg, pick_place_sim)
    off = record_closed_loop_stream(
        MetaWorldConfig(task="pick-place-v3", seed=0, num_frames=8, image_hw=(64, 64), closed_loop_events="off"),
        pick_place_sim,
    )
    for name in ("frames", "joint_pos", "joint_vel", "joint_torque", "ref_actions", "phases"):
        np.testing.assert_array_equal(getattr(on, name), getattr(again, name), err_msg=name)
    assert on.frames.shape == (8, 64, 64, 3) and on.dt_s == pytest.approx(0.1)  # the env's 100 ms period
    kinds = [(e["kind"], e["step"]) for e in on.meta["events"]]
    assert kinds == [("object", 1), ("goal", 3)] and off.meta["events"] == []
    # visual noise: every frame differs from the clean one, the scene itself did not change at step 0
    assert all(not np.array_equal(a, b) for a, b in zip(on.frames, off.frames))
    # the object is displaced at step 1: the arm is where it was until then, and goes elsewhere afterwards
    np.testing.assert_array_equal(on.joint_pos[:2], off.joint_pos[:2])
    assert np.abs(on.joint_pos[4:] - off.joint_pos[4:]).max() > 1e-3
    assert np.abs(on.ref_actions[2:] - off.ref_actions[2:]).max() > 0.05  # the expert re-plans for the new spot


def test_closed_loop_streams_are_cached_and_keyed_by_events(tmp_path):
    first = closed_loop_streams(["reach-v3"], seeds=1, num_frames=6, period_ms=100.0, cache_dir=tmp_path)
    assert [s.name for s in first] == ["metaworld-reach-v3-s0-events-off", "metaworld-reach-v3-s0-events-on"]
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = closed_loop_streams(["reach-v3"], seeds=1, num_frames=6, period_ms=100.0, cache_dir=tmp_path)
    np.testing.assert_array_equal(again[1].frames, first[1].frames)
    plain = MetaWorldConfig(task="reach-v3", num_frames=6)
    assert plain.key() != MetaWorldConfig(task="reach-v3", num_frames=6, closed_loop_events="off").key()
    with pytest.raises(ValueError, match="whole number"):
        closed_loop_streams(["reach-v3"], seeds=1, num_frames=6, period_ms=30.0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="closed_loop_events"):
        MetaWorldConfig(closed_loop_events="sometimes")
