"""Vision-triggered baselines of RAPID's comparison: VisionSkip (raw frame difference decides skip) and
EntropyVisionDispatch (SAFE-style: the entropy of a vision-confidence score sends a step to the cloud).

VisionSkip infers when the camera image changed: the raw mean absolute frame difference of this step (``visual_mad``) or
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

    def __init__(
        self, ctx: PlannerContext, config: VisionSkipConfig = VisionSkipConfig(), cut_planner: Any = None
    ) -> None:
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


@dataclass(frozen=True)
class EntropyVisionConfig:
    """SAFE-style vision-confidence dispatch (the vision-triggered baseline RAPID compares against).

    The baseline offloads to the cloud when the model is unsure, measured as the Shannon entropy of its action
    distribution. Our observation carries no action distribution, so the uncertainty is modelled from the camera:
    each pixel is "changed" with probability p = mad / (mad + mad_ref) (``visual_mad``: raw mean abs frame
    difference, what lighting flicker, sensor noise and shake inflate) and the score is the binary entropy
    H(p) = -p log2 p - (1 - p) log2 (1 - p) in bits (0 on a still scene, 1 at p = 0.5).

    entropy_threshold: H at or above it sends the step to the cloud (pre-empting the chunk) once ``cooldown_steps``
        steps ran since the last inference.
    mad_ref: the raw difference at which p = 0.5.
    max_action_age_s: a chunk older than this is refilled on the edge (as RAPID's redundant steps).
    """

    entropy_threshold: float = 0.6
    mad_ref: float = 0.02
    cooldown_steps: int = 2
    max_action_age_s: float = 0.6

    def __post_init__(self) -> None:
        if not (0 < self.entropy_threshold <= 1):
            raise ValueError(f"entropy_threshold must be in (0, 1] bits, got {self.entropy_threshold!r}")
        if not (math.isfinite(self.mad_ref) and self.mad_ref > 0 and self.max_action_age_s > 0):
            raise ValueError(
                f"mad_ref and max_action_age_s must be > 0, got {self.mad_ref!r}, {self.max_action_age_s!r}"
            )
        if int(self.cooldown_steps) != self.cooldown_steps or self.cooldown_steps < 0:
            raise ValueError(f"cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")


def binary_entropy_bits(p: float) -> float:
    """H(p) in bits; 0 at p in {0, 1}."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


class EntropyVisionDispatch(_Base):
    """Vision-confidence (entropy) trigger with RAPID's edge/cloud dispatch: an uncertain step goes to the cloud
    (the best network cut at the prior bandwidth), a confident one keeps executing the chunk on the edge (refilled
    by edge-only inference when it runs out or goes stale). See :class:`EntropyVisionConfig`."""

    skips = True

    def __init__(self, ctx: PlannerContext, config: EntropyVisionConfig = EntropyVisionConfig()) -> None:
        from agents.heuristics import best_network_cut

        super().__init__(ctx)
        self.config = config
        self.cloud = best_network_cut(ctx)
        self.reset()

    def reset(self) -> None:
        self.cut = self.ctx.edge_only_index
        self.last_target = ""

    def entropy(self, f: dict[str, float]) -> float:
        mad = max(f["visual_mad"], 0.0)
        return binary_entropy_bits(mad / (mad + self.config.mad_ref))

    def _decide(self, observation: Any) -> np.ndarray:
        f = self.view.decode(observation)
        c = self.config
        since_infer = self.ctx.chunk_size - 1 - f["actions_left"]
        if self.entropy(f) >= c.entropy_threshold and (f["actions_left"] <= 0 or since_infer >= c.cooldown_steps):
            self.cut, self.last_target = self.cloud, "cloud"
            return action(self.cut, False)
        if f["actions_left"] <= 0 or f["action_age_s"] >= c.max_action_age_s:
            self.cut, self.last_target = self.ctx.edge_only_index, "edge"
            return action(self.cut, False)
        self.last_target = "edge"
        return action(self.cut, True)
