"""PPO on closed-loop-like MetaWorld streams (TrainConfig.metaworld_tasks) and the demo's closed-loop section."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("metaworld")


def test_training_on_metaworld_streams_and_the_demo_closed_loop(tmp_path, toy, monkeypatch):
    from rich.console import Console

    from agents.artifact import load_policy
    from agents.closed_loop_eval import EXPERT
    from agents.demo_closed_loop import DemoClosedLoopConfig, print_demo_closed_loop, run_demo_closed_loop
    from agents.training import TrainConfig, train, training_streams

    monkeypatch.setenv("ECC_CACHE_DIR", str(tmp_path / "cache"))
    cfg = toy.tiny_train_config(tmp_path, "mw", metaworld_tasks=("reach-v3",), metaworld_seeds=1, metaworld_frames=10)
    assert training_streams(TrainConfig()) is None  # without the option: the env's procedural streams
    streams = training_streams(cfg)
    names = [s.name for s in streams]
    assert names[-2:] == ["metaworld-reach-v3-s0-events-off", "metaworld-reach-v3-s0-events-on"]
    assert len(names) == 4 + 2 and all(s.dt_s == pytest.approx(0.1) for s in streams)
    profiles, traces = toy.three_block_profiles(), toy.alternating_set()
    res = train(cfg, trace_set=traces, profiles=profiles)
    assert res.timesteps >= 256
    assert json.loads((res.run_dir / "config.json").read_text())["env_overrides"]["streams"] == "6 streams"
    loaded = load_policy(res.policy_path)
    assert loaded.metadata["train_config"]["metaworld_tasks"] == ["reach-v3"]

    # the demo's closed-loop section with that policy: a handful of control steps, real numbers
    report = run_demo_closed_loop(
        res.run_dir, profiles, traces, DemoClosedLoopConfig(tasks="reach-v3", episodes=1, events="off", episode_s=1.5)
    )
    by = {r["planner"]: r for r in report.rows}
    assert set(by) == {EXPERT, "ppo", "heuristic", "edge"}
    assert by[EXPERT]["success_rate"] == 1.0 and by[EXPERT]["mean_inference_latency_ms"] == 0.0
    for name in ("ppo", "heuristic", "edge"):
        assert by[name]["inferences_per_episode"] >= 1 and by[name]["mean_inference_latency_ms"] > 0
    assert by["edge"]["success_rate"] == 1.0  # reach with the latency-aware VLA and every-step inference
    assert by["edge"]["median_tts_s"] >= by[EXPERT]["median_tts_s"]
    console = Console(record=True, width=200)
    print_demo_closed_loop(report, console)
    text = console.export_text()
    assert "closed loop" in text and "ppo" in text and "reach-v3" in text
    print_demo_closed_loop(None, console)
    assert "skipped: MetaWorld is not installed" in console.export_text()
