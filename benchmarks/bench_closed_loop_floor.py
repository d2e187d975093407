"""The time-to-success floor of any planner with a non-zero latency: the perfect latency-aware VLA inferring on every
control step, each inference completing ``--latency-ms`` after its observation (``run_expert_episode(latency_s=)``),
against the zero-latency ceiling, per task, on the same seeds and events as the closed-loop table.

With 10 Hz control any latency under one period (100 ms) makes each chunk drive the step after its observation, so
this floor is what edge-only, PPO or any other planner could reach at best; it tells whether the issue's targets
(median time-to-success <= 1.15x the expert's and <= 0.5x edge-only's) are reachable at all.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_closed_loop_floor.py --episodes 30 --events on
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from agents.closed_loop_eval import EVENT_SETTINGS, ClosedLoopEvalConfig, split_list
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopRobot, EventConfig, run_expert_episode
    from ecc_env.split_env import EnvConfig

    d = ClosedLoopEvalConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=d.tasks)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episode-s", type=float, default=5.0)
    p.add_argument("--events", default="on", choices=EVENT_SETTINGS)
    p.add_argument("--latency-ms", default="1,90,190", help="comma-separated latencies of the floor rows")
    args = p.parse_args(argv)
    env = EnvConfig()
    events = {"off": EventConfig.off(), "on": EventConfig.on(), "noise": EventConfig.noise_only()}[args.events]
    horizon = int(round(args.episode_s * 1e3 / env.period_ms))
    lats = [float(x) for x in split_list(args.latency_ms)]
    seeds = range(args.seed, args.seed + args.episodes)
    print(
        f"events {args.events}, seeds {seeds.start}-{seeds.stop - 1}, {env.period_ms:.0f} ms control, chunks of "
        f"{env.chunk_size}, latency-aware perfect VLA inferring every step\n"
    )
    head = ["task", "ceiling success", "ceiling median tts s"]
    for lat in lats:
        head += [f"{lat:g} ms success", f"{lat:g} ms median tts s", f"{lat:g} ms / ceiling"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for task in split_list(args.tasks):
        robot = ClosedLoopRobot(ClosedLoopConfig(task, events=events), env.period_ms, env.chunk_size)
        try:
            cells = []
            base = None
            for lat in [0.0, *lats]:
                eps = [run_expert_episode(robot, s, horizon, latency_s=lat * 1e-3) for s in seeds]
                tts = [e.time_to_success_s for e in eps if e.success and e.time_to_success_s is not None]
                med = float(np.median(tts)) if tts else float("nan")
                cells += [f"{np.mean([e.success for e in eps]):.2f}", f"{med:.2f}"]
                if base is None:
                    base = med
                else:
                    cells.append(f"{med / base:.2f}x")
            print(f"| {task} | " + " | ".join(cells) + " |", flush=True)
        finally:
            robot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
