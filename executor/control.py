"""Chunk length and control period: facts of the model and of the deployment, defined once.

``chunk_size`` is the number of actions executed per inference (the execution horizon): a skip applies the next
action of the current chunk, so at most ``chunk_size - 1`` skips follow an inference. ``period_ms`` is the time
between observations (a 10 Hz camera: 100 ms). The env (``ecc_env.split_env.EnvConfig``), training
(``agents.training.TrainConfig``), the policy metadata (``env.chunk_size`` / ``env.period_ms``), ``ecc eval``, the
planners' context and the edge runtime (``executor.runtime.RuntimeConfig``) all take their defaults from here, and a
policy trained under another :class:`ControlSpec` is refused or warned at load (``agents.compat``).

A model returns ``model_chunk_length(family, preset)`` actions per inference (pi0/SmolVLA/CogACT: their ``chunk``;
OpenVLA: 1, its seven autoregressive action tokens are one action; OpenVLA with OpenVLA-OFT's parallel-decoding head,
preset ``<name>-oft<K>``: K). The runtime executes ``min(chunk_size, that)`` actions of a chunk, so a deployment
whose chunk is longer than the model's can never skip as often as the env lets it: :func:`chunk_shortfall` says so
(for OpenVLA it suggests ``-oft<chunk_size>``; see ``docs/deployment.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_CHUNK_SIZE = 8
DEFAULT_PERIOD_MS = 100.0
DEFAULT_BREAKER_RETRY_S = 1.0  # the circuit breaker's half-open retry (executor.runtime, ecc_env's EnvConfig.breaker)


@dataclass(frozen=True)
class ControlSpec:
    """chunk_size: actions executed per inference; period_ms: control period (ms)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    period_ms: float = DEFAULT_PERIOD_MS

    def __post_init__(self) -> None:
        if isinstance(self.chunk_size, bool) or int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if not (isinstance(self.period_ms, (int, float)) and math.isfinite(self.period_ms) and self.period_ms > 0):
            raise ValueError(f"period_ms must be finite and > 0, got {self.period_ms!r}")

    @property
    def period_s(self) -> float:
        return self.period_ms / 1e3


def model_chunk_length(family: str, preset: str) -> int:
    """Actions one inference of ``family/preset`` returns (from the preset; no torch import)."""
    from executor.models.presets import preset_config

    try:
        config = preset_config(family, preset)
    except ValueError as e:
        raise ValueError(f"unknown model {family}/{preset}: {e}") from e
    return int(getattr(config, "chunk", 1))


def chunk_shortfall(spec: ControlSpec, family: str, preset: str) -> str | None:
    """A warning text when the model returns fewer actions than ``spec.chunk_size`` (the runtime then skips only
    while the model's chunk lasts), else None."""
    from executor.models.presets import OFT_SUFFIX, base_preset

    n = model_chunk_length(family, preset)
    if n >= spec.chunk_size:
        return None
    return (
        f"{family}/{preset} returns {n} action(s) per inference but the chunk length is {spec.chunk_size}: the "
        f"runtime can skip at most {n - 1} step(s) after an inference where the env allowed "
        f"{spec.chunk_size - 1} (train with --chunk-size {n} to match, or use a model with an action chunk"
        + (f": preset {base_preset(preset)}{OFT_SUFFIX}{spec.chunk_size}" if family == "openvla" else "")
        + ")"
    )
