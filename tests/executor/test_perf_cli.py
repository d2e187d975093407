"""`ecc perf` command line: output, JSON, sweeps with plots, bad input (exit 2 naming the value)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import perf_cli


def test_breakdown_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(["--model", "pi0", "--mode", "edge-server", "--network", "5g"]) == 0
    out = capsys.readouterr().out
    assert "up:image" in out and "down:actions" in out and "5G sub-6" in out and "frequency: sync" in out
    assert perf_cli.main(["--model", "pi0", "--mode", "async", "--network", "4g", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["execution"] == "async" and d["placement"] == "edge-server"
    assert d["control_hz"] == pytest.approx(min(d["compute_hz"], d["link_hz"]))
    assert d["latency_ms"] == pytest.approx(sum(p["time_ms"] for p in d["parts"]))


def test_overrides_and_infeasible(capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(["--model", "pi0", "--steps", "20", "--json"]) == 0
    steps20 = json.loads(capsys.readouterr().out)
    assert perf_cli.main(["--model", "pi0", "--json"]) == 0
    steps10 = json.loads(capsys.readouterr().out)
    assert steps20["action_ms"] == pytest.approx(2 * steps10["action_ms"], rel=0.01)
    assert perf_cli.main(["--model", "pi0-XXL", "--device", "4090"]) == 0
    assert "INFEASIBLE: RTX 4090 needs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mode", "teleport"], "valid modes"),
        (["--device", "abacus"], "unknown hardware 'abacus'; valid"),
        (["--mode", "edge-server", "--network", "smoke"], "unknown network 'smoke'; valid"),
        (["--steps", "-2"], "steps must be an integer >= 1, got -2"),
        (["--chunk", "0"], "chunk must be an integer >= 1, got 0"),
        (
            ["--mode", "edge-server", "--up-mbps", "0", "--down-mbps", "5", "--latency-ms", "1"],
            "up_mbps must be a positive finite bandwidth, got 0.0",
        ),
        (["--model", "nope-7b"], "valid models"),
    ],
)
def test_bad_input_exits_2_with_the_value(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_sweep_writes_csv_json_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(["sweep", "chunk", "networks", "--out", str(tmp_path)]) == 0
    for stem in ("perf_chunk", "perf_networks"):
        assert (tmp_path / f"{stem}.csv").stat().st_size > 100
        rows = json.loads((tmp_path / f"{stem}.json").read_text())
        assert rows and all("control_hz" in r for r in rows)
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pi0-XXL" in out and "dual-system" in out and "B100" in out and "WiFi 7" in out


def test_accounting_and_attention_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert perf_cli.main(["--model", "pi0", "--device", "thor", "--accounting", "paper", "--json"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["accounting"] == "paper" and paper["latency_ms"] == pytest.approx(52.57, rel=0.03)  # VLA-Perf
    assert perf_cli.main(["--model", "pi0", "--device", "thor", "--attention", "materialised", "--json"]) == 0
    mat = json.loads(capsys.readouterr().out)
    assert perf_cli.main(["--model", "pi0", "--device", "thor", "--json"]) == 0
    onchip = json.loads(capsys.readouterr().out)
    assert mat["attention"] == "materialised" and onchip["attention"] == "onchip"
    assert mat["vision_ms"] > onchip["vision_ms"]  # the score matrix written and read back
