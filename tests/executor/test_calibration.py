"""Calibration on the real executor (issue 21 item 6): a local server and client through the relay, every cut."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from executor.calibration import (  # noqa: E402
    CalibrationConfig,
    Overheads,
    measure_overheads,
    overheads_without,
    serialisation_ms_per_mb,
)
from executor.costs import cut_table, executor_overhead_ms  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profiler import ProfilerConfig, profile_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    model = build_model("openvla", "tiny", seed=0)
    return model, profile_model(model, ProfilerConfig(warmup_runs=1, measured_runs=3))


@pytest.fixture(scope="module")
def calibrated_tiny(tiny):
    """One calibration (no link delay, so no sleeps: fast) against the measured Profile on the edge and an emulated
    device's Profile on the cloud (its blocks are not this machine's to scale)."""
    model, p = tiny
    other = replace(p, device="a100~emulated")
    overheads = measure_overheads(model, p, other, CalibrationConfig(runs=2, warmup_runs=1, one_way_ms=0.0))
    return model, p, other, overheads


def test_calibration_measures_positive_overheads_on_the_real_executor(calibrated_tiny):
    model, p, other, overheads = calibrated_tiny
    edge, cloud = overheads.apply(p, other)
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
    # the calibrated pair prices the edge-only cut at its scaled blocks plus exactly its per-call overhead
    cal = cut_table(edge, cloud)
    np.testing.assert_allclose(
        cal.edge_ms[edge_only], p.total_ms * edge.block_ms_scale[edge_only] + edge.overhead_ms[edge_only]
    )


def test_calibration_measures_the_message_bytes_beyond_the_payload(calibrated_tiny):
    """Every message carries a wire header and an envelope (and websocket framing) beyond its payload: a few hundred
    bytes each way at every network cut, none at edge-only; the same on both Profiles; charged once per message."""
    model, p, other, overheads = calibrated_tiny
    edge, cloud = overheads.apply(p, other)
    edge_only = p.num_blocks
    net = np.array([c.uses_network for c in p.cuts])
    for extra in (edge.overhead_up_bytes, edge.overhead_down_bytes):
        assert len(extra) == p.num_cuts and extra[edge_only] == 0.0
        assert all(50.0 < x < 2000.0 for x in np.asarray(extra)[net])  # measured, not a guess: see the bounds
    assert (cloud.overhead_up_bytes, cloud.overhead_down_bytes) == (edge.overhead_up_bytes, edge.overhead_down_bytes)
    bare, cal = cut_table(p, other), cut_table(edge, cloud)
    np.testing.assert_allclose(cal.up_bytes - bare.up_bytes, edge.overhead_up_bytes)
    np.testing.assert_allclose(cal.down_bytes - bare.down_bytes, edge.overhead_down_bytes)
    multi = bare.round_trips > 0
    np.testing.assert_allclose(
        (cal.round_trip_up_bytes - bare.round_trip_up_bytes)[multi], np.asarray(edge.overhead_up_bytes)[multi]
    )
    np.testing.assert_allclose((cal.round_trip_up_bytes - bare.round_trip_up_bytes)[~multi], 0.0)


def test_priced_bytes_are_the_bytes_the_executor_sends(calibrated_tiny):
    """Payload + calibrated message bytes = the message a real call with a deadline (as the runtime and the executor
    backend call) sends and receives (the relay also counted the websocket frame header, a few bytes), at a
    cloud-only and a split cut, on another observation than calibrated."""
    from executor.client import ClientConfig, EdgeClient
    from executor.server import CloudServer, ServerConfig

    model, p, other, overheads = calibrated_tiny
    table = cut_table(*overheads.apply(p, other))
    server = CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0, ping_interval_s=None)).start()
    client = EdgeClient(model, server.url, ClientConfig(wire="exact", ping_interval_s=None, probe_interval_s=None))
    try:
        client.connect()
        for cut in (0, 3):
            t = client.infer(model.make_observation(seed=99), cut, deadline=time.perf_counter() + 10.0).timing
            assert 0 <= table.up_bytes[cut] - t.bytes_up <= 16, (cut, table.up_bytes[cut], t.bytes_up)
            assert 0 <= table.down_bytes[cut] - t.bytes_down <= 16, (cut, table.down_bytes[cut], t.bytes_down)
    finally:
        client.close()
        server.stop()


def test_block_scale_is_measured_for_this_machines_profile_only(calibrated_tiny):
    model, p, other, overheads = calibrated_tiny
    edge, cloud = overheads.apply(p, other)
    scale = np.asarray(overheads.edge_block_scale)
    assert edge.block_ms_scale == overheads.edge_block_scale and len(scale) == p.num_cuts
    assert np.all((scale >= 0.1) & (scale <= 100.0))
    assert scale[0] == 1.0  # the edge runs no block at cloud-only: nothing to scale
    net = np.array([c.uses_network for c in p.cuts])
    assert len(set(scale[1:][net[1:]])) == 1  # one pooled factor wherever the edge runs blocks before the network
    assert scale[~net][0] > 0  # the edge-only cut has its own (warm, local) ratio
    assert overheads.cloud_block_scale == cloud.block_ms_scale == ()  # "a100~emulated" is not this machine
    bare, cal = cut_table(p, other), cut_table(edge, cloud)
    # the scale multiplies the edge's blocks once per cut; the cloud side changes by its per-call overhead only
    edge_blocks = np.array([sum(p.block_ms[b] for b in p.edge_blocks(i)) for i in range(p.num_cuts)])
    np.testing.assert_allclose(
        cal.edge_ms - bare.edge_ms, edge_blocks * (scale - 1) + executor_overhead_ms(edge, edge_side=True)
    )
    np.testing.assert_allclose(
        cal.cloud_ms - bare.cloud_ms, executor_overhead_ms(cloud, edge_side=False), rtol=1e-12, atol=1e-9
    )
    without = overheads_without(edge, cloud, scale=True, message_bytes=True)
    assert without[0].block_ms_scale == () and without[0].overhead_up_bytes == () == without[1].overhead_down_bytes
    assert without[0].overhead_ms == edge.overhead_ms  # the per-call overheads stay


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


def test_block_scale_pools_the_network_cuts_and_keeps_the_local_cuts_own_ratio():
    from executor.calibration import _scale

    called = np.array([0.0, 30.0, 40.0, 15.0])  # ratios 1.5, 2.0 at the network cuts, 1.5 edge-only
    profiled = np.array([0.0, 20.0, 20.0, 10.0])
    network = np.array([True, True, True, False])
    assert _scale(called, profiled, network) == (1.0, 1.75, 1.75, 1.5)
    assert _scale(called, profiled, np.array([True, True, True, True])) == (
        1.0,
        1.5,
        1.5,
        1.5,
    )  # median of 1.5, 2.0, 1.5
