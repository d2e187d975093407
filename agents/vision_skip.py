"""VisionSkip: the vision-triggered skip baseline of RAPID's comparison.

It infers when the camera image changed: the raw mean absolute frame difference of this step (``visual_mad``) or
the accumulated raw difference since the current chunk's observation (``visual_since_action``) exceeds a threshold;
otherwise it keeps executing the current chunk. Raw pixel differences are exactly what lighting flicker, sensor
noise and camera shake inflate, so under visual noise this planner stops skipping and its latency rises (RAPID's
observation that vision triggers are fooled by visual noise). The cut comes from a cut planner (default:
StaticBestCut), as for ``RapidSkip``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.heuristics import StaticBestCut, _Base
from agents.planner import PlannerContext, action


@dataclass(frozen=True)
class VisionSkipConfig:
    """Thresholds on raw frame differences (mean abs difference, 0-1 scale).

    mad_threshold: infer when this step's frame differs from the previous one by more than this.
    accum_threshold: infer when the frames changed by more than this in total since the current chunk's observation.
    max_action_age_s: infer when the current chunk is older than this (as RapidSkip).
    """

    mad_threshold: float = 0.01
    accum_threshold: float = 0.04
    max_action_age_s: float = 0.6

    def __post_init__(self) -> None:
        for name in ("mad_threshold", "accum_threshold", "max_action_age_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"VisionSkipConfig.{name} must be finite and > 0, got {v!r}")


class VisionSkip(_Base):
    """Skip when the raw visual change is small; see the module docstring."""

    skips = True

    def __init__(self, ctx: PlannerContext, config: VisionSkipConfig = VisionSkipConfig(),
                 cut_planner: Any = None) -> None:
        super().__init__(ctx)
        self.config = config
        self.cut_planner = cut_planner if cut_planner is not None else StaticBestCut(ctx)

    def reset(self) -> None:
        if hasattr(self.cut_planner, "reset"):
            self.cut_planner.reset()

    def should_skip(self, f: dict[str, float]) -> bool:
        """True when there are actions left and neither raw change threshold nor the age limit is reached."""
        c = self.config
        if f["actions_left"] <= 0:
            return False
        if f["visual_mad"] > c.mad_threshold or f["visual_since_action"] > c.accum_threshold:
            return False
        return not f["action_age_s"] >= c.max_action_age_s

    def _decide(self, observation: Any) -> np.ndarray:
        f = self.view.decode(observation)
        cut = int(self.cut_planner.predict(observation)[0][0])
        return action(cut, self.should_skip(f))
