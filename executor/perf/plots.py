"""Matplotlib figures of the ``ecc perf`` sweeps (Agg backend; infeasible points are left out and listed in the
title). One function per sweep kind; :func:`plot_sweep` dispatches by the rows' ``sweep`` key."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Row = dict[str, Any]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def _infeasible_note(rows: Sequence[Row]) -> str:
    bad = sorted({f"{r.get('device') or r.get('server')}@{r['x']}" for r in rows if not r.get("feasible")})
    return f"\ninfeasible (does not fit memory): {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}" if bad else ""


def _lines(ax: Any, rows: Sequence[Row], key: str, series: str, y: str = "latency_ms", style: str = "o-") -> None:
    for s in dict.fromkeys(r[series] for r in rows):
        pts = [(r[key], r[y]) for r in rows if r[series] == s and r.get("feasible") and _ok(r.get(y))]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=str(s))


def plot_sweep(rows: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Draw one sweep's rows to ``path`` (PNG)."""
    if not rows:
        raise ValueError("no rows to plot")
    kind = rows[0].get("sweep")
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("devices", "scale", "networks"):
        fig, ax = plt.subplots(figsize=(10, 4.8))
        if kind == "networks":
            _bars_networks(ax, rows)
        else:
            _stacked(ax, rows, group="device" if kind == "scale" else None)
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        if kind == "action_head":
            for head, style in (("flow", "o-"), ("autoregressive", "s--"), ("ar-parallel", "d:")):
                sub = [dict(r, series=f"{head} / {r['device']}") for r in rows if r.get("action_head") == head]
                _lines(ax, sub, "x", "series", style=style)
            ax.set_xlabel("action chunk size")
        else:
            _lines(ax, rows, "x", "device")
            ax.set_xlabel(
                {"steps": "denoising steps", "chunk": "action chunk size", "context": "timesteps in context"}.get(
                    str(kind), str(kind)
                )
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("latency per inference (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if not title:
        models = ", ".join(dict.fromkeys(str(r["model"]) for r in rows))
        servers = ", ".join(
            x for x in dict.fromkeys(str(r.get("server") or "") for r in rows if r["placement"] != "on-device") if x
        )
        title = f"ecc perf sweep '{kind}': {models}" + (f" (server {servers})" if servers else "") + ", bf16"
    ax.set_title(title + _infeasible_note(rows), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def _stacked(ax: Any, rows: Sequence[Row], group: str | None) -> None:
    """Stacked vision / VLM / decode / action bars per row (x label = row x [+ device]), on a linear axis: a stacked
    segment's height is its time only on a linear scale."""
    labels = [f"{r['x']}" if group is None else f"{r['x']}\n{r[group]}" for r in rows]
    floor = 0.0
    bottom = [floor] * len(rows)
    for comp in ("vision", "llm_prefill", "decode", "action"):
        vals = [float(r[f"{comp}_ms"]) if r.get("feasible") and _ok(r.get(f"{comp}_ms")) else 0.0 for r in rows]
        if any(vals):
            ax.bar(range(len(rows)), vals, bottom=bottom, label=comp)
            bottom = [b + v for b, v in zip(bottom, vals)]
    for i, r in enumerate(rows):
        ax.text(
            i,
            bottom[i] if r.get("feasible") else floor,
            f"{r['control_hz']:.1f} Hz" if r.get("feasible") else "infeasible\n(memory)",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(bottom=floor, top=max(bottom + [1.0]) * 1.15)  # room for the Hz labels
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=8)


def _bars_networks(ax: Any, rows: Sequence[Row]) -> None:
    """Control frequency per network: edge-server sync / async and device-server split; on-device as a line."""
    base = next((r for r in rows if r["placement"] == "on-device"), None)
    nets = list(dict.fromkeys(r["x"] for r in rows if r["placement"] != "on-device"))
    series = [
        ("edge-server", "sync", "server sync"),
        ("edge-server", "async", "server async"),
        ("cloud", "sync", "server sync"),
        ("cloud", "async", "server async"),
        ("split", "sync", "split"),
    ]
    names = ["server sync", "server async", "split"]
    width = 0.27
    for j, name in enumerate(names):
        vals = []
        for n in nets:
            hit = [
                r
                for r in rows
                if r["x"] == n and any(r["placement"] == p and r["execution"] == e and s == name for p, e, s in series)
            ]
            vals.append(hit[0]["control_hz"] if hit and hit[0].get("feasible") else 0.0)
        ax.bar([i + (j - 1) * width for i in range(len(nets))], vals, width, label=name)
    if base and base.get("feasible"):
        ax.axhline(base["control_hz"], color="k", ls="--", label=f"on-device ({base['device']})")
    ax.set_xticks(range(len(nets)), nets, fontsize=7, rotation=25, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("control frequency (Hz), log scale")
    ax.legend(fontsize=8)


__all__ = ["plot_sweep"]
