"""benchmarks/bench_agents.py (the README's open-loop figures): it evaluates on exactly the test side that
``train.py --traces DIR`` never trains or validates on (the side ``ecc eval --split test`` uses), under the default
wire configuration and each family's RTT, and reports them beside the return, latency and action deviation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from traces import synthetic
from traces.traceset import TraceSet
from traces.writers import write_text

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_agents.py"


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("_bench_agents", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory) -> Path:
    # 20 fast links (300-600 Mbit/s) of a family in the RTT table (Lumos 4G: 50 ms), no RTT of their own
    root = tmp_path_factory.mktemp("t") / "traces"
    folder = root / "lumos5g_mmwave" / "4G"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        write_text(synthetic.step(rng.uniform(300.0, 600.0, 40), 1.0, name=f"t{i:02d}"), folder / f"t{i:02d}.txt")
    return root


def _run(trace_dir: Path, tmp_path: Path) -> dict:
    out = tmp_path / "bench.json"
    rc = _bench().main(
        [
            "--runs",
            str(tmp_path / "no-runs"),
            "--traces",
            str(trace_dir),
            "--combos",
            "pi0:orin",
            "--episodes",
            "1",
            "--episode-s",
            "3",
            "--beam",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return json.loads(out.read_text())["pi0:orin"]


@pytest.mark.slow  # builds the full pi0 Profiles on the meta device (about 10 s idle)
def test_bench_agents_default_wire_family_rtt_and_trainings_test_side(trace_dir, tmp_path, capsys) -> None:
    res = _run(trace_dir, tmp_path)
    text = capsys.readouterr().out
    assert "wire jpeg:90,fp16; family RTT" in text and "lumos5g_mmwave/4G 50" in text
    assert "(no PPO policy for pi0:orin" in text
    assert res["wire"]["label"] == "jpeg:90,fp16" and res["rtt_rule"]["rtt_ms"] == -1.0
    assert set(res["rtt_rule"]["mean_rtt_ms_by_family"].values()) == {50.0}
    assert set(res["test_traces"]) == set(TraceSet.load(trace_dir).split(0).test.names)  # train.py's test side
    p = res["planners"]
    assert {"heuristic", "roboecc", "static", "edge", "cloud", "oracle", "oracle (no skip)"} <= set(p)
    for s in p.values():  # the return is reported beside latency, deviation and skip rate
        assert {"mean_return", "mean_latency_ms", "mean_deviation", "skip_rate"} <= set(s)
    assert p["edge"]["mean_deviation"] == 0.0 and p["edge"]["skip_rate"] == 0.0
    assert p["oracle"]["mean_return"] >= p["oracle (no skip)"]["mean_return"]
    # the RTT is charged: a cloud-only step takes at least the family's 50 ms round trip
    assert p["cloud"]["mean_latency_ms"] > 50.0
