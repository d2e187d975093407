"""The closed-loop benchmark's tables across models and trace families, and the issue's targets for the deployable
PPO checked per task.

Several ``closed_loop.json`` reports (one per model and trace family, possibly split over tasks and event settings
into several files) are merged by (model, family); :func:`cell_table` prints, per task and event setting, one row
per planner with the success rate and median time-to-success of every (model, family); :func:`target_checks`
checks, per (model, family, task) with events on:

- success within ``success_gap`` (2 points) of the zero-latency expert, and never below any other planner's;
- median time-to-success at most ``tts_vs_expert`` (1.15x) the expert's and ``tts_vs_edge`` (0.5x) edge-only's.

Where the cell also holds the hindsight reaction planner (``agents.hindsight``, a reference that reads the trace,
not a deployable planner), it is left out of "any other planner" and the same targets are checked on it: a target
the PPO misses and the reference misses too is out of reach for that model on that link ("missed; hindsight too"),
one the reference meets is the PPO's to close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.closed_loop_eval import EXPERT, ClosedLoopReport, EpisodeOutcome, summarize


REFERENCE = "hindsight"  # reads the trace: a reachability reference, never one of the "other planners"


@dataclass(frozen=True)
class Targets:
    """The issue's targets for the deployable PPO (events on)."""

    success_gap: float = 0.02  # success at least the expert's minus this
    tts_vs_expert: float = 1.15  # median time-to-success at most this times the expert's
    tts_vs_edge: float = 0.5  # ... and at most this times edge-only's


def family_label(traces: str) -> str:
    """A trace family's short name: the folder, with its parent when the folder alone is ambiguous (4G, 5G)."""
    p = Path(str(traces).rstrip("/"))
    return f"{p.parent.name}/{p.name}" if p.name.upper() in {"4G", "5G"} else p.name


@dataclass
class Cell:
    """All episodes of one (model, trace family), merged over the reports that hold them."""

    model: str
    family: str
    episodes: list[EpisodeOutcome]

    @property
    def label(self) -> str:
        return f"{self.model} {self.family}"


def merge_reports(reports: Sequence[ClosedLoopReport], *, later_wins: bool = False) -> list[Cell]:
    """Group the reports' episodes by (model, trace family); an episode given twice (same planner, task, VLA,
    events and seed in the same cell) is a ValueError naming it, or, with ``later_wins``, the later report's
    episode replaces the earlier one (a planner re-run on the same seeds overlays a grid)."""
    cells: dict[tuple[str, str], dict[tuple[Any, ...], Any]] = {}
    for rep in reports:
        cfg = rep.meta.get("config", {})
        key = (str(cfg.get("model", "?")), family_label(cfg.get("traces", rep.meta.get("traces", "?"))))
        seen = cells.setdefault(key, {})
        for o in rep.episodes:
            k = (o.planner, o.task, o.vla, o.events, o.seed)
            if k in seen and not later_wins:
                raise ValueError(f"{key[0]} {key[1]}: episode {k} appears in more than one report")
            seen[k] = o
    return [Cell(m, f, list(eps.values())) for (m, f), eps in cells.items()]


def _rows(cell: Cell, **kw: Any) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["planner"], r["task"], r["vla"], r["events"]): r for r in summarize(cell.episodes, **kw)}


