"""The reward, defined once (the env and the edge runtime's metrics both call :func:`step_reward`).

    reward = - latency_ms / period_ms                       (step latency in control periods)
             - deadline_miss_penalty * deadline_miss        (per step whose network result missed the deadline)
             - deviation_weight * deviation                  (mean |held action - reference action|, skipped steps)
             - drop_penalty * dropped                        (observations dropped from the full edge queue)
             - invalid_action_penalty * invalid              (a masked cut or a skip without actions was asked for)

``latency_ms`` is the age of the step's observation when its actions are ready (edge queue wait included).
The drop term keeps the sum of rewards from favouring policies that shorten episodes by dropping observations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RewardConfig:
    """Coefficients of the reward (see the module docstring)."""

    deadline_miss_penalty: float = 1.0
    deviation_weight: float = 2.0
    drop_penalty: float = 1.0
    invalid_action_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RewardConfig.{name} must be finite and >= 0, got {value!r}")


def step_reward(
    config: RewardConfig,
    *,
    latency_ms: float,
    period_ms: float,
    deadline_miss: bool,
    deviation: float,
    dropped: int,
    invalid: bool,
) -> tuple[float, float, float, float, float, float]:
    """Reward of one step: (total, latency term, deadline term, deviation term, drop term, invalid term)."""
    r_lat = -latency_ms / period_ms
    r_dead = -config.deadline_miss_penalty if deadline_miss else 0.0
    r_dev = -config.deviation_weight * deviation
    r_drop = -config.drop_penalty * dropped
    r_inv = -config.invalid_action_penalty if invalid else 0.0
    return r_lat + r_dead + r_dev + r_drop + r_inv, r_lat, r_dead, r_dev, r_drop, r_inv
