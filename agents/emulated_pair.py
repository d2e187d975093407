"""A time-scaled Profile pair that a small real model can emulate on one CPU box (for the executor backend).

Roofline times of a ``tiny``/``small`` model on an Orin or an A100 are microseconds, far below what this CPU takes,
so ``executor.emulation.HardwareEmulator`` could not pad to them. Instead the pair keeps the *ratios* of the real
devices: the cloud side is this machine's measured per-block time times ``headroom`` (so padding, never an overrun,
sets it), and the edge side is the cloud side times the edge/cloud time ratio of the ``full`` model's roofline for
the block's component (vision tower, projector, language model, action expert: ``block name`` up to the first dot).
Cut payloads are the small model's own. Profiles carry ``notes["emulated"]`` saying so.

The pair is calibrated to the real executor (``executor.calibration``, unless ``calibrate=False``): the per-call and
per-byte overheads that the real client, relay and server spend outside the blocks on this machine. The emulator
pads the blocks only, so those overheads are the same at emulated speed, and the env charges them like the runtime
pays them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from executor.profile import Profile

log = logging.getLogger(__name__)


def _component(block: str) -> str:
    return block.split(".", 1)[0]


def component_ratios(edge_full: Profile, cloud_full: Profile) -> dict[str, float]:
    """Edge time / cloud time of each component of the ``full`` model (sums over its blocks)."""
    if edge_full.block_names != cloud_full.block_names:
        raise ValueError("edge and cloud Profiles describe different block chains")
    e: dict[str, float] = {}
    c: dict[str, float] = {}
    for name, te, tc in zip(edge_full.block_names, edge_full.block_ms, cloud_full.block_ms, strict=True):
        k = _component(name)
        e[k] = e.get(k, 0.0) + te
        c[k] = c.get(k, 0.0) + tc
    total = sum(e.values()) / max(sum(c.values()), 1e-12)
    return {k: (e[k] / c[k] if c[k] > 0 else total) for k in e} | {"*": total}


def scaled_pair(
    measured: Profile,
    ratios: dict[str, float],
    *,
    headroom: float = 1.5,
    edge_name: str = "orin",
    cloud_name: str = "a100",
) -> tuple[Profile, Profile]:
    """(edge, cloud) Profiles of ``measured``'s model: cloud = measured * headroom, edge = cloud * ratio."""
    if not headroom >= 1.0:
        raise ValueError(
            f"headroom must be >= 1 (the emulated cloud cannot be faster than this machine), got {headroom}"
        )
    cloud_ms = tuple(t * headroom for t in measured.block_ms)
    edge_ms = tuple(t * ratios.get(_component(b), ratios["*"]) for b, t in zip(measured.block_names, cloud_ms))
    note = (
        f"time-scaled emulation: cloud = this machine's measured block time x {headroom:g}; edge = cloud x the "
        f"{edge_name}/{cloud_name} roofline time ratio of the full model's component"
    )
    common = dict(source="measured", device_memory_bytes=0, peak_memory_bytes=0)
    edge = replace(
        measured,
        device=f"{edge_name}~emulated",
        block_ms=edge_ms,
        notes={**measured.notes, "emulated": note, "ratios": ratios},
        **common,
    )
    cloud = replace(
        measured,
        device=f"{cloud_name}~emulated",
        block_ms=cloud_ms,
        notes={**measured.notes, "emulated": note},
        **common,
    )
    return edge, cloud


def emulated_pair(
    family: str,
    preset: str = "tiny",
    edge_hw: str = "orin",
    cloud_hw: str = "a100",
    *,
    headroom: float = 1.5,
    seed: int = 0,
    measured: Profile | None = None,
    wire: Any = "default",
    calibrate: bool = True,
) -> tuple[Profile, Profile]:
    """Measure ``family/preset`` on this CPU (unless ``measured`` is given) and scale it to an edge/cloud pair with
    the ratios of the ``full`` model's roofline on ``edge_hw`` / ``cloud_hw``; its cuts priced under ``wire``
    (``executor.wire_config``: the payloads the client sends, with the codec time measured on this CPU), as every
    Profile the env, training and evaluation use; with ``calibrate``, carrying the real executor's overheads measured
    on this machine under ``wire`` (``executor.calibration``, a few seconds). An OpenVLA-OFT preset
    (``<name>-oft<K>``) takes the ratios of ``full-oft<K>``. Imports torch."""
    from executor.models import build_model
    from executor.models.presets import full_preset
    from executor.roofline import roofline_profile_for
    from executor.wire_config import priced_profiles

    if measured is None:
        from executor.profiler import ProfilerConfig, profile_model

        measured = profile_model(build_model(family, preset, seed=seed), ProfilerConfig(warmup_runs=2, measured_runs=7))
    full = full_preset(preset)  # the published model with this preset's action head (OpenVLA-OFT: full-oft<K>)
    ratios = component_ratios(
        roofline_profile_for(family, full, edge_hw, check_memory=False),
        roofline_profile_for(family, full, cloud_hw, check_memory=False),
    )
    log.info(
        "emulated %s/%s pair: per-component %s/%s ratios %s",
        family,
        preset,
        edge_hw,
        cloud_hw,
        {k: round(v, 2) for k, v in ratios.items()},
    )
    edge, cloud = scaled_pair(measured, ratios, headroom=headroom, edge_name=edge_hw, cloud_name=cloud_hw)
    edge, cloud = priced_profiles(edge, cloud, build_model(family, preset, device="meta"), wire, measured_codec=True)
    if not calibrate:
        return edge, cloud
    from executor.calibration import CalibrationConfig, calibrated

    return calibrated(build_model(family, preset, seed=seed), edge, cloud, CalibrationConfig(wire=wire, seed=seed))


def describe(profile: Profile) -> dict[str, Any]:
    """Short description for reports."""
    return {
        "model": f"{profile.model_id}/{profile.preset}",
        "device": profile.device,
        "total_ms": round(profile.total_ms, 3),
        "emulated": profile.notes.get("emulated"),
    }
