"""`ecc demo` with a tiny budget: every phase runs (train, profile-backend evaluation, real split executor over a
shaped loopback link) and writes readable tables and plots (about 15 s on 2 cores)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.network]

torch = pytest.importorskip("torch")
mpimg = pytest.importorskip("matplotlib.image")

from agents.demo import DemoConfig, main  # noqa: E402


@pytest.mark.slow  # heavy and timing: every demo phase incl. the real executor in real time, ~15 s
def test_demo_tiny_budget_runs_every_phase(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(
        [
            "--out",
            str(out),
            "--timesteps",
            "512",
            "--episodes",
            "1",
            "--episode-s",
            "2",
            "--real-steps",
            "20",
            "--train-episode-s",
            "2",
            "--no-oracle",
            "--closed-loop-episodes",
            "0",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    sim = [r["planner"] for r in summary["profile_backend"]]
    assert sim == ["ppo", "heuristic", "roboecc", "rapid", "vision", "static", "edge", "cloud"]
    real = {r["planner"]: r for r in summary["executor_backend"]}
    assert list(real) == ["ppo", "heuristic", "edge"]
    for r in real.values():
        assert r["steps"] >= 5 and r["mean_latency_ms"] > 0
    assert real["edge"]["speedup_vs_edge"] == pytest.approx(1.0)
    assert isinstance(real["ppo"]["fallbacks"], int) and real["heuristic"]["fallbacks"] is None
    assert real["edge"]["uplink_bytes_per_step"] == 0.0
    # the emulated edge is slower than the emulated cloud, and the real edge-only step pays at least that much
    edge_ms, cloud_ms = summary["profiles"]["edge"]["total_ms"], summary["profiles"]["cloud"]["total_ms"]
    assert edge_ms > cloud_ms > 0
    assert real["edge"]["p50_latency_ms"] >= 0.95 * edge_ms
    for phase in ("1.", "2.", "3.", "4.", "5."):
        assert any(k.startswith(phase) for k in summary["phase_wall_s"])
        assert phase in printed
    assert (out / "ppo" / "policy.safetensors").is_file()
    for png in (
        "learning_curve.png",
        "eval_profile/latency_cdf.png",
        "eval_profile/timeline.png",
        "eval_executor/latency_cdf.png",
        "eval_executor/timeline.png",
    ):
        img = mpimg.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 200
    for d in ("eval_profile", "eval_executor"):
        assert json.loads((out / d / "report.json").read_text())["rows"]
    # readable output: the return and dropped steps are columns, every column is explained exactly once, no raw
    # dict is printed, and the demo says where its files went
    assert all("mean_return" in r and "dropped" in r for r in summary["profile_backend"])
    for note in ("x edge: speed-up over edge-only", "ctrl %: ", "fallbacks: ", "return: ", "dropped: ", "dev: "):
        assert printed.count(note) == 1, note
    assert "{'" not in printed and "executor backend: model openvla/tiny" in printed
    assert f"everything is in {out.resolve()}" in printed.replace("\n", "")
    assert "learning_curve.png" in printed and "eval_executor/*.png" in printed


def test_demo_config_refuses_bad_values():
    with pytest.raises(ValueError, match="family"):
        DemoConfig(family="gpt")
    with pytest.raises(ValueError, match="timesteps"):
        DemoConfig(timesteps=10)
