"""The hindsight reaction planner: its prices equal the env's own (computed by hand through ``step`` on snapshots),
it infers at the earliest completion, drains stale observations, waits only for a fresher chunk that is no later,
never changes the env when it looks ahead, refuses envs it cannot look into, and drives a closed-loop episode."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from agents.hindsight import HindsightPlanner, chunk_step, cut_completions
from traces import synthetic
from traces.traceset import TraceSet

PERIOD_S = 0.1


def jagged_set(seed: int = 0, n_steps: int = 600) -> TraceSet:
    """Uplink switching every 0.1 s between an outage, a slow and a fast level: a link whose future matters."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([0.0, 0.5, 50.0], size=n_steps, p=[0.2, 0.3, 0.5])
    levels[0] = 50.0  # never all zero
    return TraceSet.from_traces([synthetic.step(levels, 0.1, down_levels_mbps=levels + 20.0, rtt_ms=10.0)], "jag")


def by_hand(e, k: int) -> float:
    """Completion of an inference at cut ``k`` from the env's decision time, by stepping a snapshot."""
    snap = e.get_state()
    _, _, _, _, info = e.step(np.array([k, 0]))
    e.set_state(snap)
    return info["time_s"] + info["service_ms"] * 1e-3


def best_arrival_by_hand(e) -> float:
    """The earliest control step any cut's chunk for the current observation reaches the robot."""
    allowed = [int(k) for k in np.flatnonzero(e.cut_fits)]
    return min(chunk_step(by_hand(e, k), e._idx, PERIOD_S) for k in allowed)


@pytest.fixture
def jag_env(toy):
    env = toy.make_env(toy.two_cut_profiles(edge_ms=450.0, up_bytes=200_000), jagged_set(), episode_s=6.0)
    yield env
    env.close()


def test_decisions_follow_the_rule_checked_through_the_env_by_hand(jag_env):
    e = jag_env.unwrapped
    planner = HindsightPlanner(jag_env)
    seen = {"drain": 0, "wait": 0, "infer": 0}
    for seed in range(3):
        obs, _ = jag_env.reset(seed=seed)
        done = False
        while not done:
            before = e.get_state()
            k, skip, reason = planner.decide()
            assert e.get_state() == before  # looking ahead changed nothing
            seen[reason] += 1
            priced = {c.cut: c.completion_s for c in cut_completions(e)}
            hand = {c: by_hand(e, c) for c in priced}
            assert priced == pytest.approx(hand, abs=1e-12)  # the env's own prices
            if reason == "drain":
                assert skip and e._waiting > 0 and e._actions_left > 0
            elif reason == "wait":
                assert skip and e._waiting == 0 and e._actions_left > 0
                now = best_arrival_by_hand(e)
                snap = e.get_state()
                jag_env.step(np.array([k, 1]))
                later = best_arrival_by_hand(e)  # the next observation, inferred at its best cut
                e.set_state(snap)
                assert later <= now
            else:
                assert not skip and hand[k] == min(hand.values())
                if e._actions_left > 0 and e._waiting == 0:  # it did not wait: the next observation is later
                    now = chunk_step(hand[k], e._idx, PERIOD_S)
                    snap = e.get_state()
                    jag_env.step(np.array([k, 1]))
                    later = best_arrival_by_hand(e) if e._idx < e._n else math.inf
                    e.set_state(snap)
                    assert later > now
            obs, _, term, trunc, info = jag_env.step(np.array([k, int(skip)]))
            assert info["skip"] == skip and not info["invalid_action"]
            if not skip:
                assert info["time_s"] + info["service_ms"] * 1e-3 == pytest.approx(hand[k])
            done = term or trunc
    assert all(n > 0 for n in seen.values()), seen  # every branch of the rule was exercised