def _fmt(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    tts = r["median_tts_s"]
    return f"{r['success_rate']:.2f} / {'-' if not math.isfinite(tts) else f'{tts:.2f}'} ({r['episodes']})"


def cell_table(cells: Sequence[Cell], task: str, events: str, vla: str = "aware") -> str:
    """Markdown: one row per planner, one column per (model, family): ``success / median tts s (episodes)``;
    ``task="all"`` pools the tasks."""
    pool = task == "all"
    rows = [_rows(c, pool_tasks=pool) for c in cells]
    planners: list[str] = []
    for rs in rows:
        for p, t, v, e in rs:
            if t == task and e == events and v in (vla, "-") and p not in planners:
                planners.append(p)
    planners.sort(key=lambda p: (p != EXPERT, p))
    head = "| planner | " + " | ".join(c.label for c in cells) + " |"
    lines = [head, "|" + "---|" * (len(cells) + 1)]
    for p in planners:
        v = "-" if p == EXPERT else vla
        lines.append(f"| {p} | " + " | ".join(_fmt(rs.get((p, task, v, events))) for rs in rows) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class TargetCheck:
    """One (model, family, task): the deployable PPO against the targets (events on)."""

    model: str
    family: str
    task: str
    episodes: int
    ppo_success: float
    expert_success: float
    best_other: str
    best_other_success: float
    ppo_tts_s: float
    expert_tts_s: float
    edge_tts_s: float
    success_ok: bool
    tts_expert_ok: bool
    tts_edge_ok: bool
    ref_success: float = math.nan  # the hindsight reference's, NaN when the cell has none
    ref_tts_s: float = math.nan
    ref_success_ok: bool | None = None  # the same targets checked on the reference (None: no reference)
    ref_tts_expert_ok: bool | None = None
    ref_tts_edge_ok: bool | None = None

    @property
    def ratio_expert(self) -> float:
        return self.ppo_tts_s / self.expert_tts_s if self.expert_tts_s > 0 else math.nan

    @property
    def ratio_edge(self) -> float:
        return self.ppo_tts_s / self.edge_tts_s if self.edge_tts_s > 0 else math.nan


def target_checks(
    cells: Sequence[Cell], *, ppo: str = "ppo", events: str = "on", vla: str = "aware", targets: Targets = Targets()
) -> list[TargetCheck]:
    """Per (model, family, task) that has the PPO, the expert and edge-only: the targets of the module docstring."""
    out = []
    for c in cells:
        rows = _rows(c)
        tasks = sorted({t for (p, t, v, e) in rows if p == ppo and e == events and v == vla})
        for task in tasks:
            me = rows[(ppo, task, vla, events)]
            ex = rows.get((EXPERT, task, "-", events))
            edge = rows.get(("edge", task, vla, events))
            if ex is None or edge is None:
                continue
            others = [
                (r["success_rate"], p)
                for (p, t, v, e), r in rows.items()
                if t == task and e == events and v == vla and p not in (ppo, EXPERT, REFERENCE)
            ]
            best_s, best_p = max(others) if others else (math.nan, "-")

            def success_ok(s: float) -> bool:
                return s >= ex["success_rate"] - targets.success_gap - 1e-12 and not s < best_s - 1e-12

            def tts_ok(tts: float) -> bool:
                return tts <= targets.tts_vs_expert * ex["median_tts_s"] + 1e-12

            def tts_edge_ok(tts: float) -> bool:
                return tts <= targets.tts_vs_edge * edge["median_tts_s"] + 1e-12

            s, tts = me["success_rate"], me["median_tts_s"]
            ref = rows.get((REFERENCE, task, vla, events))
            out.append(
                TargetCheck(
                    c.model,
                    c.family,
                    task,
                    me["episodes"],
                    s,
                    ex["success_rate"],
                    best_p,
                    best_s,
                    tts,
                    ex["median_tts_s"],
                    edge["median_tts_s"],
                    success_ok=success_ok(s),
                    tts_expert_ok=tts_ok(tts),
                    tts_edge_ok=tts_edge_ok(tts),
                    ref_success=ref["success_rate"] if ref else math.nan,
                    ref_tts_s=ref["median_tts_s"] if ref else math.nan,
                    ref_success_ok=success_ok(ref["success_rate"]) if ref else None,
                    ref_tts_expert_ok=tts_ok(ref["median_tts_s"]) if ref else None,
                    ref_tts_edge_ok=tts_edge_ok(ref["median_tts_s"]) if ref else None,
                )
            )
    return out


def target_table(checks: Sequence[TargetCheck]) -> str:
    """Markdown: one row per check, met/missed per target with the numbers; with the hindsight reference in any
    check, its success / median tts and, for a target the PPO misses, whether the reference misses it too."""

    def ok(b: bool) -> str:
        return "met" if b else "**missed**"

    def ok_ref(b: bool, ref_ok: bool | None) -> str:
        if b or ref_ok is None:
            return ok(b)
        return "**missed**; hindsight too" if not ref_ok else "**missed**; hindsight meets it"

    def ratio(x: float) -> str:
        return f"{x:.2f}x" if math.isfinite(x) else "-"

    with_ref = any(k.ref_success_ok is not None for k in checks)
    head = (
        "| model | family | task | n | PPO success | expert | best other | "
        + ("hindsight | " if with_ref else "")
        + "success target | PPO tts s | / expert | / edge-only | tts <= 1.15x expert | tts <= 0.5x edge |"
    )
    lines = [head, "|" + "---|" * (14 if with_ref else 13)]
    for k in checks:
        ref = ""
        if with_ref:
            ref_tts = f"{k.ref_tts_s:.2f}" if math.isfinite(k.ref_tts_s) else "-"
            ref = f"{k.ref_success:.2f} / {ref_tts} | " if k.ref_success_ok is not None else "- | "
        lines.append(
            f"| {k.model} | {k.family} | {k.task} | {k.episodes} | {k.ppo_success:.2f} | {k.expert_success:.2f} | "
            f"{k.best_other} {k.best_other_success:.2f} | {ref}{ok_ref(k.success_ok, k.ref_success_ok)} | "
            f"{k.ppo_tts_s:.2f} | {ratio(k.ratio_expert)} | {ratio(k.ratio_edge)} | "
            f"{ok_ref(k.tts_expert_ok, k.ref_tts_expert_ok)} | "
            f"{ok_ref(k.tts_edge_ok, k.ref_tts_edge_ok) if math.isfinite(k.edge_tts_s) else 'n/a: edge-only never succeeded'} |"
        )
    return "\n".join(lines)


def noise_table(cells: Sequence[Cell], planners: Sequence[str] = ("ppo", "vision"), vla: str = "aware") -> str:
    """Markdown: per (model, family, task) and planner, success and inferences per episode with events off and
    under visual noise alone (the target: the same success, no extra inferences, for the deployable PPO)."""
    lines = [
        "| model | family | task | planner | success off | success noise | inf/ep off | inf/ep noise | same success |",
        "|" + "---|" * 9,
    ]
    for c in cells:
        rows = _rows(c)
        tasks = sorted({t for (p, t, v, e) in rows if e == "noise"})
        for task in tasks:
            for p in planners:
                off, noise = rows.get((p, task, vla, "off")), rows.get((p, task, vla, "noise"))
                if off is None or noise is None:
                    continue
                same = noise["success_rate"] >= off["success_rate"] - 1e-12
                lines.append(
                    f"| {c.model} | {c.family} | {task} | {p} | {off['success_rate']:.2f} | "
                    f"{noise['success_rate']:.2f} | {off['inferences_per_episode']:.1f} | "
                    f"{noise['inferences_per_episode']:.1f} | {'met' if same else '**missed**'} |"
                )
    return "\n".join(lines)
