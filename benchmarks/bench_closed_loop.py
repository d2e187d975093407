"""Closed-loop table: task success and time-to-success of every planner on MetaWorld tasks, with the zero-latency
expert as the ceiling, for the naive and the latency-aware perfect VLA, events off and on.

Setup: roofline ``full`` pi0 on Orin+A100 (``--model``, ``--hardware``), one recorded trace family (``--traces``,
default the WiFi/cellular SBU traces in ../shared/traces), 10 Hz control with chunks of 8 (``EnvConfig``), 64 px
frames without shadows. Every planner runs the same seeds (MetaWorld scene + trace segment + events).
Prints a Markdown table (the docs/closed_loop.md format) and the wall time; writes JSON/CSV/plots to ``--out``.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_closed_loop.py --episodes 2 --out runs/closed_loop
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "wifi_cellular_sbu_mptraces"


def main(argv: list[str] | None = None) -> int:
    from agents.closed_loop_eval import ClosedLoopEvalConfig, run_closed_loop_eval

    d = ClosedLoopEvalConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planners", default=d.planners)
    p.add_argument("--tasks", default=d.tasks)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--episode-s", type=float, default=5.0)
    p.add_argument("--vlas", default=d.vlas)
    p.add_argument("--events", default=d.events)
    p.add_argument("--traces", default=str(DEFAULT_TRACES))
    p.add_argument("--model", default=d.model)
    p.add_argument("--hardware", default=d.hardware)
    p.add_argument("--entry", default=d.entry)
    p.add_argument("--out", default="")
    p.add_argument("--from-json", default="", help="print the tables of a saved closed_loop.json (no run)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.from_json:
        from agents.closed_loop_eval import ClosedLoopReport

        print_tables(ClosedLoopReport.from_json(args.from_json))
        return 0
    cfg = ClosedLoopEvalConfig(planners=args.planners, tasks=args.tasks, episodes=args.episodes,
                               episode_s=args.episode_s, vlas=args.vlas, events=args.events, traces=args.traces,
                               model=args.model, hardware=args.hardware, entry=args.entry, out=args.out)
    t0 = time.perf_counter()
    done = [0]

    def tick(o) -> None:
        done[0] += 1
        print(f"  {done[0]:4d} {o.planner:10s} {o.task:24s} {o.vla:5s} events {o.events}: "
              f"{'success' if o.success else 'fail'} {o.time_to_success_s}", file=sys.stderr, flush=True)

    report = run_closed_loop_eval(cfg, on_episode=tick)
    wall = time.perf_counter() - t0
    print(f"wall {wall:.0f} s ({len(report.episodes)} episodes)")
    print_tables(report)
    return 0


def print_tables(report) -> None:
    """The pooled table (per planner, VLA and event setting over all tasks) and the per-task table, Markdown."""
    from agents.closed_loop_eval import markdown_table, summarize

    m = report.meta
    print(f"closed loop: {m.get('profiles')}, traces {m.get('traces')}, seeds {m.get('seeds')}, "
          f"{m.get('period_ms', 0):.0f} ms control, chunks of {m.get('chunk_size')}, "
          f"entry {m.get('config', {}).get('entry')}\n")
    print(markdown_table(summarize(report.episodes, pool_tasks=True)))
    print()
    print(markdown_table(report.rows))


if __name__ == "__main__":
    sys.exit(main())
