"""Split VLA models: real transformers blocks with random weights, cut at every block boundary.

``build_model(family, preset)`` returns a `SplitModel`; see ``executor.models.base`` for the cut convention, the
`Payload` messages and `run_split`. Families and presets are listed without importing torch.
"""

from __future__ import annotations

from typing import Any

from executor.models.base import (
    PAYLOAD_KINDS,
    CloudSession,
    EdgeSession,
    WIRE_DTYPE_BYTES,
    Message,
    ModelNotRunnableError,
    Payload,
    PayloadError,
    SplitModel,
    SplitTrace,
    TensorSpec,
    run_split,
)
from executor.models.presets import PRESETS, base_preset, preset_config

FAMILIES: tuple[str, ...] = tuple(PRESETS)
_DTYPES = ("float32", "bfloat16", "float16")

__all__ = [
    "FAMILIES",
    "PAYLOAD_KINDS",
    "WIRE_DTYPE_BYTES",
    "CloudSession",
    "EdgeSession",
    "Message",
    "ModelNotRunnableError",
    "Payload",
    "PayloadError",
    "SplitModel",
    "SplitTrace",
    "TensorSpec",
    "build_model",
    "presets_for",
    "run_split",
]


def presets_for(family: str) -> tuple[str, ...]:
    """Preset names of a family; ValueError listing the families for an unknown one."""
    if family not in PRESETS:
        raise ValueError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    return tuple(PRESETS[family])


def build_model(
    family: str,
    preset: str = "tiny",
    *,
    device: Any = "cpu",
    dtype: Any = None,
    seed: int = 0,
    on_meta: bool | None = None,
) -> SplitModel:
    """Build a split model with random weights from its preset config (never downloads).

    ``preset``: a name of ``presets_for(family)``, or for openvla ``<name>-oft<K>`` (OpenVLA-OFT's parallel-decoding
    head of K actions; ``executor.models.presets.preset_config``). ``dtype``: torch dtype or its name (default
    float32). ``on_meta``: build on the meta device (shapes only); default True for preset ``full`` (and its
    variants), False otherwise. ``seed`` seeds the weights without touching torch's global RNG.
    """
    import torch

    presets_for(family)
    config = preset_config(family, preset)
    if dtype is None:
        dtype = torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(_DTYPES)}")
        dtype = getattr(torch, dtype)
    elif not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or one of {_DTYPES}, got {type(dtype).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if on_meta is None:
        on_meta = base_preset(preset) == "full" or dev.type == "meta"
    if family == "openvla":
        from executor.models.openvla import OpenVLASplitModel

        return OpenVLASplitModel(preset, config, device=dev, dtype=dtype, seed=seed, on_meta=on_meta)
    if family == "smolvla":
        from executor.models.smolvla import SmolVLASplitModel

        return SmolVLASplitModel(preset, config, device=dev, dtype=dtype, seed=seed, on_meta=on_meta)
    if family == "cogact":
        from executor.models.cogact import CogACTSplitModel

        return CogACTSplitModel(preset, config, device=dev, dtype=dtype, seed=seed, on_meta=on_meta)
    from executor.models.pi0 import Pi0SplitModel

    return Pi0SplitModel(preset, config, device=dev, dtype=dtype, seed=seed, on_meta=on_meta)
