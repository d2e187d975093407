"""The demo's closed-loop section: a few MetaWorld episodes with the demo's trained PPO policy beside the heuristic
and edge-only and the zero-latency expert (``ecc demo`` phase "closed loop"; ``agents.closed_loop_eval`` does the
work). Optional: without MetaWorld the section is skipped with a one-line note."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoClosedLoopConfig:
    """The demo's closed loop: short on purpose (2 tasks x 2 seeds x events off/on, latency-aware VLA)."""

    tasks: str = "reach-v3,pick-place-v3"  # MetaWorld tasks
    episodes: int = 2  # seeds per planner, task and event setting
    events: str = "off,on"  # event settings
    planners: str = "heuristic,edge"  # planners beside the policy
    episode_s: float = 3.0  # horizon (s); the experts finish these tasks in ~0.4-0.8 s


def metaworld_available() -> bool:
    """Whether the optional MetaWorld simulator can be imported (the ``sim`` extra)."""
    return importlib.util.find_spec("metaworld") is not None


def run_demo_closed_loop(
    policy: str | Path,
    profiles: tuple[Any, Any],
    trace_set: Any,
    cfg: DemoClosedLoopConfig = DemoClosedLoopConfig(),
    out: str | Path | None = None,
    seed: int = 0,
) -> Any:
    """Run the closed loop for ``policy`` (a run folder or policy file trained on ``profiles``) on ``trace_set``;
    returns the ``ClosedLoopReport`` (one row per planner, task and event setting), or None without MetaWorld."""
    if not metaworld_available():
        return None
    from agents.closed_loop_eval import ClosedLoopEvalConfig, run_closed_loop_eval

    ecfg = ClosedLoopEvalConfig(
        planners=f"ppo:{policy},{cfg.planners}",
        tasks=cfg.tasks,
        episodes=cfg.episodes,
        seed=seed,
        events=cfg.events,
        vlas="aware",
        episode_s=cfg.episode_s,
        out=str(out) if out else "",
        plots=False,
    )
    return run_closed_loop_eval(ecfg, trace_set=trace_set, profiles=profiles)


def print_demo_closed_loop(report: Any, console: Any) -> None:
    """The section's table (rich), or its one-line note when MetaWorld is missing."""
    if report is None:
        console.print("closed loop skipped: MetaWorld is not installed (pip install 'vla-ecc[sim]')")
        return
    from rich.table import Table

    from agents.closed_loop_eval import table_rows

    m = report.meta
    head, body = table_rows(report.rows)
    table = Table(title=f"closed loop (MetaWorld, latency-aware perfect VLA): {m['profiles']}, seeds {m['seeds']}")
    for h in head:
        table.add_column(h)
    for row in body:
        table.add_row(*row)
    console.print(table)
