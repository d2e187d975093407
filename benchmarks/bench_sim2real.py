"""Sim-to-real gap of the env: one episode, one decision sequence, profile backend vs executor backend.

Runs ``ecc_env.sim2real.sim_to_real`` on a recorded trace from ../shared/traces (default: Mahimahi ATT LTE driving,
both directions, with a fixed RTT added) with the tiny OpenVLA measured on this CPU as the Profile of both sides,
and prints median and p90 of |profile - executor| / executor per inference step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sim2real.py [--trace PATH] [--rtt-ms 40] [--steps 240]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path,
                    default=REPO.parent / "shared" / "traces" / "mahimahi_cellular_us" / "ATT-LTE-driving.up")
    ap.add_argument("--rtt-ms", type=float, default=40.0, help="RTT added to the trace (ms)")
    ap.add_argument("--steps", type=int, default=240, help="env steps (>= 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", default="openvla")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--deadline-ms", type=float, default=300.0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ecc_env.backends import ExecutorConfig
    from ecc_env.latency import DeadlineConfig
    from ecc_env.sim2real import sim_to_real
    from executor.models import build_model
    from executor.profiler import ProfilerConfig, profile_model
    from traces.readers import load_trace
    from traces.traceset import TraceSet

    if not args.trace.exists():
        print(f"trace not found: {args.trace}", file=sys.stderr)
        return 2
    trace = load_trace(args.trace).with_rtt(args.rtt_ms)
    model = build_model(args.family, args.preset, seed=0)
    profile = profile_model(model, ProfilerConfig(warmup_runs=3, measured_runs=15))
    n = profile.num_blocks
    single = [c.k for c in profile.cuts[:n] if c.round_trips == 0]
    multi = [i for i, c in enumerate(profile.cuts[:n]) if c.round_trips > 0]
    # a fixed decision sequence: cloud-only, every single-exchange split, edge-only, a skip, one multi-trip cut
    pattern = [(k, 0) for k in single] + [(n, 0), (0, 1)] + [(k, 0) for k in multi[:1]]
    actions = [pattern[i % len(pattern)] for i in range(args.steps)]
    episode_s = args.steps * 0.1 * 2.0  # room for the steps even when slow steps drop observations
    t0 = time.perf_counter()
    report = sim_to_real(
        profile, profile, TraceSet.from_traces([trace], trace.name), actions=actions, seed=args.seed,
        trace_split="all", episode_s=episode_s, deadline=DeadlineConfig(args.deadline_ms, break_even=False),
        executor=ExecutorConfig(family=args.family, preset=args.preset),
    )
    wall = time.perf_counter() - t0
    s = report.summary()
    print(f"trace {trace.name} + {args.rtt_ms:.0f} ms RTT, model {args.family}/{args.preset} (profile_model on this "
          f"CPU for edge and cloud), deadline {args.deadline_ms:.0f} ms, seed {args.seed}")
    print(f"steps {report.steps_total}, inference steps {int(s['inference_steps'])}, wall {wall:.1f} s, "
          f"executor misses {int(s['executor_misses'])}, profile misses (paired) {int(s['profile_misses'])}")
    print("gap = |profile - executor| / executor of the step's service time")
    print(f"  paired  (profile priced at the executor step's start): median {s['gap_paired_median']:.3f}  "
          f"p90 {s['gap_paired_p90']:.3f}")
    print(f"  episode (profile env's own run of the same actions):   median {s['gap_episode_median']:.3f}  "
          f"p90 {s['gap_episode_p90']:.3f}")
    print("per cut (paired): cut  n  median_exec_ms  median_profile_ms  median_gap")
    for k in np.unique(report.cut):
        m = report.cut == k
        print(f"  {k:3d} {m.sum():3d} {np.median(report.executor_ms[m]):14.2f} "
              f"{np.median(report.profile_paired_ms[m]):18.2f} {np.median(report.gap_paired[m]):11.3f}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
