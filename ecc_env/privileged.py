"""Privileged (simulation-only) bandwidth fields appended to the env's observation, to measure the value of
information: how much of a planner's gap to the hindsight Oracle a perfect bandwidth estimate or a perfect forecast
would close (``benchmarks/bench_foresight.py``).

:class:`PrivilegedBandwidth` wraps an ``EdgeCloudSplitEnv`` and appends, after the regular observation (whose
layout is unchanged, see ``ecc_env.observation``):

| field | input (unit) | scaling |
| --- | --- | --- |
| true_uplink_now | the trace's uplink rate at the decision time (Mbit/s) | lg(mbps, bandwidth_scale_mbps) |
| true_uplink_ahead | harmonic mean uplink rate over [decision time, + ``horizon_s``) (Mbit/s), 0 in an outage | same |

``true_uplink_ahead`` is present only with ``horizon_s > 0``. Both read the episode's own (rescaled) segment, so
they are exact. No edge runtime can measure them: a policy trained with these fields is a yardstick, never a
product, and ``agents.artifact.load_policy`` refuses it (its metadata names the fields under ``privileged``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class PrivilegedConfig:
    """Which privileged fields to append: the true rate now, and the true rate over the next ``horizon_s``."""

    now: bool = True
    horizon_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.horizon_s) and self.horizon_s >= 0):
            raise ValueError(f"horizon_s must be finite and >= 0, got {self.horizon_s!r}")
        if not self.now and self.horizon_s == 0:
            raise ValueError("PrivilegedConfig selects no field: set now=True or horizon_s > 0")

    @property
    def field_names(self) -> tuple[str, ...]:
        return (("true_uplink_now",) if self.now else ()) + (("true_uplink_ahead",) if self.horizon_s > 0 else ())

    def describe(self) -> dict[str, Any]:
        return {"fields": list(self.field_names), "horizon_s": self.horizon_s}


class PrivilegedBandwidth(gym.ObservationWrapper):
    """Appends the true uplink rate (now and/or ahead) to the observation; see the module docstring."""

    def __init__(self, env: gym.Env, config: PrivilegedConfig = PrivilegedConfig()) -> None:
        super().__init__(env)
        base = env.observation_space
        if not isinstance(base, gym.spaces.Box) or len(base.shape) != 1:
            raise TypeError(f"PrivilegedBandwidth needs a 1-D Box observation space, got {base!r}")
        e = env.unwrapped
        if not hasattr(e, "builder") or not hasattr(e, "_t_dec"):
            raise TypeError(f"PrivilegedBandwidth wraps an EdgeCloudSplitEnv, got {type(e).__name__}")
        self.config = config
        self._builder = e.builder  # the regular bandwidth fields' scale: ``builder.bandwidth_feature``
        n = len(config.field_names)
        self.observation_space = gym.spaces.Box(
            np.concatenate([base.low, np.zeros(n, base.dtype)]), np.concatenate([base.high, np.ones(n, base.dtype)]),
            dtype=base.dtype,
        )

    def true_rates_mbps(self) -> list[float]:
        """The privileged inputs in Mbit/s, in field order, at the env's current decision time."""
        e = self.env.unwrapped
        link, t = e.link, float(e._t_dec)
        if link is None:
            raise RuntimeError("call reset() before reading privileged fields")
        out = []
        if self.config.now:
            out.append(link.bandwidth_mbps(t, "up"))
        if self.config.horizon_s > 0:
            out.append(link.harmonic_mean_mbps(t, t + self.config.horizon_s, "up"))
        return out

    def observation(self, observation: np.ndarray) -> np.ndarray:
        extra = np.array([self._builder.bandwidth_feature(r) for r in self.true_rates_mbps()])
        extra = np.clip(extra, 0.0, 1.0).astype(observation.dtype)
        return np.concatenate([observation, extra])

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()
