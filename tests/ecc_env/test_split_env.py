"""EdgeCloudSplitEnv: checkers, determinism, dynamics (latency, queueing, drops, skip, masks, fallback), bad input."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ecc_env
from ecc_env.backends import ServerLoadConfig
from ecc_env.latency import DeadlineConfig
from ecc_env.reward import RewardConfig
from ecc_env.split_env import EdgeCloudSplitEnv
from traces import synthetic
from traces.traceset import TraceSet


def ms(nbytes: float, mbps: float) -> float:
    return nbytes * 8 / (mbps * 1e6) * 1e3


def markov_set(n: int = 3) -> TraceSet:
    return TraceSet.from_traces(
        [synthetic.markov(c, duration_s=200.0, rng=i) for i, c in enumerate(["4g", "wifi6", "5g"][:n])], "mix"
    )


PLAIN_300MS = DeadlineConfig(300.0, break_even=False)  # the hand computations use it (toy edge-only: 60 ms)


def small_env(toy, **kw):
    args = dict(
        trace_set=toy.constant_set(),
        streams=[toy.known_stream()],
        trace_split="all",
        episode_s=2.0,
        deadline=PLAIN_300MS,
    )
    args.update(kw)
    profiles = args.pop("profiles", toy.make_profiles())
    return EdgeCloudSplitEnv(*profiles, **args)


# ---------------------------------------------------------------------------------------------------------- API


def test_env_checkers_pass(toy):
    env = EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=markov_set(),
        trace_split="all",
        episode_s=20.0,
        server_load=ServerLoadConfig(mean_queue_len=2.0),
    )
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(
        EdgeCloudSplitEnv(*toy.make_profiles(), trace_set=markov_set(), trace_split="all", episode_s=20.0), warn=True
    )


def test_registered_by_string_and_truncates_at_trace_end(toy):
    assert ecc_env.ENV_ID in gym.registry
    env = gym.make(
        ecc_env.ENV_ID,
        edge_profile=toy.make_profiles()[0],
        cloud_profile=toy.make_profiles()[1],
        trace_set=toy.constant_set(),
        trace_split="all",
        episode_s=3.0,
        deadline=PLAIN_300MS,
    )
    assert isinstance(env.unwrapped, EdgeCloudSplitEnv)
    env.reset(seed=1)
    steps, truncated, terminated = 0, False, False
    while not truncated:
        _, _, terminated, truncated, info = env.step(np.array([1, 0]))  # 95 ms < period: one step per obs
        assert not terminated
        steps += 1
    assert steps == 30  # 3 s / 100 ms observations, none dropped
    assert info["dropped_total"] == 0


def test_seeded_determinism(toy):
    def run(seed):
        env = EdgeCloudSplitEnv(
            *toy.make_profiles(),
            trace_set=markov_set(),
            trace_split="all",
            episode_s=10.0,
            server_load=ServerLoadConfig(mean_queue_len=1.5),
        )
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out_obs, out_r = [obs], []
        for _ in range(250):
            obs, r, _, trunc, _ = env.step(env.action_space.sample())
            out_obs.append(obs)
            out_r.append(r)
            if trunc:
                obs, _ = env.reset()
                out_obs.append(obs)
        return np.array(out_obs), np.array(out_r)

    o1, r1 = run(7)
    o2, r2 = run(7)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    o3, r3 = run(8)
    assert o3.shape != o1.shape or not np.array_equal(o1, o3)


# ---------------------------------------------------------------------------------------------------- dynamics


def test_first_steps_latency_observation_and_reward_by_hand(toy):
    env = small_env(toy)
    obs, _ = env.reset(seed=0)
    b = env.builder
    # the connect probe only: 10 Mbit/s measured at t = 0
    assert obs[b.index["uplink_mbps[0]"]] == pytest.approx(math.log1p(10.0) / math.log1p(10_000.0), rel=1e-6)
    assert obs[b.index["uplink_age[0]"]] == 0.0 and obs[b.index["uplink_age[1]"]] == 1.0
    obs, r, _, _, info = env.step(np.array([1, 0]))
    want = 10 + ms(50_000, 10) + 20 + (2 + 3) + ms(56, 20) + 20  # edge a, 50 kB up, cloud b+c, actions down
    assert info["latency_ms"] == pytest.approx(want)
    assert info["queue_ms"] == 0.0
    assert (info["edge_ms"], info["cloud_ms"]) == (10.0, 5.0)
    assert r == pytest.approx(-want / 100.0)
    assert r == pytest.approx(info["r_latency"])
    # next decision at 0.1 s; the upload finished at 10 ms + 40 ms = 0.05 s
    assert info["time_s"] == 0.0
    assert obs[b.index["uplink_mbps[0]"]] == pytest.approx(math.log1p(10.0) / math.log1p(10_000.0), rel=1e-6)
    assert obs[b.index["uplink_age[0]"]] == pytest.approx((0.1 - 0.05) / 10.0, rel=1e-5)
    assert obs[b.index["rtt"]] == pytest.approx(math.log1p(40.0) / math.log1p(2000.0), rel=1e-6)
    assert obs[b.index["actions_left"]] == pytest.approx(7 / 8)
    assert obs[b.index["action_age"]] == pytest.approx(0.1 / 2.0)
    assert obs[b.index["prev_cut"]] == pytest.approx(1 / 3)
    # edge-only next: no new sample, the old one ages
    obs, _, _, _, info = env.step(np.array([3, 0]))
    assert info["latency_ms"] == 60.0 and info["uplink_ms"] == 0.0
    assert obs[b.index["uplink_age[0]"]] == pytest.approx((0.2 - 0.05) / 10.0, rel=1e-5)
    assert obs[b.index["uplink_age[1]"]] == pytest.approx(0.2 / 10.0, rel=1e-5)  # the connect probe's
    assert obs[b.index["uplink_age[2]"]] == 1.0


def test_queueing_and_drop_counting(toy):
    # edge-only takes 100 + 150 + 200 = 450 ms, 4.5 periods; at most 2 observations wait
    env = small_env(toy, profiles=toy.make_profiles(edge_ms=(100.0, 150.0, 200.0)), queue_capacity=2)
    env.reset(seed=0)
    P, S = 100.0, 450.0
    # (observation index, its decision time in ms, observations dropped after the step), worked by hand:
    # obs 0 at 0 ends at 450: obs 1-4 arrived, keep the newest 2 (3, 4) -> drop 2; obs 3 starts at 450 ends 900:
    # obs 4-9 arrived, keep 8, 9 -> drop 4; obs 8 starts at 900 ends 1350: 9-13 -> keep 12, 13, drop 3;
    # obs 12 starts at 1350 ends 1800: 13-18 -> keep 17, 18, drop 4; obs 17 starts at 1800 ends 2250: 18, 19
    # (the last two) wait, none dropped; obs 18 starts at 2250; obs 19 at 2700; then the episode is over.
    plan = [(0, 0, 2), (3, 450, 4), (8, 900, 3), (12, 1350, 4), (17, 1800, 0), (18, 2250, 0), (19, 2700, 0)]
    total = 0
    for n, (idx, start, drop) in enumerate(plan):
        obs, r, term, trunc, info = env.step(np.array([3, 0]))
        total += drop
        assert info["obs_index"] == idx
        assert info["queue_ms"] == pytest.approx(start - idx * P)
        assert info["latency_ms"] == pytest.approx(start - idx * P + S)
        assert info["dropped"] == drop and info["dropped_total"] == total
        assert info["r_drop"] == -drop * 1.0
        assert r == pytest.approx(-(start - idx * P + S) / P - drop)
        assert trunc == (n == len(plan) - 1) and not term
    assert total + len(plan) == 20  # every observation was processed or counted as dropped


def test_edge_queue_feature_counts_waiting_observations(toy):
    env = small_env(toy, profiles=toy.make_profiles(edge_ms=(100.0, 150.0, 200.0)), queue_capacity=3)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([3, 0]))  # ends at 450 ms: obs 2, 3, 4 kept; 2 decided, 2 others wait
    assert obs[env.builder.index["edge_queue"]] == pytest.approx(2 / 3)


def test_skip_costs_controller_time_and_deviation(toy):
    env = small_env(toy, chunk_size=3, skip_ms=1.0, reward=RewardConfig(deviation_weight=2.0))
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True] * 4 + [True, False]  # no chunk yet: skip masked
    env.step(np.array([3, 0]))  # edge-only on obs 0 (60 ms): holds ref[0] = (0, 0)
    assert env.action_masks()[-1]
    ref = toy.known_stream().ref_actions
    for i in (1, 2):  # two skips allowed with a chunk of 3
        obs, r, _, _, info = env.step(np.array([0, 1]))
        dev = float(np.mean(np.abs(ref[0] - ref[i])))
        assert info["skip"] and info["obs_index"] == i
        assert info["latency_ms"] == pytest.approx(1.0)
        assert info["edge_ms"] == info["uplink_ms"] == info["cloud_ms"] == 0.0
        assert info["deviation"] == pytest.approx(dev)
        assert r == pytest.approx(-1.0 / 100.0 - 2.0 * dev)
    assert not env.action_masks()[-1]  # chunk used up
    _, r, _, _, info = env.step(np.array([3, 1]))  # skip asked anyway: runs inference and pays the penalty
    assert not info["skip"] and info["invalid_action"] and info["r_invalid"] == -1.0
    assert info["latency_ms"] == 60.0 and info["deviation"] == 0.0


def test_masks_follow_edge_memory(toy):
    # cumulative edge parameter bytes per cut: 0, 100 MB, 300 MB, 600 MB; 250 MB of edge memory
    env = small_env(toy, profiles=toy.make_profiles(memory_bytes=250 * toy.MB))
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True, True, False, False, True, False]
    _, _, _, _, info = env.step(np.array([2, 0]))
    assert info["cut"] == 1 and info["invalid_action"]  # nearest allowed cut
    _, _, _, _, info = env.step(np.array([1, 0]))
    assert info["cut"] == 1 and not info["invalid_action"]
    assert env.fallback_holds  # edge-only does not fit: a missed deadline holds the last action
    unlimited = small_env(toy, edge_memory_bytes=0)
    assert unlimited.action_masks().tolist()[:4] == [True] * 4
    tiny = small_env(toy, edge_memory_bytes=1)  # only cloud-only (no edge blocks) fits
    assert tiny.action_masks().tolist()[:4] == [True, False, False, False]


def test_deadline_fallback_through_an_outage(toy):
    outage = TraceSet.from_traces([synthetic.step([10.0] + [0.0] * 100, 1.0, rtt_ms=40.0)], "outage")
    env = small_env(toy, trace_set=outage, episode_s=2.0, segment_margin_s=0.0)  # plain 300 ms
    env.reset(seed=0)
    # the segment starts at a random point of the 101 s trace: almost surely inside the outage
    assert env.link.bandwidth_mbps(0.0, "up") == 0.0
    obs, r, _, _, info = env.step(np.array([0, 0]))
    assert info["deadline_miss"] and info["fallback"]
    assert info["latency_ms"] == pytest.approx(300.0 + 60.0)
    assert info["r_deadline"] == -1.0
    # 360 ms = 3.6 periods and one miss; obs 1, 2, 3 arrived meanwhile: they fit the queue of 3, none dropped
    assert info["dropped"] == 0
    assert r == pytest.approx(-3.6 - 1.0)
    assert obs[env.builder.index["prev_deadline_miss"]] == 1.0
    # the miss leaves the upper bound raw-upload bits / 300 ms, fresh (age 0 at the deadline + 60 ms fallback)
    bound = env.rows[0].up_bytes * 8 / 0.3 / 1e6
    decoded = env.builder.decode(obs)
    assert decoded["uplink_mbps"][0] == pytest.approx(bound, rel=1e-4)
    assert decoded["uplink_age_s"][0] == pytest.approx(0.06, abs=1e-4)
    assert obs[env.builder.index["rtt"]] == 0.0  # no upload completed: no RTT estimate yet
    assert obs[env.builder.index["actions_left"]] == pytest.approx(7 / 8)  # the edge produced a chunk
    # the default break-even rule abandons the upload at the edge-only time: the outage costs 60 + 60 ms
    env = small_env(toy, trace_set=outage, episode_s=2.0, segment_margin_s=0.0, deadline=DeadlineConfig(300.0))
    env.reset(seed=0)
    obs, r, _, _, info = env.step(np.array([0, 0]))
    assert info["deadline_miss"] and info["latency_ms"] == pytest.approx(60.0 + 60.0)
    assert r == pytest.approx(-1.2 - 1.0)
    assert env.builder.decode(obs)["uplink_mbps"][0] == pytest.approx(env.rows[0].up_bytes * 8 / 0.06 / 1e6, rel=1e-4)


def test_observation_features_equal_the_runtime_path(toy):
    """The env's precomputed features equal ObservationBuilder.build_from_raw on the raw frames and joints."""
    from ecc_env.features import history_len

    stream = toy.known_stream()
    env = small_env(toy, streams=[stream])
    obs, _ = env.reset(seed=0)
    h = history_len(env.builder.feature_config)
    for _ in range(14):
        obs, _, _, _, info = env.step(np.array([1, 0]))
    j = info["obs_index"] + 1
    raw = env.builder.build_from_raw(
        prev_frame=stream.frames[j - 1],
        frame=stream.frames[j],
        joint_vel_history=stream.joint_vel[j - h + 1 : j + 1],
        joint_torque_history=stream.joint_torque[j - h + 1 : j + 1],
        dt_s=stream.dt_s,
        uplink_mbps=[],
        uplink_age_s=[],
        downlink_mbps=None,
        rtt_ms=None,
        edge_queue=0,
        server_queue=0,
        action_age_s=None,
        actions_left=0,
        visual_since_action=0.0,
        prev_cut=0,
        prev_skip=False,
        prev_deadline_miss=False,
        prev_latency_ms=0.0,
    )
    for name in ("visual_mad", "visual_changed", "visual_structural", "joint_speed", "accel_anomaly", "torque_change"):
        i = env.builder.index[name]
        assert obs[i] == pytest.approx(raw[i], abs=1e-6), name
    assert obs[env.builder.index["visual_mad"]] > 0  # the known stream changes every step


