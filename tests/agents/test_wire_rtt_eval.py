"""The wire configuration and the RTT rule in evaluation and in the policy artifact: the RTT is applied (cloud-only
latency moves by exactly the RTT difference) and reported with the result; a policy trained under another wire
configuration is refused at load, one under another RTT rule loads with a warning."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest

from agents.eval_cli import EvalConfig, print_report, run_eval
from traces import synthetic
from traces.traceset import TraceSet


def _flat_set() -> TraceSet:
    # 200 Mbit/s both ways, no own RTT, in a family of the RTT table (lumos 4G: 50 ms)
    t = [synthetic.step(np.full(40, 200.0), 1.0, name=f"lumos5g_mmwave/4G/flat-{i}") for i in range(2)]
    return TraceSet.from_traces(t, "flat")


def _cloud_latency(rtt_ms: float, wire: str = "default") -> tuple[float, object]:
    cfg = EvalConfig(
        planners="cloud",
        model="pi0",
        preset="full",
        split="all",
        episodes=1,
        episode_s=3.0,
        chunk_size=1,
        rtt_ms=rtt_ms,
        wire=wire,
        deadline_ms=5_000.0,
        break_even_deadline=False,
        plots=False,
    )
    report, runs = run_eval(cfg, trace_set=_flat_set())
    return float(np.median(runs[0].result.latency_ms)), report


def test_rtt_rule_applied_and_reported() -> None:
    from rich.console import Console

    zero, _ = _cloud_latency(0.0)
    family, rep = _cloud_latency(-1.0)
    override, rep20 = _cloud_latency(20.0)
    assert family - zero == pytest.approx(50.0, abs=0.5)  # the lumos 4G family's documented RTT
    assert override - zero == pytest.approx(20.0, abs=0.5)
    assert rep.meta["rtt_rule"]["mean_rtt_ms_by_family"] == {"lumos5g_mmwave/4G": 50.0}
    assert rep20.meta["rtt_rule"]["rtt_ms"] == 20.0 and rep.meta["wire"]["label"] == "jpeg:90,fp16"
    buf = io.StringIO()
    print_report(rep, Console(file=buf, width=250))
    text = buf.getvalue()
    assert "jpeg:90,fp16" in text and "family RTT" in text and "lumos5g_mmwave/4G 50" in text
    json.loads(json.dumps(rep.meta, default=str))  # the report meta stays JSON


def test_default_wire_cheaper_than_raw_for_cloud_only() -> None:
    raw, rep = _cloud_latency(0.0, wire="exact")
    dep, _ = _cloud_latency(0.0)
    assert rep.meta["wire"]["label"] == "raw,fp32"
    assert dep < raw  # JPEG frames upload faster than raw ones even after the encode time is charged


def test_policy_wire_mismatch_refused_rtt_mismatch_warned(tmp_path, toy, caplog) -> None:
    from agents.artifact import (
        PolicyExpectation,
        PolicyLoadError,
        load_policy,
        meta_path,
    )
    from agents.training import train
    from executor.wire_config import DEFAULT_WIRE, EXACT_WIRE

    Toy = toy
    e, c = Toy.three_block_profiles()
    priced = tuple(replace(p, notes={**p.notes, "wire": DEFAULT_WIRE.to_dict()}) for p in (e, c))
    cfg = Toy.tiny_train_config(tmp_path, "w", rtt_ms=30.0)
    res = train(cfg, trace_set=Toy.alternating_set(), profiles=priced)
    meta = json.loads(meta_path(res.policy_path).read_text())
    assert meta["wire"]["label"] == "jpeg:90,fp16" and meta["rtt_rule"]["rtt_ms"] == 30.0
    env = Toy.make_env(priced, Toy.alternating_set(), episode_s=2.0)
    exp = PolicyExpectation.for_env(env)
    assert load_policy(res.policy_path, exp).metadata["wire"] == DEFAULT_WIRE.to_dict()
    with pytest.raises(PolicyLoadError, match="wire configuration mismatch.*jpeg:90,fp16.*raw,fp32"):
        load_policy(res.policy_path, replace(exp, wire=EXACT_WIRE.to_dict()))
    from agents.eval_cli import build_planner
    from agents.planner import PlannerContext

    with caplog.at_level("WARNING"):
        build_planner("ppo", str(res.policy_path), PlannerContext.from_env(env), env, rtt_ms=-1.0)
    assert "trained under RTT 30 ms" in caplog.text


def test_profile_files_are_repriced_under_the_runs_wire(tmp_path) -> None:
    from agents.eval_cli import resolve_profiles
    from executor.roofline import roofline_profile_for

    paths = []
    for hw in ("orin", "a100"):
        paths.append(roofline_profile_for("pi0", "full", hw).save(tmp_path / f"{hw}.json"))
    raw = roofline_profile_for("pi0", "full", "orin")
    e, c = resolve_profiles(EvalConfig(profiles=",".join(map(str, paths)), wire="jpeg:90,fp16"))
    assert e.notes["wire"]["label"] == c.notes["wire"]["label"] == "jpeg:90,fp16"
    assert e.cuts[0].up_bytes < raw.cuts[0].up_bytes / 5 and e.codec_ms[0] > 0
