"""Evaluation reports: run several planners on the same episodes, and the comparison table (JSON, CSV, rich).

Every planner goes through ``agents.evaluate.evaluate`` on one env and one list of seeds, so all of them see the same
trace segments, observation streams and stream offsets (the env draws them from its generator seeded in ``reset``).
A :class:`StepRecorder` wrapper around that env keeps what ``evaluate`` does not: each step's episode time, the
uplink bandwidth of the trace at that time and the bytes uplinked, and each episode's trace name.

Table columns (one row per planner, pooled over all steps of all episodes):

| key | meaning |
|---|---|
| mean/p50/p95/p99_latency_ms | step latency: observation arrival to actions ready (env ``latency_ms``) |
| deadline_miss_rate | fraction of steps whose network inference missed the deadline (edge-only fallback) |
| speedup_vs_edge | EdgeOnly's mean latency / this planner's (same episodes); NaN without an edge-only run |
| ratio_to_oracle | this planner's mean latency / the Oracle's; NaN without an Oracle run |
| mean_return | mean episode return of the env's reward (what PPO maximises) |
| skip_rate | fraction of steps that reused the current action chunk |
| mean_deviation | mean abs difference between executed and reference actions (0 on inferred steps) |
| dropped | observations dropped from the full edge queue, all episodes together |
| uplink_bytes_per_step | bytes sent edge -> cloud per step (cut payload plus extra round trips; measured bytes on the executor backend) |
| overhead_pct | controller time (``predict`` plus, for the Oracle, its episode planning) / step latency, in % |
| fallbacks | steps the GuardedPolicy handed to its heuristic (by reason in ``fallbacks_by_reason``); None if unguarded |
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import gymnasium as gym
import numpy as np

from agents.evaluate import EvalResult, evaluate

log = logging.getLogger(__name__)

# (key, header, format) of the printed / CSV table, in order
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("planner", "planner", ""),
    ("mean_latency_ms", "mean ms", ".1f"),
    ("p50_latency_ms", "p50 ms", ".1f"),
    ("p95_latency_ms", "p95 ms", ".1f"),
    ("p99_latency_ms", "p99 ms", ".1f"),
    ("deadline_miss_rate", "miss", ".3f"),
    ("speedup_vs_edge", "x edge", ".2f"),
    ("ratio_to_oracle", "/oracle", ".3f"),
    ("mean_return", "return", ".2f"),
    ("skip_rate", "skip", ".3f"),
    ("mean_deviation", "dev", ".4f"),
    ("dropped", "dropped", "d"),
    ("uplink_bytes_per_step", "up B/step", ",.0f"),
    ("overhead_pct", "ctrl %", ".3f"),
    ("fallbacks", "fallbacks", "d"),
)

# What each printed column means, in one line each (printed under the table by ``EvalReport.column_notes``).
COLUMN_NOTES: dict[str, str] = {
    "planner": "the decision maker (ppo: the trained policy, guarded by the heuristic)",
    "mean ms": "mean step latency: from an observation's arrival to its actions being ready (ms)",
    "p50 ms": "median step latency; p95 ms, p99 ms: the 95th and 99th percentiles",
    "miss": "fraction of steps whose network inference missed the deadline and ran edge-only instead",
    "x edge": "speed-up over edge-only: edge-only's mean latency / this planner's (higher is better)",
    "/oracle": "this planner's mean latency / the hindsight Oracle's (1.0 = as fast as the Oracle)",
    "return": "mean episode return of the env's reward (latency, deadline misses, action deviation, drops): "
    "what PPO maximises, so a planner can trade a little latency for a better return",
    "skip": "fraction of steps that skipped inference and reused the current action chunk",
    "dev": "mean absolute difference between executed and reference actions (skipped steps deviate)",
    "dropped": "observations dropped because the edge queue was full (all episodes together)",
    "up B/step": "bytes sent edge -> cloud per step",
    "ctrl %": "the planner's own decision time as a share of the step latency, in %",
    "fallbacks": "steps the guard handed from the policy to the heuristic (too slow, out of range); "
    "- when the planner is not guarded",
}

_SPLIT_FOLDERS = ("train", "test", "val")


def family_of(trace_name: str) -> str:
    """The trace family of a trace name: its folder path without train*/test*/val* folders
    (``embedded/4g/4g-1`` -> ``embedded/4g``, ``fcc_broadband_2016/test_genet/x`` -> ``fcc_broadband_2016``).
    A segment's ``[a..b]`` suffix is ignored."""
    name = str(trace_name).split("[", 1)[0]
    parts = [p for p in PurePosixPath(name).parts[:-1] if not p.lower().startswith(_SPLIT_FOLDERS)]
    return "/".join(parts) if parts else "(none)"


