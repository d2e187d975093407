"""The hindsight reaction planner: each new observation's information reaches the robot as early as the link allows.

A reference, not a deployable planner: like the open-loop Oracle (``agents.oracle``) it reads the env's future (the
episode's trace segment, through the env's own latency function). Its rule, at each decision:

1. **drain**: a newer observation than the current one is already waiting in the edge queue and a skip is allowed
   (``actions_left > 0``): skip (1 ms), so that the next inference is made on a fresher observation;
2. **wait**: otherwise, when skipping for up to ``lookahead_periods`` periods and inferring on that later
   observation would deliver its chunk to the robot at the same control step or earlier (``arrival_step`` of the
   completion), skip now: a fresher chunk no later;
3. **infer** at the cut whose completion is earliest (the deadline, its edge-only fallback, the breaker and the
   server queue included: :func:`cut_completions` asks the env's latency backend, which prices a step without side
   effects); ties go to no deadline miss, then the lower cut index.

It is not a proven optimum of success (a skip now can pay later, and the fastest chunk is not always the best one),
but the fastest reaction this link permits with fresh observations: if it cannot reach a success rate on a
(model, link, task) cell, no planner choosing cuts and skips on that env is likely to (docs/closed_loop.md).

It needs the ``profile`` backend: the ``executor`` backend measures every inference by running it, so its future
cannot be looked at; the planner refuses such an env at construction, naming the backend.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.planner import action

log = logging.getLogger(__name__)

REASONS = ("drain", "wait", "infer")


@dataclass(frozen=True)
class CutCompletion:
    """One cut priced from a decision time: when its actions are ready (``completion_s``, trace time; ``inf`` when a
    miss leaves no chunk because edge-only does not fit), whether it misses the deadline, and the cut that would
    actually run (the edge-only cut while the env's circuit breaker holds a network cut)."""

    cut: int
    completion_s: float
    deadline_miss: bool
    runs_cut: int


def _readable_env(env: Any) -> Any:
    """The unwrapped env if its future can be priced without side effects, else an error naming the problem."""
    from ecc_env.backends import ProfileBackend
    from ecc_env.split_env import EdgeCloudSplitEnv

    e = getattr(env, "unwrapped", env)
    if not isinstance(e, EdgeCloudSplitEnv):
        raise TypeError(f"the hindsight planner looks into an EdgeCloudSplitEnv; got {type(e).__name__}")
    if not isinstance(e.backend, ProfileBackend):
        raise ValueError(
            f"the hindsight planner needs the 'profile' latency backend (a pure price of any cut at any time); this "
            f"env's backend is {getattr(e.backend, 'name', type(e.backend).__name__)!r}, which measures each "
            "inference by running it, so its future cannot be looked at"
        )
    return e


def cut_completions(env: Any, start_s: float | None = None) -> list[CutCompletion]:
    """Every allowed cut (``env.cut_fits``) priced for an inference starting at ``start_s`` (default: the env's
    current decision time), as ``EdgeCloudSplitEnv.step`` prices it; the env is left unchanged."""
    e = _readable_env(env)
    if e.link is None:
        raise RuntimeError("call env.reset() before pricing cuts")
    t = float(e._t_dec if start_s is None else start_s)
    breaker = e.breaker_would_hold(t)
    out = []
    for k in (int(i) for i in np.flatnonzero(e.cut_fits)):
        runs = int(e.edge_only_index) if breaker and e.rows[k].uses_network else k
        timing, _ = e.backend.infer(runs, t)
        done = t + timing.service_ms * 1e-3
        if timing.fallback and e.fallback_holds:
            done = math.inf  # the miss holds the last action: no chunk at all
        out.append(CutCompletion(k, done, bool(timing.deadline_miss), runs))
    return out


def fastest_cut(completions: list[CutCompletion]) -> CutCompletion:
    """The earliest completion; ties: no deadline miss, then the lower cut index."""
    if not completions:
        raise ValueError("no cuts to choose from")
    return min(completions, key=lambda c: (c.completion_s, c.deadline_miss, c.cut))


def chunk_step(completion_s: float, obs_index: int, period_s: float) -> float:
    """The control step a chunk complete at ``completion_s`` first drives (``closed_loop.arrival_step``, never
    before its observation); ``inf`` for no chunk."""
    from ecc_env.closed_loop import arrival_step

    if not math.isfinite(completion_s):
        return math.inf
    return float(max(arrival_step(completion_s, period_s), obs_index))


class HindsightPlanner:
    """Planner facade over the rule of the module docstring; reads the env it was built for at every ``predict``.

    ``lookahead_periods``: how many periods of waiting the wait rule considers (0: never wait; skips then only drain
    the queue). ``reasons`` counts the rule that decided each step (drain / wait / infer)."""

    skips = True

    def __init__(self, env: Any, lookahead_periods: int = 1) -> None:
        if isinstance(lookahead_periods, bool) or int(lookahead_periods) != lookahead_periods or lookahead_periods < 0:
            raise ValueError(f"lookahead_periods must be an integer >= 0, got {lookahead_periods!r}")
        self.env = _readable_env(env)
        self.lookahead_periods = int(lookahead_periods)
        self.reasons: Counter[str] = Counter()

    def decide(self) -> tuple[int, bool, str]:
        """(cut, skip, reason) for the env's current decision; the env is left unchanged."""
        e = self.env
        if e.link is None:
            raise RuntimeError("the hindsight planner's env was not reset")
        can_skip = e._actions_left > 0
        if can_skip and e._waiting > 0:
            return int(e._prev[0]), True, "drain"
        period = e.period_s
        now = fastest_cut(cut_completions(e))
        if can_skip and self._later_is_no_later(chunk_step(now.completion_s, e._idx, period)):
            return int(e._prev[0]), True, "wait"
        return now.cut, False, "infer"

    def _later_is_no_later(self, arrival_now: float) -> bool:
        """Whether inferring on one of the next ``lookahead_periods`` observations (skipping until then, as the env
        moves on after a skip: the next observation, at its arrival or after the skip's own time) delivers a chunk
        at ``arrival_now`` or earlier."""
        e = self.env
        t, idx = e._t_dec, e._idx
        skip_s = e.config.skip_ms * 1e-3
        for _ in range(min(self.lookahead_periods, e._actions_left)):
            idx += 1
            if idx >= e._n:
                return False
            t = max(t + skip_s, idx * e.period_s)
            later = fastest_cut(cut_completions(e, t))
            if chunk_step(later.completion_s, idx, e.period_s) <= arrival_now:
                return True
        return False

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        k, skip, reason = self.decide()
        self.reasons[reason] += 1
        return action(k, skip), state
