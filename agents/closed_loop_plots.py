"""Closed-loop plots (matplotlib, Agg, PNG): success rate vs median time-to-success per planner, and one episode's
timeline (inference or skip, chunk age, holding, the events, success)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.plots import DPI, _plt, _save


def plot_success_vs_time(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One point per planner (pooled over tasks) and event setting / VLA: success rate vs median time-to-success."""
    plt = _plt()
    pooled: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        pooled.setdefault((r["planner"], r["vla"], r["events"]), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=DPI)
    for (planner, vla, events), rs in sorted(pooled.items()):
        n = sum(r["episodes"] for r in rs)
        succ = sum(r["success_rate"] * r["episodes"] for r in rs) / n
        tts = [r["median_tts_s"] for r in rs if math.isfinite(r["median_tts_s"])]
        x = float(np.median(tts)) if tts else math.nan
        ax.scatter([x], [succ], marker="o" if events == "off" else "^", s=40)
        ax.annotate(f"{planner}/{vla}/{events}", (x, succ), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("median time-to-success over tasks (s)")
    ax.set_ylabel("success rate (pooled over tasks)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("closed loop: success vs time-to-success (o: events off, ^: on)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_timeline(outcome: Any, path: str | Path) -> Path:
    """One episode: chunk age per control step (gaps = holding), decisions (inference / skip), events, success."""
    plt = _plt()
    tl = outcome.timeline
    dt = tl["period_s"]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=DPI)
    steps = tl["steps"]
    t = [s["step"] * dt for s in steps]
    age = [s["chunk_age_steps"] * dt if s["chunk_age_steps"] is not None and not s["holding"] else math.nan
           for s in steps]
    ax.step(t, age, where="post", label="chunk age (s) of the executed action")
    hold = [s["step"] * dt for s in steps if s["holding"]]
    ax.scatter(hold, [0] * len(hold), marker="s", color="grey", s=12, label="holding")
    dec = tl["decisions"]
    inf = [d["time_s"] for d in dec if not d["skip"]]
    skip = [d["time_s"] for d in dec if d["skip"]]
    ax.scatter(inf, [-0.05] * len(inf), marker="|", color="C1", s=80, label="inference")
    ax.scatter(skip, [-0.1] * len(skip), marker="|", color="C2", s=80, label="skip")
    for e in tl["events"]:
        ax.axvline(e["step"] * dt, color="red", ls="--", lw=1)
        ax.annotate(e["kind"], (e["step"] * dt, ax.get_ylim()[1] * 0.9), color="red", fontsize=7)
    if tl["time_to_success_s"] is not None:
        ax.axvline(tl["time_to_success_s"], color="green", lw=1.5, label="success")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{outcome.planner} on {outcome.task} (vla {outcome.vla}, events {outcome.events}, "
                 f"seed {outcome.seed})", fontsize=9)
    ax.legend(fontsize=6, loc="upper right")
    return _save(fig, path)
