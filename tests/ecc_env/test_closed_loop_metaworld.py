"""The closed loop on the real MetaWorld simulator: exact copies, the zero-latency expert's success on every task
used here, the latency-aware VLA's plan, a displaced object defeating a planner that never re-infers, and the
closed-loop env driving every kind of planner through the env's own latency model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")

from ecc_env.closed_loop import (  # noqa: E402
    ClosedLoopConfig,
    ClosedLoopRobot,
    ClosedLoopSplitEnv,
    EventConfig,
    closed_loop_env_config,
    run_expert_episode,
)
from ecc_env.metaworld_sim import CLOSED_LOOP_TASKS, MetaWorldSim  # noqa: E402
from ecc_env.streams import VisualNoiseConfig  # noqa: E402

# (task, seed) pairs the tests use; the zero-latency expert must succeed on each (asserted below)
TEST_EPISODES = {task: 0 for task in CLOSED_LOOP_TASKS}
_SIMS: dict[str, MetaWorldSim] = {}


def sim_for(task: str) -> MetaWorldSim:
    """One simulator per task for the whole module (building one takes seconds)."""
    if task not in _SIMS:
        _SIMS[task] = MetaWorldSim(task)
    return _SIMS[task]


@pytest.fixture(scope="module", autouse=True)
def _close_sims():
    yield
    while _SIMS:
        _SIMS.popitem()[1].close()


def robot(task: str = "pick-place-v3", chunk: int = 8, **kw) -> ClosedLoopRobot:
    return ClosedLoopRobot(ClosedLoopConfig(task=task, **kw), 100.0, chunk, sim=sim_for(task))


def test_expert_rollout_is_an_exact_copy_and_leaves_the_live_sim_alone():
    sim = sim_for("pick-place-v3")
    sim.reset(1)
    for _ in range(2):
        sim.step_control(sim.expert_action())
    start = sim.snapshot()
    plan = sim.expert_rollout(start, [], 6)
    np.testing.assert_array_equal(sim.snapshot().physics, start.physics)  # restored exactly
    for k in range(6):  # the live robot, driven by the live expert, does exactly what the copy predicted
        np.testing.assert_array_equal(sim.expert_action(), plan[k])
        sim.step_control(plan[k])


def reference_rollout(sim: MetaWorldSim, start, committed, n: int) -> np.ndarray:
    """The rollout through MetaWorld's own ``env.step`` (reward, success, every observation): the reference the
    copy's cheaper step must match bit for bit."""
    live = sim.snapshot()
    out = np.empty((n, 4))
    sim.restore(start)

    def control(a):
        for _ in range(sim.sim_steps_per_control):
            obs = sim._u.step(a)[0]
        sim.obs = np.asarray(obs, dtype=np.float64)

    for a in committed:
        control(np.clip(np.asarray(a, dtype=np.float64), -1.0, 1.0))
    for i in range(n):
        out[i] = sim.expert_action()
        if i + 1 < n:
            control(out[i])
    final = sim.snapshot()
    sim.restore(live)
    return out, final


@pytest.mark.parametrize("task", CLOSED_LOOP_TASKS)
def test_cheap_rollout_step_matches_metaworld_step_bit_for_bit(task):
    sim = sim_for(task)
    sim.reset(3)
    for _ in range(3):
        sim.step_control(sim.expert_action())
    start = sim.snapshot()
    committed = [sim.expert_action(), np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.3, -1.0, 0.2, -1.0])]
    ref, ref_final = reference_rollout(sim, start, committed, 8)
    np.testing.assert_array_equal(sim.expert_rollout(start, committed, 8), ref)
    # the copy's end state too (physics, frame-stacked observation), not only the actions
    sim.restore(start)
    for a in committed:
        sim._step_raw(np.clip(a, -1.0, 1.0))
    for a in ref[:-1]:
        sim._step_raw(a)
    got = sim.snapshot()
    np.testing.assert_array_equal(got.physics, ref_final.physics)
    np.testing.assert_array_equal(got.obs, ref_final.obs)
    np.testing.assert_array_equal(got.prev_obs, ref_final.prev_obs)
    assert got.path_length == ref_final.path_length


def test_a_simulator_built_after_another_was_closed_still_renders_the_scene():
    first = MetaWorldSim("reach-v3", memo=False)
    first.reset(0)
    frame = first.render()
    first.close()
    second = MetaWorldSim("reach-v3", memo=False)  # gymnasium's viewer close left this one rendering black
    try:
        second.reset(0)
        again = second.render()
        assert again.sum() > 0
        np.testing.assert_array_equal(again, frame)
    finally:
        second.close()


def test_a_real_step_after_a_remembered_one_reports_the_arm_it_left():
    """A remembered step reports the joint state the real step left; the next step, stepped for real (a planner
    leaving a trajectory another planner drove, without inferring), must report its own arm, not the remembered
    one (it did until the next restore: the arm read frozen, and episodes depended on the planners run before)."""
    sim = sim_for("pick-place-v3")
    move, other = np.array([0.3, -0.2, 0.1, -1.0]), np.array([-0.4, 0.5, -0.2, 1.0])
    sim.reset(7)
    sim.step_control(move)  # remembered
    sim.reset(7)
    hits = sim.memo_hits["step"]
    sim.step_control(move)  # from the memo
    assert sim.memo_hits["step"] == hits + 1
    remembered = sim.joints()
    sim.step_control(other)  # stepped for real
    assert sim.memo_hits["step"] == hits + 1
    q, qd, tau = sim.joints()
    np.testing.assert_array_equal(q, sim.data.qpos[:7])
    np.testing.assert_array_equal(qd, sim.data.qvel[:7])
    np.testing.assert_array_equal(tau, sim.data.qfrc_constraint[:7])
    assert not np.array_equal(qd, remembered[1])  # the arm moved on


