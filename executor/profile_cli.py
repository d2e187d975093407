"""`ecc profile`: measure a model preset on this machine (or predict it for a catalogue device) -> Profile JSON.

The bytes of every cut and the codec time are priced under the wire configuration (``--wire``, default
``jpeg:90,fp16`` as every other command; ``exact`` for raw frames and fp32), recorded in the Profile's notes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecc profile", description=__doc__)
    p.add_argument("--model", required=True, help="model family, e.g. openvla, pi0")
    p.add_argument("--preset", default="small", help="tiny | small | full (default: small)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and compute dtype")
    p.add_argument("--wire", default="default",
                   help="frames and activations on the wire, pricing the cuts: IMAGE,DTYPE (e.g. jpeg:90,fp16 or "
                        "raw,fp32), 'default' (jpeg:90,fp16) or 'exact' (raw,fp32); see executor.wire_config")
    p.add_argument("--wire-dtype", default=None,
                   help="activations on the wire (fp32, fp16, bf16, int8): replaces the dtype part of --wire")
    p.add_argument("--device", default="cpu", help="torch device to measure on: cpu or cuda[:i]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's setting)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up runs (default 2)")
    p.add_argument("--runs", type=int, default=5, help="measured runs; the per-block median is kept (default 5)")
    p.add_argument("--hardware", default=None,
                   help="predict with the roofline model for this catalogue device instead of measuring")
    p.add_argument("--efficiency", type=float, default=1.0, help="roofline efficiency factor in (0, 1]")
    p.add_argument("--calibrate", choices=("edge", "cloud"), default=None,
                   help="also measure the real executor's per-call and per-byte overheads on this machine (a local "
                        "server and client sending under --wire; executor.calibration) and store "
                        "this side's in the Profile; a few seconds")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the Profile JSON here")
    return p


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
        cuts.add_row(str(i), str(c.k), c.name or c.placement, f"{c.up_bytes:,}", f"{c.down_bytes:,}",
                     str(c.round_trips))
    console.print(cuts)
    if profile.peak_memory_bytes:
        kind = profile.notes.get("peak_memory_kind", "weights + KV cache, predicted")
        console.print(f"peak memory: {profile.peak_memory_bytes / 2**20:.1f} MiB ({kind})")
    if profile.overhead_ms:
        console.print("executor overheads per cut (ms): " + ", ".join(f"{x:.2f}" for x in profile.overhead_ms)
                      + f"; {profile.overhead_ms_per_mb:.3f} ms/MB")


def main(argv: Sequence[str] = ()) -> int:
    args = build_parser().parse_args(list(argv))
    if args.warmup < 0 or args.runs < 1:
        print(f"ecc profile: --warmup must be >= 0 and --runs >= 1 (got {args.warmup}, {args.runs})", file=sys.stderr)
        return 2
    if args.calibrate and args.hardware is not None:
        print("ecc profile: --calibrate measures this machine's executor; it does not apply to a --hardware "
              "prediction", file=sys.stderr)
        return 2
    from executor.models import build_model
    from executor.wire_config import WireConfig, priced_profile

    try:
        wire = WireConfig.parse(args.wire)
        if args.wire_dtype is not None:
            wire = WireConfig(wire.image, args.wire_dtype)
        if args.hardware is not None:
            from executor.roofline import roofline_profile_for

            profile = roofline_profile_for(args.model, args.preset, args.hardware, dtype=args.dtype,
                                           efficiency=args.efficiency)
            model = build_model(args.model, args.preset, device="meta")
        else:
            import torch

            from executor.profiler import ProfilerConfig, profile_model

            model = build_model(args.model, args.preset, device=args.device, dtype=getattr(torch, args.dtype))
            profile = profile_model(model, ProfilerConfig(warmup_runs=args.warmup, measured_runs=args.runs,
                                                          threads=args.threads))
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
