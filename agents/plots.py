"""Evaluation plots (matplotlib, Agg backend, PNG): latency CDF per planner, one episode's timeline (bandwidth, cut,
skips) per planner, mean latency per trace family, and a PPO run's learning curve."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DPI = 120


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return path


def latency_cdf(runs: Sequence[Any], path: str | Path, *, title: str = "") -> Path:
    """Empirical CDF of step latency, one line per planner (log x axis), with each planner's p95 marked."""
    if not runs:
        raise ValueError("latency_cdf needs at least one planner run")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for run in runs:
        lat = np.sort(run.result.latency_ms)
        if lat.size == 0:
            continue
        y = np.arange(1, lat.size + 1) / lat.size
        (line,) = ax.step(lat, y, where="post", label=f"{run.name} (mean {lat.mean():.0f} ms)")
        p95 = float(np.percentile(lat, 95))
        ax.plot([p95], [0.95], "o", color=line.get_color(), ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("step latency (ms, log scale)")
    ax.set_ylabel("fraction of steps")
    ax.set_ylim(0, 1.01)
    ax.axhline(0.95, color="grey", lw=0.6, ls=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "step latency CDF (dots: p95)")
    return _save(fig, path)


def episode_timeline(
    runs: Sequence[Any], path: str | Path, *, episode: int = 0, edge_only_cut: int | None = None, title: str = ""
) -> Path:
    """One episode (the same for every planner): the trace's uplink bandwidth on top, then per planner its chosen
    cut over time (skipped steps as grey ticks at the bottom, deadline misses as red crosses) and the latency."""
    runs = [r for r in runs if len(r.steps) > episode]
    if not runs:
        raise ValueError(f"no planner run has an episode {episode}")
    plt = _plt()
    n = len(runs)
    fig, axes = plt.subplots(
        n + 1, 1, figsize=(9, 1.6 * (n + 1) + 0.6), sharex=True, gridspec_kw={"height_ratios": [1.3] + [1.0] * n}
    )
    ref = max(runs, key=lambda r: r.steps[episode].time_s[-1] if len(r.steps[episode].time_s) else 0)
    st = ref.steps[episode]
    ax = axes[0]
    ax.plot(st.time_s, st.up_mbps, color="tab:blue", lw=1.2, drawstyle="steps-post")
    ax.set_ylabel("uplink\nMbit/s")
    ax.set_yscale("symlog", linthresh=1.0)  # outages (0 Mbit/s) stay on the axis
    _readable_log_ticks(ax.yaxis, symlog=True)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"episode {episode} ({st.trace}): bandwidth, cut and skips per planner")
    num_cuts = max(int(np.max(r.result.episodes[episode].cut)) for r in runs) + 1
    if edge_only_cut is not None:
        num_cuts = max(num_cuts, edge_only_cut + 1)
    for ax, run in zip(axes[1:], runs):
        ep = run.result.episodes[episode]
        s = run.steps[episode]
        infer = ~ep.skip
        ax.step(s.time_s[infer], ep.cut[infer], where="post", color="tab:green", lw=1.0)
        ax.plot(s.time_s[infer], ep.cut[infer], ".", color="tab:green", ms=2.5)
        if ep.skip.any():
            ax.plot(s.time_s[ep.skip], np.full(int(ep.skip.sum()), -0.6), "|", color="grey", ms=6, label="skip")
        miss = ep.deadline_miss
        if miss.any():
            ax.plot(s.time_s[miss], ep.cut[miss], "x", color="red", ms=5, label="deadline miss")
        if edge_only_cut is not None:
            ax.axhline(edge_only_cut, color="black", lw=0.5, ls=":")
        ax.set_ylim(-1.2, num_cuts - 0.4)
        ax.set_ylabel(f"{run.name}\ncut", fontsize=8)
        ax.text(
            1.005,
            0.5,
            f"{ep.latency_ms.mean():.0f} ms\nskip {ep.skip.mean():.0%}",
            transform=ax.transAxes,
            fontsize=7,
            va="center",
        )
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(
        "episode time (s)   (cut 0 = cloud-only; dotted: edge-only; grey ticks: skipped steps; "
        "red x: deadline miss, ran edge-only)"
    )
    return _save(fig, path)


