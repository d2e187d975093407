"""Latency backends behind the env: ``profile`` (Profile pair + trace integration) and ``executor`` (to come).

A backend prices one inference at a cut starting at a given episode time. Both return ``latency.StepTiming`` so
the env's dynamics, observation and reward do not depend on where the numbers come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ecc_env.latency import CutRow, DeadlineConfig, Link, StepTiming, step_timing


@dataclass(frozen=True)
class ServerLoadConfig:
    """Other clients' load on the cloud server (profile backend only).

    mean_queue_len: mean number of requests ahead of ours (0 = a dedicated server).
    change_every_s: the load level is redrawn (Gamma, shape ``burstiness_shape``) this often; the queue length
    itself is Poisson around that level, one draw per control period.
    per_request_ms: service time of one queued request; None = the cloud-only cut's cloud time.
    """

    mean_queue_len: float = 0.0
    change_every_s: float = 5.0
    burstiness_shape: float = 2.0
    per_request_ms: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_queue_len) and self.mean_queue_len >= 0):
            raise ValueError(f"mean_queue_len must be finite and >= 0, got {self.mean_queue_len!r}")
        if not (self.change_every_s > 0 and self.burstiness_shape > 0):
            raise ValueError(f"change_every_s and burstiness_shape must be > 0, got {self}")
        if self.per_request_ms is not None and not (self.per_request_ms >= 0):
            raise ValueError(f"per_request_ms must be >= 0, got {self.per_request_ms!r}")


class LatencyBackend(Protocol):
    """Prices inferences for one episode at a time."""

    name: str

    def reset(self, link: Link, rng: np.random.Generator, horizon_s: float, period_s: float) -> None:
        """Start an episode on ``link`` (the episode's trace segment) covering ``horizon_s`` seconds."""

    def infer(self, cut_index: int, start_s: float) -> tuple[StepTiming, int]:
        """Run one inference at ``cut_index`` from ``start_s``; returns its timing and the server's queue length."""


class ProfileBackend:
    """Fast backend: cut costs from the Profile pair (``executor.costs``), transfers integrated over the trace,
    the server queue drawn per episode from ``ServerLoadConfig``, the deadline rule of ``latency.step_timing``."""

    name = "profile"

    def __init__(
        self,
        rows: tuple[CutRow, ...],
        deadline: DeadlineConfig,
        fallback_ms: float,
        server_load: ServerLoadConfig = ServerLoadConfig(),
    ) -> None:
        if not rows:
            raise ValueError("ProfileBackend needs at least one cut row, got none")
        self.rows = rows
        self.deadline = deadline
        self.fallback_ms = float(fallback_ms)
        self.server_load = server_load
        self.per_request_ms = (
            rows[0].cloud_ms if server_load.per_request_ms is None else float(server_load.per_request_ms)
        )
        self.link: Link | None = None
        self.queue_len: list[int] = [0]
        self._slot_s = 1.0

    def reset(self, link: Link, rng: np.random.Generator, horizon_s: float, period_s: float) -> None:
        self.link = link
        self._slot_s = period_s
        n = int(math.ceil(horizon_s / period_s)) + 1
        cfg = self.server_load
        if cfg.mean_queue_len <= 0:
            self.queue_len = [0] * n
            return
        per_level = max(int(round(cfg.change_every_s / period_s)), 1)
        levels = rng.gamma(cfg.burstiness_shape, cfg.mean_queue_len / cfg.burstiness_shape, n // per_level + 1)
        lam = np.repeat(levels, per_level)[:n]
        self.queue_len = rng.poisson(lam).tolist()

    def queue_at(self, t_s: float) -> int:
        """Server queue length (requests ahead) at episode time ``t_s``."""
        q = self.queue_len
        i = int(t_s / self._slot_s)
        return q[i] if i < len(q) else q[-1]

    def infer(self, cut_index: int, start_s: float) -> tuple[StepTiming, int]:
        if self.link is None:
            raise RuntimeError("ProfileBackend.infer called before reset()")
        row = self.rows[cut_index]
        q = self.queue_at(start_s) if row.uses_network else 0
        timing = step_timing(
            row,
            self.link,
            start_s,
            server_queue_ms=q * self.per_request_ms,
            deadline=self.deadline,
            fallback_ms=self.fallback_ms,
        )
        return timing, q


class ExecutorBackend:
    """Measured backend: each step runs on the networked split executor over the shaped link (issue 4)."""

    name = "executor"

    def __init__(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            "the 'executor' latency backend is not built yet: it needs an adapter that runs each env step through "
            "executor.client.EdgeClient against an executor.server process over an executor.link.ShapedLink driven "
            "by the episode's trace segment (trace time synchronised to the episode clock) and returns a "
            "latency.StepTiming from the measured CallTiming; use backend='profile' for now"
        )


BACKENDS = ("profile", "executor")
