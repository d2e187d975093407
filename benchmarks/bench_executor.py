"""Executor-core figures on this machine: per-block latency and bytes per cut for each family and preset,
predicted (profile sum) vs measured (in-process split run) totals, a CPU-calibrated roofline vs measurement,
and peak RSS (each model measured in a fresh child process).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_executor.py                # tiny + small, 1 thread
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_executor.py --presets small --runs 7

The roofline for full configs on catalogue devices is printed by benchmarks/bench_roofline.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def calibrate_cpu(threads: int) -> dict[str, float]:
    """Measured fp32 matmul FLOP/s and memory copy bandwidth of this CPU (medians of 5)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    flops = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        flops.append(4 * 2 * 1024**3 / (time.perf_counter() - t0))
    src = torch.empty(64 * 2**20 // 4)
    dst = torch.empty_like(src)
    bw = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        bw.append(2 * src.numel() * 4 / (time.perf_counter() - t0))
    return {"fp32_flops": statistics.median(flops), "copy_bytes_per_s": statistics.median(bw)}


def measure_one(family: str, preset: str, runs: int, threads: int) -> dict:
    """Child-process body: profile, time every cut in process, roofline with the calibrated CPU."""
    import torch

    from executor.catalog import Hardware
    from executor.models import build_model, run_split
    from executor.profiler import ProfilerConfig, _peak_rss_bytes, profile_model
    from executor.roofline import roofline_profile

    torch.set_num_threads(threads)
    model = build_model(family, preset)
    prof = profile_model(model, ProfilerConfig(warmup_runs=2, measured_runs=runs, threads=threads))
    obs = model.make_observation(0)
    split_ms = []
    with torch.inference_mode():
        for k in range(model.num_cuts):
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                run_split(model, obs, k)
                ts.append((time.perf_counter() - t0) * 1e3)
            split_ms.append(statistics.median(ts))
    cal = calibrate_cpu(threads)
    cpu = Hardware(
        "this-cpu",
        peak_tflops_bf16=2 * cal["fp32_flops"] / 1e12,
        memory_bytes=24 * 2**30,
        mem_bandwidth_gbps=cal["copy_bytes_per_s"] / 1e9,
        kind="edge",
    )
    roof = roofline_profile(
        model.block_specs(),
        model.cut_specs("float32"),
        cpu,
        "float32",
        model_id=family,
        preset=preset,
        check_memory=False,
    )
    bytes_by_dtype = {w: [c.up_bytes for c in model.cut_specs(w)] for w in ("float32", "float16", "int8")}
    return {
        "family": family,
        "preset": preset,
        "profile": prof.to_dict(),
        "split_ms": split_ms,
        "roofline_block_ms": list(roof.block_ms),
        "calibration": cal,
        "bytes_by_dtype": bytes_by_dtype,
        "params": int(sum(s.param_count for s in model.block_specs())),
        "peak_rss_bytes": _peak_rss_bytes(),
        "down_bytes": [c.down_bytes for c in model.cut_specs("float32")],
        "names": [c.name for c in model.cut_specs("float32")],
        "round_trips": [c.round_trips for c in model.cut_specs("float32")],
    }


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    p = r["profile"]
    con = Console(width=140)
    con.rule(f"{r['family']}/{r['preset']}: {r['params'] / 1e6:.2f}M params, {p['device']}")
    t = Table(title="per-block latency (median of runs) vs calibrated CPU roofline")
    for col in ("#", "block", "measured ms", "roofline ms"):
        t.add_column(col, justify="left" if col == "block" else "right")
    for i, (n, ms, rms) in enumerate(zip(p["block_names"], p["block_ms"], r["roofline_block_ms"])):
        t.add_row(str(i), n, f"{ms:.3f}", f"{rms:.3f}")
    t.add_row("", "sum of blocks", f"{sum(p['block_ms']):.2f}", f"{sum(r['roofline_block_ms']):.2f}")
    t.add_row("", "whole forward", f"{p['notes']['forward_ms_median']:.2f}", "")
    con.print(t)
    c = Table(title="bytes per cut (up; fp32 / fp16 / int8 activations) and in-process split time")
    for col in ("#", "cut", "up fp32", "up fp16", "up int8", "down", "rt", "predicted ms", "measured ms"):
        c.add_column(col, justify="left" if col == "cut" else "right")
    block_ms = p["block_ms"]
    for i, cut in enumerate(p["cuts"]):
        edge = range(0, cut["k"]) if cut["placement"] == "edge_then_cloud" else range(cut["k"], len(block_ms))
        cloud = [j for j in range(len(block_ms)) if j not in edge]
        pred = sum(block_ms[j] for j in edge) + sum(block_ms[j] for j in cloud)
        c.add_row(
            str(i),
            r["names"][i],
            f"{r['bytes_by_dtype']['float32'][i]:,}",
            f"{r['bytes_by_dtype']['float16'][i]:,}",
            f"{r['bytes_by_dtype']['int8'][i]:,}",
            f"{r['down_bytes'][i]:,}",
            str(r["round_trips"][i]),
            f"{pred:.2f}",
            f"{r['split_ms'][i]:.2f}",
        )
    con.print(c)
    cal = r["calibration"]
    con.print(
        f"CPU calibration: {cal['fp32_flops'] / 1e9:.1f} GFLOP/s fp32 matmul, "
        f"{cal['copy_bytes_per_s'] / 1e9:.1f} GB/s copy; peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    ratio = statistics.median(m / max(sum(block_ms), 1e-9) for m in r["split_ms"])
    con.print(f"median measured split time / profile sum over all cuts: {ratio:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="openvla,pi0")
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=2, metavar=("FAMILY", "PRESET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure_one(*args.child, args.runs, args.threads)))
        return 0
    for fam in args.families.split(","):
        for preset in args.presets.split(","):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    fam,
                    preset,
                    "--runs",
                    str(args.runs),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            report(json.loads(out.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
