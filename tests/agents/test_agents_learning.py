"""Does PPO learn? On links that alternate between fast and slow, neither edge-only nor cloud-only is optimal."""

from __future__ import annotations

import pytest

from agents.artifact import load_policy
from agents.evaluate import evaluate
from agents.heuristics import CloudOnly, EdgeOnly
from agents.planner import PlannerContext
from agents.training import TrainConfig, train


@pytest.mark.slow
def test_ppo_beats_edge_only_and_cloud_only(tmp_path, toy):
    # edge 90 ms; cloud-only 1 Mbit up: 35 ms at 100 Mbit/s, 192 ms at 6 Mbit/s (chunk_size 1: no skipping)
    profiles = toy.two_cut_profiles(edge_ms=90.0, cloud_ms=5.0)
    traces = toy.alternating_set(high_mbps=100.0, low_mbps=6.0, block_s=4.0, n=6, seed=1)
    cfg = TrainConfig(total_timesteps=100_000, n_envs=4, n_steps=256, batch_size=256, eval_every_steps=10_000,
                      eval_episodes=4, episode_s=20.0, chunk_size=1, rescale_min=0.8, rescale_max=1.25,
                      run_dir=str(tmp_path), run_name="learn", gamma=0.9, ent_coef=0.03,
                      learning_rate=1e-3)
    res = train(cfg, trace_set=traces, profiles=profiles)
    test_set = toy.alternating_set(high_mbps=100.0, low_mbps=6.0, block_s=4.0, n=4, seed=99)
    env = toy.make_env(profiles, test_set, episode_s=20.0, chunk_size=1)
    ctx = PlannerContext.from_env(env)
    seeds = range(100, 108)
    ppo = evaluate(load_policy(res.policy_path), env, seeds).summary()
    edge = evaluate(EdgeOnly(ctx), env, seeds).summary()
    cloud = evaluate(CloudOnly(ctx), env, seeds).summary()
    best_fixed = max(edge["mean_return"], cloud["mean_return"])
    # at least 10 % better return than the better of the two fixed placements, and lower mean latency
    assert ppo["mean_return"] > best_fixed + 0.10 * abs(best_fixed), (ppo, edge, cloud)
    assert ppo["mean_latency_ms"] < min(edge["mean_latency_ms"], cloud["mean_latency_ms"])
