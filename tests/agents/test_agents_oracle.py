"""The hindsight Oracle: exact on small episodes, never worse than any planner, consistent with the env."""

from __future__ import annotations

import numpy as np
import pytest

from agents.evaluate import evaluate
from agents.heuristics import CloudOnly, EdgeOnly, HeuristicPlanner, RapidSkip, RoboECCPlanner, StaticBestCut
from agents.oracle import Oracle, plan_episode
from agents.planner import PlannerContext


class RandomPlanner:
    """A seeded random planner (valid actions only)."""

    def __init__(self, num_cuts: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = num_cuts

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.array([self.rng.integers(self.n), self.rng.integers(2) if observation[21] > 0 else 0]), state


@pytest.fixture
def env(toy):
    e = toy.make_env(
        toy.three_block_profiles(),
        toy.alternating_set(high_mbps=60.0, low_mbps=1.5, block_s=1.0),
        episode_s=1.0,
        chunk_size=3,
        queue_capacity=2,
    )
    yield e
    e.close()


def test_exact_oracle_never_worse_than_any_planner(env):
    ctx = PlannerContext.from_env(env)
    planners = {
        "edge": EdgeOnly(ctx),
        "cloud": CloudOnly(ctx),
        "static": StaticBestCut(ctx),
        "roboecc": RoboECCPlanner(ctx),
        "rapid": RapidSkip(ctx),
        "heuristic": HeuristicPlanner(ctx),
        **{f"random{i}": RandomPlanner(ctx.num_cuts, i) for i in range(4)},
    }
    seeds = range(4)
    exact = evaluate(Oracle(cut_candidates=None, beam=None), env, seeds)
    pruned = evaluate(Oracle(cut_candidates=2, beam=8), env, seeds)
    returns = {name: evaluate(p, env, seeds) for name, p in planners.items()}
    for i in range(len(seeds)):
        best = exact.episodes[i].episode_return
        assert pruned.episodes[i].episode_return <= best + 1e-9
        for name, r in returns.items():
            assert r.episodes[i].episode_return <= best + 1e-9, (name, i)
    # the episodes are not trivial: the oracle is strictly better than each fixed planner on some episode
    for name in ("edge", "cloud", "static"):
        assert exact.mean_return > returns[name].mean_return


def test_plan_replays_to_its_return(env):
    env.reset(seed=3)
    plan = plan_episode(env, cut_candidates=None, beam=None)
    assert plan.exact
    r = evaluate(Oracle(cut_candidates=None, beam=None), env, [3])
    assert r.episodes[0].episode_return == pytest.approx(plan.episode_return, abs=1e-9)
    assert len(r.episodes[0].latency_ms) == len(plan.actions)


def test_planning_leaves_env_at_start(env):
    obs0, _ = env.reset(seed=1)
    plan_episode(env, cut_candidates=2, beam=4)
    obs1, r1, *_ = env.step(np.array([3, 0]))
    env.reset(seed=1)
    obs2, r2, *_ = env.step(np.array([3, 0]))
    np.testing.assert_array_equal(obs1, obs2)
    assert r1 == r2


def test_oracle_errors(env):
    o = Oracle()
    with pytest.raises(RuntimeError, match="plan_episode"):
        o.predict(np.zeros(33))
    with pytest.raises(ValueError, match="beam"):
        env.reset(seed=0)
        plan_episode(env, beam=0)


def test_oracle_refuses_an_env_it_cannot_copy():
    class _NoState:
        unwrapped = None
        link = object()  # reset already, but no get_state/set_state

    env = _NoState()
    env.unwrapped = env
    with pytest.raises(RuntimeError, match="_NoState has no get_state/set_state"):
        plan_episode(env)