def traces_of_family(trace_set: Any, family: str, side: str) -> Any:
    """The traces of ``trace_set`` (the ``side`` split) whose family contains ``family``, as a TraceSet; ValueError
    naming the families when none matches."""
    from traces.traceset import TraceSet

    kept = TraceSet([t for t in trace_set if family in family_of(t.name)], f"{trace_set.name}:{family}")
    if len(kept) == 0:
        families = sorted({family_of(t.name) for t in trace_set})
        raise ValueError(f"no trace family of the {side!r} split matches {family!r}; families: {', '.join(families)}")
    return kept


@dataclass
class EpisodeSteps:
    """Per-step records the env's info does not carry (arrays of the episode's length) and the episode's trace."""

    trace: str
    time_s: np.ndarray
    up_mbps: np.ndarray
    bytes_up: np.ndarray
    fallback: np.ndarray

    @property
    def family(self) -> str:
        return family_of(self.trace)


class StepRecorder(gym.Wrapper):
    """Records, per step of the wrapped ``EdgeCloudSplitEnv``, the episode time, the trace's uplink bandwidth at
    that time, the bytes uplinked and the deadline fallback flag; one :class:`EpisodeSteps` per ``reset``.
    ``on_step`` (if given) is called after every step (progress bars)."""

    def __init__(self, env: gym.Env, on_step: Callable[[], None] | None = None) -> None:
        super().__init__(env)
        self.on_step = on_step
        self.episodes: list[EpisodeSteps] = []
        self._rows: list[tuple[float, float, float, bool]] = []
        self._trace = ""

    def clear(self) -> None:
        """Forget all recorded episodes."""
        self.episodes = []
        self._rows = []

    def _flush(self) -> None:
        if self._rows:
            a = np.array(self._rows, dtype=np.float64)
            self.episodes.append(EpisodeSteps(self._trace, a[:, 0], a[:, 1], a[:, 2], a[:, 3].astype(bool)))
        self._rows = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self._flush()
        obs, info = self.env.reset(**kwargs)
        self._trace = str(info.get("trace", ""))
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        e = self.env.unwrapped
        backend = e.backend
        before = getattr(backend, "last_timing", None)
        obs, r, term, trunc, info = self.env.step(action)
        t = float(info["time_s"])
        up = float(e.link.bandwidth_mbps(t, "up"))
        nbytes = 0.0
        if not info["skip"]:
            row = e.rows[int(info["cut"])]
            if row.uses_network:
                timing = getattr(backend, "last_timing", None)
                if timing is not None and timing is not before and not info["fallback"]:
                    nbytes = float(timing.bytes_up)  # measured on the wire (executor backend)
                else:
                    nbytes = float(row.up_bytes + row.round_trips * row.round_trip_up_bytes)
        self._rows.append((t, up, nbytes, bool(info["fallback"])))
        if term or trunc:
            self._flush()
        if self.on_step is not None:
            self.on_step()
        return obs, r, term, trunc, info


@dataclass
class PlannerRun:
    """One planner's evaluation: the EvalResult, the recorder's per-step extras, its guard report, wall time."""

    name: str
    result: EvalResult
    steps: list[EpisodeSteps]
    guard: dict[str, Any] | None = None
    wall_s: float = 0.0

    def concat(self, attr: str) -> np.ndarray:
        return np.concatenate([getattr(s, attr) for s in self.steps]) if self.steps else np.zeros(0)