def _readable_log_ticks(axis: Any, *, symlog: bool = False) -> None:
    """Ticks at 1, 2, 5 x 10^n with plain labels (``0.5``, ``20``, ``100``) on a log or symlog axis, so that a range
    within one decade still gets several labelled ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, SymmetricalLogLocator

    subs = [1.0, 2.0, 5.0]
    locator = SymmetricalLogLocator(base=10, linthresh=1.0, subs=subs) if symlog else LogLocator(base=10, subs=subs)
    axis.set_major_locator(locator)
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def family_bars(families: dict[str, dict[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Grouped bars: mean step latency per trace family (groups) and planner (bars), on a log axis so that a slow
    planner (edge-only) does not flatten the others."""
    if not families:
        raise ValueError("family_bars needs at least one trace family")
    plt = _plt()
    fams = list(families)
    planners: list[str] = []
    for m in families.values():
        planners += [p for p in m if p not in planners]
    width = 0.8 / max(len(planners), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(fams) * max(1, len(planners) / 4)), 4.2))
    x = np.arange(len(fams))
    for i, p in enumerate(planners):
        vals = [families[f].get(p, math.nan) for f in fams]
        ax.bar(x + (i - (len(planners) - 1) / 2) * width, vals, width, label=p)
    ax.set_xticks(x, [f.replace("embedded/", "") for f in fams], rotation=20, ha="right")
    ax.set_yscale("log")
    _readable_log_ticks(ax.yaxis)
    ax.set_ylabel("mean step latency (ms, log scale)")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "mean step latency per trace family")
    return _save(fig, path)


def read_learning_curve(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of ``<run_dir>/learning_curve.csv`` as floats."""
    path = Path(run_dir) / "learning_curve.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no learning curve in {run_dir} (expected {path})")
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def learning_curve(run_dir: str | Path, path: str | Path, *, title: str = "") -> Path:
    """Validation return (and mean latency, if recorded) against training timesteps, with the heuristic's
    validation return as a reference line."""
    rows = read_learning_curve(run_dir)
    if "timesteps" not in rows[0] or "val_mean_return" not in rows[0]:
        raise ValueError(f"learning curve of {run_dir} lacks timesteps / val_mean_return columns: {list(rows[0])}")
    plt = _plt()
    t = [r["timesteps"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [r["val_mean_return"] for r in rows], "o-", color="tab:blue", label="PPO validation return")
    if "heuristic_val_return" in rows[0]:
        ax.axhline(rows[0]["heuristic_val_return"], color="tab:orange", ls="--", label="heuristic validation return")
    ax.set_xlabel("training timesteps")
    ax.set_ylabel("mean episode return")
    ax.grid(True, alpha=0.3)
    if "val_mean_latency_ms" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(
            t,
            [r.get("val_mean_latency_ms", math.nan) for r in rows],
            "s:",
            color="tab:green",
            ms=4,
            label="PPO validation mean latency",
        )
        ax2.set_ylabel("mean step latency (ms)", color="tab:green")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    else:
        ax.legend(fontsize=8)
    ax.set_title(title or f"PPO learning curve ({Path(run_dir).name})")
    return _save(fig, path)


TIMELINE_FIRST = ("ppo", "heuristic", "oracle", "edge", "cloud")


def timeline_selection(runs: Sequence[Any], max_panels: int = 7) -> list[Any]:
    """The runs drawn in the timeline: PPO, the heuristic, the Oracle, edge-only and cloud-only first, then the
    others up to ``max_panels``; in the given order."""

    def rank(run: Any) -> int:
        base = run.name.split(":", 1)[0]
        return TIMELINE_FIRST.index(base) if base in TIMELINE_FIRST else len(TIMELINE_FIRST)

    keep = {id(r) for r in sorted(runs, key=rank)[:max_panels]}  # sorted() is stable: ties keep their order
    return [r for r in runs if id(r) in keep]


def eval_plots(
    runs: Sequence[Any], out: str | Path, *, title: str = "", episode: int = 0, edge_only_cut: int | None = None
) -> list[Path]:
    """The three evaluation plots into ``out``: latency_cdf.png, timeline.png, family_latency.png."""
    from agents.report import family_means

    out = Path(out)
    paths = [latency_cdf(runs, out / "latency_cdf.png", title=f"step latency CDF: {title}" if title else "")]
    timeline_runs = timeline_selection(runs)
    paths.append(episode_timeline(timeline_runs, out / "timeline.png", episode=episode, edge_only_cut=edge_only_cut))
    paths.append(
        family_bars(
            family_means(runs),
            out / "family_latency.png",
            title=f"mean step latency per trace family: {title}" if title else "",
        )
    )
    return paths
