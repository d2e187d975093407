"""GuardedPolicy: the learned policy decides, the heuristic fallback takes the step when it cannot.

Fallback reasons (counted in ``GuardedPolicy.fallbacks``):

- ``not_loaded``: the policy artifact could not be loaded (the error is kept in ``load_error``);
- ``out_of_range``: the observation has the wrong shape, a non-finite value, or a feature outside the range seen in
  training (widened by ``range_tolerance``);
- ``error``: the policy raised;
- ``over_budget``: the policy's decision took longer than ``budget_ms`` (its action is discarded).

It has SB3's ``predict`` signature, so the edge runtime (``executor.runtime.EdgeRuntime``) takes it as its planner.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agents.artifact import LoadedPolicy, PolicyExpectation, PolicyLoadError, load_policy

log = logging.getLogger(__name__)

REASONS = ("not_loaded", "out_of_range", "error", "over_budget")


class GuardedPolicy:
    """PPO with a heuristic fallback; see the module docstring."""

    skips = True

    def __init__(
        self,
        policy: LoadedPolicy | str | Path | None,
        fallback: Any,
        *,
        expect: PolicyExpectation | None = None,
        budget_ms: float = 2.0,
        range_tolerance: float = 0.05,
        clock: Any = time.perf_counter,
        trust_pickle: bool = False,
    ) -> None:
        if not hasattr(fallback, "predict"):
            raise TypeError(f"fallback must have predict(), got {type(fallback).__name__}")
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be > 0, got {budget_ms!r}")
        if range_tolerance < 0:
            raise ValueError(f"range_tolerance must be >= 0, got {range_tolerance!r}")
        self.fallback = fallback
        self.budget_ms = float(budget_ms)
        self.range_tolerance = float(range_tolerance)
        self.clock = clock
        self.load_error: str | None = None
        self.policy: Any = None
        if isinstance(policy, (str, Path)):
            try:
                policy = load_policy(policy, expect, trust_pickle=trust_pickle)
            except PolicyLoadError as e:
                log.warning("policy not loaded, the heuristic decides every step: %s", e)
                self.load_error = str(e)
                policy = None
        self.policy = policy
        if isinstance(policy, LoadedPolicy):
            self.low = policy.obs_low - range_tolerance
            self.high = policy.obs_high + range_tolerance
            names = (policy.metadata.get("observation") or {}).get("fields") or []
        else:
            self.low = self.high = None
            names = []
        n = 0 if self.low is None else self.low.shape[0]
        self.field_names: list[str] = list(names) if len(names) == n else [f"obs[{i}]" for i in range(n)]
        # per field: steps out of range, the value farthest outside, the training range (without the tolerance)
        self.out_of_range: dict[str, dict[str, Any]] = {}
        self.fallbacks: Counter[str] = Counter()
        self.decisions = 0
        self.last_reason: str | None = None

    def _in_range(self, obs: np.ndarray) -> bool:
        if self.low is None:
            return bool(np.all(np.isfinite(obs)))
        if obs.shape != self.low.shape or not np.all(np.isfinite(obs)):
            return False
        bad = (obs < self.low) | (obs > self.high)
        if not bad.any():
            return True
        for i in np.flatnonzero(bad):
            name = self.field_names[i]
            lo, hi = self.low[i] + self.range_tolerance, self.high[i] - self.range_tolerance
            v = float(obs[i])
            entry = self.out_of_range.setdefault(name, {"steps": 0, "value": v, "train_range": [lo, hi]})
            entry["steps"] += 1
            if max(lo - v, v - hi) > max(lo - entry["value"], entry["value"] - hi):
                entry["value"] = v
        return False

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        self.decisions += 1
        reason: str | None
        try:
            obs = np.asarray(observation, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            obs = None
        if self.policy is None:
            reason = "not_loaded"
        elif obs is None or not self._in_range(obs):
            reason = "out_of_range"
        else:
            t0 = self.clock()
            try:
                a, s = self.policy.predict(observation, state, episode_start, deterministic)
                reason = "over_budget" if (self.clock() - t0) * 1e3 > self.budget_ms else None
            except Exception as e:  # noqa: BLE001 - any policy failure hands the step to the heuristic
                log.warning("policy raised %s: %s; heuristic takes the step", type(e).__name__, e)
                reason = "error"
            if reason is None:
                self.last_reason = None
                if episode_start is not None and np.any(episode_start) and hasattr(self.fallback, "reset"):
                    self.fallback.reset()
                return a, s
        self.fallbacks[reason] += 1
        self.last_reason = reason
        return self.fallback.predict(observation, state, episode_start, deterministic)

    def report(self) -> dict[str, Any]:
        """Decisions, fallbacks by reason, the load error and, per out-of-range field, its step count, the value
        farthest outside and the training range (observation units, 0-1)."""
        return {
            "decisions": self.decisions,
            "fallbacks": {r: self.fallbacks.get(r, 0) for r in REASONS},
            "load_error": self.load_error,
            "out_of_range_fields": {k: dict(v) for k, v in self.out_of_range.items()},
        }

    def describe_out_of_range(self) -> str:
        """One line per out-of-range field: ``name = value (trained lo..hi) on N steps``; empty when none."""
        return "\n".join(
            f"{k} = {v['value']:.4g} (trained {v['train_range'][0]:.4g}..{v['train_range'][1]:.4g}) "
            f"on {v['steps']} step(s)"
            for k, v in sorted(self.out_of_range.items())
        )
