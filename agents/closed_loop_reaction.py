"""How fast a planner's inferences reach the robot in the closed loop, from episodes recorded with their timelines
(``run_closed_loop_eval(..., keep_timelines=True)``, ``bench_closed_loop.py --timelines``).

Per group of episodes: inferences per episode, the per-inference latency (observation to actions ready, queue wait
included) median and p90, the share of inferences run edge-only and of deadline misses (each one an edge-only
fallback), skips that drained a stale observation (a newer one was already waiting) and other skips, and the reaction
to the first scene event: how long after it the first chunk computed on a post-event observation reached the robot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.closed_loop_eval import EpisodeOutcome

_EPS = 1e-9


def first_reaction(timeline: dict[str, Any]) -> tuple[int | None, int | None]:
    """(first event's control step, arrival step of the first chunk inferred on an observation after it); None
    where there was no event, or no such chunk before the episode ended."""
    ev = min((e["step"] for e in timeline.get("events", [])), default=None)
    if ev is None:
        return None, None
    for d in timeline.get("decisions", []):
        if not d["skip"] and d["obs_index"] > ev and d["arrival_step"] >= 0:
            return ev, int(d["arrival_step"])
    return ev, None


def reaction_s(timeline: dict[str, Any]) -> float:
    """Seconds from the first event to the first post-event chunk reaching the robot (NaN: none)."""
    ev, arr = first_reaction(timeline)
    return (arr - ev) * timeline["period_s"] if ev is not None and arr is not None else math.nan


@dataclass(frozen=True)
class ReactionStats:
    """The figures of the module docstring for one group of episodes."""

    episodes: int
    success_rate: float
    inferences_per_episode: float
    latency_median_ms: float
    latency_p90_ms: float
    edge_only_share: float
    deadline_miss_share: float
    drains_per_episode: float
    other_skips_per_episode: float
    reaction_median_s: float
    reaction_median_fail_s: float
    never_reacted: int


def reaction_stats(episodes: Sequence[EpisodeOutcome], edge_only_index: int) -> ReactionStats:
    """:class:`ReactionStats` of ``episodes`` (each with its timeline); ``edge_only_index``: the env's edge-only cut."""
    if not episodes:
        raise ValueError("no episodes")
    missing = [o.seed for o in episodes if not o.timeline]
    if missing:
        raise ValueError(f"episodes of seeds {missing[:5]} have no timeline; record them with keep_timelines")
    lat = np.array([x for o in episodes for x in o.inference_latency_ms], dtype=np.float64)
    n_inf = sum(o.inferences for o in episodes)
    edge = drains = skips = 0
    react_ok: list[float] = []
    react_bad: list[float] = []
    never = 0
    for o in episodes:
        tl = o.timeline or {}
        period = tl["period_s"]
        for d in tl.get("decisions", []):
            if not d["skip"]:
                edge += d["cut"] == edge_only_index
            elif d["time_s"] >= (d["obs_index"] + 1) * period - _EPS:  # the next observation had arrived
                drains += 1
            else:
                skips += 1
        r = reaction_s(tl)
        if first_reaction(tl)[0] is not None and not math.isfinite(r):
            never += 1
        elif math.isfinite(r):
            (react_ok if o.success else react_bad).append(r)
    n = len(episodes)
    return ReactionStats(
        episodes=n,
        success_rate=sum(o.success for o in episodes) / n,
        inferences_per_episode=n_inf / n,
        latency_median_ms=float(np.median(lat)) if lat.size else math.nan,
        latency_p90_ms=float(np.percentile(lat, 90)) if lat.size else math.nan,
        edge_only_share=edge / n_inf if n_inf else math.nan,
        deadline_miss_share=sum(o.deadline_misses for o in episodes) / n_inf if n_inf else math.nan,
        drains_per_episode=drains / n,
        other_skips_per_episode=skips / n,
        reaction_median_s=float(np.median(react_ok + react_bad)) if react_ok or react_bad else math.nan,
        reaction_median_fail_s=float(np.median(react_bad)) if react_bad else math.nan,
        never_reacted=never,
    )
