"""Why a planner fails where the expert succeeds: per episode, the decisions around the scene events. For each
seed: success, inferences, and how long after the object was displaced (or the goal moved) the first chunk computed
on a post-event observation reached the robot (``react s``; '-' = never before the episode ended).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_closed_loop_why.py --model openvla \\
        --planners ppo:runs/ppo-openvla,roboecc,heuristic --task pick-place-v3 --episodes 10 \\
        --traces ../shared/traces/lumos5g_mmwave/4G
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from agents.closed_loop_eval import ClosedLoopEvalConfig, eval_profiles, run_closed_loop_eval
    from agents.closed_loop_reaction import first_reaction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pi0")
    p.add_argument("--planners", default="ppo:runs/ppo-pi0,roboecc,heuristic")
    p.add_argument("--task", default="pick-place-v3")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--traces", required=True)
    p.add_argument("--events", default="on")
    args = p.parse_args(argv)
    cfg = ClosedLoopEvalConfig(
        planners=args.planners,
        tasks=args.task,
        episodes=args.episodes,
        seed=args.seed,
        events=args.events,
        vlas="aware",
        traces=args.traces,
        model=args.model,
        episode_s=5.0,
        budget_ms=float("inf"),
        plots=False,
    )
    rep = run_closed_loop_eval(cfg, profiles=eval_profiles(cfg), keep_timelines=True)
    print(f"{args.model}, {args.task}, events {args.events}, {args.traces}\n")
    print(
        "| planner | seed | success | tts s | inferences | event step | first post-event chunk arrives (step) "
        "| react s |\n|---|---|---|---|---|---|---|---|"
    )
    summary: dict[str, list[tuple[bool, float]]] = {}
    for o in rep.episodes:
        tl = o.timeline or {}
        ev, arr = first_reaction(tl)
        react = (arr - ev) * tl["period_s"] if arr is not None and ev is not None else float("nan")
        summary.setdefault(o.planner, []).append((o.success, react))
        print(
            f"| {o.planner} | {o.seed} | {'yes' if o.success else 'no'} | "
            f"{'-' if o.time_to_success_s is None else f'{o.time_to_success_s:.2f}'} | {o.inferences} | {ev} | "
            f"{'-' if arr is None else arr} | {'-' if not np.isfinite(react) else f'{react:.1f}'} |"
        )
    print("\n| planner | success | median react s (successes) | median react s (failures) |\n|---|---|---|---|")
    for planner, xs in summary.items():
        ok = [r for s, r in xs if s and np.isfinite(r)]
        bad = [r for s, r in xs if not s and np.isfinite(r)]
        nbad = sum(not s for s, _ in xs)
        print(
            f"| {planner} | {sum(s for s, _ in xs)}/{len(xs)} | {np.median(ok) if ok else float('nan'):.2f} | "
            f"{np.median(bad) if bad else float('nan'):.2f} ({nbad} failures, {nbad - len(bad)} never reacted) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
