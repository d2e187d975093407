"""The closed loop through the real edge runtime beside the simulated closed loop, on the same seeds.

For each task, planner and seed: one episode through ``agents.closed_loop_runtime.RuntimeClosedLoop`` (the MetaWorld
robot feeds ``EdgeRuntime`` frame by frame; the model's edge half padded to an emulated Orin, a real ``ecc serve``
child process padded to an emulated A100, a trace-shaped loopback link over the episode's segment; the measured
latency decides when each perfect-VLA chunk arrives), then the same episode (scene, segment, events) through the
env's own latency model (``ClosedLoopSplitEnv``). The Profile pair is the demo's emulated pair
(``agents.emulated_pair``: this CPU's measured block times, scaled by the Orin/A100 roofline ratios), measured once.
Printed: per task and planner, success and median time-to-success in each loop and the gap, mean latency per
inference, inferences, skips (and skips the runtime refused), deadline misses and bytes uploaded per episode.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_closed_loop_runtime.py \\
        [--tasks reach-v3,push-v3] [--planners heuristic,edge,cloud,static] [--seeds 3] [--events off|on] \\
        [--family openvla] [--preset tiny] [--headroom 2.5] [--traces embedded] [--out results.json]

Timings come from this shared CPU: expect run-to-run noise in the runtime column.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _median_tts(eps: list) -> float:
    t = [e.time_to_success_s for e in eps if e.success]
    return float(np.median(t)) if t else float("nan")


def _row(task: str, planner: str, sim: list, real: list) -> dict:
    def per_ep(eps: list, attr: str) -> float:
        return float(np.mean([getattr(e, attr) for e in eps]))

    def lat(eps: list) -> float:
        return float(np.nanmean([e.mean_inference_latency_ms for e in eps]))

    return {
        "task": task,
        "planner": planner,
        "episodes": len(sim),
        "success_sim": sum(e.success for e in sim),
        "success_runtime": sum(e.success for e in real),
        "tts_sim_s": _median_tts(sim),
        "tts_runtime_s": _median_tts(real),
        "latency_sim_ms": lat(sim),
        "latency_runtime_ms": lat(real),
        "inferences_sim": per_ep(sim, "inferences"),
        "inferences_runtime": per_ep(real, "inferences"),
        "skips_sim": per_ep(sim, "skips"),
        "skips_runtime": per_ep(real, "skips"),
        "refused_skips_runtime": per_ep(real, "refused_skips"),
        "misses_sim": per_ep(sim, "deadline_misses"),
        "misses_runtime": per_ep(real, "deadline_misses"),
        "up_kB_sim": per_ep(sim, "up_bytes") / 1e3,
        "up_kB_runtime": per_ep(real, "up_bytes") / 1e3,
    }


def _print_table(rows: list[dict]) -> None:
    """A Markdown table: sim / runtime side by side in each cell."""
    cols = (
        "task",
        "planner",
        "success sim / rt",
        "median tts s sim / rt",
        "gap s",
        "ms per inference sim / rt",
        "inferences sim / rt",
        "skips sim / rt (refused)",
        "misses sim / rt",
        "up kB sim / rt",
    )
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        n = r["episodes"]
        cells = (
            r["task"],
            r["planner"],
            f"{r['success_sim']}/{n} / {r['success_runtime']}/{n}",
            f"{r['tts_sim_s']:.2f} / {r['tts_runtime_s']:.2f}",
            f"{r['tts_runtime_s'] - r['tts_sim_s']:+.2f}",
            f"{r['latency_sim_ms']:.0f} / {r['latency_runtime_ms']:.0f}",
            f"{r['inferences_sim']:.1f} / {r['inferences_runtime']:.1f}",
            f"{r['skips_sim']:.1f} / {r['skips_runtime']:.1f} ({r['refused_skips_runtime']:.1f})",
            f"{r['misses_sim']:.1f} / {r['misses_runtime']:.1f}",
            f"{r['up_kB_sim']:.1f} / {r['up_kB_runtime']:.1f}",
        )
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="reach-v3,push-v3", help="comma-separated MetaWorld tasks")
    ap.add_argument(
        "--planners",
        default="heuristic,edge,cloud,static",
        help="comma-separated planners (as `ecc eval`; ppo:PATH for a policy trained on these Profiles)",
    )
    ap.add_argument("--seeds", type=int, default=3, help="episodes per task and planner (seeds 0..N-1)")
    ap.add_argument("--events", choices=("off", "on"), default="off", help="ecc_env.closed_loop.EventConfig")
    ap.add_argument("--vla", choices=("aware", "naive"), default="aware", help="the perfect VLA's variant")
    ap.add_argument("--family", default="openvla")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--headroom", type=float, default=2.5, help="emulated cloud time / this CPU's (the demo's 2.5)")
    ap.add_argument("--traces", default="embedded", help="`embedded` (its test split) or trace paths (all of them)")
    ap.add_argument("--episode-s", type=float, default=6.0, help="episode horizon (s)")
    ap.add_argument("--no-realtime", action="store_true", help="run runtime steps back to back (link still positioned)")
    ap.add_argument("--out", type=Path, default=None, help="write rows and every episode's summary as JSON")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.episode_s <= 0 or args.headroom < 1:
        print("need --seeds >= 1, --episode-s > 0, --headroom >= 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from agents.closed_loop_runtime import (
        RuntimeClosedLoop,
        RuntimeLoopConfig,
        run_sim_episode,
    )
    from agents.emulated_pair import describe, emulated_pair
    from agents.evaluation import build_planner, load_traces, parse_planners
    from agents.planner import PlannerContext
    from executor.server_process import ServerProcess
    from ecc_env.closed_loop import (
        ClosedLoopConfig,
        ClosedLoopSplitEnv,
        EventConfig,
        closed_loop_env_config,
    )

    try:
        planners = parse_planners(args.planners)
        traces = load_traces(args.traces)
    except (ValueError, OSError) as e:
        print(f"bench_closed_loop_runtime: {e}", file=sys.stderr)
        return 2
    split = "test" if args.traces == "embedded" else "all"
    t0 = time.perf_counter()
    edge, cloud = emulated_pair(args.family, args.preset, "orin", "a100", headroom=args.headroom)
    print(f"emulated pair ({time.perf_counter() - t0:.0f} s): edge {describe(edge)}, cloud {describe(cloud)}")
    events = EventConfig.on() if args.events == "on" else EventConfig.off()
    rows, episodes = [], []
    with ServerProcess(args.family, args.preset, emulate=cloud) as server:
        print(
            f"ecc serve (pid {server.proc.pid}) at {server.url}; traces {args.traces} ({split} split); events "
            f"{args.events}; VLA {args.vla}; {args.seeds} seeds"
        )
        for task in [t for t in args.tasks.split(",") if t]:
            env = ClosedLoopSplitEnv(
                edge,
                cloud,
                traces,
                closed_loop=ClosedLoopConfig(task, vla=args.vla, events=events),
                config=closed_loop_env_config(episode_s=args.episode_s),
                trace_split=split,
            )
            print(
                f"{task}: deadline {env.deadline.deadline_ms:.0f} ms, edge-only {env.rows[env.edge_only_index].edge_ms:.0f}"
                f" ms, period {env.config.period_ms:g} ms, chunk {env.config.chunk_size}"
            )
            try:
                with RuntimeClosedLoop(
                    env,
                    server.url,
                    RuntimeLoopConfig(family=args.family, preset=args.preset, realtime=not args.no_realtime),
                    edge_emulate=edge,
                ) as loop:
                    ctx = PlannerContext.from_env(env)
                    for label, name, arg in planners:
                        sim, real = [], []
                        for seed in range(args.seeds):
                            real.append(loop.run_episode(build_planner(name, arg, ctx, env), seed, name=label))
                            sim.append(run_sim_episode(env, build_planner(name, arg, ctx, env), seed, name=label))
                            r, s = real[-1], sim[-1]
                            print(
                                f"  {label:<10} seed {seed}: sim {'ok' if s.success else '--'} "
                                f"{s.time_to_success_s or float('nan'):.2f} s, runtime "
                                f"{'ok' if r.success else '--'} {r.time_to_success_s or float('nan'):.2f} s "
                                f"({r.wall_s:.1f} s wall, modes {r.summary()['modes']})",
                                flush=True,
                            )
                        rows.append(_row(task, label, sim, real))
                        episodes += [e.summary() for e in sim + real]
            finally:
                env.close()
    print()
    _print_table(rows)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": rows,
                    "episodes": episodes,
                    "edge": describe(edge),
                    "cloud": describe(cloud),
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
