"""The calibrated overheads of a Profile (issue 21 item 6): validation, JSON round trip, and their charge per cut."""

from __future__ import annotations

import json

import numpy as np
import pytest

from executor.costs import cut_table, cut_wire_bytes, executor_overhead_ms
from executor.profile import CutSpec, Profile, ProfileError

CUTS = (
    CutSpec(k=0, up_bytes=150_000, down_bytes=56),
    CutSpec(k=1, up_bytes=25_000, down_bytes=56, round_trips=2, round_trip_up_bytes=1000, round_trip_down_bytes=8),
    CutSpec(k=2),
    CutSpec(k=1, placement="cloud_then_edge", up_bytes=150_000, down_bytes=25_000),
)


def profile(device: str, block_ms=(30.0, 10.0), **kw) -> Profile:
    return Profile(
        model_id="toy",
        preset="tiny",
        device=device,
        dtype="float32",
        source="measured",
        block_names=("vision", "head"),
        block_ms=block_ms,
        cuts=CUTS,
        **kw,
    )


def test_overheads_round_trip_through_json_and_old_files_still_load(tmp_path) -> None:
    p = profile("orin", overhead_ms=(1.5, 2.0, 0.25, 3.0), overhead_ms_per_mb=0.04)
    loaded = Profile.load(p.save(tmp_path / "p.json"))
    assert loaded == p
    assert loaded.overhead_ms == (1.5, 2.0, 0.25, 3.0) and loaded.overhead_ms_per_mb == 0.04
    old = profile("orin").to_dict()  # a file written before the fields existed
    del old["overhead_ms"], old["overhead_ms_per_mb"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = Profile.load(tmp_path / "old.json")
    assert legacy.overhead_ms == () and legacy.overhead_ms_per_mb == 0.0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"overhead_ms": (1.0, 2.0)}, r"overhead_ms needs one finite value .* per cut \(4\)"),
        ({"overhead_ms": (1.0, -2.0, 0.0, 0.0)}, "overhead_ms needs one finite value"),
        ({"overhead_ms": (1.0, float("nan"), 0.0, 0.0)}, "overhead_ms needs one finite value"),
        ({"overhead_ms_per_mb": -0.1}, "overhead_ms_per_mb must be finite"),
        ({"overhead_ms_per_mb": float("inf")}, "overhead_ms_per_mb must be finite"),
    ],
)
def test_bad_overheads_name_the_field(kw, match) -> None:
    with pytest.raises(ProfileError, match=match):
        profile("orin", **kw)


def test_a_profile_file_with_a_non_numeric_overhead_is_a_profile_error(tmp_path) -> None:
    d = profile("orin").to_dict()
    d["overhead_ms_per_mb"] = "fast"
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="bad.json"):
        Profile.load(tmp_path / "bad.json")


def test_cut_table_charges_the_overheads_by_hand() -> None:
    """Edge: its per-call overhead at every cut; cloud: at network cuts only; both: ms/MB x the bytes moved."""
    bare_e, bare_c = profile("orin"), profile("a100", block_ms=(3.0, 1.0))
    e = profile("orin", overhead_ms=(1.0, 2.0, 4.0, 8.0), overhead_ms_per_mb=0.5)
    c = profile("a100", block_ms=(3.0, 1.0), overhead_ms=(0.1, 0.2, 0.4, 0.8), overhead_ms_per_mb=2.0)
    mb = np.array([150_056, 25_056 + 2 * 1008, 0, 175_000]) / 1e6
    np.testing.assert_allclose(cut_wire_bytes(e), mb * 1e6)
    t0, t = cut_table(bare_e, bare_c), cut_table(e, c)
    np.testing.assert_allclose(t.edge_ms - t0.edge_ms, [1.0 + 0.5 * mb[0], 2.0 + 0.5 * mb[1], 4.0, 8.0 + 0.5 * mb[3]])
    np.testing.assert_allclose(t.cloud_ms - t0.cloud_ms, [0.1 + 2 * mb[0], 0.2 + 2 * mb[1], 0.0, 0.8 + 2 * mb[3]])
    np.testing.assert_allclose(executor_overhead_ms(bare_e, edge_side=True), 0.0)  # uncalibrated: no charge