def run_planners(
    planners: Mapping[str, Any],
    env: StepRecorder,
    seeds: Sequence[int],
    *,
    on_planner: Callable[[str], None] | None = None,
) -> list[PlannerRun]:
    """Evaluate every planner on ``env`` (a :class:`StepRecorder`) with the same ``seeds``; in the given order."""
    if not isinstance(env, StepRecorder):
        raise TypeError(f"env must be wrapped in a StepRecorder, got {type(env).__name__}")
    if not planners:
        raise ValueError("no planners to evaluate")
    runs = []
    for name, planner in planners.items():
        if on_planner is not None:
            on_planner(name)
        env.clear()
        t0 = time.perf_counter()
        res = evaluate(planner, env, seeds, name=name)
        wall = time.perf_counter() - t0
        steps = list(env.episodes)
        if len(steps) != len(res.episodes) or any(
            len(s.time_s) != len(e.latency_ms) for s, e in zip(steps, res.episodes)
        ):
            raise RuntimeError(f"step recorder and evaluate() disagree for planner {name!r}")
        guard = planner.report() if hasattr(planner, "report") and hasattr(planner, "fallbacks") else None
        runs.append(PlannerRun(name, res, steps, guard, wall))
        log.info(
            "%s: mean latency %.1f ms over %d steps (%.1f s)",
            name,
            float(np.mean(res.latency_ms)),
            len(res.latency_ms),
            wall,
        )
    return runs


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _finite_meta(v: Any) -> Any:
    """``meta`` for strict JSON: a non-finite float becomes its text (``"inf"``: e.g. no decision budget), in nested
    dicts and lists too; a figure's NaN in ``rows`` is ``null`` instead (not measured)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _finite_meta(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_meta(x) for x in v]
    return v


def planner_row(run: PlannerRun, edge_mean_ms: float = math.nan, oracle_mean_ms: float = math.nan) -> dict[str, Any]:
    """The table row of one run (see the module docstring for the columns)."""
    s = run.result.summary()
    lat = run.result.latency_ms
    dec = run.result.decision_ms
    plan_ms = 1e3 * sum(float(e.info.get("plan_s", 0.0)) for e in run.result.episodes)
    total_lat = float(np.sum(lat))
    mean = s["mean_latency_ms"]
    row: dict[str, Any] = {"planner": run.name, **s}
    row["speedup_vs_edge"] = edge_mean_ms / mean if mean > 0 else math.nan
    row["ratio_to_oracle"] = mean / oracle_mean_ms if oracle_mean_ms > 0 else math.nan
    row["uplink_bytes_per_step"] = float(np.mean(run.concat("bytes_up"))) if len(lat) else math.nan
    row["overhead_pct"] = 100.0 * (float(np.sum(dec)) + plan_ms) / total_lat if total_lat > 0 else math.nan
    row["deadline_fallback_steps"] = int(run.concat("fallback").sum())
    if run.guard is not None:
        by_reason = dict(run.guard.get("fallbacks", {}))
        row["fallbacks"] = int(sum(by_reason.values()))
        row["fallbacks_by_reason"] = by_reason
    else:
        row["fallbacks"] = None
        row["fallbacks_by_reason"] = None
    row["wall_s"] = run.wall_s
    return row


def family_means(runs: Sequence[PlannerRun]) -> dict[str, dict[str, float]]:
    """Mean step latency per trace family and planner: ``{family: {planner: ms}}`` (families sorted)."""
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        acc: dict[str, list[np.ndarray]] = {}
        for ep, st in zip(run.result.episodes, run.steps):
            acc.setdefault(st.family, []).append(ep.latency_ms)
        for fam, arrs in acc.items():
            out.setdefault(fam, {})[run.name] = float(np.mean(np.concatenate(arrs)))
    return dict(sorted(out.items()))


@dataclass
class EvalReport:
    """The comparison table (``rows``, one dict per planner), per-family means and the run's settings."""

    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    families: dict[str, dict[str, float]] = field(default_factory=dict)

    def row(self, planner: str) -> dict[str, Any]:
        for r in self.rows:
            if r["planner"] == planner:
                return r
        raise KeyError(f"no planner {planner!r} in the report; planners: {[r['planner'] for r in self.rows]}")

    # -- files ------------------------------------------------------------------------------------------------
    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "meta": _finite_meta(self.meta),
            "rows": [{k: _nan_to_none(v) for k, v in r.items()} for r in self.rows],
            "families": self.families,
        }
        path.write_text(json.dumps(doc, indent=2, default=_json_default, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> EvalReport:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable report JSON ({e})") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            raise ValueError(f"{path}: report JSON must be an object with a 'rows' list")
        rows = [
            {
                k: (math.nan if v is None and k != "fallbacks" and k != "fallbacks_by_reason" else v)
                for k, v in r.items()
            }
            for r in doc["rows"]
        ]
        return cls(rows, doc.get("meta", {}), doc.get("families", {}))

    def to_csv(self, path: str | Path) -> Path:
        """All scalar columns (table columns first), one row per planner; missing values are empty cells."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = [k for k, _, _ in COLUMNS]
        for r in self.rows:
            keys += [k for k, v in r.items() if k not in keys and not isinstance(v, dict)]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            for r in self.rows:
                w.writerow({k: ("" if _nan_to_none(r.get(k)) is None else r.get(k)) for k in keys})
        return path

    # -- printing ---------------------------------------------------------------------------------------------
    def rich_table(self, title: str | None = None) -> Any:
        from rich.table import Table

        t = Table(title=title, header_style="bold")
        for key, header, _ in COLUMNS:
            t.add_column(header, justify="left" if key == "planner" else "right")
        for r in self.rows:
            t.add_row(*(format_cell(r.get(k), fmt) for k, _, fmt in COLUMNS))
        return t

    def column_notes(self) -> list[str]:
        """One line per printed column: ``header: meaning``."""
        return [
            f"{header}: {COLUMN_NOTES[header]}"
            for _, header, _ in COLUMNS
            if header in COLUMN_NOTES and not header.startswith(("p95", "p99"))
        ]

    def family_table(self, title: str | None = None) -> Any:
        from rich.table import Table

        planners = [r["planner"] for r in self.rows]
        t = Table(title=title, header_style="bold")
        t.add_column("trace family")
        for p in planners:
            t.add_column(p, justify="right")
        for fam, means in self.families.items():
            t.add_row(fam, *(format_cell(means.get(p), ".1f") for p in planners))
        return t


def format_cell(v: Any, fmt: str) -> str:
    """One table cell: '-' for missing values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if not fmt:
        return str(v)
    return format(int(v) if fmt == "d" else v, fmt)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return _nan_to_none(o.item())
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def build_report(
    runs: Sequence[PlannerRun], meta: Mapping[str, Any] | None = None, *, edge: str = "edge", oracle: str = "oracle"
) -> EvalReport:
    """Rows for every run; ``edge`` / ``oracle`` name the runs the speedup and the ratio refer to."""
    by_name = {r.name: r for r in runs}
    edge_mean = float(np.mean(by_name[edge].result.latency_ms)) if edge in by_name else math.nan
    oracle_mean = float(np.mean(by_name[oracle].result.latency_ms)) if oracle in by_name else math.nan
    rows = [planner_row(r, edge_mean, oracle_mean) for r in runs]
    return EvalReport(rows, dict(meta or {}), family_means(runs))


def write_steps_csv(runs: Sequence[PlannerRun], path: str | Path) -> Path:
    """Every step of every run: planner, seed, trace, step, time_s, up_mbps, cut, skip, latency_ms, deadline_miss,
    deviation, bytes_up, decision_ms (what the plots are drawn from)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "planner",
                "seed",
                "trace",
                "step",
                "time_s",
                "up_mbps",
                "cut",
                "skip",
                "latency_ms",
                "deadline_miss",
                "deviation",
                "bytes_up",
                "decision_ms",
            ]
        )
        for run in runs:
            for ep, st in zip(run.result.episodes, run.steps):
                for i in range(len(ep.latency_ms)):
                    w.writerow(
                        [
                            run.name,
                            ep.seed,
                            st.trace,
                            i,
                            f"{st.time_s[i]:.4f}",
                            f"{st.up_mbps[i]:.3f}",
                            int(ep.cut[i]),
                            int(ep.skip[i]),
                            f"{ep.latency_ms[i]:.4f}",
                            int(ep.deadline_miss[i]),
                            f"{ep.deviation[i]:.6f}",
                            int(st.bytes_up[i]),
                            f"{ep.decision_ms[i]:.5f}",
                        ]
                    )
    return path