# ----------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_errors_naming_the_value(toy):
    with pytest.raises(ValueError, match="empty"):
        small_env(toy, trace_set=TraceSet.from_traces([], "nothing"))
    with pytest.raises(ValueError, match="period_ms"):
        small_env(toy, period_ms=0)
    with pytest.raises(ValueError, match="period_ms"):
        small_env(toy, period_ms=-100.0)
    with pytest.raises(ValueError, match="cuts"):
        toy.make_profiles(cuts=())
    with pytest.raises(TypeError, match="nonsense"):
        small_env(toy, nonsense=1)
    with pytest.raises(ValueError, match="backend"):
        small_env(toy, backend="magic")
    with pytest.raises(ValueError, match="cuts"):  # the toy Profiles do not describe the executor's model
        small_env(toy, backend="executor")
    with pytest.raises(ValueError, match="streams is empty"):
        small_env(toy, streams=[])
    env = small_env(toy)
    env.reset(seed=0)
    for bad in ([4, 0], [0, 2], [-1, 0], np.array([1.5, 0.0]), np.array([1, 0, 0]), "x", 3):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    _, _, _, _, info = env.step(np.array([1.0, 0.0]))  # integral floats are fine
    assert info["cut"] == 1


def test_stream_with_mismatched_lengths_is_refused(toy):
    from ecc_env.streams import ObservationStream, StreamFormatError

    s = toy.known_stream()
    with pytest.raises(StreamFormatError, match="ref_actions"):
        ObservationStream(
            frames=s.frames,
            joint_pos=s.joint_pos,
            joint_vel=s.joint_vel,
            joint_torque=s.joint_torque,
            ref_actions=s.ref_actions[:-1],
            phases=s.phases,
        )
    assert issubclass(StreamFormatError, ValueError)


