"""Does PPO learn? On links that alternate between fast and slow, neither edge-only nor cloud-only is optimal.

The family: edge 80 ms per inference (period 100 ms); cloud-only uploads 1 Mbit, about 35 ms at 100 Mbit/s and
about 110 ms at 12 Mbit/s (RTT 20 ms), so the cloud wins on fast blocks and the edge on slow ones. A policy learns
the bandwidth from the background probes (one every 0.25 s, ``ecc_env.latency.ProbeConfig``) and from its own
cloud inferences, so it can switch within about a second of a block change.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.artifact import load_policy
from agents.evaluate import evaluate
from agents.heuristics import CloudOnly, EdgeOnly
from agents.oracle import Oracle
from agents.planner import PlannerContext
from agents.training import TrainConfig, train

HIGH_MBPS, LOW_MBPS, EDGE_MS = 100.0, 12.0, 80.0


@pytest.mark.slow  # heavy: a PPO training, ~30 s
def test_ppo_beats_edge_only_and_cloud_only(tmp_path, toy):
    profiles = toy.two_cut_profiles(edge_ms=EDGE_MS, cloud_ms=5.0)  # chunk_size 1 below: no skipping
    traces = toy.alternating_set(high_mbps=HIGH_MBPS, low_mbps=LOW_MBPS, block_s=4.0, n=6, seed=1)
    cfg = TrainConfig(
        total_timesteps=60_000,
        n_envs=4,
        n_steps=256,
        batch_size=256,
        eval_every_steps=10_000,
        eval_episodes=4,
        episode_s=20.0,
        chunk_size=1,
        rescale_min=0.8,
        rescale_max=1.25,
        run_dir=str(tmp_path),
        run_name="learn",
        gamma=0.9,
        ent_coef=0.03,
        learning_rate=1e-3,
    )
    res = train(cfg, trace_set=traces, profiles=profiles)
    test_set = toy.alternating_set(high_mbps=HIGH_MBPS, low_mbps=LOW_MBPS, block_s=4.0, n=4, seed=99)
    env = toy.make_env(profiles, test_set, episode_s=20.0, chunk_size=1)
    ctx = PlannerContext.from_env(env)
    seeds = range(100, 108)
    ppo_res = evaluate(load_policy(res.policy_path), env, seeds)
    ppo = ppo_res.summary()
    edge = evaluate(EdgeOnly(ctx), env, seeds).summary()
    cloud = evaluate(CloudOnly(ctx), env, seeds).summary()
    oracle = evaluate(Oracle(cut_candidates=None, beam=32), env, seeds).summary()
    best_fixed = max(edge["mean_return"], cloud["mean_return"])
    report = {
        "ppo": ppo["mean_return"],
        "edge": edge["mean_return"],
        "cloud": cloud["mean_return"],
        "oracle": oracle["mean_return"],
        "ppo_cloud_frac": float(np.mean(np.concatenate([e.cut for e in ppo_res.episodes]) == 0)),
    }
    # the family is one where neither fixed placement is optimal: the hindsight plan beats both by >= 20 %
    assert oracle["mean_return"] > best_fixed + 0.20 * abs(best_fixed), report
    # PPO: at least 10 % better return than the better fixed placement, lower mean latency than both, and at
    # least half of the Oracle's gain over the better fixed placement
    assert ppo["mean_return"] > best_fixed + 0.10 * abs(best_fixed), report
    assert ppo["mean_latency_ms"] < min(edge["mean_latency_ms"], cloud["mean_latency_ms"]), report
    assert ppo["mean_return"] - best_fixed >= 0.5 * (oracle["mean_return"] - best_fixed), report
