"""Closed-loop table: task success and time-to-success of every planner on MetaWorld tasks, with the zero-latency
expert as the ceiling, for the naive and the latency-aware perfect VLA, events off and on.

Setup: roofline ``full`` pi0 on Orin+A100 (``--model``, ``--hardware``), one recorded trace family (``--traces``,
default the WiFi/cellular SBU traces in ../shared/traces), 10 Hz control with chunks of 8 (``EnvConfig``), 64 px
frames without shadows. Every planner runs the same seeds (MetaWorld scene + trace segment + events).
Prints a Markdown table (the docs/closed_loop.md format) and the wall time; writes JSON/CSV/plots to ``--out``.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_closed_loop.py --episodes 2 --out runs/closed_loop

The closing-note grid: ``--models`` and ``--families`` run every (model, trace family) in one process, each into
its own ``--out/<model>-<family>/<task>/closed_loop.json`` (partial results survive); the simulators (and their remembered steps, frames and
rollouts) are shared, so the expert (the same for every model and family) and edge-only (the same on every family)
cost little after their first run. ``{model}`` in ``--planners`` is replaced by each model (``ppo:runs/ppo-{model}``).
``--from-json a.json,b.json,...`` merges reports by (model, family) and prints the per-task tables and the target
check of the deployable PPO (``agents.closed_loop_targets``).
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
    p.add_argument("--backend", default=d.backend, help="profile | executor (real split executor, emulated pair)")
    p.add_argument("--preset", default=d.preset, help="model preset (tiny for --backend executor)")
    p.add_argument(
        "--emulated-profiles",
        action="store_true",
        help="the emulated pair's Profiles for the profile backend too (to compare with --backend executor)",
    )
    p.add_argument("--out", default="")
    p.add_argument("--models", default="", help="comma-separated models, one run each (default: --model)")
    p.add_argument(
        "--families",
        default="",
        help="comma-separated trace folders, one run (and one JSON) each (default: --traces as one set)",
    )
    p.add_argument("--budget-ms", type=float, default=d.budget_ms, help="PPO decision budget (inf: never replaced)")
    p.add_argument("--seed", type=int, default=d.seed, help="first episode seed")
    p.add_argument(
        "--from-json",
        default="",
        help="comma-separated closed_loop.json files (globs allowed): print their tables (no run)",
    )
    p.add_argument(
        "--later-wins",
        action="store_true",
        help="with --from-json: an episode in several files is taken from the later one (overlay a re-run planner)",
    )
    p.add_argument(
        "--timelines",
        action="store_true",
        help="keep every episode's timeline in the JSON (each decision's cut, skip and latency), not only the first",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.from_json:
        from agents.closed_loop_eval import ClosedLoopReport

        paths = expand_paths(args.from_json)
        reports = [ClosedLoopReport.from_json(x) for x in paths]
        if len(reports) == 1 and not args.models:
            print_tables(reports[0])
        else:
            print_grid(reports, later_wins=args.later_wins)
        return 0
    if args.models or args.families:
        return run_grid(args)
    cfg = ClosedLoopEvalConfig(
        planners=args.planners,
        tasks=args.tasks,
        episodes=args.episodes,
        episode_s=args.episode_s,
        vlas=args.vlas,
        events=args.events,
        traces=args.traces,
        model=args.model,
        hardware=args.hardware,
        entry=args.entry,
        backend=args.backend,
        preset=args.preset,
        emulated_profiles=args.emulated_profiles,
        out=args.out,
    )
    t0 = time.perf_counter()
    done = [0]

    def tick(o) -> None:
        done[0] += 1
        print(
            f"  {done[0]:4d} {o.planner:10s} {o.task:24s} {o.vla:5s} events {o.events}: "
            f"{'success' if o.success else 'fail'} {o.time_to_success_s}",
            file=sys.stderr,
            flush=True,
        )

    report = run_closed_loop_eval(cfg, on_episode=tick, keep_timelines=args.timelines)
    wall = time.perf_counter() - t0
    print(f"wall {wall:.0f} s ({len(report.episodes)} episodes)")
    print_tables(report)
    return 0


def expand_paths(text: str) -> list[str]:
    """Comma-separated paths, each possibly a glob; a pattern that matches nothing is an error naming it."""
    import glob

    out: list[str] = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        hits = sorted(glob.glob(item)) if any(ch in item for ch in "*?[") else [item]
        if not hits:
            raise SystemExit(f"--from-json: no file matches {item!r}")
        out += hits
    return out


def run_grid(args: argparse.Namespace) -> int:
    """Every (model, family) of --models x --families, one JSON each, the simulators shared (module docstring)."""
    from agents.closed_loop_eval import ClosedLoopEvalConfig, eval_profiles, run_closed_loop_eval
    from agents.closed_loop_targets import family_label

    models = [m.strip() for m in (args.models or args.model).split(",") if m.strip()]
    families = [f.strip() for f in (args.families or args.traces).split(",") if f.strip()]
    sims: dict = {}
    reports = []
    t0 = time.perf_counter()
    try:
        for model in models:
            profiles = None
            for fam, task in ((f, t) for f in families for t in args.tasks.split(",")):
                out = Path(args.out) / f"{model}-{family_label(fam).replace('/', '-')}" / task if args.out else ""
                cfg = ClosedLoopEvalConfig(
                    planners=args.planners.replace("{model}", model),
                    tasks=task,
                    episodes=args.episodes,
                    seed=args.seed,
                    episode_s=args.episode_s,
                    vlas=args.vlas,
                    events=args.events,
                    traces=fam,
                    model=model,
                    hardware=args.hardware,
                    entry=args.entry,
                    backend=args.backend,
                    preset=args.preset,
                    emulated_profiles=args.emulated_profiles,
                    budget_ms=args.budget_ms,
                    out=str(out),
                )
                profiles = profiles or eval_profiles(cfg)
                t1 = time.perf_counter()
                rep = run_closed_loop_eval(cfg, profiles=profiles, sims=sims, keep_timelines=args.timelines)
                print(
                    f"{model} {family_label(fam)} {task}: {len(rep.episodes)} episodes, wall "
                    f"{time.perf_counter() - t1:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                reports.append(rep)
    finally:
        for sim in sims.values():
            sim.close()
    print(f"wall {time.perf_counter() - t0:.0f} s ({sum(len(r.episodes) for r in reports)} episodes)")
    print_grid(reports)
    return 0


def print_grid(reports, later_wins: bool = False) -> None:
    """Per task and event setting: success / median tts per planner and (model, family); then the target check."""
    from agents.closed_loop_targets import cell_table, merge_reports, noise_table, target_checks, target_table

    cells = merge_reports(reports, later_wins=later_wins)
    eps = [o for c in cells for o in c.episodes]
    vlas = sorted({o.vla for o in eps} - {"-"}) or ["aware"]
    for events in sorted({o.events for o in eps}, key=lambda e: ("on", "off", "noise").index(e)):
        for vla in vlas:
            for task in ["all"] + sorted({o.task for o in eps}):
                print(f"\n{task}, events {events}, vla {vla}: success / median tts s (episodes)\n")
                print(cell_table(cells, task, events, vla))
    checks = target_checks(cells)
    if checks:
        print("\ntargets of the deployable PPO (events on, aware VLA)\n")
        print(target_table(checks))
    if {"off", "noise"} <= {o.events for o in eps}:
        print("\nvisual noise alone against events off\n")
        print(noise_table(cells))


def print_tables(report) -> None:
    """The pooled table (per planner, VLA and event setting over all tasks) and the per-task table, Markdown."""
    from agents.closed_loop_eval import markdown_table, summarize

    m = report.meta
    print(
        f"closed loop: {m.get('profiles')}, traces {m.get('traces')}, seeds {m.get('seeds')}, "
        f"{m.get('period_ms', 0):.0f} ms control, chunks of {m.get('chunk_size')}, "
        f"entry {m.get('config', {}).get('entry')}, backend {m.get('backend', 'profile')}\n"
    )
    print(markdown_table(summarize(report.episodes, pool_tasks=True)))
    print()
    print(markdown_table(report.rows))


if __name__ == "__main__":
    sys.exit(main())
