"""The profiler on a real tiny model: per-block times from hooks, bytes from the model, a loadable Profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor.models import build_model
from executor.profile import Profile
from executor.profiler import ProfilerConfig, profile_model


@pytest.mark.parametrize("family", ["openvla", "pi0"])
def test_profile_of_tiny_model(family: str, tmp_path: Path) -> None:
    model = build_model(family, "tiny")
    prof = profile_model(model, ProfilerConfig(warmup_runs=1, measured_runs=3))
    assert prof.block_names == tuple(model.block_names)
    assert all(ms > 0 for ms in prof.block_ms), prof.block_ms
    # Hooks time only what runs inside the blocks: never more than the whole forward.
    assert prof.total_ms <= prof.notes["forward_ms_median"] * 1.05
    assert prof.cuts == tuple(model.cut_specs("float32"))
    assert sum(prof.block_param_bytes) == 4 * sum(s.param_count for s in model.block_specs())
    assert prof.peak_memory_bytes > 0
    assert Profile.load(prof.save(tmp_path / "p.json"), expect_model=family) == prof


def test_profiler_refuses_meta_model_and_bad_config() -> None:
    with pytest.raises(ValueError, match="meta device"):
        profile_model(build_model("pi0", "full"))
    with pytest.raises(ValueError, match="measured_runs must be >= 1"):
        ProfilerConfig(measured_runs=0)


@pytest.mark.slow  # heavy: three `ecc profile` processes build pi0 full, ~65 s on 2 cores
def test_profile_cli_roofline_writes_profile_and_rejects_unknown_names(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "ecc"
    out = tmp_path / "pi0_a100.json"
    ok = subprocess.run(
        [
            str(exe),
            "profile",
            "--model",
            "pi0",
            "--preset",
            "full",
            "--hardware",
            "a100",
            "--dtype",
            "bfloat16",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    prof = Profile.load(out, expect_model="pi0", expect_preset="full")
    assert prof.source == "roofline" and prof.num_blocks == 49
    bad = subprocess.run([str(exe), "profile", "--model", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "valid families: openvla, pi0" in bad.stderr
    bad_hw = subprocess.run(
        [str(exe), "profile", "--model", "pi0", "--preset", "full", "--hardware", "tpu9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_hw.returncode == 2 and "a100" in bad_hw.stderr.lower()


def test_profile_cli_prices_cuts_under_the_default_wire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ecc profile` writes cuts priced as every other command prices them: the default wire (jpeg:90 frames, fp16
    activations, codec time of the device's role) unless --wire says otherwise; a bad --wire is exit 2."""
    from executor import profile_cli
    from executor.wire_config import DEFAULT_WIRE, EXACT_WIRE, WireConfig, codec_ms, profile_wire, wire_cut_specs

    meta = build_model("openvla", "tiny", device="meta")
    runs = {}
    for name, hw, wire in (
        ("orin", "orin", []),
        ("a100", "a100", []),
        ("exact", "orin", ["--wire", "exact"]),
        ("int8", "orin", ["--wire-dtype", "int8"]),
    ):
        out = tmp_path / f"{name}.json"
        assert (
            profile_cli.main(["--model", "openvla", "--preset", "tiny", "--hardware", hw, *wire, "-o", str(out)]) == 0
        )
        runs[name] = Profile.load(out, expect_model="openvla", expect_preset="tiny")
    orin, a100, exact = runs["orin"], runs["a100"], runs["exact"]
    assert profile_wire(orin) == DEFAULT_WIRE and profile_wire(exact) == EXACT_WIRE
    assert orin.cuts == tuple(wire_cut_specs(meta, DEFAULT_WIRE)) and exact.cuts == tuple(
        wire_cut_specs(meta, EXACT_WIRE)
    )
    assert orin.cuts[0].up_bytes < 0.5 * exact.cuts[0].up_bytes  # JPEG frames, not raw pixels
    assert orin.codec_ms == codec_ms(meta, DEFAULT_WIRE, "orin", "edge") and orin.codec_ms[0] > 0
    assert a100.codec_ms == codec_ms(meta, DEFAULT_WIRE, "a100", "cloud")  # a datacenter device decodes
    assert not any(exact.codec_ms)
    assert profile_wire(runs["int8"]) == WireConfig("jpeg:90", "int8")  # --wire-dtype replaces the dtype only
    assert "wire jpeg:90,fp16" in capsys.readouterr().out
    measured = tmp_path / "cpu.json"
    assert (
        profile_cli.main(
            ["--model", "openvla", "--preset", "tiny", "--warmup", "0", "--runs", "1", "-o", str(measured)]
        )
        == 0
    )
    prof = Profile.load(measured, expect_model="openvla")
    assert profile_wire(prof) == DEFAULT_WIRE and "measured on this CPU" in prof.notes["codec_time"]
    assert prof.cuts == orin.cuts
    assert profile_cli.main(["--model", "openvla", "--preset", "tiny", "--hardware", "orin", "--wire", "jpeg:90"]) == 2
    assert "bad wire configuration" in capsys.readouterr().err
