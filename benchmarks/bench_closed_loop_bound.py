"""Is a closed-loop success target reachable at all on a (model, link, task) cell? The hindsight reaction planner
(``agents.hindsight``: reads the trace, gets each new observation to the robot as early as the link allows) next to
the closing-note grid, from ``closed_loop.json`` files (no run here).

First run the planner on the grid's seeds with timelines (docs/closed_loop.md, "Is the success bar reachable"):

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_closed_loop.py --models openvla \\
        --families ../shared/traces/lumos5g_mmwave/4G,../shared/traces/wifi_cellular_sbu_mptraces \\
        --planners hindsight,roboecc --tasks pick-place-v3,push-v3,peg-insert-side-v3 --episodes 30 --seed 0 \\
        --events on --vlas aware --episode-s 5 --budget-ms inf --timelines --out runs/bound_openvla

then

    python benchmarks/bench_closed_loop_bound.py --from-json "runs/bound_openvla/*/*/closed_loop.json" \\
        --grid "runs/grid/on/openvla-*/*/closed_loop.json,runs/grid/on_s10/openvla-*/*/closed_loop.json,\\
    runs/grid_cl3/openvla-*/*/closed_loop.json"

``--grid`` files are merged with the later file winning (the fine-tuned PPO overlays the grid's). Prints, per cell:
the expert, the hindsight planner, RoboECC-style (this run and the grid's: the same seeds must give the same
figures), the grid's PPO and best other planner, and whether the hindsight planner meets the bar (within 2 points of
the expert, and not below the best other planner); then the per-inference latency distribution
(``agents.closed_loop_reaction``) of every planner recorded with timelines.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    from bench_closed_loop import expand_paths

    from agents.closed_loop_eval import ClosedLoopReport
    from agents.closed_loop_targets import merge_reports

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-json", required=True, help="closed_loop.json files of the hindsight run (globs allowed)")
    p.add_argument("--grid", default="", help="the grid's closed_loop.json files, later wins (globs allowed)")
    p.add_argument("--gap", type=float, default=0.02, help="success target: at least the expert's minus this")
    args = p.parse_args(argv)
    run = merge_reports([ClosedLoopReport.from_json(x) for x in expand_paths(args.from_json)])
    grid = merge_reports([ClosedLoopReport.from_json(x) for x in expand_paths(args.grid)], later_wins=True)
    grid_by = {(c.model, c.family): c for c in grid} if args.grid else {}
    meta = {}
    for x in expand_paths(args.from_json):
        m = ClosedLoopReport.from_json(x).meta.get("config", {})
        meta.setdefault(str(m.get("model")), m)
    print(bound_table(run, grid_by, args.gap))
    print()
    edge_only = {m: edge_only_index(cfg) for m, cfg in meta.items()}
    print(latency_table(run, edge_only))
    print()
    print(lost_table(run, edge_only))
    return 0


def edge_only_index(config: dict) -> int:
    """The edge-only cut of the run's Profile pair (``Profile.num_blocks`` by convention)."""
    from agents.closed_loop_eval import ClosedLoopEvalConfig, eval_profiles

    keys = ("model", "preset", "hardware", "profiles", "wire", "backend", "emulated_profiles")
    edge, _ = eval_profiles(ClosedLoopEvalConfig(**{k: config[k] for k in keys if k in config}))
    return int(edge.num_blocks)


def _num(x: float, fmt: str = "{:.2f}") -> str:
    return "-" if not math.isfinite(x) else fmt.format(x)


def _rate(eps: list) -> tuple[float, int]:
    return (sum(o.success for o in eps) / len(eps), len(eps)) if eps else (math.nan, 0)


