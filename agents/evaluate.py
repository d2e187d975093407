"""One evaluation path for every planner (heuristics, the Oracle, PPO): run it through the env on given seeds and
collect per-step latencies, rewards, decisions and decision times."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeLog:
    """Per-step records of one episode (arrays of equal length) and its return."""

    seed: int
    latency_ms: np.ndarray
    reward: np.ndarray
    cut: np.ndarray
    skip: np.ndarray
    deadline_miss: np.ndarray
    deviation: np.ndarray
    decision_ms: np.ndarray
    dropped_total: int
    episode_return: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """All episodes of one planner; summary figures over the pooled steps."""

    planner: str
    episodes: list[EpisodeLog]

    def _cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(e, name) for e in self.episodes]) if self.episodes else np.zeros(0)

    @property
    def latency_ms(self) -> np.ndarray:
        return self._cat("latency_ms")

    @property
    def decision_ms(self) -> np.ndarray:
        return self._cat("decision_ms")

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.episode_return for e in self.episodes]))

    def summary(self) -> dict[str, float]:
        """Mean/p50/p95/p99 latency, miss and skip rates, mean deviation, return, decision time (median, p99)."""
        lat = self.latency_ms
        dec = self.decision_ms
        steps = max(len(lat), 1)
        return {
            "episodes": len(self.episodes),
            "steps": int(len(lat)),
            "mean_latency_ms": float(np.mean(lat)),
            "p50_latency_ms": float(np.percentile(lat, 50)),
            "p95_latency_ms": float(np.percentile(lat, 95)),
            "p99_latency_ms": float(np.percentile(lat, 99)),
            "deadline_miss_rate": float(self._cat("deadline_miss").sum() / steps),
            "skip_rate": float(self._cat("skip").sum() / steps),
            "mean_deviation": float(np.mean(self._cat("deviation"))),
            "dropped": int(sum(e.dropped_total for e in self.episodes)),
            "mean_return": self.mean_return,
            "decision_median_ms": float(np.median(dec)) if len(dec) else float("nan"),
            "decision_p99_ms": float(np.percentile(dec, 99)) if len(dec) else float("nan"),
        }


def evaluate(
    planner: Any, env: Any, seeds: Iterable[int], *, name: str | None = None, deterministic: bool = True
) -> EvalResult:
    """Run ``planner`` for one episode per seed (``env.reset(seed=s)``) and record every step.

    A planner with ``plan_episode(env)`` (the Oracle) is given the env right after each reset. ``episode_start`` is
    true on each episode's first ``predict`` call, so stateful heuristics reset.
    """
    if not hasattr(planner, "predict"):
        raise TypeError(f"planner must have a predict() method, got {type(planner).__name__}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate needs at least one seed")
    episodes = []
    perf = time.perf_counter
    for seed in seeds:
        obs, info0 = env.reset(seed=seed)
        plan_s = 0.0
        if hasattr(planner, "plan_episode"):
            t0 = perf()
            planner.plan_episode(env)
            plan_s = perf() - t0
        rows: list[tuple] = []
        ret = 0.0
        first = True
        info: dict[str, Any] = {}
        while True:
            t0 = perf()
            a, _ = planner.predict(obs, None, np.array([first]), deterministic)
            dt = (perf() - t0) * 1e3
            first = False
            a = np.asarray(a).reshape(-1)
            obs, r, term, trunc, info = env.step(a)
            ret += r
            rows.append(
                (info["latency_ms"], r, info["cut"], info["skip"], info["deadline_miss"], info["deviation"], dt)
            )
            if term or trunc:
                break
        arr = np.array(rows, dtype=np.float64)
        episodes.append(
            EpisodeLog(
                seed=seed,
                latency_ms=arr[:, 0],
                reward=arr[:, 1],
                cut=arr[:, 2].astype(np.int64),
                skip=arr[:, 3].astype(bool),
                deadline_miss=arr[:, 4].astype(bool),
                deviation=arr[:, 5],
                decision_ms=arr[:, 6],
                dropped_total=int(info.get("dropped_total", 0)),
                episode_return=float(ret),
                info={**info0, "plan_s": plan_s},
            )
        )
    return EvalResult(name or type(planner).__name__, episodes)
