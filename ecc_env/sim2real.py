"""Sim-to-real check: one episode and one decision sequence through the ``profile`` and ``executor`` backends.

Two envs are built with the same arguments except the backend and reset with the same seed, so they share the
trace segment, the observation stream and its offset. The decisions come from a given action sequence, or from a
planner (SB3 ``predict``) that sees the executor env's observations; the profile env replays the same actions.

Per inference step two gaps are reported, both ``|profile - executor| / executor`` of the step's service time
(inference start to actions ready):

* ``gap_paired``: the profile backend priced at exactly the executor step's start time and cut (same link
  position), so only the latency model differs: the simulator's fidelity;
* ``gap_episode``: the profile env's own run of the same actions (its clock may drift from the executor's when
  the two price steps differently, so later steps can start at other trace times).

With ``baseline=`` (another Profile pair, e.g. the same pair without the calibrated overheads of
``executor.calibration``), a third env prices every executor step the same paired way (``gap_baseline``): two latency
models against one executor run, side by side. ``baselines=`` (name -> pair) adds any number more
(``SimToRealReport.baselines_ms``, ``gap_of(name)``).

Skipped steps (no inference on either side) are left out of all. The Profile pair must describe the executor's
model on the machine it runs on (e.g. ``executor.profiler.profile_model`` of that model, for edge and cloud), or
the gap measures a hardware mismatch rather than the simulator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecc_env.backends import ExecutorConfig
from executor.profile import Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimToRealReport:
    """Per-inference-step service times (ms) and gaps; ``obs_index`` / ``cut`` identify each step."""

    obs_index: np.ndarray
    cut: np.ndarray
    executor_ms: np.ndarray
    profile_paired_ms: np.ndarray
    profile_episode_ms: np.ndarray
    executor_miss: np.ndarray
    profile_miss: np.ndarray
    steps_total: int
    backend: dict[str, Any]
    profile_baseline_ms: np.ndarray | None = None  # paired price under the baseline pair (None: none given)
    baselines_ms: dict[str, np.ndarray] = field(default_factory=dict)  # paired prices under each named pair

    def gap_of(self, name: str) -> np.ndarray:
        """``|price - executor| / executor`` per step under the named pair of ``baselines=``."""
        return np.abs(self.baselines_ms[name] - self.executor_ms) / self.executor_ms

    @property
    def gap_paired(self) -> np.ndarray:
        return np.abs(self.profile_paired_ms - self.executor_ms) / self.executor_ms

    @property
    def gap_episode(self) -> np.ndarray:
        return np.abs(self.profile_episode_ms - self.executor_ms) / self.executor_ms

    @property
    def gap_baseline(self) -> np.ndarray | None:
        if self.profile_baseline_ms is None:
            return None
        return np.abs(self.profile_baseline_ms - self.executor_ms) / self.executor_ms

    def summary(self) -> dict[str, float]:
        """Median and p90 of each gap (the baseline's when given), the step counts and the miss counts."""
        out: dict[str, float] = {"steps": float(self.steps_total), "inference_steps": float(len(self.cut))}
        gaps = [("paired", self.gap_paired), ("episode", self.gap_episode)]
        if self.gap_baseline is not None:
            gaps.append(("baseline", self.gap_baseline))
        for name, gap in gaps:
            g = gap[np.isfinite(gap)]
            out[f"gap_{name}_median"] = float(np.median(g)) if g.size else float("nan")
            out[f"gap_{name}_p90"] = float(np.percentile(g, 90)) if g.size else float("nan")
        out["executor_misses"] = float(self.executor_miss.sum())
        out["profile_misses"] = float(self.profile_miss.sum())
        return out


def sim_to_real(
    edge_profile: Profile,
    cloud_profile: Profile,
    trace_set: Any,
    *,
    actions: Sequence[Any] | None = None,
    planner: Any = None,
    seed: int = 0,
    max_steps: int | None = None,
    executor: ExecutorConfig | None = None,
    baseline: tuple[Profile, Profile] | None = None,
    baselines: Mapping[str, tuple[Profile, Profile]] | None = None,
    **env_kwargs: Any,
) -> SimToRealReport:
    """Run one episode through both backends with the same decisions; see the module docstring.

    Exactly one of ``actions`` (a sequence of (cut, skip), consumed one per step; the episode stops when it runs
    out) or ``planner`` (``predict(obs, deterministic=True) -> (action, state)``) must be given. ``env_kwargs`` go
    to every ``EdgeCloudSplitEnv`` constructor (streams, EnvConfig fields, ...). ``baseline``: a second (edge,
    cloud) pair priced paired beside the first (``SimToRealReport.profile_baseline_ms``); ``baselines``: more of them,
    by name (``SimToRealReport.baselines_ms``).
    """
    from ecc_env.split_env import EdgeCloudSplitEnv

    if (actions is None) == (planner is None):
        raise ValueError("give exactly one of actions= or planner=")
    if actions is not None and len(actions) == 0:
        raise ValueError("actions is empty")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps!r}")
    sim = EdgeCloudSplitEnv(edge_profile, cloud_profile, trace_set, backend="profile", **env_kwargs)
    real = EdgeCloudSplitEnv(
        edge_profile, cloud_profile, trace_set, backend="executor", executor=executor or ExecutorConfig(), **env_kwargs
    )
    ref = None if baseline is None else EdgeCloudSplitEnv(*baseline, trace_set, backend="profile", **env_kwargs)
    named = {
        k: EdgeCloudSplitEnv(*pair, trace_set, backend="profile", **env_kwargs) for k, pair in (baselines or {}).items()
    }
    named_ms: dict[str, list[float]] = {k: [] for k in named}
    rows: dict[str, list] = {k: [] for k in ("obs", "cut", "exe", "paired", "episode", "exe_miss", "prof_miss", "ref")}
    steps = 0
    try:
        obs, _ = real.reset(seed=seed)
        obs_sim, _ = sim.reset(seed=seed)
        for other in ([ref] if ref is not None else []) + list(named.values()):
            other.reset(seed=seed)
        if not np.array_equal(obs, obs_sim):
            raise RuntimeError("the two envs started different episodes (same seed, different observations)")
        sim_done = False
        while max_steps is None or steps < max_steps:
            if actions is not None:
                if steps >= len(actions):
                    break
                action = actions[steps]
            else:
                action, _ = planner.predict(obs, deterministic=True)
            obs, _, _, trunc, info = real.step(action)
            paired = None
            if not info["skip"]:
                timing, _ = sim.backend.infer(info["cut"], info["time_s"])
                paired = timing.service_ms
                if ref is not None:
                    rows["ref"].append(ref.backend.infer(info["cut"], info["time_s"])[0].service_ms)
                for k, other in named.items():
                    named_ms[k].append(other.backend.infer(info["cut"], info["time_s"])[0].service_ms)
            episode = None
            if not sim_done:
                _, _, _, sim_trunc, info_sim = sim.step(action)
                sim_done = sim_trunc
                if not info_sim["skip"]:
                    episode = info_sim["service_ms"]
            steps += 1
            if paired is not None:
                rows["obs"].append(info["obs_index"])
                rows["cut"].append(info["cut"])
                rows["exe"].append(info["service_ms"])
                rows["paired"].append(paired)
                rows["episode"].append(np.nan if episode is None else episode)
                rows["exe_miss"].append(info["deadline_miss"])
                rows["prof_miss"].append(timing.deadline_miss)
            if trunc:
                break
        describe = real.backend.describe()
    finally:
        real.close()
        sim.close()
        for other in ([ref] if ref is not None else []) + list(named.values()):
            other.close()
    return SimToRealReport(
        obs_index=np.array(rows["obs"], dtype=np.int64),
        cut=np.array(rows["cut"], dtype=np.int64),
        executor_ms=np.array(rows["exe"], dtype=np.float64),
        profile_paired_ms=np.array(rows["paired"], dtype=np.float64),
        profile_episode_ms=np.array(rows["episode"], dtype=np.float64),
        executor_miss=np.array(rows["exe_miss"], dtype=bool),
        profile_miss=np.array(rows["prof_miss"], dtype=bool),
        steps_total=steps,
        backend=describe,
        profile_baseline_ms=None if ref is None else np.array(rows["ref"], dtype=np.float64),
        baselines_ms={k: np.array(v, dtype=np.float64) for k, v in named_ms.items()},
    )