def test_message_bytes_and_block_scale_round_trip_and_old_files_load_without_them(tmp_path) -> None:
    p = profile(
        "orin",
        block_ms_scale=(1.0, 1.25, 1.5, 2.0),
        overhead_up_bytes=(300.0, 250.0, 0.0, 310.0),
        overhead_down_bytes=(320.0,) * 4,
    )
    loaded = Profile.load(p.save(tmp_path / "p.json"))
    assert loaded == p and loaded.block_ms_scale[1] == 1.25 and loaded.overhead_up_bytes[0] == 300.0
    old = profile("orin").to_dict()
    for key in ("block_ms_scale", "overhead_up_bytes", "overhead_down_bytes"):
        del old[key]
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = Profile.load(tmp_path / "old.json")
    assert (legacy.block_ms_scale, legacy.overhead_up_bytes, legacy.overhead_down_bytes) == ((), (), ())
    # a legacy pair prices exactly as before the fields existed
    t_old, t_new = cut_table(legacy, legacy), cut_table(profile("orin"), profile("orin"))
    np.testing.assert_array_equal(t_old.edge_ms, t_new.edge_ms)
    np.testing.assert_array_equal(t_old.up_bytes, [c.up_bytes for c in CUTS])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"block_ms_scale": (1.0, 0.0, 1.0, 1.0)}, r"block_ms_scale needs one finite value in \[0.1, 100\] per cut"),
        ({"block_ms_scale": (1.0, float("nan"), 1.0, 1.0)}, "block_ms_scale needs one finite value"),
        ({"block_ms_scale": (1.0,)}, r"block_ms_scale needs .* per cut \(4\)"),
        ({"overhead_up_bytes": (1.0, 2.0)}, r"overhead_up_bytes needs one finite value >= 0 per cut \(4\)"),
        ({"overhead_down_bytes": (1.0, -2.0, 0.0, 0.0)}, "overhead_down_bytes needs one finite value"),
    ],
)
def test_bad_message_bytes_or_block_scale_name_the_field(kw, match) -> None:
    with pytest.raises(ProfileError, match=match):
        profile("orin", **kw)


def test_cut_table_charges_message_bytes_per_message_and_the_block_scale_per_side_once() -> None:
    """Message bytes: added to every message of a network cut (first exchange and each round trip), taken from the
    edge Profile (they are the wire's, not a device's); the block scale of each cut multiplies that side's own blocks
    at that cut only."""
    up, down = (300.0, 250.0, 999.0, 310.0), (320.0, 330.0, 999.0, 340.0)
    e = profile("orin", block_ms_scale=(9.0, 1.5, 1.25, 2.0), overhead_up_bytes=up, overhead_down_bytes=down)
    c = profile("a100", block_ms=(3.0, 1.0), block_ms_scale=(2.0, 3.0, 9.0, 4.0))
    t0, t = cut_table(profile("orin"), profile("a100", block_ms=(3.0, 1.0))), cut_table(e, c)
    np.testing.assert_allclose(t.up_bytes - t0.up_bytes, [300.0, 250.0, 0.0, 310.0])  # none at edge-only
    np.testing.assert_allclose(t.down_bytes - t0.down_bytes, [320.0, 330.0, 0.0, 340.0])
    np.testing.assert_allclose(t.round_trip_up_bytes - t0.round_trip_up_bytes, [0.0, 250.0, 0.0, 0.0])
    np.testing.assert_allclose(t.round_trip_down_bytes - t0.round_trip_down_bytes, [0.0, 330.0, 0.0, 0.0])
    # edge blocks per cut: [], [vision], [vision, head], [head]; cloud: the rest
    np.testing.assert_allclose(t.edge_ms, [0.0, 30.0 * 1.5, 40.0 * 1.25, 10.0 * 2.0])
    np.testing.assert_allclose(t.cloud_ms, [4.0 * 2.0, 1.0 * 3.0, 0.0, 3.0 * 4.0])
    # the per-MB cost stays on the payload (the envelope's serialisation is inside the per-call overheads)
    np.testing.assert_array_equal(cut_wire_bytes(e), cut_wire_bytes(profile("orin")))
    # the bytes reach the link: at 1 Mbit/s each way and no delay, cut 0 takes its payload + 620 bytes' time
    np.testing.assert_allclose(
        t.latency_ms(1.0, 1.0, 0.0)[0] - t0.latency_ms(1.0, 1.0, 0.0)[0], (300 + 320) * 8 / 1e6 * 1e3 + 8.0 - 4.0
    )
