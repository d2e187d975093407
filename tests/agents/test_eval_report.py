"""`ecc eval` and agents.report: table numbers against hand-computed values on a constant link, the output files
read back, planner-name errors, the vision-triggered skip rule and the emulated Profile pair."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from agents.emulated_pair import component_ratios, scaled_pair
from agents.eval_cli import EvalConfig, PlannerSpecError, main, parse_planners
from agents.heuristics import CloudOnly, EdgeOnly
from agents.planner import PlannerContext
from agents.report import EvalReport, StepRecorder, build_report, family_of, run_planners, write_steps_csv
from agents.vision_skip import VisionSkip, VisionSkipConfig
from executor.profile import CutSpec, Profile
from traces import synthetic
from traces.traceset import TraceSet

UP_MBPS, DOWN_MBPS, RTT_MS = 100.0, 8.0, 20.0
EDGE_MS, CLOUD_MS, UP_BYTES, DOWN_BYTES = 50.0, 5.0, 125_000, 100


def _const_env(toy, episode_s: float = 3.0) -> StepRecorder:
    trace = synthetic.constant(UP_MBPS, DOWN_MBPS, rtt_ms=RTT_MS, duration_s=600.0, name="lab/wired/const")
    profiles = toy.two_cut_profiles(EDGE_MS, CLOUD_MS, UP_BYTES, DOWN_BYTES)
    return StepRecorder(toy.make_env(profiles, TraceSet.from_traces([trace], "const"), episode_s=episode_s))


@pytest.fixture(scope="module")
def const_runs(toy):
    env = _const_env(toy)
    ctx = PlannerContext.from_env(env)
    runs = run_planners({"edge": EdgeOnly(ctx), "cloud": CloudOnly(ctx)}, env, [1, 2])
    env.close()
    return runs


def test_table_equals_hand_computed_latencies(const_runs):
    # cloud-only: upload 125 kB at 100 Mbit/s = 10 ms + 10 ms one-way delay, 5 ms cloud, 100 B down at 8 Mbit/s
    # = 0.1 ms + 10 ms delay -> 35.1 ms; edge-only: 50 ms. Both finish within the 100 ms period: no queueing.
    cloud_ms = (
        UP_BYTES * 8 / (UP_MBPS * 1e6) * 1e3
        + RTT_MS / 2
        + CLOUD_MS
        + DOWN_BYTES * 8 / (DOWN_MBPS * 1e6) * 1e3
        + RTT_MS / 2
    )
    assert cloud_ms == pytest.approx(35.1)
    report = build_report(const_runs, oracle="cloud")  # the cloud-only run stands in as the reference lower bound
    edge, cloud = report.row("edge"), report.row("cloud")
    assert edge["steps"] == cloud["steps"] == 2 * 30  # 2 episodes x 3 s / 100 ms
    for key in ("mean_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms"):
        assert edge[key] == pytest.approx(EDGE_MS, abs=1e-9)
        assert cloud[key] == pytest.approx(cloud_ms, abs=1e-6)
    assert edge["speedup_vs_edge"] == pytest.approx(1.0)
    assert cloud["speedup_vs_edge"] == pytest.approx(EDGE_MS / cloud_ms, rel=1e-9)
    assert edge["ratio_to_oracle"] == pytest.approx(EDGE_MS / cloud_ms, rel=1e-9)
    assert edge["uplink_bytes_per_step"] == 0.0
    assert cloud["uplink_bytes_per_step"] == pytest.approx(UP_BYTES)
    for row in (edge, cloud):
        assert row["deadline_miss_rate"] == 0.0 and row["skip_rate"] == 0.0 and row["mean_deviation"] == 0.0
        assert row["fallbacks"] is None
    run = const_runs[1]
    expected = 100 * run.result.decision_ms.sum() / run.result.latency_ms.sum()
    assert cloud["overhead_pct"] == pytest.approx(expected)
    # the recorder saw the same episodes: constant bandwidth at every step, one family
    assert np.all(np.concatenate([s.up_mbps for s in run.steps]) == UP_MBPS)
    assert report.families == {"lab/wired": {"edge": pytest.approx(EDGE_MS), "cloud": pytest.approx(cloud_ms)}}


def test_speedup_is_nan_without_edge_run(const_runs):
    report = build_report(const_runs[1:])
    assert math.isnan(report.row("cloud")["speedup_vs_edge"])
    assert math.isnan(report.row("cloud")["ratio_to_oracle"])


def test_json_csv_and_steps_round_trip(const_runs, tmp_path):
    report = build_report(const_runs, {"note": "const"})
    back = EvalReport.from_json(report.to_json(tmp_path / "r.json"))
    assert [r["planner"] for r in back.rows] == ["edge", "cloud"]
    for a, b in zip(report.rows, back.rows):
        for k, v in a.items():
            if isinstance(v, float) and math.isnan(v):
                assert math.isnan(b[k])
            else:
                assert b[k] == pytest.approx(v) if isinstance(v, float) else b[k] == v
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["ratio_to_oracle"] is None  # NaN -> null
    with report.to_csv(tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["planner"] for r in rows] == ["edge", "cloud"]
    assert float(rows[1]["mean_latency_ms"]) == pytest.approx(report.row("cloud")["mean_latency_ms"])
    assert rows[0]["ratio_to_oracle"] == "" and rows[0]["fallbacks"] == ""
    with write_steps_csv(const_runs, tmp_path / "steps.csv").open(newline="") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == 2 * 60
    assert {float(s["latency_ms"]) for s in steps if s["planner"] == "edge"} == {EDGE_MS}
    assert {int(s["bytes_up"]) for s in steps if s["planner"] == "cloud"} == {UP_BYTES}


def test_unknown_planner_is_refused_with_the_valid_list(capsys):
    assert main(["--planners", "edge,warp-drive"]) == 2
    err = capsys.readouterr().err
    assert "warp-drive" in err
    for name in ("ppo:PATH", "heuristic", "roboecc", "rapid", "static", "edge", "cloud", "oracle"):
        assert name in err
    with pytest.raises(PlannerSpecError, match="needs a policy path"):
        parse_planners("ppo")
    with pytest.raises(PlannerSpecError, match="given twice"):
        parse_planners("edge,edge")
    with pytest.raises(PlannerSpecError, match="unknown planner 'edge:x'"):
        parse_planners("edge:x")
    assert parse_planners("ppo:runs/a/policy.zip, cloud") == [
        ("ppo", "ppo", "runs/a/policy.zip"),
        ("cloud", "cloud", None),
    ]
    assert [p[0] for p in parse_planners("ppo:runs/a,ppo:runs/b")] == ["ppo:a", "ppo:b"]
    with pytest.raises(ValueError, match="split"):
        EvalConfig(split="holdout")


def test_missing_policy_exits_2(capsys, tmp_path):
    assert (
        main(
            [
                "--planners",
                f"ppo:{tmp_path}/nope.zip,edge",
                "--episodes",
                "1",
                "--episode-s",
                "1",
                "--model",
                "openvla",
                "--preset",
                "tiny",
            ]
        )
        == 2
    )
    assert "policy file not found" in capsys.readouterr().err


def test_family_of():
    assert family_of("embedded/4g/4g-1") == "embedded/4g"
    assert family_of("embedded/5g/5g-0[12.5+40s]") == "embedded/5g"
    assert family_of("fcc_broadband_2016/test_genet/trace_1.log") == "fcc_broadband_2016"
    assert family_of("lumos5g_mmwave/5G/a.csv") == "lumos5g_mmwave/5G"
    assert family_of("solo.txt") == "(none)"


def _fields(**kw):
    f = {"actions_left": 3, "visual_mad": 0.0, "visual_since_action": 0.0, "action_age_s": 0.1}
    f.update(kw)
    return f


def test_vision_skip_rule(toy):
    env = _const_env(toy)
    planner = VisionSkip(PlannerContext.from_env(env), VisionSkipConfig(mad_threshold=0.01, accum_threshold=0.05))
    env.close()
    assert planner.should_skip(_fields())
    assert not planner.should_skip(_fields(visual_mad=0.02))  # raw change above the threshold
    assert not planner.should_skip(_fields(visual_since_action=0.06))  # accumulated change
    assert not planner.should_skip(_fields(actions_left=0))  # nothing to reuse
    assert not planner.should_skip(_fields(action_age_s=0.7))  # stale chunk
    with pytest.raises(ValueError, match="mad_threshold"):
        VisionSkipConfig(mad_threshold=0.0)


def test_scaled_pair_keeps_component_ratios():
    cuts = tuple(CutSpec(k=k, up_bytes=10 * (3 - k)) for k in range(4))
    common = dict(
        model_id="m", preset="full", dtype="bf16", source="roofline", block_names=("vis.a", "vis.b", "lm.c"), cuts=cuts
    )
    edge_full = Profile(device="orin", block_ms=(4.0, 6.0, 90.0), **common)
    cloud_full = Profile(device="a100", block_ms=(1.0, 1.0, 10.0), **common)
    ratios = component_ratios(edge_full, cloud_full)
    assert ratios["vis"] == pytest.approx(5.0) and ratios["lm"] == pytest.approx(9.0)
    assert ratios["*"] == pytest.approx(100.0 / 12.0)
    measured = Profile(device="cpu", block_ms=(2.0, 1.0, 3.0), **{**common, "preset": "tiny", "source": "measured"})
    edge, cloud = scaled_pair(measured, ratios, headroom=1.5)
    assert cloud.block_ms == pytest.approx((3.0, 1.5, 4.5))
    assert edge.block_ms == pytest.approx((15.0, 7.5, 40.5))
    assert edge.cuts == measured.cuts and "emulated" in edge.notes
    with pytest.raises(ValueError, match="headroom"):
        scaled_pair(measured, ratios, headroom=0.5)


def test_family_filter_evaluates_only_that_family(toy):
    """``--family`` keeps the eval split's traces of the matching family: a fast and a slow lab family, the
    cloud-only planner's latency tells which one ran; a family that matches nothing is refused, listing the families."""
    from agents.eval_cli import run_eval

    fast = [
        synthetic.constant(UP_MBPS, DOWN_MBPS, rtt_ms=RTT_MS, duration_s=600.0, name=f"lab/fast/t{i}") for i in range(3)
    ]
    slow = [
        synthetic.constant(UP_MBPS / 10, DOWN_MBPS, rtt_ms=RTT_MS, duration_s=600.0, name=f"lab/slow/t{i}")
        for i in range(3)
    ]
    traces = TraceSet.from_traces(fast + slow, "lab")
    profiles = toy.two_cut_profiles(EDGE_MS, CLOUD_MS, UP_BYTES, DOWN_BYTES)
    means = {}
    for family in ("lab/fast", "slow"):
        cfg = EvalConfig(
            planners="cloud",
            split="all",
            family=family,
            episodes=2,
            episode_s=2.0,
            chunk_size=1,
            deadline_ms=5_000.0,
            break_even_deadline=False,
        )
        report, runs = run_eval(cfg, trace_set=traces, profiles=profiles)
        assert {st.family for st in runs[0].steps} == {family if "/" in family else "lab/slow"}
        means[family] = report.rows[0]["mean_latency_ms"]
    assert means["slow"] > 5 * means["lab/fast"]  # 125 kB at 10 vs 100 Mbit/s
    with pytest.raises(ValueError, match="matches 'wifi'.*lab/fast, lab/slow"):
        run_eval(
            EvalConfig(planners="cloud", split="all", family="wifi", episodes=1, episode_s=1.0),
            trace_set=traces,
            profiles=profiles,
        )


def test_vision_entropy_planner_by_name(toy):
    from agents.eval_cli import build_planner
    from agents.vision_skip import EntropyVisionDispatch

    assert parse_planners("vision-entropy,rapid") == [
        ("vision-entropy", "vision-entropy", None),
        ("rapid", "rapid", None),
    ]
    env = _const_env(toy)
    planner = build_planner("vision-entropy", None, PlannerContext.from_env(env), env)
    env.close()
    assert isinstance(planner, EntropyVisionDispatch)
