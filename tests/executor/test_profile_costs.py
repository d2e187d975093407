"""Profile validation and JSON round trip; per-cut costs from an (edge, cloud) Profile pair, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from executor.costs import cut_table
from executor.profile import PROFILE_SCHEMA_VERSION, CutSpec, Profile, ProfileError


def two_block_profile(device: str, block_ms: tuple[float, float]) -> Profile:
    return Profile(
        model_id="toy",
        preset="tiny",
        device=device,
        dtype="float32",
        source="measured",
        block_names=("vision", "head"),
        block_ms=block_ms,
        cuts=(
            CutSpec(k=0, up_bytes=150_000, down_bytes=56, name="raw"),
            CutSpec(
                k=1, up_bytes=25_000, down_bytes=56, round_trips=2, round_trip_up_bytes=1000, round_trip_down_bytes=8
            ),
            CutSpec(k=2, name="edge-only"),
            CutSpec(k=1, placement="cloud_then_edge", up_bytes=150_000, down_bytes=25_000),
        ),
        block_param_bytes=(4_000_000, 1_000_000),
    )


def test_profile_json_round_trip(tmp_path) -> None:
    p = two_block_profile("orin", (30.0, 10.0))
    path = p.save(tmp_path / "p.json")
    assert Profile.load(path) == p
    assert Profile.load(path, expect_model="toy", expect_preset="tiny").cuts[3].placement == "cloud_then_edge"


def test_profile_refuses_other_schema_and_other_model(tmp_path) -> None:
    d = two_block_profile("orin", (30.0, 10.0)).to_dict()
    d["schema_version"] = PROFILE_SCHEMA_VERSION + 1
    (tmp_path / "v.json").write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="schema version"):
        Profile.load(tmp_path / "v.json")
    good = two_block_profile("orin", (30.0, 10.0)).save(tmp_path / "g.json")
    with pytest.raises(ProfileError, match="for model 'toy', expected 'pi0'"):
        Profile.load(good, expect_model="pi0")
    with pytest.raises(ProfileError, match="not found"):
        Profile.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        Profile.load(tmp_path / "bad.json")


def test_profile_validation_names_the_problem() -> None:
    p = two_block_profile("orin", (30.0, 10.0))
    with pytest.raises(ProfileError, match="block_ms has 1 entries, expected 2"):
        Profile(**{**p.__dict__, "block_ms": (1.0,)})
    with pytest.raises(ProfileError, match=r"cuts\[1\] must be the forward cut k=1"):
        Profile(**{**p.__dict__, "cuts": (p.cuts[0], p.cuts[3], p.cuts[2])})
    with pytest.raises(ProfileError, match="finite"):
        Profile(**{**p.__dict__, "block_ms": (float("nan"), 1.0)})


def test_cut_table_hand_computed() -> None:
    edge = two_block_profile("orin", (30.0, 10.0))
    cloud = two_block_profile("a100", (3.0, 1.0))
    t = cut_table(edge, cloud)
    np.testing.assert_allclose(t.edge_ms, [0.0, 30.0, 40.0, 10.0])
    np.testing.assert_allclose(t.cloud_ms, [4.0, 1.0, 0.0, 3.0])
    np.testing.assert_allclose(t.edge_param_bytes, [0, 4e6, 5e6, 1e6])
    # 10 Mbit/s up, 100 Mbit/s down, 5 ms one way.
    lat = t.latency_ms(10.0, 100.0, 5.0)
    raw = 4.0 + 150_000 * 8 / 10e6 * 1e3 + 56 * 8 / 100e6 * 1e3 + 10.0
    mid = 30.0 + 1.0 + (25_000 + 2 * 1000) * 8 / 10e6 * 1e3 + (56 + 2 * 8) * 8 / 100e6 * 1e3 + 10.0 * 3
    rev = 10.0 + 3.0 + 150_000 * 8 / 10e6 * 1e3 + 25_000 * 8 / 100e6 * 1e3 + 10.0
    np.testing.assert_allclose(lat, [raw, mid, 40.0, rev])
    # Zero uplink: every networked cut is infinitely slow, edge-only is unaffected.
    zero = t.latency_ms(0.0, 100.0, 5.0)
    assert np.isinf(zero[[0, 1, 3]]).all() and zero[2] == 40.0


def test_cut_table_refuses_mismatched_profiles() -> None:
    edge = two_block_profile("orin", (30.0, 10.0))
    other = Profile(**{**edge.__dict__, "model_id": "other"})
    with pytest.raises(ProfileError, match="different block chains"):
        cut_table(edge, other)
    with pytest.raises(ValueError, match="must be >= 0"):
        cut_table(edge, edge).latency_ms(-1.0, 1.0, 1.0)
