"""Calibration on the real executor (issue 21 item 6): a local server and client through the relay, every cut."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from executor.calibration import CalibrationConfig, Overheads, calibrated, serialisation_ms_per_mb  # noqa: E402
from executor.costs import cut_table  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profiler import ProfilerConfig, profile_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    model = build_model("openvla", "tiny", seed=0)
    return model, profile_model(model, ProfilerConfig(warmup_runs=1, measured_runs=3))


def test_calibration_measures_positive_overheads_on_the_real_executor(tiny):
    model, p = tiny
    edge, cloud = calibrated(model, p, p, CalibrationConfig(runs=2, warmup_runs=1, one_way_ms=0.0))  # no sleeps: fast
    n, edge_only = p.num_cuts, p.num_blocks
    assert len(edge.overhead_ms) == len(cloud.overhead_ms) == n
    assert all(0.0 <= x < 1000.0 for x in edge.overhead_ms + cloud.overhead_ms)
    # the edge-only call runs the model's glue outside the hooked blocks; a cloud-only call crosses the client, the
    # relay, the server's decode/encode and both event loops: both cost time the blocks do not show
    assert edge.overhead_ms[edge_only] > 0.0
    assert cloud.overhead_ms[0] > 0.0
    assert cloud.overhead_ms[edge_only] == 0.0  # the cloud takes no part in an edge-only inference
    assert edge.overhead_ms_per_mb == cloud.overhead_ms_per_mb > 0.0
    assert "calibrated on the real executor" in edge.notes["overheads"]
    # the calibrated pair prices every cut at least as long as the bare one, by exactly the overheads
    bare, cal = cut_table(p, p), cut_table(edge, cloud)
    assert np.all(cal.edge_ms + cal.cloud_ms >= bare.edge_ms + bare.cloud_ms)
    np.testing.assert_allclose(cal.edge_ms[edge_only] - bare.edge_ms[edge_only], edge.overhead_ms[edge_only])


def test_serialisation_cost_per_mb_is_positive_and_finite():
    per_mb = serialisation_ms_per_mb(nbytes=1_000_000, repeats=3)
    assert 0.0 < per_mb < 1000.0


def test_overheads_refuse_profiles_of_another_cut_count(tiny):
    _, p = tiny
    with pytest.raises(ValueError, match="do not fit Profiles"):
        Overheads(edge_ms=(0.0,), cloud_ms=(0.0,), ms_per_mb=0.0).apply(p, p)
    with pytest.raises(ValueError, match="runs must be >= 1"):
        CalibrationConfig(runs=0)
    with pytest.raises(ValueError, match="call_timeout_s"):
        CalibrationConfig(call_timeout_s=0.0)
    with pytest.raises(ValueError, match="link_mbps"):
        CalibrationConfig(link_mbps=0.0)
    with pytest.raises(ValueError, match="one_way_ms"):
        CalibrationConfig(one_way_ms=float("nan"))


@pytest.mark.slow  # a model build, a profile and a full calibration (5 calls per cut through a delayed link), ~6 s
def test_ecc_profile_calibrate_stores_this_sides_overheads(tmp_path, capsys):
    from executor.profile import Profile
    from executor.profile_cli import main

    out = tmp_path / "edge.json"
    assert (
        main(
            [
                "--model",
                "openvla",
                "--preset",
                "tiny",
                "--warmup",
                "0",
                "--runs",
                "1",
                "--threads",
                "1",
                "--calibrate",
                "edge",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    prof = Profile.load(out, expect_model="openvla", expect_preset="tiny")
    assert len(prof.overhead_ms) == prof.num_cuts and prof.overhead_ms[prof.num_blocks] > 0  # edge-only glue
    assert prof.overhead_ms_per_mb > 0 and "executor overheads per cut" in capsys.readouterr().out
    assert main(["--model", "openvla", "--preset", "tiny", "--hardware", "orin", "--calibrate", "edge"]) == 2
    assert "does not apply to a --hardware" in capsys.readouterr().err
