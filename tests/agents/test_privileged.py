"""Privileged (simulation-only) bandwidth fields: exact true rates appended after an unchanged observation; a policy
trained with them is recorded as such and refused by load_policy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.artifact import PolicyLoadError, load_policy, meta_path
from agents.training import TrainConfig, train
from ecc_env.privileged import PrivilegedBandwidth, PrivilegedConfig
from traces import synthetic
from traces.traceset import TraceSet

SCALE = math.log1p(10_000.0)  # ObservationConfig.bandwidth_scale_mbps


def _decode(x: float) -> float:
    return math.expm1(float(x) * SCALE)


def _levels() -> TraceSet:
    # 0.5 s per level, repeating 10 / 100 / 40 Mbit/s: a decision sees a different rate every few steps
    levels = [10.0, 100.0, 40.0] * 8
    return TraceSet.from_traces([synthetic.step(levels, 0.5, rtt_ms=20.0, name="lv/lv-0")], "lv")


def test_config_validation():
    with pytest.raises(ValueError, match="horizon_s"):
        PrivilegedConfig(horizon_s=-1.0)
    with pytest.raises(ValueError, match="horizon_s"):
        PrivilegedConfig(horizon_s=float("nan"))
    with pytest.raises(ValueError, match="no field"):
        PrivilegedConfig(now=False, horizon_s=0.0)
    assert PrivilegedConfig().field_names == ("true_uplink_now",)
    assert PrivilegedConfig(now=False, horizon_s=0.5).field_names == ("true_uplink_ahead",)
    assert PrivilegedConfig(now=False, held_deviation_steps=2).field_names == ("held_deviation_0", "held_deviation_1")
    assert PrivilegedConfig(now=False, held_deviation_steps=1).describe() == {
        "fields": ["held_deviation_0"],
        "horizon_s": 0.0,
        "deviation_scale": 0.25,
    }  # what load_policy names
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="held_deviation_steps"):
            PrivilegedConfig(held_deviation_steps=bad)
    for bad in (0.0, -0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="deviation_scale"):
            PrivilegedConfig(held_deviation_steps=1, deviation_scale=bad)


def test_fields_are_the_true_rates_after_an_unchanged_observation(toy):
    profiles = toy.three_block_profiles()
    plain = toy.make_env(profiles, _levels(), episode_s=3.0)
    wrapped = PrivilegedBandwidth(
        toy.make_env(profiles, _levels(), episode_s=3.0), PrivilegedConfig(now=True, horizon_s=0.5)
    )
    assert wrapped.observation_space.shape == (plain.observation_space.shape[0] + 2,)
    o_plain, _ = plain.reset(seed=3)
    o_wrap, _ = wrapped.reset(seed=3)
    rng = np.random.default_rng(0)
    seen, spans = set(), 0
    for _ in range(40):
        np.testing.assert_array_equal(o_wrap[:-2], o_plain)
        e = wrapped.unwrapped
        t, link = e._t_dec, e.link
        now, ahead = _decode(o_wrap[-2]), _decode(o_wrap[-1])
        assert now == pytest.approx(link.bandwidth_mbps(t, "up"), rel=1e-5)
        seen.add(round(now))
        # the harmonic mean over [t, t + 0.5) by midpoint sampling of the rate (independent of the trace's
        # cumulative integrals): 0.5 s / sum(dt / rate)
        dt = 0.5 / 20_000
        rates = np.array([link.bandwidth_mbps(t + (i + 0.5) * dt, "up") for i in range(20_000)])
        hm = 0.5 / float(np.sum(dt / rates))
        assert ahead == pytest.approx(hm, rel=2e-3)
        spans += abs(ahead - now) > 1.0  # the window reaches the next level
        a = np.array([int(rng.integers(0, 4)), 0])
        o_plain, _, term, trunc, _ = plain.step(a)
        o_wrap, _, term_w, trunc_w, _ = wrapped.step(a)
        assert (term, trunc) == (term_w, trunc_w)
        if term or trunc:
            break
    assert len(seen) >= 2 and spans >= 2  # the fields follow the trace


def test_outage_ahead_reads_zero(toy):
    trace = synthetic.step([50.0, 0.0, 50.0, 50.0], 1.0, rtt_ms=20.0, name="out/out-0")
    env = PrivilegedBandwidth(
        toy.make_env(toy.three_block_profiles(), TraceSet.from_traces([trace], "out"), episode_s=3.0),
        PrivilegedConfig(now=True, horizon_s=2.5),
    )
    obs, _ = env.reset(seed=0)
    assert _decode(obs[-1]) == 0.0  # any window of 2.5 s of this 4 s trace touches the outage
    assert _decode(obs[-2]) == pytest.approx(env.unwrapped.link.bandwidth_mbps(env.unwrapped._t_dec, "up"))


def test_held_deviation_is_what_skipping_costs_now_and_next(toy):
    """held_deviation_0 is the deviation the env charges for skipping this step (its info['deviation']), and
    held_deviation_1 the one it charges for skipping the next; 1 while nothing is held."""
    scale = 0.5
    env = PrivilegedBandwidth(
        toy.make_env(toy.three_block_profiles(), _levels(), episode_s=6.0),
        PrivilegedConfig(now=False, held_deviation_steps=2, deviation_scale=scale),
    )
    assert env.observation_space.shape[0] == 33 + 2
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs[-2:], [1.0, 1.0])  # no actions held before the first inference
    rng = np.random.default_rng(4)
    checked, nonzero, predicted_next = 0, 0, None
    for _ in range(60):
        skip = int(env.unwrapped._actions_left > 0 and rng.random() < 0.75)
        before = obs[-2:].copy()
        obs, _, term, trunc, info = env.step(np.array([0, skip]))
        if skip:
            assert before[0] == pytest.approx(min(info["deviation"] / scale, 1.0), abs=1e-6)
            if predicted_next is not None:
                assert predicted_next == pytest.approx(before[0], abs=1e-6)  # the same held action, one step on
            checked += 1
            nonzero += info["deviation"] > 1e-6
        predicted_next = float(before[1]) if skip else None
        if term or trunc:
            break
    assert checked >= 20 and nonzero >= 10


def test_wraps_only_the_split_env():
    import gymnasium as gym

    with pytest.raises(TypeError, match="EdgeCloudSplitEnv"):
        PrivilegedBandwidth(gym.make("CartPole-v1"))


def test_trained_policy_is_recorded_and_refused_by_load_policy(tmp_path, toy):
    cfg = toy.tiny_train_config(tmp_path, "priv", eval_every_steps=128)
    res = train(
        cfg,
        trace_set=toy.alternating_set(),
        profiles=toy.three_block_profiles(),
        privileged=PrivilegedConfig(horizon_s=0.5),
    )
    meta = json.loads(meta_path(res.policy_path).read_text())
    assert meta["privileged"] == {"fields": ["true_uplink_now", "true_uplink_ahead"], "horizon_s": 0.5}
    assert len(meta["obs_range"]["low"]) == 35  # 33 regular fields + 2 privileged
    assert json.loads((res.run_dir / "config.json").read_text())["privileged"]["horizon_s"] == 0.5
    with pytest.raises(PolicyLoadError, match="privileged.*true_uplink_now"):
        load_policy(res.policy_path)
    with pytest.raises(ValueError, match="warm_start"):
        train(
            TrainConfig(warm_start="heuristic", run_dir=str(tmp_path)),
            trace_set=toy.alternating_set(),
            profiles=toy.three_block_profiles(),
            privileged=PrivilegedConfig(),
        )