# ------------------------------------------------------------------------------------------- defaults, MaskablePPO


def test_defaults_roofline_openvla_on_embedded_traces():
    """No arguments: roofline OpenVLA full on Orin + A100, the embedded set's train split, procedural streams."""
    from ecc_env.split_env import default_profiles
    from executor.costs import cut_table

    env = gym.make(ecc_env.ENV_ID)
    inner = env.unwrapped
    edge, cloud = default_profiles()
    assert inner.num_cuts == edge.num_cuts and env.action_space.nvec.tolist() == [edge.num_cuts, 2]
    assert inner.trace_set.name.endswith(":train") and len(inner.trace_set) > 0
    env.reset(seed=3)
    _, _, _, _, info = env.step(np.array([inner.edge_only_index, 0]))
    assert info["latency_ms"] == pytest.approx(cut_table(edge, cloud).edge_ms[-1])  # edge-only: the Orin's time
    assert info["uplink_ms"] == 0.0 and not info["deadline_miss"]


def test_maskable_ppo_never_picks_a_masked_cut(toy):
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks

    env = small_env(
        toy, profiles=toy.make_profiles(memory_bytes=250 * toy.MB), trace_set=markov_set(1), streams=None, episode_s=6.0
    )
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    vec = model.get_env()
    obs = vec.reset()
    for _ in range(100):
        masks = get_action_masks(vec)
        assert masks.shape == (1, env.num_cuts + 2)
        action, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert env.cut_fits[action[0][0]]
        assert action[0][1] == 0 or masks[0][-1]
        obs, _, _, infos = vec.step(action)
        assert not infos[0]["invalid_action"]


