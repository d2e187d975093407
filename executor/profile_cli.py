"""`ecc profile`: measure a model preset on this machine (or predict it for a catalogue device) -> Profile JSON.

The bytes of every cut and the codec time are priced under the wire configuration (``--wire``, default
``jpeg:90,fp16`` as every other command; ``exact`` for raw frames and fp32), recorded in the Profile's notes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from traces.cliargs import parse_config


@dataclass(frozen=True)
class ProfileArgs:
    """The options of ``ecc profile``."""

    model: str  # model family, e.g. openvla, pi0
    preset: str = "small"  # tiny | small | full
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights and compute dtype
    wire: str = "default"
    """frames and activations on the wire, pricing the cuts: IMAGE,DTYPE (e.g. jpeg:90,fp16 or raw,fp32), 'default'
    (jpeg:90,fp16) or 'exact' (raw,fp32); see executor.wire_config"""
    wire_dtype: str | None = None  # activations on the wire (fp32, fp16, bf16, int8): replaces the dtype part of --wire
    device: str = "cpu"  # torch device to measure on: cpu or cuda[:i]
    threads: int | None = None  # torch CPU threads (None: torch's setting)
    warmup: int = 2  # warm-up runs
    runs: int = 5  # measured runs; the per-block median is kept
    hardware: str | None = None  # predict with the roofline model for this catalogue device instead of measuring
    efficiency: float = 1.0  # roofline efficiency factor in (0, 1]
    calibrate: Literal["edge", "cloud"] | None = None
    """also measure the real executor's per-call and per-byte overheads on this machine (a local server and client
    sending under --wire; executor.calibration) and store this side's in the Profile; a few seconds"""
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None  # write the Profile JSON here


def parse_args(argv: Sequence[str]) -> ProfileArgs:
    """The command line of ``ecc profile``."""
    return parse_config(ProfileArgs, argv, prog="ecc profile", description=__doc__)


def print_profile(profile) -> None:
    """Print the per-block table and the bytes of every cut."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    blocks = Table(title=f"{profile.model_id}/{profile.preset} on {profile.device} ({profile.source}, {profile.dtype})")
    for col in ("#", "block", "ms", "params MB"):
        blocks.add_column(col, justify="right" if col != "block" else "left")
    params = profile.block_param_bytes or (0,) * profile.num_blocks
    for i, (name, ms, pb) in enumerate(zip(profile.block_names, profile.block_ms, params)):
        blocks.add_row(str(i), name, f"{ms:.3f}", f"{pb / 1e6:.2f}")
    blocks.add_row("", "total", f"{profile.total_ms:.3f}", f"{sum(params) / 1e6:.2f}")
    console.print(blocks)
    wire = (profile.notes.get("wire") or {}).get("label", f"activations {profile.wire_dtype}")
    cuts = Table(title=f"bytes per cut (wire {wire})")
    for col in ("#", "k", "cut", "up bytes", "down bytes", "round trips"):
        cuts.add_column(col, justify="left" if col == "cut" else "right")
    for i, c in enumerate(profile.cuts):
        cuts.add_row(
            str(i), str(c.k), c.name or c.placement, f"{c.up_bytes:,}", f"{c.down_bytes:,}", str(c.round_trips)
        )
    console.print(cuts)
    if profile.peak_memory_bytes:
        kind = profile.notes.get("peak_memory_kind", "weights + KV cache, predicted")
        console.print(f"peak memory: {profile.peak_memory_bytes / 2**20:.1f} MiB ({kind})")
    if profile.overhead_ms:
        console.print(
            "executor overheads per cut (ms): "
            + ", ".join(f"{x:.2f}" for x in profile.overhead_ms)
            + f"; {profile.overhead_ms_per_mb:.3f} ms/MB"
        )
    if profile.block_ms_scale:
        console.print("block-time scale per cut: " + ", ".join(f"{x:.2f}" for x in profile.block_ms_scale))
    if profile.overhead_up_bytes:
        console.print(
            "message bytes beyond the payload per cut, up / down: "
            + ", ".join(f"{u:.0f}/{d:.0f}" for u, d in zip(profile.overhead_up_bytes, profile.overhead_down_bytes))
        )


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    if args.warmup < 0 or args.runs < 1:
        print(f"ecc profile: --warmup must be >= 0 and --runs >= 1 (got {args.warmup}, {args.runs})", file=sys.stderr)
        return 2
    if args.calibrate and args.hardware is not None:
        print(
            "ecc profile: --calibrate measures this machine's executor; it does not apply to a --hardware prediction",
            file=sys.stderr,
        )
        return 2
    from executor.models import build_model
    from executor.wire_config import WireConfig, priced_profile

    try:
        wire = WireConfig.parse(args.wire)
        if args.wire_dtype is not None:
            wire = WireConfig(wire.image, args.wire_dtype)
        if args.hardware is not None:
            from executor.roofline import roofline_profile_for

            profile = roofline_profile_for(
                args.model, args.preset, args.hardware, dtype=args.dtype, efficiency=args.efficiency
            )
            model = build_model(args.model, args.preset, device="meta")
        else:
            import torch

            from executor.profiler import ProfilerConfig, profile_model

            model = build_model(args.model, args.preset, device=args.device, dtype=getattr(torch, args.dtype))
            profile = profile_model(
                model, ProfilerConfig(warmup_runs=args.warmup, measured_runs=args.runs, threads=args.threads)
            )
        profile = priced_profile(profile, model, wire)
        if args.calibrate:  # overheads beyond the blocks and the codec of the wire the cuts are priced under
            from executor.calibration import CalibrationConfig, measure_overheads

            config = CalibrationConfig(wire=wire)
            edge, cloud = measure_overheads(model, profile, profile, config).apply(profile, profile)
            profile = edge if args.calibrate == "edge" else cloud
    except ValueError as e:
        print(f"ecc profile: {e}", file=sys.stderr)
        return 2
    print_profile(profile)
    if args.output is not None:
        path = profile.save(args.output)
        print(f"wrote {path}")
    return 0
