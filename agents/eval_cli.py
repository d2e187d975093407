"""`ecc eval`: every planner on the same episodes, one comparison table (printed, JSON, CSV) and the plots.

    ecc eval --planners ppo:runs/demo/policy.zip,heuristic,roboecc,rapid,static,edge,cloud,oracle \\
             --traces embedded --model pi0 --preset full --hardware orin+a100 --episodes 8 --out runs/eval

Planners: ``ppo:PATH`` (a policy artifact or its run folder; runs inside a GuardedPolicy with the heuristic as
fallback, whose fallbacks are counted), ``heuristic`` (RoboECC cut + RAPID skip), ``roboecc``, ``rapid``,
``vision`` (vision-triggered skip), ``static`` (Neurosurgeon best cut), ``edge``, ``cloud``, ``oracle`` (hindsight
optimum, beam search), ``hindsight`` (the fastest reaction the link allows: reads the trace; ``agents.hindsight``).
Episodes come from the ``--split`` side of the trace set's seeded split (default: test);
the heuristics' bandwidth prior comes from its training side. ``--backend executor`` runs every inference on the
real split executor (``--preset tiny|small``) over a trace-shaped loopback link, with the Profile pair emulated on
this machine (``agents.emulated_pair``) unless ``--profiles`` are given.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The library lives in agents.evaluation; re-exported here for callers that import it from the CLI module.
from agents.evaluation import (
    PLANNER_NAMES,
    EvalConfig,
    PlannerSpecError,
    build_planner,
    load_traces,
    make_eval_env,
    parse_planners,
    policy_path,
    resolve_profiles,
    run_eval,
)

__all__ = [
    "PLANNER_NAMES",
    "EvalConfig",
    "PlannerSpecError",
    "build_planner",
    "load_traces",
    "main",
    "make_eval_env",
    "parse_planners",
    "policy_path",
    "print_report",
    "resolve_profiles",
    "run_eval",
    "wide_console",
    "wire_rtt_line",
]


def main(argv: Sequence[str] | None = None) -> int:
    from agents.cliargs import parse_config

    cfg = parse_config(EvalConfig, sys.argv[1:] if argv is None else argv, prog="ecc eval", description=__doc__)
    try:
        parse_planners(cfg.planners)
    except ValueError as e:
        print(f"ecc eval: {e}", file=sys.stderr)
        return 2
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.artifact import PolicyLoadError

    console = wide_console()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            report, _ = run_eval(cfg, progress=progress)
    except (PolicyLoadError, ValueError, FileNotFoundError) as e:
        print(f"ecc eval: {e}", file=sys.stderr)
        return 2
    print_report(report, console)
    if cfg.out:
        console.print(
            f"wrote {Path(cfg.out) / 'report.json'}, report.csv, steps.csv" + (" and plots" if cfg.plots else "")
        )
    return 0


def wide_console() -> Any:
    """A rich Console that does not squeeze the table when stdout is not a terminal."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    return console


def wire_rtt_line(meta: dict[str, Any]) -> str:
    """The wire configuration and the RTT rule of a result, as printed with it."""
    wire = (meta.get("wire") or {}).get("label", "not recorded")
    rule = meta.get("rtt_rule") or {}
    fams = ", ".join(f"{f} {v:g}" for f, v in (rule.get("mean_rtt_ms_by_family") or {}).items())
    return f"wire {wire}; {rule.get('label', 'RTT rule not recorded')}" + (f"; mean RTT ms: {fams}" if fams else "")


def print_report(report: Any, console: Any, title: str | None = None, *, explain: bool = True) -> None:
    """The comparison table, what its columns mean (``explain``) and the per-family means, as rich tables."""
    m = report.meta
    c = m.get("config", {})
    title = title or (
        f"{c.get('model')}/{c.get('preset')} on {c.get('hardware')}, {c.get('backend')} backend, "
        f"{len(m.get('seeds', []))} episodes x {c.get('episode_s')} s, {m.get('traces', {}).get('set')}:"
        f"{c.get('split')}"
    )
    console.print(report.rich_table(title))
    if explain:
        for line in report.column_notes():
            console.print(f"[dim]  {line}[/dim]", highlight=False)
    console.print(wire_rtt_line(m), soft_wrap=True)
    if len(report.families) > 1:
        console.print(report.family_table("mean latency (ms) per trace family"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
