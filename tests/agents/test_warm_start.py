"""Warm start: demonstrations of a planner and behaviour cloning of them into a MaskablePPO policy."""

from __future__ import annotations

import numpy as np
import pytest

from agents.planner import ObsView, PlannerContext
from agents.policy import PPOPlanner
from agents.training import TrainConfig
from agents.warm_start import behaviour_clone, collect_demonstrations


class ProbeWhenStale:
    """Test double planner whose choice depends on the observation: cloud (cut 0) when the newest uplink sample is
    fast, and to probe when there is none; edge otherwise; skip whenever actions are left."""

    def __init__(self, ctx: PlannerContext) -> None:
        self.view = ObsView(ctx.obs_config)
        self.edge = ctx.edge_only_index

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        f = self.view.decode(np.asarray(observation))
        if f["actions_left"] > 0:
            return np.array([self.edge, 1]), state
        fast = not np.isfinite(f["uplink_mbps"]) or f["uplink_mbps"] > 50.0
        return np.array([0 if fast else self.edge, 0]), state


@pytest.fixture
def setting(toy):
    profiles = toy.two_cut_profiles(edge_ms=80.0, cloud_ms=5.0)
    traces = toy.alternating_set(high_mbps=100.0, low_mbps=12.0, block_s=4.0, n=4, seed=3)
    env = toy.make_env(profiles, traces, episode_s=10.0, chunk_size=4)
    return env, PlannerContext.from_env(env)


def test_demonstrations_are_whole_episodes_with_discounted_returns(setting):
    env, ctx = setting
    gamma = 0.9
    demos = collect_demonstrations(ProbeWhenStale(ctx), env, 150, gamma=gamma, seed=5)
    assert len(demos) >= 150 and demos.episodes >= 2
    assert demos.obs.shape == (len(demos), env.observation_space.shape[0])
    # every recorded action is allowed by the mask recorded with it
    n_cuts = env.unwrapped.num_cuts
    assert demos.masks[np.arange(len(demos)), demos.actions[:, 0]].all()
    assert demos.masks[np.arange(len(demos)), n_cuts + demos.actions[:, 1]].all()
    # the returns-to-go of the first episode, recomputed from its rewards by replaying the same seed
    env.reset(seed=5)
    planner = ProbeWhenStale(ctx)
    obs, _ = env.reset(seed=5)
    rewards, done = [], False
    while not done:
        a, _ = planner.predict(obs)
        obs, r, term, trunc, _ = env.step(a)
        rewards.append(r)
        done = term or trunc
    expected = np.array([sum(gamma**k * r for k, r in enumerate(rewards[i:])) for i in range(len(rewards))])
    np.testing.assert_allclose(demos.returns[: len(rewards)], expected, rtol=1e-4, atol=1e-4)
    assert set(demos.actions[:, 0]) == {0, ctx.edge_only_index}  # both branches of the planner were demonstrated


@pytest.mark.slow  # heavy: behaviour cloning and evaluation, ~30 s
def test_cloned_policy_reproduces_the_planner_on_new_episodes(setting):
    from sb3_contrib import MaskablePPO

    env, ctx = setting
    demos = collect_demonstrations(ProbeWhenStale(ctx), env, 3_000, gamma=0.95, seed=0)
    model = MaskablePPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]})
    untrained = PPOPlanner(model, env.unwrapped.cut_fits, ObsView(ctx.obs_config))
    fit = behaviour_clone(model, demos, epochs=30, batch_size=128, learning_rate=1e-3, seed=0)
    assert fit["accuracy"] >= 0.97, fit
    cloned = PPOPlanner(model, env.unwrapped.cut_fits, ObsView(ctx.obs_config))
    held_out = collect_demonstrations(ProbeWhenStale(ctx), env, 500, gamma=0.95, seed=1_000)
    agree = [np.array_equal(cloned.predict(o)[0], a) for o, a in zip(held_out.obs, held_out.actions)]
    before = [
        np.array_equal(untrained_a, a)
        for untrained_a, a in zip((untrained.predict(o)[0] for o in held_out.obs), held_out.actions)
    ]
    assert np.mean(agree) >= 0.95 and np.mean(agree) > np.mean(before) + 0.2, (np.mean(agree), np.mean(before))


def test_bad_arguments_are_refused(setting):
    env, ctx = setting
    with pytest.raises(ValueError, match="steps"):
        collect_demonstrations(ProbeWhenStale(ctx), env, 0, gamma=0.9, seed=0)
    with pytest.raises(ValueError, match="gamma"):
        collect_demonstrations(ProbeWhenStale(ctx), env, 10, gamma=1.5, seed=0)
    with pytest.raises(ValueError, match="warm_start"):
        TrainConfig(warm_start="oracle")
    with pytest.raises(ValueError, match="warm_start_steps"):
        TrainConfig(warm_start_steps=0)
