"""Where the sim-to-real gap sits: one executor episode taken apart per cut, part by part, against the paired price.

The instrument behind ``bench_sim2real``'s calibration (``executor.calibration``): the same trace, model and decision
sequence, an ``executor``-backend env and a ``profile``-backend env priced at each executor step's start (paired), the
profiler's timing hooks on the block modules of both halves of the executor. Per cut, medians over the steps that
met the deadline, executor vs price: the edge part (compute + encode + decode), the uplink and the downlink (one-way
delay included), the cloud part (the server's compute and everything else of the call), the blocks inside them, and
the bytes each way (the executor's messages vs the Profile's payload plus the calibrated message bytes).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sim2real_parts.py [--steps 120] [--uncalibrated]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PARTS = ("total", "edge", "up", "down", "cloud", "edge_blocks", "cloud_blocks", "up_bytes", "down_bytes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--trace", type=Path, default=REPO.parent / "shared" / "traces" / "mahimahi_cellular_us" / "ATT-LTE-driving.up"
    )
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--uncalibrated", action="store_true", help="price with the bare Profiles")
    args = ap.parse_args(argv)
    if not args.trace.exists():
        print(f"trace not found: {args.trace}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    from ecc_env.backends import ExecutorConfig
    from ecc_env.latency import DeadlineConfig
    from ecc_env.split_env import EdgeCloudSplitEnv
    from executor.calibration import CalibrationConfig, calibrated
    from executor.costs import cut_table
    from executor.models import build_model
    from executor.profiler import ProfilerConfig, _BlockTimer, profile_model
    from traces.readers import load_trace
    from traces.traceset import TraceSet

    trace = load_trace(args.trace).with_rtt(args.rtt_ms)
    model = build_model("openvla", "tiny", seed=0)
    profile = profile_model(model, ProfilerConfig(warmup_runs=3, measured_runs=15))
    edge, cloud = profile, profile
    if not args.uncalibrated:
        edge, cloud = calibrated(model, profile, profile, CalibrationConfig(runs=7, one_way_ms=args.rtt_ms / 2))
    table = cut_table(edge, cloud)
    n = profile.num_blocks
    single = [c.k for c in profile.cuts[:n] if c.round_trips == 0]
    actions = [([(k, 0) for k in single] + [(n, 0)])[i % (len(single) + 1)] for i in range(args.steps)]
    kw = dict(trace_split="all", episode_s=args.steps * 0.2, deadline=DeadlineConfig(300.0, break_even=False))
    traces = TraceSet.from_traces([trace], trace.name)
    real = EdgeCloudSplitEnv(edge, cloud, traces, backend="executor", executor=ExecutorConfig(wire="exact"), **kw)
    sim = EdgeCloudSplitEnv(edge, cloud, traces, backend="profile", **kw)
    backend = real.backend
    timers = (
        _BlockTimer(tuple(backend.model.block_modules), False),
        _BlockTimer(tuple(backend.server.model.block_modules), False),
    )
    rows: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    try:
        real.reset(seed=0)
        sim.reset(seed=0)
        for action in actions:
            for timer in timers:
                timer.reset()
            _, _, _, trunc, info = real.step(action)
            k = info["cut"]
            t = backend.last_timing
            if info["deadline_miss"] or t is None:
                continue
            p, _ = sim.backend.infer(k, info["time_s"])
            edge_ms = t.edge_ms + t.encode_ms + t.decode_ms if table.uses_network[k] else t.total_ms
            up, down = (t.uplink_ms, t.downlink_ms) if table.uses_network[k] else (0.0, 0.0)
            executor_parts = (t.total_ms, edge_ms, up, down, t.total_ms - edge_ms - up - down)
            blocks = [timer.totals_s.sum() * 1e3 for timer in timers]
            bytes_ = (t.bytes_up, t.bytes_down) if table.uses_network[k] else (0, 0)
            priced = (p.service_ms, p.edge_ms, p.uplink_ms, p.downlink_ms, p.server_queue_ms + p.cloud_ms)
            e_blk = sum(profile.block_ms[b] for b in profile.edge_blocks(k))
            c_blk = sum(profile.block_ms[b] for b in profile.cloud_blocks(k)) if table.uses_network[k] else 0.0
            scale_e = edge.block_ms_scale[k] if edge.block_ms_scale else 1.0
            scale_c = cloud.block_ms_scale[k] if cloud.block_ms_scale else 1.0
            priced_bytes = (table.up_bytes[k], table.down_bytes[k]) if table.uses_network[k] else (0, 0)
            rows.setdefault(k, []).append(
                (
                    np.array([*executor_parts, *blocks, *bytes_], dtype=float),
                    np.array([*priced, e_blk * scale_e, c_blk * scale_c, *priced_bytes], dtype=float),
                )
            )
            if trunc:
                break
    finally:
        for timer in timers:
            timer.remove()
        real.close()
        sim.close()
    print(
        f"trace {trace.name} + {args.rtt_ms:.0f} ms RTT, openvla/tiny, {'uncalibrated' if args.uncalibrated else 'calibrated'} "
        "Profiles; per cut, medians over the steps that met the deadline: executor / price (ms, bytes)"
    )
    print("| cut | n | " + " | ".join(PARTS) + " |")
    print("|---" * (len(PARTS) + 2) + "|")
    for k in sorted(rows):
        exe = np.median(np.array([r[0] for r in rows[k]]), axis=0)
        pri = np.median(np.array([r[1] for r in rows[k]]), axis=0)
        cells = [
            f"{e:.0f} / {q:.0f}" if "bytes" in name else f"{e:.1f} / {q:.1f}" for name, e, q in zip(PARTS, exe, pri)
        ]
        print(f"| {k} | {len(rows[k])} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
