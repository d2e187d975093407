"""`ecc cutmap`: the bandwidth intervals where each cut of a model is optimal on an (edge, cloud) device pair.

Prints, per RTT, the exact intervals of uplink bandwidth where each cut is the fastest (and where a split beats both
edge-only and cloud-only), and writes the plot (-o). Profiles come from the roofline model of two catalogue devices
(default) or from Profile JSON files (--edge-profile/--cloud-profile, e.g. measured by `ecc profile`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

COMPUTE_DTYPES = ("bfloat16", "float16", "float32", "int8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecc cutmap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model family: openvla, pi0, smolvla, cogact")
    p.add_argument("--preset", default="full", help="tiny | small | full (default: full)")
    p.add_argument("--edge", default="orin", help="edge device from the hardware catalogue (default: orin)")
    p.add_argument("--cloud", default="a100", help="cloud device from the hardware catalogue (default: a100)")
    p.add_argument("--wire-dtype", default="fp16",
                   help="activations on the wire: fp32, fp16, bf16, int8 (default fp16, executor.wire_config)")
    p.add_argument("--image", default="jpeg:90",
                   help="camera frames on the wire: raw, png, jpeg[:Q], resize:PX[+jpeg:Q] (default: jpeg:90)")
    p.add_argument("--rtt-ms", type=float, action="append", default=None,
                   help="round-trip time in ms (repeat for several maps; the plot uses the first; default 20)")
    p.add_argument("--down-mbps", type=float, default=None,
                   help="fixed downlink rate in Mbit/s (default: downlink = uplink)")
    p.add_argument("--bw-min", type=float, default=0.5, help="lowest uplink bandwidth, Mbit/s (default 0.5)")
    p.add_argument("--bw-max", type=float, default=10_000.0, help="highest uplink bandwidth, Mbit/s (default 10000)")
    p.add_argument("--dtype", default="bfloat16", choices=COMPUTE_DTYPES, help="roofline compute dtype")
    p.add_argument("--efficiency", type=float, default=1.0, help="roofline efficiency factor in (0, 1]")
    p.add_argument("--edge-profile", type=Path, default=None, help="edge Profile JSON instead of the roofline")
    p.add_argument("--cloud-profile", type=Path, default=None, help="cloud Profile JSON instead of the roofline")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the plot (PNG) here")
    p.add_argument("--json", type=Path, default=None, help="write the intervals as JSON here")
    return p


def _profiles(args: argparse.Namespace, wire: str):
    from executor.cutmap import roofline_profiles
    from executor.models import build_model
    from executor.profile import Profile
    from executor.wire_config import WireConfig, priced_profiles

    if (args.edge_profile is None) != (args.cloud_profile is None):
        raise ValueError("give both --edge-profile and --cloud-profile, or neither")
    if args.edge_profile is None:
        return roofline_profiles(args.model, args.preset, args.edge, args.cloud, dtype=args.dtype, wire_dtype=wire,
                                 image_encoding=args.image, efficiency=args.efficiency)
    edge = Profile.load(args.edge_profile, expect_model=args.model, expect_preset=args.preset)
    cloud = Profile.load(args.cloud_profile, expect_model=args.model, expect_preset=args.preset)
    return priced_profiles(edge, cloud, build_model(args.model, args.preset, device="meta"),
                           WireConfig(args.image, wire))


def _fmt_bw(mbps: float) -> str:
    return f"{mbps / 1000:.3g} Gbit/s" if mbps >= 1000 else f"{mbps:.3g} Mbit/s"


def print_map(cm, console) -> None:
    """The envelope intervals and the middle-cut summary of one CutMap."""
    from rich.table import Table

    t = Table(title=cm.describe())
    for col in ("uplink from", "to", "cut #", "optimal cut", "kind", "ms at lo -> hi"):
        t.add_column(col, justify="right" if col not in ("optimal cut", "kind") else "left")
    for iv in cm.intervals:
        t.add_row(_fmt_bw(iv.lo_mbps), _fmt_bw(iv.hi_mbps), str(iv.cut_index), iv.name, iv.kind,
                  f"{iv.latency_at_lo_ms:.2f} -> {iv.latency_at_hi_ms:.2f}")
    console.print(t)
    mids = cm.middle_ranges()
    if not mids:
        console.print("no bandwidth in range where a split beats both edge-only and cloud-only")
    for m in mids:
        console.print(f"split optimal from {_fmt_bw(m.lo_mbps)} to {_fmt_bw(m.hi_mbps)} ({', '.join(m.cuts)}); "
                      f"best gain over min(edge-only, cloud-only): {m.max_gain_ms:.2f} ms at "
                      f"{_fmt_bw(m.best_gain_at_mbps)}")


def map_to_dict(cm) -> dict:
    return {
        "model": cm.model_id, "preset": cm.preset, "edge": cm.edge_device, "cloud": cm.cloud_device,
        "wire_dtype": cm.wire_dtype, "image_encoding": cm.image_encoding, "rtt_ms": cm.rtt_ms,
        "down_mbps": cm.down_mbps, "bw_min_mbps": cm.bw_min_mbps, "bw_max_mbps": cm.bw_max_mbps,
        "intervals": [{"cut_index": iv.cut_index, "name": iv.name, "kind": iv.kind, "lo_mbps": iv.lo_mbps,
                       "hi_mbps": iv.hi_mbps, "latency_at_lo_ms": iv.latency_at_lo_ms,
                       "latency_at_hi_ms": iv.latency_at_hi_ms} for iv in cm.intervals],
        "middle_ranges": [{"lo_mbps": m.lo_mbps, "hi_mbps": m.hi_mbps, "cuts": list(m.cuts),
                           "max_gain_ms": m.max_gain_ms} for m in cm.middle_ranges()],
    }


def main(argv: Sequence[str] = ()) -> int:
    args = build_parser().parse_args(list(argv))
    from executor.wire_config import ACTIVATION_DTYPES

    wire = ACTIVATION_DTYPES.get(args.wire_dtype.lower())
    if wire is None:
        print(f"ecc cutmap: unknown --wire-dtype {args.wire_dtype!r}; valid: {', '.join(ACTIVATION_DTYPES)}",
              file=sys.stderr)
        return 2
    rtts = args.rtt_ms or [20.0]
    from rich.console import Console

    from executor.camera import ImageEncoding, image_shape, measure_encoding, sample_frames
    from executor.cutmap import cut_map, plot_cut_map
    from executor.models import build_model
    from executor.roofline import InfeasibleError

    console = Console()
    try:
        enc = ImageEncoding.parse(args.image)
        edge, cloud = _profiles(args, wire)
        maps = [cut_map(edge, cloud, rtt_ms=r, down_mbps=args.down_mbps, bw_min_mbps=args.bw_min,
                        bw_max_mbps=args.bw_max) for r in rtts]
    except InfeasibleError as e:
        print(f"ecc cutmap: model does not fit: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        print(f"ecc cutmap: {e}", file=sys.stderr)
        return 2
    shape = image_shape(build_model(args.model, args.preset, device="meta"))
    stats = measure_encoding(enc, sample_frames(shape.cameras, shape.image_px), repeats=3)
    console.print(f"camera frames: {shape.cameras} x {shape.image_px}x{shape.image_px} px, {enc.label}: "
                  f"{stats.encoded_bytes:,} bytes ({stats.ratio:.1%} of raw {stats.raw_bytes:,}); on this CPU "
                  f"encode {stats.encode_ms:.1f} ms, decode {stats.decode_ms:.1f} ms (the map charges "
                  f"{edge.codec_ms[0]:.2f} ms on the edge, {cloud.codec_ms[0]:.2f} ms on the cloud at cut 0); "
                  f"PSNR {stats.psnr_db:.1f} dB")
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
