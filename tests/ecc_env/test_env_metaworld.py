"""MetaWorld streams (optional dependency): recorded from the scripted expert, cached, valid, usable by the env."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")

from ecc_env.metaworld_streams import MetaWorldConfig, _label_phases, metaworld_stream  # noqa: E402
from ecc_env.streams import PHASES  # noqa: E402


@pytest.mark.slow  # heavy: renders MetaWorld episodes, ~20 s
def test_record_cache_and_use_in_env(tmp_path, toy):
    from ecc_env.split_env import EdgeCloudSplitEnv

    cfg = MetaWorldConfig(task="pick-place-v3", num_frames=24, image_hw=(64, 64))
    s = metaworld_stream(cfg, cache_dir=tmp_path)
    assert s.frames.shape == (24, 64, 64, 3) and s.joint_pos.shape == (24, 7) and s.ref_actions.shape == (24, 4)
    assert s.dt_s == pytest.approx(0.1)  # 8 MetaWorld steps of 12.5 ms
    assert s.frames.std() > 10  # a rendered scene, not a blank image
    assert np.abs(s.joint_torque).max() > 0  # effective torques from the mocap weld
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and cfg.key() in cached[0].name
    again = metaworld_stream(cfg, cache_dir=tmp_path)  # loaded from the cache
    np.testing.assert_array_equal(again.frames, s.frames)
    np.testing.assert_array_equal(again.ref_actions, s.ref_actions)
    env = EdgeCloudSplitEnv(
        *toy.make_profiles(), trace_set=toy.constant_set(), trace_split="all", streams=[s], episode_s=2.0
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1, 0]))
    assert info["latency_ms"] > 0


def test_phase_labels_from_gripper_and_success():
    grip = np.array([-1, -1, -1, 1, 1, 1, 1, -1, -1, -1], dtype=float)
    success = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    names = [PHASES[i] for i in _label_phases(grip, success)]
    assert names == [
        "approach",
        "approach",
        "grasp",
        "grasp",
        "transport",
        "transport",
        "place",
        "place",
        "approach",
        "idle",
    ]


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="no scripted expert"):
        from ecc_env.metaworld_streams import record_metaworld_stream

        record_metaworld_stream(MetaWorldConfig(task="fly-to-the-moon-v3", num_frames=2))
