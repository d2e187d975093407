"""The Planner protocol (Stable-Baselines3's ``predict`` signature), the structured context heuristics read, and a
decoder from the env's observation vector back to physical units.

Every planner maps an observation vector (built by ``ecc_env.observation.ObservationBuilder``, the same code in the
env and the edge runtime) to an action ``[cut, skip]``. Heuristics additionally get a :class:`PlannerContext` at
construction (cut costs from ``executor.costs.cut_table``, the edge-only index, memory mask, deadline, a bandwidth
prior), so they need nothing at decision time that the edge runtime cannot give them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ecc_env.observation import ObservationBuilder, ObservationConfig
from executor.control import DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS
from executor.costs import CutTable, cut_table
from executor.profile import Profile


@runtime_checkable
class Planner(Protocol):
    """Anything with SB3's ``predict``: returns ``(action, state)`` with ``action = [cut, skip]``."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]: ...


@dataclass(frozen=True)
class BandwidthPrior:
    """What a planner assumes before it has measured anything (e.g. the training traces' means)."""

    up_mbps: float
    down_mbps: float
    rtt_ms: float

    def __post_init__(self) -> None:
        for name in ("up_mbps", "down_mbps", "rtt_ms"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"BandwidthPrior.{name} must be finite and >= 0, got {v!r}")

    @classmethod
    def from_trace_set(cls, trace_set: Any) -> BandwidthPrior:
        """Pooled time-weighted means of a ``traces.TraceSet``."""
        s = trace_set.stats().pooled
        return cls(float(s.mean_up_mbps), float(s.mean_down_mbps), float(s.mean_rtt_ms))


@dataclass(frozen=True, eq=False)
class PlannerContext:
    """Static facts a heuristic may use: per-cut costs, masks, timing rules, observation scales, a bandwidth prior."""

    table: CutTable
    edge_only_index: int
    cut_fits: np.ndarray
    obs_config: ObservationConfig
    period_ms: float = DEFAULT_PERIOD_MS
    deadline_ms: float = 300.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    prior: BandwidthPrior = field(default_factory=lambda: BandwidthPrior(50.0, 50.0, 40.0))
    model_id: str = ""

    def __post_init__(self) -> None:
        n = self.table.num_cuts
        if not 0 <= self.edge_only_index < n:
            raise ValueError(f"edge_only_index {self.edge_only_index} outside 0..{n - 1}")
        fits = np.asarray(self.cut_fits, dtype=bool)
        if fits.shape != (n,) or not fits.any():
            raise ValueError(f"cut_fits must be {n} booleans with at least one True, got {self.cut_fits!r}")
        object.__setattr__(self, "cut_fits", fits)
        if self.obs_config.num_cuts != n:
            raise ValueError(f"obs_config.num_cuts is {self.obs_config.num_cuts}, the cut table has {n} cuts")

    @property
    def num_cuts(self) -> int:
        return self.table.num_cuts

    @property
    def edge_only_ms(self) -> float:
        return float(self.table.edge_ms[self.edge_only_index])

    def nearest_allowed(self, cut: int) -> int:
        allowed = np.flatnonzero(self.cut_fits)
        return int(allowed[np.argmin(np.abs(allowed - cut))])

    @classmethod
    def from_profiles(
        cls,
        edge: Profile,
        cloud: Profile,
        *,
        obs_config: ObservationConfig | None = None,
        prior: BandwidthPrior | None = None,
        period_ms: float = DEFAULT_PERIOD_MS,
        deadline_ms: float = 300.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        edge_memory_bytes: int | None = None,
    ) -> PlannerContext:
        """A context from a Profile pair (as the edge runtime has it)."""
        table = cut_table(edge, cloud)
        mem = edge.device_memory_bytes if edge_memory_bytes is None else edge_memory_bytes
        fits = np.array([mem <= 0 or p <= mem for p in table.edge_param_bytes], dtype=bool)
        oc = obs_config or ObservationConfig(num_cuts=table.num_cuts, chunk_size=chunk_size)
        return cls(
            table=table,
            edge_only_index=edge.num_blocks,
            cut_fits=fits,
            obs_config=oc,
            period_ms=period_ms,
            deadline_ms=deadline_ms,
            chunk_size=chunk_size,
            prior=prior or BandwidthPrior(50.0, 50.0, 40.0),
            model_id=f"{edge.model_id}/{edge.preset}",
        )

    @classmethod
    def from_env(cls, env: Any, prior: BandwidthPrior | None = None) -> PlannerContext:
        """A context from an ``EdgeCloudSplitEnv`` (unwrapped or wrapped); the prior defaults to its trace set."""
        e = env.unwrapped
        cfg = e.config
        return cls(
            table=cut_table(e.edge_profile, e.cloud_profile),
            edge_only_index=int(e.edge_only_index),
            cut_fits=np.asarray(e.cut_fits, dtype=bool),
            obs_config=e.builder.config,
            period_ms=float(cfg.period_ms),
            deadline_ms=float(e.deadline.deadline_ms),
            chunk_size=int(cfg.chunk_size),
            prior=prior or BandwidthPrior.from_trace_set(e.trace_set),
            model_id=f"{e.edge_profile.model_id}/{e.edge_profile.preset}",
        )


class ObsView:
    """Reads observation vectors of one ``ObservationConfig`` in physical units: a thin view over
    ``ObservationBuilder.decode`` and its field index (no offsets of its own; see the table in
    ``ecc_env.observation``). Missing measurements are NaN, ``action_age_s`` is ``inf`` without actions, flags
    are bools."""

    def __init__(self, config: ObservationConfig) -> None:
        self.config = config
        self.builder = ObservationBuilder(config)
        self.index: dict[str, int] = self.builder.index
        self.h = config.bandwidth_history
        self.size = self.builder.size

    def uplink(self, obs: Any) -> tuple[list[float], list[float]]:
        """Uplink samples (Mbit/s) and their ages (s), newest first; missing samples are left out."""
        d = self.builder.decode(obs)
        keep = np.isfinite(d["uplink_mbps"])
        return d["uplink_mbps"][keep].tolist(), d["uplink_age_s"][keep].tolist()

    def decode(self, obs: Any) -> dict[str, Any]:
        """Fields in physical units (``ObservationBuilder.decode``), with ``uplink_mbps`` / ``uplink_age_s`` the
        newest sample's (NaN if none)."""
        d = self.builder.decode(obs)
        keep = np.flatnonzero(np.isfinite(d["uplink_mbps"]))
        first = int(keep[0]) if keep.size else None
        d["uplink_mbps"] = float(d["uplink_mbps"][first]) if first is not None else math.nan
        d["uplink_age_s"] = float(d["uplink_age_s"][first]) if first is not None else math.nan
        return d


def action(cut: int, skip: bool) -> np.ndarray:
    """The MultiDiscrete action ``[cut, skip]`` as SB3 returns it."""
    return np.array([int(cut), int(bool(skip))], dtype=np.int64)
