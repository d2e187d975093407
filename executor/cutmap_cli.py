"""`ecc cutmap`: the bandwidth intervals where each cut of a model is optimal on an (edge, cloud) device pair.

Prints, per RTT, the exact intervals of uplink bandwidth where each cut is the fastest (and where a split beats both
edge-only and cloud-only), and writes the plot (-o). Profiles come from the roofline model of two catalogue devices
(default) or from Profile JSON files (--edge-profile/--cloud-profile, e.g. measured by `ecc profile`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from traces.cliargs import parse_config


@dataclass(frozen=True)
class CutmapArgs:
    """The options of ``ecc cutmap``."""

    model: str  # model family: openvla, pi0, smolvla, cogact
    preset: str = "full"  # tiny | small | full
    edge: str = "orin"  # edge device from the hardware catalogue
    cloud: str = "a100"  # cloud device from the hardware catalogue
    wire_dtype: str = "fp16"  # activations on the wire: fp32, fp16, bf16, int8 (executor.wire_config)
    image: str = "jpeg:90"  # camera frames on the wire: raw, png, jpeg[:Q], resize:PX[+jpeg:Q]
    rtt_ms: Annotated[tuple[float, ...], tyro.conf.UseAppendAction] = ()
    """round-trip time in ms, one map each (repeat the flag: --rtt-ms 50 --rtt-ms 0; the plot uses the first; none: 20)"""
    down_mbps: float | None = None  # fixed downlink rate in Mbit/s (None: downlink = uplink)
    bw_min: float = 0.5  # lowest uplink bandwidth, Mbit/s
    bw_max: float = 10_000.0  # highest uplink bandwidth, Mbit/s
    dtype: Literal["bfloat16", "float16", "float32", "int8"] = "bfloat16"  # roofline compute dtype
    efficiency: float = 1.0  # roofline efficiency factor in (0, 1]
    edge_profile: Path | None = None  # edge Profile JSON instead of the roofline
    cloud_profile: Path | None = None  # cloud Profile JSON instead of the roofline
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None  # write the plot (PNG) here
    json: Path | None = None  # write the intervals as JSON here


def parse_args(argv: Sequence[str]) -> CutmapArgs:
    """The command line of ``ecc cutmap``."""
    return parse_config(CutmapArgs, argv, prog="ecc cutmap", description=__doc__)


def _profiles(args: CutmapArgs, wire: str):
    from executor.cutmap import roofline_profiles
    from executor.models import build_model
    from executor.profile import Profile
    from executor.wire_config import WireConfig, priced_profiles

    if (args.edge_profile is None) != (args.cloud_profile is None):
        raise ValueError("give both --edge-profile and --cloud-profile, or neither")
    if args.edge_profile is None or args.cloud_profile is None:
        return roofline_profiles(
            args.model,
            args.preset,
            args.edge,
            args.cloud,
            dtype=args.dtype,
            wire_dtype=wire,
            image_encoding=args.image,
            efficiency=args.efficiency,
        )
    edge = Profile.load(args.edge_profile, expect_model=args.model, expect_preset=args.preset)
    cloud = Profile.load(args.cloud_profile, expect_model=args.model, expect_preset=args.preset)
    return priced_profiles(
        edge, cloud, build_model(args.model, args.preset, device="meta"), WireConfig(args.image, wire)
    )


def _fmt_bw(mbps: float) -> str:
    return f"{mbps / 1000:.3g} Gbit/s" if mbps >= 1000 else f"{mbps:.3g} Mbit/s"


def print_map(cm, console) -> None:
    """The envelope intervals and the middle-cut summary of one CutMap."""
    from rich.table import Table

    t = Table(title=cm.describe())
    for col in ("uplink from", "to", "cut #", "optimal cut", "kind", "ms at lo -> hi"):
        t.add_column(col, justify="right" if col not in ("optimal cut", "kind") else "left")
    for iv in cm.intervals:
        t.add_row(
            _fmt_bw(iv.lo_mbps),
            _fmt_bw(iv.hi_mbps),
            str(iv.cut_index),
            iv.name,
            iv.kind,
            f"{iv.latency_at_lo_ms:.2f} -> {iv.latency_at_hi_ms:.2f}",
        )
    console.print(t)
    mids = cm.middle_ranges()
    if not mids:
        console.print("no bandwidth in range where a split beats both edge-only and cloud-only")
    for m in mids:
        console.print(
            f"split optimal from {_fmt_bw(m.lo_mbps)} to {_fmt_bw(m.hi_mbps)} ({', '.join(m.cuts)}); "
            f"best gain over min(edge-only, cloud-only): {m.max_gain_ms:.2f} ms at "
            f"{_fmt_bw(m.best_gain_at_mbps)}"
        )


def map_to_dict(cm) -> dict:
    return {
        "model": cm.model_id,
        "preset": cm.preset,
        "edge": cm.edge_device,
        "cloud": cm.cloud_device,
        "wire_dtype": cm.wire_dtype,
        "image_encoding": cm.image_encoding,
        "rtt_ms": cm.rtt_ms,
        "down_mbps": cm.down_mbps,
        "bw_min_mbps": cm.bw_min_mbps,
        "bw_max_mbps": cm.bw_max_mbps,
        "intervals": [
            {
                "cut_index": iv.cut_index,
                "name": iv.name,
                "kind": iv.kind,
                "lo_mbps": iv.lo_mbps,
                "hi_mbps": iv.hi_mbps,
                "latency_at_lo_ms": iv.latency_at_lo_ms,
                "latency_at_hi_ms": iv.latency_at_hi_ms,
            }
            for iv in cm.intervals
        ],
        "middle_ranges": [
            {"lo_mbps": m.lo_mbps, "hi_mbps": m.hi_mbps, "cuts": list(m.cuts), "max_gain_ms": m.max_gain_ms}
            for m in cm.middle_ranges()
        ],
    }


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    from executor.wire_config import ACTIVATION_DTYPES

    wire = ACTIVATION_DTYPES.get(args.wire_dtype.lower())
    if wire is None:
        print(
            f"ecc cutmap: unknown --wire-dtype {args.wire_dtype!r}; valid: {', '.join(ACTIVATION_DTYPES)}",
            file=sys.stderr,
        )
        return 2
    rtts = args.rtt_ms or (20.0,)
    from rich.console import Console

    from executor.camera import ImageEncoding, image_shape, measure_encoding, sample_frames
    from executor.cutmap import cut_map, plot_cut_map
    from executor.models import build_model
    from executor.roofline import InfeasibleError

    console = Console()
    try:
        enc = ImageEncoding.parse(args.image)
        edge, cloud = _profiles(args, wire)
        maps = [
            cut_map(edge, cloud, rtt_ms=r, down_mbps=args.down_mbps, bw_min_mbps=args.bw_min, bw_max_mbps=args.bw_max)
            for r in rtts
        ]
    except InfeasibleError as e:
        print(f"ecc cutmap: model does not fit: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        print(f"ecc cutmap: {e}", file=sys.stderr)
        return 2
    shape = image_shape(build_model(args.model, args.preset, device="meta"))
    stats = measure_encoding(enc, sample_frames(shape.cameras, shape.image_px), repeats=3)
    console.print(
        f"camera frames: {shape.cameras} x {shape.image_px}x{shape.image_px} px, {enc.label}: "
        f"{stats.encoded_bytes:,} bytes ({stats.ratio:.1%} of raw {stats.raw_bytes:,}); on this CPU "
        f"encode {stats.encode_ms:.1f} ms, decode {stats.decode_ms:.1f} ms (the map charges "
        f"{edge.codec_ms[0]:.2f} ms on the edge, {cloud.codec_ms[0]:.2f} ms on the cloud at cut 0); "
        f"PSNR {stats.psnr_db:.1f} dB"
    )
    for cm in maps:
        print_map(cm, console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([map_to_dict(cm) for cm in maps], indent=2))
        console.print(f"wrote {args.json}")
    if args.output is not None:
        import matplotlib.pyplot as plt

        fig = plot_cut_map(maps[0], args.output)
        plt.close(fig)
        console.print(f"wrote {args.output}")
    return 0
