"""``ecc perf``: VLA-Perf-style what-if analysis (latency breakdown, control frequency, memory fit) of VLA models
across catalogue hardware, networks and deployment modes, on the roofline of ``executor.roofline``."""

from executor.perf.configs import (
    ConfigError,
    LMConfig,
    VisionConfig,
    VLAConfig,
    block_specs,
    get_config,
    load_hf_config,
    model_names,
    resolve_model,
)
from executor.perf.modes import (
    MODES,
    Payloads,
    PerfInputError,
    PerfResult,
    VLA_PERF_NETWORK_PAYLOADS,
    custom_link,
    evaluate,
    evaluate_mode,
)

__all__ = [
    "ConfigError",
    "LMConfig",
    "MODES",
    "Payloads",
    "PerfInputError",
    "PerfResult",
    "VLAConfig",
    "VLA_PERF_NETWORK_PAYLOADS",
    "VisionConfig",
    "block_specs",
    "custom_link",
    "evaluate",
    "evaluate_mode",
    "get_config",
    "load_hf_config",
    "model_names",
    "resolve_model",
]
