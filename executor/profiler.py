"""Measure a split model: per-block latency (timing hooks on every block module), payload bytes per cut, peak memory.

Each block's time is accumulated over every call of its module within one forward (prefill, every decode step,
every denoising step), so a block's figure is its full share of one inference. Warm-up runs first, then the
per-block median over several runs.
"""

from __future__ import annotations

import logging
import platform
import resource
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from executor.profile import Profile

if TYPE_CHECKING:  # pragma: no cover
    from executor.models import SplitModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfilerConfig:
    """How to measure: warm-up and measured runs, CPU threads (None keeps torch's setting), payload wire dtype."""

    warmup_runs: int = 2
    measured_runs: int = 5
    threads: int | None = None
    wire_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup_runs < 0:
            raise ValueError(f"warmup_runs must be >= 0, got {self.warmup_runs}")
        if self.measured_runs < 1:
            raise ValueError(f"measured_runs must be >= 1, got {self.measured_runs}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


class _BlockTimer:
    """Forward pre/post hooks that add each call's wall time to its block's total."""

    def __init__(self, modules: tuple[Any, ...], cuda: bool) -> None:
        import torch

        self._torch = torch
        self._cuda = cuda
        self.totals_s = np.zeros(len(modules))
        self._starts: dict[int, list[float]] = {i: [] for i in range(len(modules))}
        self._handles = []
        for i, module in enumerate(modules):
            self._handles.append(module.register_forward_pre_hook(self._pre(i)))
            self._handles.append(module.register_forward_hook(self._post(i)))

    def _sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()

    def _pre(self, i: int):
        def hook(_module, _args):
            self._sync()
            self._starts[i].append(time.perf_counter())

        return hook

    def _post(self, i: int):
        def hook(_module, _args, _out):
            self._sync()
            self.totals_s[i] += time.perf_counter() - self._starts[i].pop()

        return hook

    def reset(self) -> None:
        self.totals_s[:] = 0.0

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_description(device: Any) -> str:
    """A human-readable device name: the CUDA device name or the CPU model."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu:{cpu}:{torch.get_num_threads()}threads"


def profile_model(model: SplitModel, config: ProfilerConfig = ProfilerConfig()) -> Profile:
    """Run the unsplit model with timing hooks on every block; return a measured Profile."""
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dev = torch.device(model.device)
    if dev.type == "meta":
        raise ValueError(
            f"{model.family}/{model.preset} is built on the meta device and cannot be run; "
            "use the roofline model (executor.roofline) for it"
        )
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    obs = model.make_observation(config.seed)
    timer = _BlockTimer(tuple(model.block_modules), cuda)
    per_run_block_s: list[np.ndarray] = []
    forward_s: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(config.warmup_runs):
                model.forward(obs)
            for _ in range(config.measured_runs):
                timer.reset()
                t0 = time.perf_counter()
                model.forward(obs)
                if cuda:
                    torch.cuda.synchronize()
                forward_s.append(time.perf_counter() - t0)
                per_run_block_s.append(timer.totals_s.copy())
    finally:
        timer.remove()
    block_ms = np.median(np.stack(per_run_block_s), axis=0) * 1e3
    forward_ms = float(np.median(forward_s) * 1e3)
    element = torch.empty((), dtype=model.dtype).element_size()
    specs = model.block_specs()
    peak = int(torch.cuda.max_memory_allocated(dev)) if cuda else _peak_rss_bytes()
    profile = Profile(
        model_id=model.family,
        preset=model.preset,
        device=device_description(dev),
        dtype=str(model.dtype).removeprefix("torch."),
        source="measured",
        block_names=tuple(model.block_names),
        block_ms=tuple(float(x) for x in block_ms),
        cuts=tuple(model.cut_specs(config.wire_dtype)),
        block_param_bytes=tuple(int(s.param_count * element) for s in specs),
        peak_memory_bytes=peak,
        wire_dtype=config.wire_dtype,
        notes={
            "forward_ms_median": forward_ms,
            "unattributed_ms": forward_ms - float(block_ms.sum()),
            "warmup_runs": config.warmup_runs,
            "measured_runs": config.measured_runs,
            "torch_threads": torch.get_num_threads(),
            "peak_memory_kind": "cuda_max_allocated" if cuda else "process_peak_rss",
        },
    )
    log.info(
        "profiled %s/%s on %s: %.2f ms forward, %.2f ms in blocks",
        model.family,
        model.preset,
        profile.device,
        forward_ms,
        profile.total_ms,
    )
    return profile
