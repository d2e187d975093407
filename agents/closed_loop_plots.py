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
    """One point per planner (pooled over tasks) and event setting / VLA: success rate vs median time-to-success.
    Planners at the same point share one label; labels are stacked so that none overlaps another."""
    plt = _plt()
    pooled: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        pooled.setdefault((r["planner"], r["vla"], r["events"]), []).append(r)
    points: dict[tuple[float, float, str], list[str]] = {}  # (x, y, events) -> planner/vla labels
    for (planner, vla, events), rs in sorted(pooled.items()):
        n = sum(r["episodes"] for r in rs)
        succ = sum(r["success_rate"] * r["episodes"] for r in rs) / n
        tts = [r["median_tts_s"] for r in rs if math.isfinite(r["median_tts_s"])]
        x = float(np.median(tts)) if tts else math.nan
        points.setdefault((round(x, 3), round(succ, 3), events), []).append(
            planner if vla == "-" else f"{planner}/{vla}"
        )
    fig, ax = plt.subplots(figsize=(8, 5), dpi=DPI)
    xs = [x for x, _, _ in points if math.isfinite(x)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = max(x_hi - x_lo, 1e-6)
    ax.set_xlim(x_lo - 0.05 * span, x_hi + 0.6 * span)  # room on the right for the labels
    ax.set_ylim(-0.05, 1.05)
    placed: list[tuple[float, float]] = []  # label anchors in axes fractions
    for (x, y, events), names in sorted(points.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        ax.scatter(
            [x], [y], marker="o" if events == "off" else "^", s=40, color="C0" if events == "off" else "C3", alpha=0.8
        )
        if not math.isfinite(x):
            continue
        fx = (x - ax.get_xlim()[0]) / (ax.get_xlim()[1] - ax.get_xlim()[0]) + 0.02
        fy = (y + 0.05) / 1.1
        while any(abs(fx - px) < 0.3 and abs(fy - py) < 0.045 for px, py in placed):
            fy -= 0.045
        placed.append((fx, fy))
        ax.annotate(
            f"{', '.join(names)} ({events})",
            (x, y),
            xytext=(fx, fy),
            textcoords="axes fraction",
            fontsize=6,
            va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"},
        )
    ax.set_xlabel("median time-to-success over tasks (s)")
    ax.set_ylabel("success rate (pooled over tasks)")
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
    age = [
        s["chunk_age_steps"] * dt if s["chunk_age_steps"] is not None and not s["holding"] else math.nan for s in steps
    ]
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
    ax.set_title(
        f"{outcome.planner} on {outcome.task} (vla {outcome.vla}, events {outcome.events}, seed {outcome.seed})",
        fontsize=9,
    )
    ax.legend(fontsize=6, loc="upper right")
    return _save(fig, path)