@pytest.mark.slow  # heavy: six MetaWorld tasks rolled out by their experts, ~15 s
@pytest.mark.parametrize("task", CLOSED_LOOP_TASKS)
def test_zero_latency_expert_succeeds_on_every_task_used(task):
    ep = run_expert_episode(robot(task), TEST_EPISODES[task], horizon_steps=40)
    assert ep.success, f"{task} seed {TEST_EPISODES[task]}: the expert ceiling failed"
    assert 0.2 < ep.time_to_success_s < 4.0
    assert ep.steps * 8 * 0.0125 >= ep.time_to_success_s  # the episode stops at the step that succeeded


def test_expert_with_a_latency_is_the_floor_one_period_behind_the_ceiling():
    r = robot("reach-v3")
    ceiling = run_expert_episode(r, 0, 40)
    floor = run_expert_episode(r, 0, 40, latency_s=0.001)  # each chunk drives the step after its observation
    assert r.timeline.executed[0].holding and not r.timeline.executed[1].holding
    assert floor.success and floor.time_to_success_s >= ceiling.time_to_success_s + 0.05
    with pytest.raises(ValueError, match="latency_s"):
        run_expert_episode(r, 0, 40, latency_s=-1.0)


def test_latency_aware_vla_plans_from_the_committed_actions():
    r = robot(vla="aware")
    r.reset(0)
    d = r.infer(0, 0.0)  # first chunk at once
    r.advance_to(2)
    late = r.infer(2, 0.2 + 0.25)  # observation of step 2, ready 250 ms later: arrives at step 5
    assert (late.start_step, late.arrival_step, late.entry_index) == (5, 5, 0)
    r.advance_to(5)  # steps 2-4 ran the rest of the first chunk
    assert [a.delivery for a in r.timeline.executed[:5]] == [d] * 5
    np.testing.assert_array_equal(r.sim.expert_action(), late.actions[0])  # exactly the expert's action at step 5

    n = robot(vla="naive")
    n.reset(0)
    n.infer(0, 0.0)
    n.advance_to(2)
    naive = n.infer(2, 0.45)
    assert (naive.start_step, naive.arrival_step, naive.entry_index) == (2, 5, 3)  # planned from step 2: stale


def test_displaced_object_defeats_a_planner_that_never_reinfers():
    events = EventConfig(displace_at_s=0.1)
    seed = TEST_EPISODES["pick-place-v3"]
    expert = run_expert_episode(robot(events=events), seed, horizon_steps=40)
    assert expert.success
    blind = robot(chunk=40, events=events)  # one chunk for the whole episode, computed before the event
    blind.reset(seed)
    blind.infer(0, 0.0)
    blind.advance_to(40)
    assert [e.kind for e in blind.events] == ["object"] and blind.events[0].step == 1
    assert not blind.succeeded
    undisturbed = robot(chunk=40)  # the same blind chunk without the event succeeds: the event is the cause
    undisturbed.reset(seed)
    undisturbed.infer(0, 0.0)
    undisturbed.advance_to(40)
    assert undisturbed.succeeded


def test_visual_noise_changes_the_frames_but_not_the_task():
    quiet = run_expert_episode(robot(), 0, 40)
    r = robot(events=EventConfig(noise=VisualNoiseConfig(flicker_gain=0.2, flicker_prob=1.0, sensor_sigma=4.0)))
    noisy = run_expert_episode(r, 0, 40)
    assert noisy.time_to_success_s == quiet.time_to_success_s  # physics untouched
    assert min(v[0] for v in r.visual[1:]) > 0.01  # every frame pair differs


@pytest.fixture
def toy_env(toy):
    env = ClosedLoopSplitEnv(
        *toy.make_profiles(),
        toy.constant_set(),
        closed_loop=ClosedLoopConfig("pick-place-v3"),
        config=closed_loop_env_config(episode_s=4.0),
        trace_split="all",
        sim=sim_for("pick-place-v3"),
    )
    yield env
    env.close()


def run(env, policy, seed=0):
    obs, _ = env.reset(seed=seed)
    infos = []
    while True:
        assert env.observation_space.contains(obs)
        obs, _, term, trunc, info = env.step(policy(env, obs))
        infos.append(info)
        if term or trunc:
            return infos, term


def test_env_runs_a_heuristic_unchanged_and_terminates_on_success(toy_env):
    from agents.heuristics import HeuristicPlanner
    from agents.planner import PlannerContext

    planner = HeuristicPlanner(PlannerContext.from_env(toy_env))
    infos, term = run(toy_env, lambda e, o: planner.predict(o, deterministic=True)[0])
    last = infos[-1]
    assert term and last["success"] and 0.5 < last["time_to_success_s"] < 4.0
    assert sum(i["inferred"] for i in infos) >= 1
    again, _ = run(toy_env, lambda e, o: planner.predict(o, deterministic=True)[0])  # same seed, same episode
    assert again[-1]["time_to_success_s"] == last["time_to_success_s"]


def test_env_chunk_arrival_follows_the_latency_model(toy_env):
    slow = np.array([0, 0])  # cloud-only: raw upload over a 10 Mbit/s link, the slowest cut of the toy pair
    infos, _ = run(toy_env, lambda e, o: slow)
    for i in infos:
        if i["inferred"]:
            done = i["time_s"] + i["service_ms"] * 1e-3
            assert i["arrival_step"] == max(int(np.ceil(done / 0.1 - 1e-9)), i["obs_index"])
    assert any(i["arrival_step"] > i["obs_index"] for i in infos)
    assert all(i["up_bytes"] == 100_000 for i in infos if i["inferred"])