def test_a_planner_that_never_waits_infers_on_every_fresh_observation(jag_env):
    e = jag_env.unwrapped
    planner = HindsightPlanner(jag_env, lookahead_periods=0)
    jag_env.reset(seed=1)
    infos = []
    done = False
    while not done:
        waiting, left = e._waiting, e._actions_left
        a, _ = planner.predict(None)
        assert bool(a[1]) == (waiting > 0 and left > 0)  # skips only drain the queue
        _, _, term, trunc, info = jag_env.step(a)
        infos.append(info)
        done = term or trunc
    assert any(i["skip"] for i in infos) and planner.reasons["wait"] == 0
    assert sum(planner.reasons.values()) == len(infos)
    assert not any(i["deadline_miss"] for i in infos)  # edge-only always beats a network cut that misses


def test_without_actions_left_a_stale_observation_is_inferred(toy):
    env = toy.make_env(toy.two_cut_profiles(edge_ms=450.0, up_bytes=200_000), jagged_set(), chunk_size=1)
    e = env.unwrapped
    planner = HindsightPlanner(env)
    env.reset(seed=0)
    env.step(np.array([1, 0]))  # edge-only, 450 ms: four newer observations arrive meanwhile
    assert e._waiting > 0 and e._actions_left == 0
    a, _ = planner.predict(None)
    assert a[1] == 0 and by_hand(e, int(a[0])) == min(by_hand(e, k) for k in (0, 1))
    env.close()


def test_refuses_envs_it_cannot_look_into(toy):
    from ecc_env.backends import ExecutorBackend

    with pytest.raises(TypeError, match="EdgeCloudSplitEnv.*CartPoleEnv"):
        HindsightPlanner(gym.make("CartPole-v1"))
    env = toy.make_env(toy.two_cut_profiles(), toy.alternating_set())
    with pytest.raises(ValueError, match="lookahead_periods"):
        HindsightPlanner(env, lookahead_periods=-1)
    planner = HindsightPlanner(env)
    with pytest.raises(RuntimeError, match="not reset"):
        planner.predict(None)
    priced = env.unwrapped.backend
    env.unwrapped.backend = object.__new__(ExecutorBackend)  # an executor backend (not started: never used)
    with pytest.raises(ValueError, match="'profile' latency backend.*'executor'"):
        HindsightPlanner(env)
    env.unwrapped.backend = priced
    env.close()


def test_the_planner_is_built_by_name(toy):
    from agents.evaluation import build_planner, parse_planners
    from agents.planner import PlannerContext

    assert parse_planners("hindsight,roboecc")[0] == ("hindsight", "hindsight", None)
    env = toy.make_env(toy.two_cut_profiles(), toy.alternating_set())
    p = build_planner("hindsight", None, PlannerContext.from_env(env), env)
    assert isinstance(p, HindsightPlanner) and p.env is env.unwrapped
    env.close()


@pytest.mark.slow  # builds a MetaWorld simulator (~4 s of the ~5-6 s here)
def test_a_closed_loop_reach_episode_succeeds_and_the_robot_is_untouched_by_looking(toy):
    pytest.importorskip("metaworld")
    from agents.closed_loop_eval import run_episode
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopSplitEnv, closed_loop_env_config

    env = ClosedLoopSplitEnv(
        *toy.three_block_profiles(),
        toy.alternating_set(),
        closed_loop=ClosedLoopConfig("reach-v3"),
        config=closed_loop_env_config(episode_s=2.0),
        trace_split="all",
    )
    try:
        planner = HindsightPlanner(env)
        env.reset(seed=0)
        robot = env.robot
        before = (robot.step, len(robot.timeline.deliveries), len(robot.timeline.executed), env.get_state())
        planner.decide()
        assert (robot.step, len(robot.timeline.deliveries), len(robot.timeline.executed), env.get_state()) == before
        out = run_episode(env, planner, 0)
        assert out.success and out.time_to_success_s is not None and out.time_to_success_s < 2.0
        assert out.inferences >= 1 and out.deadline_misses == 0
    finally:
        env.close()
