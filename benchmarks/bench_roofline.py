"""Roofline tables for the `full` presets on every catalogue device, pi0 next to VLA-Perf's published figures,
and wire-format encode/decode throughput.

    .venv/bin/python benchmarks/bench_roofline.py            # roofline tables + wire throughput
    .venv/bin/python benchmarks/bench_roofline.py --no-wire  # roofline only

Published reference: VLA-Perf (Jiang et al., arXiv 2602.18397, 2026), Table "Inference performance of pi0 on
various GPUs without considering network latency" (vla-perf/paper_tables/1_pi0_perf.tex in the authors' code:
vision / VLM / action / end-to-end ms, bf16, 3 cameras, 800-token prefill, chunk 50, 10 denoising steps).
It covers Thor, RTX 4090, A100, H100 and B100 (no Orin rows). Bounds from its Table 1_pi0_bound.tex.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from executor import catalog, roofline, wire  # noqa: E402
from executor.blocks import BlockSpec, ComputePass  # noqa: E402

# (vision ms, VLM ms, action ms, e2e ms) and bound letters (vision, VLM, action), as published by VLA-Perf
VLA_PERF_PI0 = {
    "Jetson AGX Thor": ((6.06, 20.30, 26.20, 52.57), "MMM"),
    "RTX 4090": ((4.02, 19.79, 7.25, 31.06), "CCM"),
    "A100-80GB": ((2.13, 10.47, 3.60, 16.20), "CCM"),
    "H100 SXM": ((0.71, 3.30, 2.14, 6.15), "CCM"),
    "B100": ((0.40, 1.87, 0.91, 3.18), "CCM"),
}
COMPONENTS = ("vision", "llm_prefill", "decode", "action")
_LLM_PREFIXES = ("llm", "vlm", "lm", "gemma", "language", "paligemma.language", "text")


def component(block_name: str, phase: str) -> str:
    """VLA-Perf's components: vision encoder (+projector), LLM/VLM prefill, autoregressive decode, action expert."""
    if phase == "decode":
        return "decode"
    if phase == "parallel_decode" or block_name.startswith(("expert", "action")):
        return "action"
    if block_name.startswith(_LLM_PREFIXES):
        return "llm_prefill"
    return "vision"


def vla_perf_pi0_specs() -> list[BlockSpec]:
    """pi0 as VLA-Perf describes it (hand-built BlockSpecs), to cross-check the models package's own specs."""
    p = ComputePass
    specs = [BlockSpec("vision.embed", "patch_embed", (p(768, 768),), in_dim=14 * 14 * 3, hidden=1152)]
    specs += [
        BlockSpec(
            f"vision.layer{i}",
            "transformer_layer",
            (p(768, 256),),
            hidden=1152,
            mlp=4304,
            heads=16,
            kv_heads=16,
            head_dim=72,
        )
        for i in range(27)
    ]
    specs.append(BlockSpec("vision.proj", "linear", (p(768, 768),), in_dim=1152, out_dim=2048))
    specs += [
        BlockSpec(
            f"vlm.layer{i}",
            "transformer_layer",
            (p(800, 800),),
            hidden=2048,
            mlp=16384,
            heads=8,
            kv_heads=1,
            head_dim=256,
            gated_mlp=True,
        )
        for i in range(18)
    ]
    specs.append(
        BlockSpec(
            "expert",
            "expert",
            (p(50, 850, "parallel_decode", 10),),
            hidden=1024,
            mlp=4096,
            heads=8,
            kv_heads=1,
            head_dim=256,
            gated_mlp=True,
            layers=18,
        )
    )
    return specs


def model_specs(family: str) -> list[BlockSpec] | str:
    try:
        from executor.models import build_model

        return build_model(family, "full").block_specs()
    except Exception as e:  # the models package may not provide this family yet
        return f"unavailable ({type(e).__name__}: {e})"


def roofline_table(
    title: str, specs: list[BlockSpec], *, attention: str = roofline.DEFAULT_ATTENTION, published: bool = False
) -> None:
    print(
        f"\n## {title}  (bf16, efficiency 1.0, attention accounting {attention!r}; complete accounting: "
        "GB/s decimal, one expert QKV)"
    )
    head = f"{'device':22s} " + " ".join(f"{c:>16s}" for c in COMPONENTS) + f" {'total ms':>9s} {'GB':>6s} fits"
    if published:
        head += "   | VLA-Perf vis/vlm/act/e2e ms (bounds)  e2e ratio"
    print(head)
    for hw in catalog.HARDWARE:
        r = roofline.estimate(specs, hw, attention=attention)
        parts = roofline.breakdown(r, component)
        cells = []
        for c in COMPONENTS:
            g = parts.get(c)
            cells.append(f"{g.time_ms:10.2f} ({g.bound[0].upper()})" if g else f"{'-':>14s}  ")
        line = f"{hw.name:22s} " + " ".join(f"{x:>16s}" for x in cells)
        total = f"{r.total_ms:9.2f}" if r.fits_memory else f"{'infeas.':>9s}"
        line += f" {total} {r.memory_required_bytes / 1e9:6.2f} {'yes' if r.fits_memory else 'NO'}"
        if published:
            pub = VLA_PERF_PI0.get(hw.name)
            if pub:
                (v, lm, a, e), bounds = pub
                line += f"   | {v:5.2f}/{lm:5.2f}/{a:5.2f}/{e:6.2f} ({'/'.join(bounds)})  {r.total_ms / e:5.3f}"
            else:
                line += "   | (not in the paper)"
        print(line)


def wire_throughput(repeats: int = 15) -> None:
    print("\n## wire format: encode + decode of one float32 tensor (median of", repeats, "runs, this CPU)")
    print(
        f"{'size':>6s} {'codec':>10s} {'wire MB':>8s} {'encode MB/s':>12s} {'decode MB/s':>12s} {'enc+dec MB/s':>13s}"
    )
    rng = np.random.default_rng(0)
    for mb in (1, 10):
        x = rng.standard_normal(mb * 1_000_000 // 4).astype(np.float32)
        for codec in wire.COMPRESSIONS:
            enc, dec = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                data = wire.encode({"x": x.reshape(-1, 1000)}, {"cut": 1}, compression=codec)
                t1 = time.perf_counter()
                wire.decode(data, copy=True)
                t2 = time.perf_counter()
                enc.append(t1 - t0)
                dec.append(t2 - t1)
            e, d = statistics.median(enc), statistics.median(dec)
            print(f"{mb:4d}MB {codec:>10s} {len(data) / 1e6:8.3f} {mb / e:12.0f} {mb / d:12.0f} {mb / (e + d):13.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-wire", action="store_true", help="skip the wire throughput section")
    args = ap.parse_args()
    print(
        "settings: on-device only (no network, no RTT, no queueing); ideal efficiency; complete accounting (GB/s "
        "decimal, one expert QKV; bench_perf.py prints VLA-Perf's own accounting beside it)"
    )
    ref = vla_perf_pi0_specs()
    roofline_table("pi0, VLA-Perf configuration (hand-built specs)", ref, published=True)
    roofline_table("pi0, VLA-Perf configuration (hand-built specs)", ref, attention="materialised", published=True)
    for family in ("pi0", "openvla"):
        specs = model_specs(family)
        if isinstance(specs, str):
            print(f"\n## {family} full (executor.models): {specs}")
            continue
        roofline_table(
            f"{family} full (executor.models block specs, {len(specs)} blocks)", specs, published=family == "pi0"
        )
    if not args.no_wire:
        wire_throughput()


if __name__ == "__main__":
    main()
