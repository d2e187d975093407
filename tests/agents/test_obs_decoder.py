"""One observation decoder: ObsView reads through ObservationBuilder's index, with one missing-value convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.planner import ObsView
from ecc_env.observation import ObservationBuilder, ObservationConfig


@pytest.mark.parametrize("history", [3, 8, 12])
def test_obsview_is_the_builders_decoder_for_any_history(history, build_obs):
    cfg = ObservationConfig(bandwidth_history=history, num_cuts=11, chunk_size=6)
    b = ObservationBuilder(cfg)
    view = ObsView(cfg)
    assert view.size == b.size == len(b.field_names) and view.index == b.index
    o = build_obs(b)
    d, full = view.decode(o), b.decode(o)
    for key, value in full.items():
        if key.startswith("uplink"):
            continue
        assert d[key] == value, key
    # a zero-rate sample with a young age is a real measurement (an outage), not a missing slot
    mbps, ages = view.uplink(o)
    assert mbps == pytest.approx([42.0, 0.0], rel=1e-5) and ages == pytest.approx([0.25, 4.0], rel=1e-5)
    assert d["uplink_mbps"] == pytest.approx(42.0, rel=1e-5) and d["uplink_age_s"] == pytest.approx(0.25, rel=1e-5)
    assert d["actions_left"] == 5 and d["prev_cut"] == 7
    assert d["prev_skip"] is True and d["prev_deadline_miss"] is False
    # a (1, size) batch row decodes the same
    assert view.decode(o[None])["rtt_ms"] == d["rtt_ms"]
    with pytest.raises(ValueError, match="shape"):
        view.decode(o[:-1])


def test_missing_values_one_convention(build_obs):
    cfg = ObservationConfig(num_cuts=5)
    b = ObservationBuilder(cfg)
    o = build_obs(
        b, uplink_mbps=[], uplink_age_s=[], downlink_mbps=None, rtt_ms=None, action_age_s=None, actions_left=0
    )
    for d in (b.decode(o), ObsView(cfg).decode(o)):
        assert np.all(np.isnan(d["uplink_mbps"])) and np.all(np.isnan(d["uplink_age_s"]))
        assert math.isnan(d["downlink_mbps"]) and math.isnan(d["rtt_ms"])
        assert d["action_age_s"] == math.inf  # no actions yet: infinitely stale, so `age >= limit` holds
    assert ObsView(cfg).uplink(o) == ([], [])


def test_ppo_mask_reads_actions_left_through_the_index(build_obs):
    from agents.policy import PPOPlanner

    class _Space:
        nvec = np.array([5, 2])

    class _Model:
        action_space = _Space()

        class policy:  # noqa: N801 - a stand-in with a non-MLP extractor: SB3's predict path
            class features_extractor:  # noqa: N801
                pass

    cfg = ObservationConfig(bandwidth_history=5, num_cuts=5, chunk_size=4)
    b = ObservationBuilder(cfg)
    p = PPOPlanner(_Model(), np.ones(5, bool), ObsView(cfg))
    assert p.masks(build_obs(b, actions_left=0, prev_cut=1))[-1] == False  # noqa: E712
    assert p.masks(build_obs(b, actions_left=3, prev_cut=1))[-1] == True  # noqa: E712