def test_deepcopy_mid_episode_replays_identically(toy):
    """Planners that search (the hindsight oracle) can branch an episode by copying the env."""
    import copy

    env = EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=markov_set(),
        trace_split="all",
        episode_s=10.0,
        server_load=ServerLoadConfig(mean_queue_len=2.0),
    )
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(np.array([rng.integers(4), 0]))
    twin = copy.deepcopy(env)
    actions = [np.array([rng.integers(4), rng.integers(2)]) for _ in range(40)]
    a = [env.step(x)[:2] for x in actions]
    b = [twin.step(x)[:2] for x in actions]
    for (oa, ra), (ob, rb) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


def test_reward_terms_and_config():
    from ecc_env.reward import step_reward

    cfg = RewardConfig(deadline_miss_penalty=2.0, deviation_weight=3.0, drop_penalty=0.5, invalid_action_penalty=4.0)
    total, lat, dead, dev, drop, inv = step_reward(
        cfg, latency_ms=250.0, period_ms=100.0, deadline_miss=True, deviation=0.1, dropped=2, invalid=True
    )
    assert (lat, dead, dev, drop, inv) == pytest.approx((-2.5, -2.0, -0.3, -1.0, -4.0))
    assert total == pytest.approx(-9.8)
    with pytest.raises(ValueError, match="drop_penalty"):
        RewardConfig(drop_penalty=-1.0)


