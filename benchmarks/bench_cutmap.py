"""Cut maps of the full models on Jetson + A100 pairs: where (if anywhere) a split beats edge-only and cloud-only.

For openvla, pi0 and smolvla (`full`, roofline profiles, bf16 compute) on Orin+A100 and Thor+A100, with fp32 / fp16 /
int8 activations on the wire and raw / JPEG-90 camera frames, at several RTTs, prints the uplink-bandwidth range in
which a middle cut is optimal (symmetric link: downlink = uplink), the cut(s) and the best gain over
min(edge-only, cloud-only). Writes the README's plots into docs/: one "raw" (fp32 activations, raw frames) and one
"compressed" (int8 activations, JPEG-90 frames) map per model and device pair at RTT 20 ms, plus the smolvla maps at
RTT 1 ms where its connector cut wins.

    .venv/bin/python benchmarks/bench_cutmap.py [--rtt-ms 20 5 1] [--no-plots]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
MODELS = ("openvla", "pi0", "smolvla")
EDGES = ("orin", "thor")
WIRES = ("float32", "float16", "int8")
IMAGES = ("raw", "jpeg:90")


def _fmt(mbps: float) -> str:
    return f"{mbps / 1000:.3g}G" if mbps >= 1000 else f"{mbps:.3g}M"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rtt-ms", type=float, nargs="+", default=[20.0, 5.0, 1.0])
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import matplotlib.pyplot as plt
    from rich.console import Console
    from rich.table import Table

    from executor.camera import encoded_image_bytes, image_shape
    from executor.cutmap import cut_map, plot_cut_map, roofline_profiles
    from executor.models import build_model

    console = Console(width=160)
    for model in MODELS:
        shape = image_shape(build_model(model, "full", device="meta"))
        console.print(
            f"{model}/full camera frames: {shape.cameras} x {shape.image_px}px raw {shape.raw_bytes:,} B, "
            f"jpeg:90 {encoded_image_bytes('jpeg:90', shape.cameras, shape.image_px):,} B"
        )
    table = Table(
        title="bandwidth range where a split beats both edge-only and cloud-only (symmetric link, "
        "roofline, bf16 compute, cloud A100)"
    )
    for col in ("model", "edge", "wire", "images", *(f"RTT {r:g} ms" for r in args.rtt_ms)):
        table.add_column(col)
    for model in MODELS:
        for edge in EDGES:
            for wire in WIRES:
                for image in IMAGES:
                    e, c = roofline_profiles(model, "full", edge, "a100", wire_dtype=wire, image_encoding=image)
                    cells = []
                    for rtt in args.rtt_ms:
                        mids = cut_map(e, c, rtt_ms=rtt).middle_ranges()
                        cells.append(
                            "none"
                            if not mids
                            else "; ".join(
                                f"{_fmt(m.lo_mbps)}-{_fmt(m.hi_mbps)}bit/s {'/'.join(m.cuts)} (-{m.max_gain_ms:.1f} ms)"
                                for m in mids
                            )
                        )
                    table.add_row(model, edge, wire, image, *cells)
    console.print(table)
    if args.no_plots:
        return
    jobs = [(m, edge, "float32", "raw", 20.0, f"cutmap_{m}_{edge}_a100_raw.png") for m in MODELS for edge in EDGES]
    jobs += [
        (m, edge, "int8", "jpeg:90", 20.0, f"cutmap_{m}_{edge}_a100_compressed.png") for m in MODELS for edge in EDGES
    ]
    jobs += [
        ("smolvla", edge, "int8", "raw", 1.0, f"cutmap_smolvla_{edge}_a100_int8_rawframes_rtt1.png") for edge in EDGES
    ]
    for model, edge, wire, image, rtt, name in jobs:
        e, c = roofline_profiles(model, "full", edge, "a100", wire_dtype=wire, image_encoding=image)
        fig = plot_cut_map(cut_map(e, c, rtt_ms=rtt), DOCS / name)
        plt.close(fig)
        console.print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main()
