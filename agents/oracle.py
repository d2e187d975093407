"""The hindsight Oracle: the best decision sequence for one episode, knowing the future bandwidth and the reference
actions, found by dynamic programming over the env's own dynamics.

The search steps copies of the episode's state through ``EdgeCloudSplitEnv.step`` itself (the env's latency
function, deadline rule, queue, drop and deviation accounting), so the Oracle is exactly consistent with the env: a
plan is a list of actions that, replayed from the same ``reset``, gives the same return. Objective: the episode's
return (sum of env rewards: latency in periods, deadline misses, deviation, drops).

States are merged when everything the future depends on is equal: next observation index, decision time, which
observation produced the held chunk and the actions left in it (bandwidth measurements and the previous action only
change what a planner would observe, not the dynamics). With ``cut_candidates=None`` and ``beam=None`` the search is
exhaustive over all actions: the exact optimum. For long episodes ``cut_candidates=M`` keeps, per state, the skip and
the M inference cuts with the earliest completion (cuts with equal completion and miss are equivalent), and
``beam=B`` keeps the B best states per observation index; ``OraclePlan.exact`` says whether anything was pruned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.planner import action

log = logging.getLogger(__name__)


def _key(env: Any) -> tuple:
    held = env._held is not None
    return (env._idx, round(env._t_dec * 1e9), env._chunk_idx if held else -1, env._actions_left)


@dataclass(frozen=True)
class OraclePlan:
    """The best action sequence found for one episode and its return."""

    actions: tuple[tuple[int, int], ...]
    episode_return: float
    exact: bool
    states_expanded: int


@dataclass
class _Node:
    ret: float
    snap: dict[str, Any]
    parent: _Node | None
    act: tuple[int, int] | None


def plan_episode(
    env: Any,
    *,
    cut_candidates: int | None = 2,
    beam: int | None = 32,
    max_states: int = 2_000_000,
    allow_skip: bool = True,
) -> OraclePlan:
    """Search the best action sequence from the env's current state (call right after ``reset``). The env is left
    in that starting state. ``allow_skip=False`` searches over cuts only (the no-skip optimum)."""
    e = env.unwrapped
    if getattr(e, "link", None) is None:
        raise RuntimeError("call env.reset() before planning")
    if not (hasattr(e, "get_state") and hasattr(e, "set_state")):
        raise RuntimeError(f"env {type(e).__name__} has no get_state/set_state; the Oracle cannot copy its state")
    if cut_candidates is not None and cut_candidates < 1:
        raise ValueError(f"cut_candidates must be >= 1 or None, got {cut_candidates!r}")
    if beam is not None and beam < 1:
        raise ValueError(f"beam must be >= 1 or None, got {beam!r}")
    root = e.get_state()
    allowed = [int(k) for k in np.flatnonzero(e.cut_fits)]
    period_ms = e.config.period_ms
    miss_pen = e.config.reward.deadline_miss_penalty
    buckets: dict[int, dict[tuple, _Node]] = {e._idx: {_key(e): _Node(0.0, root, None, None)}}
    best: _Node | None = None
    exact = True
    expanded = 0
    try:
        while buckets:
            idx = min(buckets)
            nodes = list(buckets.pop(idx).values())
            if beam is not None and len(nodes) > beam:
                nodes.sort(key=lambda n: -n.ret)
                nodes = nodes[:beam]
                exact = False
            for node in nodes:
                expanded += 1
                if expanded > max_states:
                    raise RuntimeError(f"oracle search exceeded {max_states} states; use a beam or fewer cuts")
                e.set_state(node.snap)
                for a in _candidates(e, allowed, cut_candidates, period_ms, miss_pen, allow_skip):
                    if cut_candidates is not None and len(allowed) > cut_candidates:
                        exact = False
                    e.set_state(node.snap)
                    _, r, term, trunc, _ = e.step(a)
                    child = _Node(node.ret + r, None, node, a)  # type: ignore[arg-type]
                    if term or trunc:
                        if best is None or child.ret > best.ret:
                            best = child
                        continue
                    k = _key(e)
                    bucket = buckets.setdefault(e._idx, {})
                    old = bucket.get(k)
                    if old is None or child.ret > old.ret:
                        child.snap = e.get_state()
                        bucket[k] = child
    finally:
        e.set_state(root)
    if best is None:
        raise RuntimeError("oracle search found no complete episode")
    acts: list[tuple[int, int]] = []
    n: _Node | None = best
    while n is not None and n.act is not None:
        acts.append(n.act)
        n = n.parent
    return OraclePlan(tuple(reversed(acts)), best.ret, exact, expanded)


def _candidates(
    e: Any, allowed: list[int], m: int | None, period_ms: float, miss_pen: float, allow_skip: bool = True
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    if allow_skip and e._actions_left > 0:
        out.append((int(e._prev[0]), 1))
    if m is None or len(allowed) <= m:
        return out + [(k, 0) for k in allowed]
    scored = []
    for k in allowed:
        timing, _ = e.backend.infer(k, e._t_dec)
        scored.append(
            (timing.service_ms + (miss_pen * period_ms if timing.deadline_miss else 0.0), bool(timing.deadline_miss), k)
        )
    scored.sort()
    seen: set[tuple[float, bool]] = set()
    for cost, miss, k in scored:
        sig = (round(cost, 9), miss)
        if sig in seen:
            continue
        seen.add(sig)
        out.append((k, 0))
        if len(seen) >= m:
            break
    return out


class Oracle:
    """Planner facade: ``plan_episode(env)`` after each reset, then ``predict`` returns the plan step by step."""

    skips = True

    def __init__(self, cut_candidates: int | None = 2, beam: int | None = 32, allow_skip: bool = True) -> None:
        self.cut_candidates = cut_candidates
        self.beam = beam
        self.allow_skip = allow_skip
        self.plan: OraclePlan | None = None
        self._i = 0

    def plan_episode(self, env: Any) -> OraclePlan:
        self.plan = plan_episode(env, cut_candidates=self.cut_candidates, beam=self.beam, allow_skip=self.allow_skip)
        self._i = 0
        return self.plan

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        if self.plan is None:
            raise RuntimeError("Oracle.predict needs plan_episode(env) after each reset")
        if self._i >= len(self.plan.actions):
            raise RuntimeError(f"the Oracle's plan has {len(self.plan.actions)} steps; the episode asked for more")
        k, s = self.plan.actions[self._i]
        self._i += 1
        return action(k, bool(s)), state
