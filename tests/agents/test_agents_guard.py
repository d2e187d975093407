"""GuardedPolicy: PPO decides; the fallback takes the step for each reason, counted by reason."""

from __future__ import annotations

import numpy as np
import pytest

from agents.artifact import PolicyExpectation, load_policy
from agents.guard import GuardedPolicy
from agents.training import train


class Recorder:
    """Fallback double: returns a fixed action and counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        self.calls += 1
        return np.array([3, 0]), state


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, toy):
    cfg = toy.tiny_train_config(tmp_path_factory.mktemp("runs"), "g")
    profiles = toy.three_block_profiles()
    res = train(cfg, trace_set=toy.alternating_set(), profiles=profiles)
    env = toy.make_env(profiles, toy.alternating_set(), episode_s=2.0)
    return res.policy_path, env


class Clock:
    """Fake perf_counter: each call advances by ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.t = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        self.t += self.step_s
        return self.t


def test_policy_decides_in_range(artifact):
    path, env = artifact
    loaded = load_policy(path)
    fb = Recorder()
    g = GuardedPolicy(loaded, fb, clock=Clock(1e-5))
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        a, _ = g.predict(obs)
        assert a.tolist() == loaded.predict(obs)[0].tolist()
        obs, *_ = env.step(a)
    assert fb.calls == 0 and sum(g.fallbacks.values()) == 0 and g.decisions == 10


def test_not_loaded(tmp_path):
    fb = Recorder()
    g = GuardedPolicy(tmp_path / "missing.zip", fb)
    a, _ = g.predict(np.zeros(33, dtype=np.float32))
    assert a.tolist() == [3, 0] and g.fallbacks["not_loaded"] == 1 and "not found" in g.load_error
    assert g.report()["fallbacks"] == {"not_loaded": 1, "out_of_range": 0, "error": 0, "over_budget": 0}


def test_not_loaded_on_mismatch(artifact):
    path, env = artifact
    fb = Recorder()
    from dataclasses import replace

    g = GuardedPolicy(path, fb, expect=replace(PolicyExpectation.for_env(env), model_id="openvla/full"))
    g.predict(np.zeros(33, dtype=np.float32))
    assert g.fallbacks["not_loaded"] == 1 and "model mismatch" in g.load_error


def test_out_of_range(artifact):
    path, env = artifact
    loaded = load_policy(path)
    fb = Recorder()
    g = GuardedPolicy(loaded, fb, range_tolerance=0.05, clock=Clock(1e-5))
    obs, _ = env.reset(seed=0)
    i = int(np.argmax(loaded.obs_high < 0.9))  # a feature whose training maximum is well below 1
    assert loaded.obs_high[i] < 0.9
    bad = obs.copy()
    bad[i] = loaded.obs_high[i] + 0.06
    g.predict(bad)
    nan = obs.copy()
    nan[0] = np.nan
    g.predict(nan)
    g.predict(obs[:10])  # wrong shape
    ok = obs.copy()
    ok[i] = loaded.obs_high[i] + 0.04  # inside the tolerance
    g.predict(ok)
    assert g.fallbacks["out_of_range"] == 3 and fb.calls == 3


def test_error_and_over_budget(artifact):
    path, _ = artifact
    loaded = load_policy(path)
    obs = np.clip(loaded.obs_low, 0, 1).astype(np.float32)
    fb = Recorder()
    g = GuardedPolicy(loaded, fb, budget_ms=2.0, clock=Clock(0.003))  # every decision "takes" 3 ms
    a, _ = g.predict(obs)
    assert a.tolist() == [3, 0] and g.fallbacks["over_budget"] == 1

    def boom(*args, **kwargs):
        raise RuntimeError("policy exploded")

    g2 = GuardedPolicy(load_policy(path), fb, clock=Clock(1e-5))
    g2.policy.planner.predict = boom
    a, _ = g2.predict(obs)
    assert a.tolist() == [3, 0] and g2.fallbacks["error"] == 1
    assert dict(g2.fallbacks) == {"error": 1}


def test_guard_argument_errors():
    with pytest.raises(TypeError, match="fallback"):
        GuardedPolicy(None, object())
    with pytest.raises(ValueError, match="budget_ms"):
        GuardedPolicy(None, Recorder(), budget_ms=0)
