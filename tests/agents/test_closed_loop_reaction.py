"""Reaction statistics of closed-loop episodes, on hand-made timelines: latency quantiles, edge-only and miss shares,
drains told from other skips by the decision time, and the first post-event chunk's arrival."""

from __future__ import annotations

import math

import pytest

from agents.closed_loop_eval import EpisodeOutcome
from agents.closed_loop_reaction import first_reaction, reaction_s, reaction_stats

EDGE_ONLY = 3


def decision(time_s, obs_index, skip, cut=1, arrival_step=-1, latency_ms=1.0):
    return {
        "time_s": time_s,
        "obs_index": obs_index,
        "skip": skip,
        "cut": cut,
        "arrival_step": arrival_step,
        "latency_ms": latency_ms,
    }


def episode(success, decisions, events=({"kind": "object", "step": 1, "detail": []},), misses=0, seed=0):
    lat = [d["latency_ms"] for d in decisions if not d["skip"]]
    timeline = {"period_s": 0.1, "steps": [], "decisions": list(decisions), "events": list(events)}
    tts = 1.0 if success else None
    n = len(decisions)
    return EpisodeOutcome(
        "p", "pick-place-v3", "aware", "on", seed, success, tts, len(lat), n, lat, misses, 0.0, timeline
    )


SLOW = [
    decision(0.0, 0, False, cut=1, arrival_step=2, latency_ms=150.0),
    decision(0.15, 1, True),  # the next observation (0.2 s) has not arrived: a skip that waits
    decision(0.25, 1, True),  # observation 2 is waiting: a drain
    decision(0.26, 2, False, cut=EDGE_ONLY, arrival_step=8, latency_ms=500.0),
]


def test_first_reaction_is_the_first_chunk_on_a_post_event_observation():
    tl = episode(False, SLOW).timeline
    assert first_reaction(tl) == (1, 8)  # observation 0 precedes the event; observation 2 is the first after it
    assert reaction_s(tl) == pytest.approx(0.7)
    assert first_reaction(episode(True, SLOW, events=()).timeline) == (None, None)
    assert math.isnan(reaction_s(episode(False, SLOW[:3]).timeline))  # no post-event chunk before the end


def test_reaction_stats_count_latency_edge_only_misses_drains_and_reactions():
    fast = [decision(0.0, 0, False, arrival_step=1, latency_ms=90.0), decision(0.2, 2, False, arrival_step=3)]
    s = reaction_stats([episode(False, SLOW, misses=1), episode(True, fast, seed=1), episode(False, SLOW[:3])], 3)
    assert s.episodes == 3 and s.success_rate == pytest.approx(1 / 3)
    assert s.inferences_per_episode == pytest.approx(5 / 3)
    assert s.latency_median_ms == pytest.approx(150.0)  # of 150, 500, 90, 1, 150
    assert s.latency_p90_ms == pytest.approx(360.0)  # numpy's linear interpolation between 150 and 500
    assert s.edge_only_share == pytest.approx(1 / 5) and s.deadline_miss_share == pytest.approx(1 / 5)
    assert s.drains_per_episode == pytest.approx(2 / 3) and s.other_skips_per_episode == pytest.approx(2 / 3)
    assert s.reaction_median_s == pytest.approx(0.45)  # 0.7 (failed) and 0.2 (succeeded)
    assert s.reaction_median_fail_s == pytest.approx(0.7) and s.never_reacted == 1
    with pytest.raises(ValueError, match="no timeline"):
        reaction_stats([EpisodeOutcome("p", "t", "aware", "on", 4, True, 1.0, 0, 0, [], 0, 0.0)], 3)
    with pytest.raises(ValueError, match="no episodes"):
        reaction_stats([], 3)
