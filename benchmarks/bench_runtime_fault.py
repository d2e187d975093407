"""The edge runtime against a frozen (SIGSTOPped) and a killed `ecc serve`: worst step time, how far behind the loop
got (periods), deadline misses, dropped frames, with and without the circuit breaker.

A real server process (openvla tiny), the runtime at a real-time control period splitting at a fixed cut; the fault
starts after ``--fault-at`` s and (freeze) ends at ``--resume-at`` s.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_runtime_fault.py [--period-ms 100] [--deadline-ms 300]
        [--repeats 5]

With ``--repeats N`` every row runs N times (the rows interleaved) and a table of per-row medians follows.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import numpy as np


def run(fault: str, breaker: bool, args: argparse.Namespace) -> dict:
    from executor.client import ClientConfig
    from executor.edge_cli import FixedCutPlanner
    from executor.models import build_model
    from executor.runtime import EdgeRuntime, RuntimeConfig
    from executor.server_process import ServerProcess

    edge = build_model("openvla", "tiny", seed=0)
    frames = [edge.make_observation(seed=s % 4) for s in range(args.steps)]
    server = ServerProcess("openvla", "tiny").start()
    proc, port = server.proc, server.port
    cfg = RuntimeConfig(
        control_period_s=args.period_ms / 1e3,
        deadline_s=args.deadline_ms / 1e3,
        realtime=True,
        connect_timeout_s=10.0,
        breaker=breaker,
    )

    def inject() -> None:
        time.sleep(args.fault_at)
        if fault == "freeze":
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(args.resume_at - args.fault_at)
            os.kill(proc.pid, signal.SIGCONT)
        else:
            proc.kill()

    try:
        with EdgeRuntime(
            edge,
            FixedCutPlanner(args.cut),
            lambda ctx: np.zeros(1, np.float32),
            server_url=f"ws://127.0.0.1:{port}",
            client_config=ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2),
            config=cfg,
        ) as rt:
            threading.Thread(target=inject, daemon=True).start()
            t0 = time.perf_counter()
            records = rt.run(frames)
            wall = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        server.stop()
    acted = [r for r in records if r.mode != "dropped"]
    period = args.period_ms
    return {
        "worst_step_ms": max(r.latency_ms for r in acted),
        "max_late_periods": max(r.late_ms for r in acted) / period,
        "behind_at_end_periods": max(0.0, wall * 1e3 - len(frames) * period) / period,
        "misses": sum(r.fallback_reason == "deadline" for r in acted),
        "dropped": len(records) - len(acted),
        "late_steps": sum(r.late_ms > 0 for r in acted),
        "modes": dict(__import__("collections").Counter(r.mode for r in records)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--period-ms", type=float, default=100.0)
    ap.add_argument("--deadline-ms", type=float, default=300.0)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--cut", type=int, default=3)
    ap.add_argument("--fault-at", type=float, default=1.0)
    ap.add_argument("--resume-at", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=1, help="runs per row; with more than one, per-row medians follow")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    import torch

    torch.set_num_threads(1)
    print(
        f"period {args.period_ms:g} ms, deadline {args.deadline_ms:g} ms, {args.steps} frames, fault at "
        f"{args.fault_at:g} s (freeze until {args.resume_at:g} s), {args.repeats} run(s) per row"
    )
    print(
        "| fault | breaker | run | worst step ms | most late (periods) | behind at end (periods) | misses | dropped "
        "| modes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows: dict[tuple[str, bool], list[dict]] = {}
    for rep in range(args.repeats):  # rows interleaved, so a burst of load spreads over all of them
        for fault in ("freeze", "kill"):
            for breaker in (False, True):
                r = run(fault, breaker, args)
                rows.setdefault((fault, breaker), []).append(r)
                print(
                    f"| {fault} | {'on' if breaker else 'off'} | {rep + 1} | {r['worst_step_ms']:.0f} | "
                    f"{r['max_late_periods']:.2f} | {r['behind_at_end_periods']:.2f} | {r['misses']} | "
                    f"{r['dropped']} | {r['modes']} |",
                    flush=True,
                )
    if args.repeats > 1:
        keys = ("worst_step_ms", "max_late_periods", "behind_at_end_periods", "misses", "dropped")
        print(f"\nmedian over {args.repeats} runs per row (min-max in brackets):")
        print("| fault | breaker | worst step ms | most late (periods) | behind at end (periods) | misses | dropped |")
        print("|---|---|---|---|---|---|---|")
        for (fault, breaker), runs in rows.items():
            cells = []
            for key in keys:
                v = np.array([r[key] for r in runs], dtype=float)
                fmt = ".0f" if key in ("worst_step_ms", "misses", "dropped") else ".2f"
                cells.append(f"{np.median(v):{fmt}} [{v.min():{fmt}}-{v.max():{fmt}}]")
            print(f"| {fault} | {'on' if breaker else 'off'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
