"""Heuristic planners against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.heuristics import (
    CloudOnly,
    EdgeOnly,
    HarmonicMean,
    HeuristicPlanner,
    MovingAverage,
    RapidConfig,
    RapidSkip,
    RoboECCConfig,
    RoboECCPlanner,
    StaticBestCut,
    expected_cut_costs_ms,
    train_lstm_predictor,
)
from agents.planner import BandwidthPrior, ObsView, PlannerContext
from ecc_env.observation import ObservationBuilder, ObservationConfig


def ctx_for(toy, prior=BandwidthPrior(100.0, 100.0, 20.0), **kw) -> PlannerContext:
    edge, cloud = toy.two_cut_profiles()
    return PlannerContext.from_profiles(edge, cloud, prior=prior, **kw)


def obs(
    ctx: PlannerContext,
    *,
    up=(),
    ages=(),
    rtt=20.0,
    down=200.0,
    actions_left=0,
    visual=(0, 0, 0),
    kin=(0, 0, 0),
    action_age_s=None,
) -> np.ndarray:
    b = ObservationBuilder(ctx.obs_config)
    return b.build(
        uplink_mbps=list(up),
        uplink_age_s=list(ages),
        downlink_mbps=down,
        rtt_ms=rtt,
        edge_queue=0,
        server_queue=0,
        action_age_s=action_age_s,
        actions_left=actions_left,
        visual=visual,
        visual_since_action=0.0,
        kinematic=kin,
        prev_cut=0,
        prev_skip=False,
        prev_deadline_miss=False,
        prev_latency_ms=0.0,
    )


def test_two_cut_costs_hand_computed(toy):
    ctx = ctx_for(toy)
    # cut 0: 1 Mbit up at 100 Mbit/s = 10 ms, 800 bit down at 200 = 0.004 ms, 2 x 10 ms one-way, 5 ms cloud
    costs = expected_cut_costs_ms(ctx, 100.0, 200.0, 20.0)
    assert costs[0] == pytest.approx(10.0 + 0.004 + 20.0 + 5.0)
    assert costs[1] == pytest.approx(50.0)
    # at 10 Mbit/s cut 0 takes 100 + 0.004 + 20 + 5 ms; beyond no deadline yet (300 ms)
    assert expected_cut_costs_ms(ctx, 10.0, 200.0, 20.0)[0] == pytest.approx(125.004)
    # at 1 Mbit/s it would take 1025 ms > deadline: priced as deadline + edge-only
    assert expected_cut_costs_ms(ctx, 1.0, 200.0, 20.0)[0] == pytest.approx(300.0 + 50.0)


def test_roboecc_argmin_at_two_bandwidths(toy):
    ctx = ctx_for(toy)
    fast = RoboECCPlanner(ctx, predictor="last")
    a, _ = fast.predict(obs(ctx, up=[100.0], ages=[0.05]), episode_start=np.array([True]))
    assert a.tolist() == [0, 0]
    slow = RoboECCPlanner(ctx, predictor="last")
    a, _ = slow.predict(obs(ctx, up=[10.0], ages=[0.05]), episode_start=np.array([True]))
    assert a.tolist() == [1, 0]


def test_roboecc_hysteresis_holds_cut_for_small_change(toy):
    ctx = ctx_for(toy)
    p = RoboECCPlanner(
        ctx, predictor="last", config=RoboECCConfig(hysteresis_frac=0.1, hysteresis_ms=5.0, change_threshold=0.15)
    )
    assert p.choose_cut(100.0, 200.0, 20.0) == 0
    # 90 Mbit/s: a 10 % change, below the change threshold: kept without re-evaluation
    assert p.choose_cut(90.0, 200.0, 20.0) == 0
    # 28 Mbit/s: cut 0 costs 1e6/28e6 s = 35.71 + 25.004 = 60.72 ms; edge 50 ms is better but not by
    # 10 % + 5 ms (60.72 * 0.9 - 5 = 49.65 < 50): hold
    assert p.choose_cut(28.0, 200.0, 20.0) == 0
    # 20 Mbit/s: cut 0 costs 75.004 ms, 75.004 * 0.9 - 5 = 62.5 > 50: move to the edge
    assert p.choose_cut(20.0, 200.0, 20.0) == 1
    # back to 30 Mbit/s: cut 0 costs 58.34, not better than 50 -> stay on the edge
    assert p.choose_cut(30.0, 200.0, 20.0) == 1


def test_roboecc_reprobes_after_stale_measurements(toy):
    ctx = ctx_for(toy, prior=BandwidthPrior(100.0, 100.0, 20.0))
    p = RoboECCPlanner(ctx, predictor="last", config=RoboECCConfig(stale_tau_s=1.0))
    a, _ = p.predict(obs(ctx, up=[5.0], ages=[0.1]), episode_start=np.array([True]))
    assert a[0] == 1  # 5 Mbit/s measured: edge
    # the same sample 8 s old: weight exp(-8) -> the estimate is ~ the prior (100 Mbit/s): probe the cloud
    a, _ = p.predict(obs(ctx, up=[5.0], ages=[8.0]))
    assert a[0] == 0


def test_predictors_hand_computed():
    ma, hm = MovingAverage(3), HarmonicMean(3)
    for x in (10.0, 20.0, 40.0, 80.0):
        ma.update(x)
        hm.update(x)
    assert ma.predict() == pytest.approx((20 + 40 + 80) / 3)
    assert hm.predict() == pytest.approx(3 / (1 / 20 + 1 / 40 + 1 / 80))
    with pytest.raises(ValueError, match="nan"):
        ma.update(math.nan)


def test_lstm_predictor_learns_constant_level(toy):
    from traces import synthetic
    from traces.traceset import TraceSet

    ts = TraceSet.from_traces([synthetic.constant(30.0, duration_s=60.0, name="c")], "c")
    p = train_lstm_predictor(ts, seed=0, sequences=256, epochs=40)
    for _ in range(20):
        p.update(30.0)
    assert p.predict() == pytest.approx(30.0, rel=0.1)


def test_edge_cloud_static(toy):
    ctx = ctx_for(toy, prior=BandwidthPrior(100.0, 100.0, 20.0))
    o = obs(ctx)
    assert EdgeOnly(ctx).predict(o)[0].tolist() == [1, 0]
    assert CloudOnly(ctx).predict(o)[0].tolist() == [0, 0]
    assert StaticBestCut(ctx).cut == 0  # 35 ms < 50 ms at the 100 Mbit/s prior
    slow = ctx_for(toy, prior=BandwidthPrior(10.0, 10.0, 20.0))
    assert StaticBestCut(slow).cut == 1


def test_cloud_only_respects_memory(toy):
    edge, cloud = toy.three_block_profiles()
    # edge memory of 250 MB: only cuts whose edge blocks hold <= 250 MB of parameters fit (k = 0, 1, 2)
    ctx = PlannerContext.from_profiles(edge, cloud, edge_memory_bytes=250_000_000)
    assert ctx.cut_fits.tolist() == [True, True, False, False]
    assert CloudOnly(ctx).predict(np.zeros(ObsView(ctx.obs_config).size))[0][0] == 0


def test_obs_view_roundtrip(toy):
    ctx = ctx_for(toy)
    view = ObsView(ctx.obs_config)
    f = view.decode(
        obs(
            ctx,
            up=[42.0, 7.0],
            ages=[0.3, 1.2],
            rtt=35.0,
            down=80.0,
            actions_left=5,
            visual=(0.05, 0.2, 0.1),
            kin=(1.5, 0.4, 0.9),
            action_age_s=0.4,
        )
    )
    assert f["uplink_mbps"] == pytest.approx(42.0, rel=1e-4)
    assert f["uplink_age_s"] == pytest.approx(0.3, rel=1e-4)
    assert view.uplink(obs(ctx, up=[42.0, 7.0], ages=[0.3, 1.2]))[0][1] == pytest.approx(7.0, rel=1e-4)
    assert f["rtt_ms"] == pytest.approx(35.0, rel=1e-3)
    assert f["actions_left"] == 5
    assert f["visual_changed"] == pytest.approx(0.2, abs=1e-6)
    assert f["joint_speed"] == pytest.approx(1.5, rel=1e-5)
    assert f["torque_change"] == pytest.approx(0.9, abs=1e-6)
    assert f["action_age_s"] == pytest.approx(0.4, rel=1e-5)
    with pytest.raises(ValueError, match="shape"):
        view.decode(np.zeros(3))


def _fields(**kw) -> dict:
    base = {
        "joint_speed": 1.0,
        "accel_anomaly": 0.0,
        "torque_change": 0.0,
        "visual_changed": 0.0,
        "visual_structural": 0.0,
        "actions_left": 5,
        "action_age_s": 0.1,
    }
    base.update(kw)
    return base


def test_rapid_importance_hand_computed(toy):
    r = RapidSkip(ctx_for(toy), RapidConfig(speed_ref_rad_s=1.0, visual_weight=0.3))
    # w = 1 / (1 + 1) = 0.5; kin = 0.5 * 0.8 + 0.5 * 0.2 = 0.5; vis = max(0.1, 2 * 0.02) = 0.1
    s = r.importance(_fields(accel_anomaly=0.8, torque_change=0.2, visual_changed=0.1, visual_structural=0.02))
    assert s == pytest.approx(0.7 * 0.5 + 0.3 * 0.1)
    # high speed: acceleration dominates (w = 9 / 10)
    s = r.importance(_fields(joint_speed=9.0, accel_anomaly=1.0, torque_change=0.0))
    assert s == pytest.approx(0.7 * 0.9)


def test_rapid_thresholds_cooldown_preemption(toy):
    ctx = ctx_for(toy)  # chunk_size 8: since_infer = 7 - actions_left
    r = RapidSkip(
        ctx,
        RapidConfig(
            low_threshold=0.3,
            high_threshold=0.7,
            cooldown_steps=2,
            visual_weight=0.0,
            speed_ref_rad_s=1.0,
            max_action_age_s=0.6,
        ),
    )
    low = dict(accel_anomaly=0.1, torque_change=0.1)  # s = 0.1
    mid = dict(accel_anomaly=0.5, torque_change=0.5)  # s = 0.5
    high = dict(accel_anomaly=0.9, torque_change=0.9)  # s = 0.9
    assert r.should_skip(_fields(actions_left=0, **low)) is False and r.last_event == "chunk_empty"
    assert r.should_skip(_fields(actions_left=6, **low)) is True and r.last_event == "redundant"
    # mid score one step after an inference (since_infer = 1 < cooldown 2): skip
    assert r.should_skip(_fields(actions_left=6, **mid)) is True
    # mid score two steps after: infer
    assert r.should_skip(_fields(actions_left=5, **mid)) is False and r.last_event == "important"
    # critical right after an inference: pre-empt regardless of the inference cooldown
    assert r.should_skip(_fields(actions_left=7, **high)) is False and r.last_event == "preempt"
    # another critical score within the pre-emption cooldown (1 step later) and 0 steps since inference: skip
    assert r.should_skip(_fields(actions_left=7, **high)) is True
    # ... the pre-emption cooldown has passed 2 steps later
    assert r.should_skip(_fields(actions_left=7, **high)) is True
    assert r.should_skip(_fields(actions_left=7, **high)) is False and r.last_event == "preempt"
    # a stale chunk is refreshed even when redundant
    assert r.should_skip(_fields(actions_left=3, action_age_s=0.7, **low)) is False and r.last_event == "stale"


def test_rapid_config_validation():
    with pytest.raises(ValueError, match="low_threshold"):
        RapidConfig(low_threshold=0.8, high_threshold=0.5)
    with pytest.raises(ValueError, match="cooldown"):
        RapidConfig(cooldown_steps=-1)


def test_heuristic_planner_skips_redundant_and_keeps_cut(toy):
    ctx = ctx_for(toy)
    h = HeuristicPlanner(ctx, predictor="last")
    a, _ = h.predict(obs(ctx, up=[100.0], ages=[0.1], actions_left=0), episode_start=np.array([True]))
    assert a.tolist() == [0, 0]
    # a redundant step with actions left: skip, keeping the cut even though the bandwidth collapsed
    a, _ = h.predict(obs(ctx, up=[1.0, 100.0], ages=[0.05, 0.2], actions_left=4, action_age_s=0.2))
    assert a.tolist() == [0, 1]
    # chunk empty: re-plan at the new (low) bandwidth -> edge
    a, _ = h.predict(obs(ctx, up=[1.0, 100.0], ages=[0.15, 0.3], actions_left=0))
    assert a.tolist() == [1, 0]


def test_context_validation(toy):
    edge, cloud = toy.two_cut_profiles()
    with pytest.raises(ValueError, match="num_cuts"):
        PlannerContext.from_profiles(edge, cloud, obs_config=ObservationConfig(num_cuts=5))
    with pytest.raises(ValueError, match="up_mbps"):
        BandwidthPrior(-1.0, 1.0, 1.0)
    with pytest.raises(TypeError, match="PlannerContext"):
        EdgeOnly("ctx")  # type: ignore[arg-type]


def test_rapid_is_kinematics_only_by_default(toy):
    r = RapidSkip(ctx_for(toy))
    assert r.config.visual_weight == 0.0 and r.config.dispatch == "paper"
    # w = 1/2: s = 0.5 * 0.8 + 0.5 * 0.2 = 0.5; a large visual change does not move it
    f = _fields(accel_anomaly=0.8, torque_change=0.2, visual_changed=1.0, visual_structural=1.0)
    assert r.importance(f) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="dispatch"):
        RapidConfig(dispatch="cloud")


def test_rapid_paper_dispatch_redundant_on_edge_critical_to_cloud(toy):
    # toy: cut 0 = cloud-only (network), cut 1 = edge-only; chunk_size 8
    ctx = ctx_for(toy)
    r = RapidSkip(ctx, RapidConfig(cooldown_steps=2))
    start = np.array([True])
    # chunk empty, nothing moving: refill on the edge (edge-only inference)
    a, _ = r.predict(obs(ctx, actions_left=0, kin=(0.2, 0.0, 0.0), action_age_s=0.0), episode_start=start)
    assert a.tolist() == [1, 0] and r.last_target == "edge"
    # redundant with actions left: keep executing on the edge (skip)
    a, _ = r.predict(obs(ctx, actions_left=6, kin=(0.2, 0.0, 0.0), action_age_s=0.1))
    assert a.tolist() == [1, 1] and r.last_event == "redundant"
    # a contact spike (torque change 0.9 at low speed): critical -> pre-empt and infer in the cloud
    a, _ = r.predict(obs(ctx, actions_left=5, kin=(0.05, 0.0, 0.9), action_age_s=0.2))
    assert a.tolist() == [0, 0] and r.last_event == "preempt" and r.last_target == "cloud"
    # the old rule (HeuristicPlanner's): redundant skipped, inferences at the cut planner's cut
    old = RapidSkip(ctx, RapidConfig(dispatch="skip"))
    a, _ = old.predict(obs(ctx, actions_left=0, kin=(0.2, 0.0, 0.0), action_age_s=0.0), episode_start=start)
    assert a.tolist() == [int(old.cut_planner.cut), 0]


def test_best_network_cut_ignores_the_edge_only_cut(toy):
    from agents.heuristics import best_network_cut

    # at 1 Mbit/s the static best cut is edge-only, but the network cut is still cut 0
    ctx = ctx_for(toy, prior=BandwidthPrior(1.0, 1.0, 20.0))
    assert StaticBestCut(ctx).cut == 1 and best_network_cut(ctx) == 0


def test_entropy_vision_dispatch_hand_computed(toy):
    from agents.vision_skip import EntropyVisionConfig, EntropyVisionDispatch, binary_entropy_bits

    assert binary_entropy_bits(0.5) == pytest.approx(1.0) and binary_entropy_bits(0.0) == 0.0
    assert binary_entropy_bits(0.25) == pytest.approx(0.8112781, rel=1e-6)
    ctx = ctx_for(toy)
    v = EntropyVisionDispatch(ctx, EntropyVisionConfig(entropy_threshold=0.6, mad_ref=0.02, cooldown_steps=2))
    # mad 0.02 -> p = 0.5 -> 1 bit; mad 0.002 -> p = 1/11 -> 0.439 bits
    assert v.entropy({"visual_mad": 0.02}) == pytest.approx(1.0)
    assert v.entropy({"visual_mad": 0.002}) == pytest.approx(binary_entropy_bits(1 / 11))
    start = np.array([True])
    a, _ = v.predict(obs(ctx, actions_left=0, visual=(0.02, 0, 0), action_age_s=0.0), episode_start=start)
    assert a.tolist() == [0, 0] and v.last_target == "cloud"
    a, _ = v.predict(obs(ctx, actions_left=6, visual=(0.002, 0, 0), action_age_s=0.1))
    assert a.tolist() == [0, 1] and v.last_target == "edge"
    a, _ = v.predict(obs(ctx, actions_left=0, visual=(0.0, 0, 0), action_age_s=0.1))
    assert a.tolist() == [1, 0]
    with pytest.raises(ValueError, match="entropy_threshold"):
        EntropyVisionConfig(entropy_threshold=1.5)


def test_roboecc_paper_chain_hand_computed():
    from types import SimpleNamespace

    from agents.heuristics import RoboECCPaperChain
    from executor.profile import CutSpec

    # 3 blocks; edge 10/20/30 ms, cloud 1/2/3 ms, params 100/200/300 B, outputs 1000/2000/3000 B
    cuts = [CutSpec(k=k, up_bytes=b, down_bytes=8) for k, b in ((0, 50_000), (1, 1000), (2, 2000), (3, 0))]
    edge = SimpleNamespace(
        block_names=("a", "b", "c"), block_ms=(10.0, 20.0, 30.0), block_param_bytes=(100, 200, 300), cuts=cuts
    )
    cloud = SimpleNamespace(
        block_names=("a", "b", "c"), block_ms=(1.0, 2.0, 3.0), block_param_bytes=(100, 200, 300), cuts=cuts
    )
    ch = RoboECCPaperChain.from_profiles(edge, cloud)
    # 8 Mbit/s = 1 B/us: 1000 B take 1 ms; fixed latency 5 ms on internal cuts only
    c = ch.costs_ms(8.0, 5.0)
    assert c.tolist() == pytest.approx([60.0, 1 + 50 + 5 + 1, 3 + 30 + 5 + 2, 6.0])
    assert ch.best(8.0, 5.0) == (3, pytest.approx(6.0))  # all cloud: nothing charged for the input upload
    # a cloud-load budget of 300 B allows cuts 0..2 (loads 0, 100, 300)
    assert ch.best(8.0, 5.0, max_cloud_load_bytes=300) == (2, pytest.approx(40.0))
    assert ch.edge_only_ms == 60.0
    with pytest.raises(ValueError):
        ch.costs_ms(0.0, 5.0)


def test_roboecc_two_threshold_adjustment(toy):
    # toy: cut 0 uploads 125 kB (cloud-only), cut 1 edge-only (0 B); at the 100 Mbit/s prior cut 0 wins
    ctx = ctx_for(toy)
    r = RoboECCPlanner(
        ctx,
        predictor="last",
        config=RoboECCConfig(adjustment="two_threshold", low_delta_mbps=-5.0, high_delta_mbps=5.0),
    )
    assert set(r.pool) == {0, 1}  # both cuts are optimal somewhere in [12.5, 800] Mbit/s
    a, _ = r.predict(obs(ctx, up=[100.0], ages=[0.1]), episode_start=np.array([True]))
    assert a.tolist() == [0, 0]
    # "last" predicts the newest sample: delta 0 -> keep
    a, _ = r.predict(obs(ctx, up=[2.0, 100.0], ages=[0.05, 0.2]))
    assert a.tolist() == [0, 0] and r.last_delta_mbps == 0.0
    # a moving average of [100, 2] predicts 51 against the newest 2: delta +49 -> the largest upload (cut 0);
    # with the newest at 100 and the mean at 51: delta -49 -> the smallest upload (edge-only)
    m = RoboECCPlanner(ctx, predictor=MovingAverage(2), config=RoboECCConfig(adjustment="two_threshold"))
    m.predict(obs(ctx, up=[2.0], ages=[0.1]), episode_start=np.array([True]))
    a, _ = m.predict(obs(ctx, up=[100.0, 2.0], ages=[0.05, 0.2]))
    assert a.tolist() == [1, 0] and m.last_delta_mbps == pytest.approx(-49.0)
    a, _ = m.predict(obs(ctx, up=[2.0, 100.0, 2.0], ages=[0.01, 0.15, 0.3]))
    assert a.tolist() == [0, 0] and m.last_delta_mbps == pytest.approx(49.0)
    with pytest.raises(ValueError, match="adjustment"):
        RoboECCConfig(adjustment="argmin")


def test_lstm_predictor_npz_round_trip_and_stored_model(tmp_path, toy):
    from agents.heuristics import DEFAULT_LSTM_PATH, LSTMPredictor, PredictorFileError, make_predictor, one_step_errors
    from traces import synthetic
    from traces.traceset import TraceSet

    ts = TraceSet.from_traces([synthetic.constant(30.0, duration_s=60.0, name="c")], "c")
    p = train_lstm_predictor(ts, seed=0, sequences=64, epochs=2)
    path = p.save(tmp_path / "lstm.npz", meta={"note": "test"})
    q = make_predictor(f"lstm:{path}")
    for x in (10.0, 20.0, 40.0):
        p.update(x)
        q.update(x)
    assert q.predict() == pytest.approx(p.predict(), rel=1e-6)
    # the shipped predictor loads without pickle and predicts a constant link within 10%
    stored = make_predictor("lstm")
    assert DEFAULT_LSTM_PATH.is_file() and isinstance(stored, LSTMPredictor)
    for _ in range(20):
        stored.update(30.0)
    assert stored.predict() == pytest.approx(30.0, rel=0.1)
    errs = one_step_errors(make_predictor("lstm"), ts)
    assert errs["mape"] < 0.1 and errs["samples"] > 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, info=np.array('{"format_version": 99}'))
    with pytest.raises(PredictorFileError, match="format_version"):
        LSTMPredictor.load(bad)
    with pytest.raises(PredictorFileError, match="not found"):
        make_predictor(f"lstm:{tmp_path / 'missing.npz'}")