def bound_table(run: list, grid_by: dict, gap: float) -> str:
    """Markdown: one row per (model, family, task) of the run (events on, aware VLA)."""
    import numpy as np

    from agents.closed_loop_eval import EXPERT
    from agents.closed_loop_targets import REFERENCE

    lines = [
        "| model | family | task | n | expert | hindsight | hindsight median tts s | roboecc (this run) | "
        "roboecc (grid) | PPO (grid) | best other (grid) | hindsight within 2 pts of expert | "
        "hindsight >= best other |",
        "|" + "---|" * 13,
    ]
    for c in run:
        g = grid_by.get((c.model, c.family))
        for task in sorted({o.task for o in c.episodes}):

            def eps(cell, planner, task=task):
                return [o for o in (cell.episodes if cell else []) if o.task == task and o.planner == planner]

            ex, n = _rate(eps(c, EXPERT))
            hs_eps = eps(c, REFERENCE)
            hs, _ = _rate(hs_eps)
            tts = [o.time_to_success_s for o in hs_eps if o.success and o.time_to_success_s is not None]
            rb, _ = _rate(eps(c, "roboecc"))
            rb_grid, _ = _rate(eps(g, "roboecc"))
            ppo, _ = _rate(eps(g, "ppo"))
            others = sorted({o.planner for o in (g.episodes if g else [])} - {EXPERT, "ppo", REFERENCE})
            best = max(((_rate(eps(g, p))[0], p) for p in others), default=(math.nan, "-"))

            ok_gap = hs >= ex - gap - 1e-12
            ok_best = not (math.isfinite(best[0]) and hs < best[0] - 1e-12)
            f = _num
            lines.append(
                f"| {c.model} | {c.family} | {task} | {n} | {f(ex)} | {f(hs)} | "
                f"{f(float(np.median(tts))) if tts else '-'} | {f(rb)} | {f(rb_grid)} | {f(ppo)} | "
                f"{best[1]} {f(best[0])} | {'met' if ok_gap else '**missed**'} | {'met' if ok_best else '**missed**'} |"
            )
    return "\n".join(lines)


def latency_table(run: list, edge_only: dict[str, int]) -> str:
    """Markdown: the reaction statistics of every planner recorded with timelines, per cell."""
    from agents.closed_loop_eval import EXPERT
    from agents.closed_loop_reaction import reaction_stats

    lines = [
        "| model | family | task | planner | success | inf/ep | latency median ms | latency p90 ms | edge-only share | "
        "deadline misses share | drains/ep | other skips/ep | reaction median s | reaction median s (failures) |",
        "|" + "---|" * 14,
    ]

    f = _num
    for c in run:
        for task in sorted({o.task for o in c.episodes}):
            for planner in sorted({o.planner for o in c.episodes} - {EXPERT}):
                eps = [o for o in c.episodes if o.task == task and o.planner == planner]
                if not eps or not all(o.timeline for o in eps):
                    continue
                s = reaction_stats(eps, edge_only[c.model])
                lines.append(
                    f"| {c.model} | {c.family} | {task} | {planner} | {s.success_rate:.2f} | "
                    f"{s.inferences_per_episode:.1f} | {f(s.latency_median_ms, '{:.0f}')} | "
                    f"{f(s.latency_p90_ms, '{:.0f}')} | {f(s.edge_only_share)} | {f(s.deadline_miss_share)} | "
                    f"{s.drains_per_episode:.1f} | {s.other_skips_per_episode:.1f} | {f(s.reaction_median_s)} | "
                    f"{f(s.reaction_median_fail_s)} ({s.never_reacted} never) |"
                )
    return "\n".join(lines)


def lost_table(run: list, edge_only: dict[str, int]) -> str:
    """Markdown: every episode the expert solves and the hindsight planner does not, with its first inferences."""
    from agents.closed_loop_eval import EXPERT
    from agents.closed_loop_reaction import reaction_s
    from agents.closed_loop_targets import REFERENCE

    lines = [
        "| model | family | task | seed | inferences | edge-only inferences in the first 1 s | "
        "latency of the first inferences ms | first post-event chunk after the event s |",
        "|" + "---|" * 8,
    ]
    for c in run:
        solved = {(o.task, o.seed) for o in c.episodes if o.planner == EXPERT and o.success}
        for o in sorted(c.episodes, key=lambda o: (o.task, o.seed)):
            if o.planner != REFERENCE or o.success or (o.task, o.seed) not in solved or not o.timeline:
                continue
            inf = [d for d in o.timeline["decisions"] if not d["skip"]]
            early = sum(d["cut"] == edge_only[c.model] and d["time_s"] < 1.0 for d in inf)
            first = ", ".join(f"{d['latency_ms']:.0f}" for d in inf[:8])
            r = reaction_s(o.timeline)
            lines.append(
                f"| {c.model} | {c.family} | {o.task} | {o.seed} | {o.inferences} | {early} | {first} | "
                f"{_num(r, '{:.1f}')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
