"""Hardware emulation: pad each block's compute to the per-block latency of a target device's ``Profile``.

One CPU box can then stand in for e.g. a Jetson Orin edge and an A100 cloud: every call of block ``i`` is padded
(by sleeping, which frees the CPU) to ``profile.block_ms[i] / calls_per_inference[i]``, where the number of calls of
each block per inference (prefill, decode steps, denoising steps) is counted once on a reference forward. A block
that already takes longer than its target is left alone and counted as an overrun: the emulated device cannot be
slower than this machine allows, and reports say so.

Off by default. Whoever enables it must say so in every report: ``HardwareEmulator.describe()`` gives the dict that
the server's metadata and the runtime's metrics carry.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from executor.profile import Profile, ProfileError

if TYPE_CHECKING:  # pragma: no cover
    from executor.models import SplitModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmulationStats:
    """Counters since attach: calls padded, calls that overran their target, total padding added."""

    calls: int
    overruns: int
    padded_ms: float
    overrun_ms: float


def count_block_calls(model: SplitModel, obs: dict[str, Any]) -> tuple[int, ...]:
    """How many times each block module runs in one unsplit forward of ``obs``."""
    counts = [0] * len(model.block_modules)
    handles = []
    for i, module in enumerate(model.block_modules):

        def hook(_m, _a, i=i):
            counts[i] += 1

        handles.append(module.register_forward_pre_hook(hook))
    try:
        model.forward(obs)
    finally:
        for h in handles:
            h.remove()
    return tuple(counts)


class HardwareEmulator:
    """Forward hooks on every block module of ``model`` that pad each call to the target device's time.

    ``profile`` must describe the same block chain (model id and block names). ``calls_per_inference`` defaults to a
    count taken on ``model.make_observation(seed=0)``. Hooks are thread-safe per thread (a call's start time is kept
    per thread). Use ``attach()`` / ``detach()`` or the context manager.
    """

    def __init__(
        self,
        model: SplitModel,
        profile: Profile,
        *,
        calls_per_inference: tuple[int, ...] | None = None,
    ) -> None:
        if tuple(profile.block_names) != tuple(model.block_names):
            raise ProfileError(
                f"profile {profile.model_id}/{profile.preset} on {profile.device} has blocks {profile.block_names}, "
                f"model {model.family}/{model.preset} has {model.block_names}"
            )
        self.model = model
        self.profile = profile
        if calls_per_inference is None:
            calls_per_inference = count_block_calls(model, model.make_observation(seed=0))
        if len(calls_per_inference) != profile.num_blocks or min(calls_per_inference) < 0:
            raise ValueError(
                f"calls_per_inference must hold {profile.num_blocks} counts >= 0, got {calls_per_inference}"
            )
        self.calls_per_inference = tuple(int(c) for c in calls_per_inference)
        self.target_s = tuple(
            (ms / 1e3) / c if c > 0 else 0.0 for ms, c in zip(profile.block_ms, self.calls_per_inference, strict=True)
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        self._calls = 0
        self._overruns = 0
        self._padded_s = 0.0
        self._overrun_s = 0.0

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> HardwareEmulator:
        if self._handles:
            return self
        for i, module in enumerate(self.model.block_modules):
            self._handles.append(module.register_forward_pre_hook(self._pre(i)))
            self._handles.append(module.register_forward_hook(self._post(i)))
        log.info("hardware emulation on: %s", self.describe())
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> HardwareEmulator:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _starts(self) -> dict[int, list[float]]:
        starts = getattr(self._local, "starts", None)
        if starts is None:
            starts = self._local.starts = {}
        return starts

    def _pre(self, i: int):
        def hook(_module, _args):
            self._starts().setdefault(i, []).append(time.perf_counter())

        return hook

    def _post(self, i: int):
        def hook(_module, _args, _out):
            start = self._starts()[i].pop()
            deadline = start + self.target_s[i]
            now = time.perf_counter()
            with self._lock:
                self._calls += 1
                if now > deadline:
                    if self.target_s[i] > 0:
                        self._overruns += 1
                        self._overrun_s += now - deadline
                else:
                    self._padded_s += deadline - now
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                time.sleep(left - 0.0002 if left > 0.0004 else 0)

        return hook

    def stats(self) -> EmulationStats:
        with self._lock:
            return EmulationStats(self._calls, self._overruns, self._padded_s * 1e3, self._overrun_s * 1e3)

    def describe(self) -> dict[str, Any]:
        """What reports carry when emulation is on."""
        s = self.stats()
        return {
            "emulated": True,
            "device": self.profile.device,
            "profile_source": self.profile.source,
            "model_id": self.profile.model_id,
            "preset": self.profile.preset,
            "target_total_ms": self.profile.total_ms,
            "calls": s.calls,
            "overruns": s.overruns,
        }