def test_get_state_set_state_replays_exactly(toy):
    env = EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=markov_set(),
        trace_split="all",
        episode_s=10.0,
        server_load=ServerLoadConfig(mean_queue_len=2.0),
    )
    env.reset(seed=9)
    rng = np.random.default_rng(1)
    for _ in range(15):
        env.step(np.array([rng.integers(4), rng.integers(2)]))
    snap = env.get_state()
    actions = [np.array([rng.integers(4), rng.integers(2)]) for _ in range(30)]
    first = [env.step(a) for a in actions]
    env.set_state(snap)
    second = [env.step(a) for a in actions]
    for (o1, r1, _, t1, i1), (o2, r2, _, t2, i2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1, i1) == (r2, t2, i2)
    with pytest.raises(ValueError, match="lacks"):
        env.set_state({"_idx": 0})


def test_allowed_cuts_mask_the_others_but_not_the_fallback(toy):
    env = small_env(toy, allowed_cuts=(0, 3))
    env.reset(seed=0)
    masks = env.action_masks()
    assert masks[:4].tolist() == [True, False, False, True]
    assert env.fallback_holds is False  # edge-only still fits: misses fall back to it
    # A masked cut is replaced by the nearest allowed one and penalised, never executed.
    _, _, _, _, info = env.step(np.array([2, 0]))
    assert info["cut"] in (0, 3) and info["r_invalid"] < 0
    with pytest.raises(ValueError, match=r"allowed_cuts \[7\] outside 0..3"):
        small_env(toy, allowed_cuts=(0, 7))
    with pytest.raises(ValueError, match="non-empty"):
        small_env(toy, allowed_cuts=())
