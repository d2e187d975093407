"""Privileged (simulation-only) fields appended to the env's observation, to measure the value of information: how
much of a planner's gap to the hindsight Oracle a perfect bandwidth estimate, a perfect forecast, or the Oracle's
knowledge of the reference actions would close (``benchmarks/bench_foresight.py``).

:class:`PrivilegedBandwidth` wraps an ``EdgeCloudSplitEnv`` and appends, after the regular observation (whose
layout is unchanged, see ``ecc_env.observation``):

| field | input (unit) | scaling |
| --- | --- | --- |
| true_uplink_now | the trace's uplink rate at the decision time (Mbit/s) | lg(mbps, bandwidth_scale_mbps) |
| true_uplink_ahead | harmonic mean uplink rate over [decision time, + ``horizon_s``) (Mbit/s), 0 in an outage | same |
| held_deviation[j] | deviation of the held action from the reference action j steps ahead, j = 0 .. n-1 | dev / scale |

``true_uplink_ahead`` is present only with ``horizon_s > 0``; ``held_deviation`` with ``held_deviation_steps = n >
0``: what skipping step i + j would cost in action deviation (the env's ``deviation``; 1 when nothing is held or
the episode ends first), scaled by ``deviation_scale``. The bandwidth fields read the episode's own (rescaled)
segment, the deviation fields its reference actions, so they are exact: the latter is the hindsight the Oracle
plans with, which no edge can have without running the inference it would skip. No edge runtime can measure any
of them: a policy trained with these fields is a yardstick, never a product, and ``agents.artifact.load_policy``
refuses it (its metadata names the fields under ``privileged``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class PrivilegedConfig:
    """Which privileged fields to append: the true rate now, the true rate over the next ``horizon_s``, and the held
    action's deviation from the reference over the next ``held_deviation_steps`` steps."""

    now: bool = True
    horizon_s: float = 0.0
    held_deviation_steps: int = 0
    deviation_scale: float = 0.25  # action units mapped to 1 (clipped)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.horizon_s) and self.horizon_s >= 0):
            raise ValueError(f"horizon_s must be finite and >= 0, got {self.horizon_s!r}")
        if (
            isinstance(self.held_deviation_steps, bool)
            or not isinstance(self.held_deviation_steps, int)
            or self.held_deviation_steps < 0
        ):
            raise ValueError(f"held_deviation_steps must be an int >= 0, got {self.held_deviation_steps!r}")
        if not (math.isfinite(self.deviation_scale) and self.deviation_scale > 0):
            raise ValueError(f"deviation_scale must be finite and > 0, got {self.deviation_scale!r}")
        if not self.now and self.horizon_s == 0 and self.held_deviation_steps == 0:
            raise ValueError(
                "PrivilegedConfig selects no field: set now=True, horizon_s > 0 or held_deviation_steps > 0"
            )

    @property
    def field_names(self) -> tuple[str, ...]:
        return (
            (("true_uplink_now",) if self.now else ())
            + (("true_uplink_ahead",) if self.horizon_s > 0 else ())
            + tuple(f"held_deviation_{j}" for j in range(self.held_deviation_steps))
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fields": list(self.field_names), "horizon_s": self.horizon_s}
        if self.held_deviation_steps:
            out["deviation_scale"] = self.deviation_scale
        return out


class PrivilegedBandwidth(gym.ObservationWrapper):
    """Appends the true uplink rate (now and/or ahead) and the held action's true deviation to the observation; see
    the module docstring."""

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
            np.concatenate([base.low, np.zeros(n, base.dtype)]),
            np.concatenate([base.high, np.ones(n, base.dtype)]),
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

    def held_deviations(self) -> list[float]:
        """The held action's deviation from the reference at the next ``held_deviation_steps`` steps (inf: none)."""
        from ecc_env.split_env import _mean_abs_diff as mean_abs_diff  # the env's deviation, not a copy

        e = self.env.unwrapped
        held, ref, i = e._held, e._ref, int(e._idx)
        out = []
        for j in range(self.config.held_deviation_steps):
            if held is None or i + j >= len(ref):
                out.append(math.inf)
            else:
                out.append(mean_abs_diff(held, ref[i + j]))
        return out

    def observation(self, observation: np.ndarray) -> np.ndarray:
        fields = [self._builder.bandwidth_feature(r) for r in self.true_rates_mbps()]
        fields += [min(d / self.config.deviation_scale, 1.0) for d in self.held_deviations()]
        extra = np.array(fields, dtype=np.float64)
        extra = np.clip(extra, 0.0, 1.0).astype(observation.dtype)
        return np.concatenate([observation, extra])

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()
