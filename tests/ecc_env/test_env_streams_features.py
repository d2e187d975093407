"""Observation streams (file format, procedural generator, visual noise), change features and the builder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecc_env.features import FeatureConfig, kinematic_scores, stream_visual_change, visual_change
from ecc_env.observation import ObservationBuilder, ObservationConfig, uplink_estimate_mbps
from ecc_env.streams import (
    PHASES,
    ObservationStream,
    StreamFormatError,
    VisualNoiseConfig,
    inject_visual_noise,
    procedural_stream,
)

# ------------------------------------------------------------------------------------------------------- streams


def _assert_same(a: ObservationStream, b: ObservationStream) -> None:
    for key in ("frames", "joint_pos", "joint_vel", "joint_torque", "ref_actions", "phases"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert (a.phase_names, a.dt_s) == (b.phase_names, b.dt_s)


def test_npz_round_trip(tmp_path):
    s = procedural_stream(3, 50)
    path = s.save(tmp_path / "s.npz")
    back = ObservationStream.load(path)
    _assert_same(s, back)
    assert back.name == s.name
    with np.load(path, allow_pickle=False) as z:  # a plain npz, readable without pickle
        assert z["frames"].shape == (50, 64, 64, 3)


def test_load_refuses_bad_files(tmp_path):
    with pytest.raises(StreamFormatError, match="not found"):
        ObservationStream.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(StreamFormatError, match="junk.npz"):
        ObservationStream.load(junk)
    s = procedural_stream(0, 10)
    np.savez(tmp_path / "old.npz", schema_version=99, frames=s.frames)
    with pytest.raises(StreamFormatError, match="schema version 99"):
        ObservationStream.load(tmp_path / "old.npz")
    np.savez(
        tmp_path / "short.npz",
        schema_version=1,
        frames=s.frames,
        joint_pos=s.joint_pos[:5],
        joint_vel=s.joint_vel,
        joint_torque=s.joint_torque,
        ref_actions=s.ref_actions,
        phases=s.phases,
    )
    with pytest.raises(StreamFormatError, match="short.npz.*joint_pos"):
        ObservationStream.load(tmp_path / "short.npz")


def test_stream_validation_names_the_field():
    s = procedural_stream(0, 10)
    base = dict(
        frames=s.frames,
        joint_pos=s.joint_pos,
        joint_vel=s.joint_vel,
        joint_torque=s.joint_torque,
        ref_actions=s.ref_actions,
        phases=s.phases,
    )
    with pytest.raises(StreamFormatError, match="frames must be uint8"):
        ObservationStream(**{**base, "frames": s.frames.astype(np.float32)})
    with pytest.raises(StreamFormatError, match="joint_torque"):
        ObservationStream(**{**base, "joint_torque": np.full_like(s.joint_torque, np.nan)})
    with pytest.raises(StreamFormatError, match="joint count"):
        ObservationStream(**{**base, "joint_vel": s.joint_vel[:, :3]})
    with pytest.raises(StreamFormatError, match="phase labels"):
        ObservationStream(**{**base, "phases": np.full(10, 7)})
    with pytest.raises(StreamFormatError, match="dt_s"):
        ObservationStream(**base, dt_s=0.0)
    assert not s.frames.flags.writeable


def test_procedural_stream_is_seeded_and_has_every_phase():
    a, b, c = procedural_stream(5, 300), procedural_stream(5, 300), procedural_stream(6, 300)
    _assert_same(a, b)
    assert not np.array_equal(a.frames, c.frames)
    assert set(np.unique(a.phases)) == set(range(len(PHASES)))
    assert np.all(np.abs(a.ref_actions) <= 1.0)
    with pytest.raises(ValueError, match="num_steps"):
        procedural_stream(0, 1)


def test_procedural_redundancy_per_phase():
    """Idle frames barely change, transport frames do; grasp shows up in the torque-change score."""
    s = procedural_stream(11, 600)
    vis = stream_visual_change(s.frames)
    kin = kinematic_scores(s.joint_vel, s.joint_torque, s.dt_s)
    by_phase = {name: vis[1:, 0][s.phases[1:] == i].mean() for i, name in enumerate(PHASES)}
    assert by_phase["idle"] < 0.2 * by_phase["transport"]
    assert by_phase["idle"] < 0.2 * by_phase["approach"]
    torque = {name: kin[1:, 2][s.phases[1:] == i].mean() for i, name in enumerate(PHASES)}
    assert torque["grasp"] > 3 * torque["transport"]


def test_visual_noise_is_seeded_and_blur_ignores_sensor_noise():
    s = procedural_stream(2, 200)
    noisy = inject_visual_noise(s, VisualNoiseConfig(sensor_sigma=6.0), seed=1)
    again = inject_visual_noise(s, VisualNoiseConfig(sensor_sigma=6.0), seed=1)
    np.testing.assert_array_equal(noisy.frames, again.frames)
    clean_v, noisy_v = stream_visual_change(s.frames), stream_visual_change(noisy.frames)
    idle = s.phases == PHASES.index("idle")
    idle[0] = False
    assert noisy_v[idle, 0].mean() > clean_v[idle, 0].mean() + 0.01  # raw difference sees the noise
    assert noisy_v[idle, 1].mean() < 0.01  # the changed-pixel fraction after blurring does not
    shaken = inject_visual_noise(s, VisualNoiseConfig(shake_px=3), seed=1)
    flick = inject_visual_noise(s, VisualNoiseConfig(flicker_gain=0.3, flicker_prob=1.0), seed=1)
    assert stream_visual_change(shaken.frames)[idle, 0].mean() > clean_v[idle, 0].mean()
    assert stream_visual_change(flick.frames)[idle, 0].mean() > clean_v[idle, 0].mean()
    with pytest.raises(ValueError):
        VisualNoiseConfig(sensor_sigma=-1.0)


# ------------------------------------------------------------------------------------------------------ features


def test_visual_change_by_hand():
    a = np.zeros((32, 32, 3), dtype=np.uint8)
    assert visual_change(a, a).tolist() == [0.0, 0.0, 0.0]
    b = a.copy()
    b[:8, :16] = 255  # a quarter of the rows, half the columns: 1/8 of the pixels at full change
    mad, changed, structural = visual_change(a, b)
    assert mad == pytest.approx(1 / 8)
    assert changed == pytest.approx(1 / 8)  # the region is aligned with the 4-px blur blocks
    assert 0 < structural <= 1
    with pytest.raises(ValueError, match="shape"):
        visual_change(a, b[:16])


def test_kinematic_scores_by_hand():
    cfg = FeatureConfig(window=4, z_max=4.0, accel_floor=0.5, torque_floor=0.3)
    t = 12
    qd = np.zeros((t, 2))
    qd[8:, 0] = 3.0  # a sudden start at step 8: |acc| = 3 / 0.1 = 30 rad/s^2, after four steps at 0
    tau = np.ones((t, 2))
    tau[10:, 1] = 2.0  # a torque jump of 1 N m at step 10
    k = kinematic_scores(qd, tau, 0.1, cfg)
    np.testing.assert_allclose(k[:, 0], np.abs(qd[:, 0]))
    # step 8: window mean 0, std floored at 0.5 -> z = 60 -> clipped to 4 -> 1.0
    assert k[8, 1] == 1.0 and np.all(k[:8, 1] == 0) and k[9, 1] == 0.0
    assert k[10, 2] == pytest.approx(min((1.0 - 0.0) / 0.3, 4.0) / 4.0)
    assert np.all(k[:10, 2] == 0)
    with pytest.raises(ValueError, match="shape"):
        kinematic_scores(qd, tau[:, :1], 0.1, cfg)


# ------------------------------------------------------------------------------------------------------- builder


def test_builder_table_and_scales(build_obs):
    cfg = ObservationConfig(bandwidth_history=3, num_cuts=5, queue_capacity=4, chunk_size=8)
    b = ObservationBuilder(cfg)
    assert b.size == 2 * 3 + 17 == b.space.shape[0]
    assert b.space.dtype == np.float32 and float(b.space.low.min()) == 0.0 and float(b.space.high.max()) == 1.0
    o = build_obs(
        b,
        uplink_mbps=[100.0, 20_000.0],
        uplink_age_s=[0.5, 50.0],
        downlink_mbps=None,
        rtt_ms=40.0,
        edge_queue=2,
        server_queue=40,
        action_age_s=0.3,
        actions_left=6,
        visual=(0.05, 0.2, 0.3),
        visual_since_action=0.4,
        kinematic=(2.0, 0.5, 0.75),
        prev_cut=2,
        prev_skip=True,
        prev_latency_ms=99.0,
    )
    i = b.index
    assert o[i["uplink_mbps[0]"]] == pytest.approx(math.log1p(100) / math.log1p(10_000))
    assert o[i["uplink_mbps[1]"]] == 1.0  # above the scale: clipped
    assert o[i["uplink_mbps[2]"]] == 0.0 and o[i["uplink_age[2]"]] == 1.0  # missing sample
    assert o[i["uplink_age[0]"]] == pytest.approx(0.05) and o[i["uplink_age[1]"]] == 1.0
    assert o[i["downlink_mbps"]] == 0.0
    assert o[i["edge_queue"]] == 0.5 and o[i["server_queue"]] == 1.0
    assert o[i["action_age"]] == pytest.approx(0.15) and o[i["actions_left"]] == 0.75
    assert o[i["visual_mad"]] == pytest.approx(0.2) and o[i["visual_since_action"]] == pytest.approx(0.4)
    assert o[i["joint_speed"]] == pytest.approx(0.5) and o[i["prev_cut"]] == 0.5 and o[i["prev_skip"]] == 1.0
    assert o[i["prev_latency"]] == pytest.approx(math.log1p(99) / math.log1p(10_000))
    assert b.space.contains(o)
    nan = build_obs(
        b, uplink_mbps=[float("nan")], uplink_age_s=[1.0], downlink_mbps=float("inf"), rtt_ms=None, action_age_s=None
    )
    assert b.space.contains(nan) and nan[i["uplink_mbps[0]"]] == 0.0 and nan[i["uplink_age[0]"]] == 1.0
    spec = b.spec()
    assert spec["fields"] == list(b.field_names) and spec["scales"]["bandwidth_history"] == 3
    with pytest.raises(ValueError, match="uplink_age_s"):
        build_obs(b, uplink_mbps=[1.0], uplink_age_s=[])
    with pytest.raises(ValueError, match="max_age_s"):
        ObservationConfig(max_age_s=0)


def test_uplink_estimate():
    assert uplink_estimate_mbps(1_250_000, 1.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="transfer_s"):
        uplink_estimate_mbps(1, 0.0)


def test_decode_inverts_the_scales(build_obs):
    b = ObservationBuilder(ObservationConfig(bandwidth_history=4, num_cuts=11, queue_capacity=3, chunk_size=8))
    o = build_obs(b, uplink_mbps=[42.0, 3.5], prev_skip=False, prev_deadline_miss=True)
    d = b.decode(o)
    np.testing.assert_allclose(d["uplink_mbps"][:2], [42.0, 3.5], rtol=1e-5)
    assert np.isnan(d["uplink_mbps"][2:]).all() and np.isnan(d["uplink_age_s"][2:]).all()
    np.testing.assert_allclose(d["uplink_age_s"][:2], [0.25, 4.0], rtol=1e-5)
    assert d["downlink_mbps"] == pytest.approx(80.0, rel=1e-5) and d["rtt_ms"] == pytest.approx(55.0, rel=1e-5)
    assert (d["edge_queue"], d["server_queue"], d["actions_left"], d["prev_cut"]) == pytest.approx((2, 5, 5, 7))
    assert d["action_age_s"] == pytest.approx(0.6, rel=1e-5) and d["joint_speed"] == pytest.approx(1.5, rel=1e-5)
    assert d["prev_deadline_miss"] and not d["prev_skip"]
    assert d["prev_latency_ms"] == pytest.approx(321.0, rel=1e-4)
    with pytest.raises(ValueError, match="shape"):
        b.decode(o[:-1])
