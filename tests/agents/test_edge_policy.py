"""`ecc edge --policy`: a trained artifact drives the real edge runtime through GuardedPolicy, or is refused."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agents.edge_cli import resolved_deadline_ms, wire_policy
from agents.training import TrainConfig, quick, train
from executor.wire_config import roofline_pair

ECC = str(Path(sys.executable).parent / "ecc")


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    cfg = quick(
        TrainConfig(model="openvla", preset="tiny", edge="orin", cloud="a100", run_dir=str(runs), run_name="tiny")
    )
    return train(cfg).policy_path


def test_policy_loads_for_its_profiles_and_is_refused_for_others(tiny_policy: Path) -> None:
    orin, a100 = roofline_pair("openvla", "tiny", "orin", "a100")  # priced under the default wire, as trained
    ok, adapter = wire_policy(tiny_policy, orin, a100, period_ms=100.0, deadline_ms=300.0)
    assert ok.policy is not None and ok.load_error is None
    assert adapter.builder.size == ok.policy.obs_low.shape[0]
    other, _ = wire_policy(
        tiny_policy, roofline_pair("openvla", "tiny", "thor", "a100")[0], a100, period_ms=100.0, deadline_ms=300.0
    )
    assert other.policy is None and "edge profile mismatch" in other.load_error


def test_a_deadline_other_than_the_training_one_is_reported(tiny_policy: Path, caplog) -> None:
    edge, cloud = roofline_pair("openvla", "tiny", "orin", "a100")
    capped = resolved_deadline_ms(edge, cloud, 300.0)
    with caplog.at_level("WARNING", logger="agents.edge_cli"):
        wire_policy(tiny_policy, edge, cloud, period_ms=100.0, deadline_ms=capped)
    assert not caplog.records  # trained with the same (capped) deadline
    with caplog.at_level("WARNING", logger="agents.edge_cli"):
        wire_policy(tiny_policy, edge, cloud, period_ms=100.0, deadline_ms=300.0)
    assert "trained with a" in caplog.text and "300 ms" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="agents.edge_cli"):
        wire_policy(tiny_policy, edge, cloud, period_ms=100.0, deadline_ms=capped, hedge=True)
    assert "trained without hedged execution, it runs with it here" in caplog.text


@pytest.mark.slow  # heavy: an `ecc edge` process running every step, ~7 s
def test_ecc_edge_with_policy_runs_every_step(tiny_policy: Path, tmp_path: Path) -> None:
    """Profiles this machine can run (the tiny model measured here, used for both sides): the policy decides."""
    from executor.models import build_model
    from executor.profiler import ProfilerConfig, profile_model

    prof = profile_model(build_model("openvla", "tiny", seed=0), ProfilerConfig(warmup_runs=1, measured_runs=3))
    slow = replace(prof, block_ms=tuple(3.0 * t + 1.0 for t in prof.block_ms))  # headroom for a loaded machine
    edge_p, cloud_p = tmp_path / "edge.json", tmp_path / "cloud.json"
    slow.save(edge_p)
    prof.save(cloud_p)
    out = subprocess.run(
        [
            ECC,
            "edge",
            "--policy",
            str(tiny_policy),
            "--edge-profile",
            str(edge_p),
            "--cloud-profile",
            str(cloud_p),
            "--model",
            "openvla",
            "--preset",
            "tiny",
            "--steps",
            "12",
            "--no-realtime",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "'decisions': 12" in out.stdout.replace("\n", "")
    assert "policy not loaded" in out.stderr and "edge profile mismatch" in out.stderr  # trained on roofline Profiles
    assert "failed" not in out.stdout  # no server: every step ran edge-only (by choice or as a fallback)


@pytest.mark.slow  # heavy: `ecc edge` processes that measure this machine, ~6 s
def test_ecc_edge_refuses_profiles_this_machine_cannot_run(tiny_policy: Path) -> None:
    """The README's `--hardware orin+a100 --preset tiny`: the roofline Orin runs the tiny model in microseconds, this
    CPU in milliseconds, so the policy would see latencies it never saw: exit 2 with what to pass instead."""
    out = subprocess.run(
        [
            ECC,
            "edge",
            "--policy",
            str(tiny_policy),
            "--hardware",
            "orin+a100",
            "--model",
            "openvla",
            "--preset",
            "tiny",
            "--steps",
            "12",
            "--no-realtime",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2, out.stdout
    assert "edge-only in" in out.stderr and "--emulate profile_edge.json" in out.stderr


def test_runtime_deadline_is_the_envs_deadline() -> None:
    import gymnasium as gym

    from ecc_env import ENV_ID
    from ecc_env.latency import DeadlineConfig

    for model, edge_hw in (("pi0", "orin"), ("openvla", "orin"), ("openvla", "thor")):
        edge, cloud = roofline_pair(model, "full", edge_hw, "a100")
        for break_even in (True, False):
            env = gym.make(
                ENV_ID, edge_profile=edge, cloud_profile=cloud, deadline=DeadlineConfig(300.0, break_even=break_even)
            )
            want = env.unwrapped.deadline.deadline_ms
            assert resolved_deadline_ms(edge, cloud, 300.0, break_even=break_even) == want
            edge_only = env.unwrapped.rows[env.unwrapped.edge_only_index].edge_ms
            assert want == (min(300.0, edge_only) if break_even else 300.0)
            env.close()


def test_ecc_edge_policy_argument_errors(tiny_policy: Path) -> None:
    no_profiles = subprocess.run(
        [ECC, "edge", "--policy", str(tiny_policy), "--model", "openvla", "--preset", "tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_profiles.returncode == 2 and "--hardware EDGE+CLOUD" in no_profiles.stderr
    both = subprocess.run(
        [
            ECC,
            "edge",
            "--policy",
            str(tiny_policy),
            "--hardware",
            "orin+a100",
            "--cut",
            "3",
            "--model",
            "openvla",
            "--preset",
            "tiny",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode == 2 and "replaces --planner" in both.stderr
    stray = subprocess.run(
        [ECC, "edge", "--hardware", "orin+a100", "--model", "openvla", "--preset", "tiny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stray.returncode == 2 and "only apply with --policy" in stray.stderr


@pytest.mark.parametrize("budget_ms", ["1e-9", "inf"])
def test_ecc_eval_applies_the_decision_budget(tiny_policy: Path, tmp_path: Path, budget_ms: str) -> None:
    """`ecc eval --budget-ms` reaches the GuardedPolicy: with a budget no decision can meet, the heuristic takes every
    step (all counted over budget); without one (inf), none, however loaded the machine is."""
    import json

    from agents.eval_cli import main

    out = tmp_path / "eval"
    assert (
        main(
            [
                "--planners",
                f"ppo:{tiny_policy}",
                "--model",
                "openvla",
                "--preset",
                "tiny",
                "--episodes",
                "1",
                "--episode-s",
                "2",
                "--budget-ms",
                budget_ms,
                "--out",
                str(out),
                "--no-plots",
            ]
        )
        == 0
    )
    row = json.loads((out / "report.json").read_text())["rows"][0]
    over = row["fallbacks_by_reason"]["over_budget"]
    assert row["fallbacks"] == over
    assert over == (row["steps"] if budget_ms == "1e-9" else 0) and row["steps"] > 0
