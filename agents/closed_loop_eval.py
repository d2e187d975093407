"""Closed-loop evaluation: does the robot still succeed, and how soon? Every planner on the same MetaWorld tasks,
seeds, events and traces, plus the zero-latency expert as the ceiling.

Per planner, task, VLA variant (naive / latency-aware) and event setting (off / on): success rate with a 95%
Wilson interval, median and p90 time-to-success (successful episodes), mean latency per inference, inferences
per episode, deadline misses per episode and bytes uploaded per episode. ``ecc closedloop`` (agents.closed_loop_cli)
prints the table and writes JSON/CSV and plots.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPERT = "expert"  # the zero-latency ceiling's planner label
EVENT_SETTINGS = ("off", "on", "noise")


@dataclass(frozen=True)
class ClosedLoopEvalConfig:
    """Settings of one closed-loop evaluation (field comments are the CLI help)."""

    planners: str = "heuristic,roboecc,rapid,vision,static,edge,cloud"  # comma-separated, as in ecc eval (ppo:PATH)
    tasks: str = "reach-v3,push-v3,pick-place-v3,drawer-open-v3,button-press-topdown-v3,peg-insert-side-v3"  # MetaWorld
    episodes: int = 3  # episodes per planner, task, VLA and event setting (the same seeds for every planner)
    seed: int = 0  # first episode seed (episode i: MetaWorld scene and trace segment of seed + i)
    events: str = "off,on"  # event settings: off | on (object displaced, goal moved, visual noise) | noise (alone)
    vlas: str = "aware,naive"  # perfect-VLA variants: aware (plans from committed actions) | naive
    entry: str = "aligned"  # where a late chunk enters: aligned (action meant for now) | index0
    traces: str = "embedded"  # 'embedded' or trace directories/files (comma-separated)
    model: str = "pi0"  # model family of the roofline Profiles: openvla | pi0 | smolvla
    preset: str = "full"  # model preset
    hardware: str = "orin+a100"  # edge+cloud devices of the hardware catalogue
    profiles: str = ""  # EDGE.json,CLOUD.json Profiles instead of the roofline pair
    wire: str = "default"  # frames and activations on the wire: IMAGE,DTYPE (e.g. jpeg:90,fp16), default or exact
    rtt_ms: float = -1.0  # round-trip time (ms) of every trace; -1: each trace family's documented RTT (traces.rtt)
    backend: str = "profile"  # profile | executor (real split executor: local server, trace-shaped link, emulated pair)
    emulated_profiles: bool = False  # the emulated pair's Profiles for the profile backend too (as executor uses)
    episode_s: float = 8.0  # episode horizon (s); MetaWorld's experts finish in 0.4-2.5 s
    deadline_ms: float = 300.0  # deadline of a network step before the edge-only fallback
    break_even_deadline: bool = True  # cap the deadline at the edge-only time
    hedge: bool = False  # hedged execution (DeadlineConfig.hedge)
    budget_ms: float = 2.0  # PPO decision budget before the heuristic takes the step
    image_px: int = 64  # rendered frame side (pixels), shadows off
    out: str = ""  # output folder for closed_loop.json, closed_loop.csv and plots (none: print only)
    plots: bool = True  # write the PNG plots into --out

    def __post_init__(self) -> None:
        if self.episodes < 1 or not self.episode_s > 0 or self.image_px < 16:
            raise ValueError(f"episodes >= 1, episode_s > 0 and image_px >= 16 needed: {self}")
        for name, allowed in (("events", EVENT_SETTINGS), ("vlas", ("aware", "naive"))):
            items = split_list(getattr(self, name))
            bad = [x for x in items if x not in allowed]
            if not items or bad:
                raise ValueError(f"{name} must be a comma-separated subset of {allowed}, got {getattr(self, name)!r}")
        if self.entry not in ("aligned", "index0"):
            raise ValueError(f"entry must be aligned or index0, got {self.entry!r}")
        if self.backend not in ("profile", "executor"):
            raise ValueError(f"backend must be 'profile' or 'executor', got {self.backend!r}")
        if "+" not in self.hardware:
            raise ValueError(f"hardware must be EDGE+CLOUD (e.g. orin+a100), got {self.hardware!r}")
        if not split_list(self.tasks):
            raise ValueError("no tasks given")
        from executor.wire_config import WireConfig
        from traces.rtt import check_rtt_ms

        WireConfig.parse(self.wire)  # ValueError naming the bad part
        check_rtt_ms(self.rtt_ms)


def split_list(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (``(nan, nan)`` for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeOutcome:
    """One closed-loop episode: outcome, costs, and (optionally) the per-control-step timeline."""

    planner: str
    task: str
    vla: str
    events: str
    seed: int
    success: bool
    time_to_success_s: float | None
    inferences: int
    decisions: int
    inference_latency_ms: list[float]
    deadline_misses: int
    up_bytes: float
    timeline: dict[str, Any] | None = None


def robot_timeline(robot: Any, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """What happened per control step (holding or the chunk index, chunk age in steps) and each decision."""
    steps = []
    for s, a in enumerate(robot.timeline.executed):
        d = a.delivery
        steps.append(
            {
                "step": s,
                "holding": a.holding,
                "index": a.index,
                "chunk_age_steps": (s - d.obs_step) if d is not None else None,
            }
        )
    return {
        "period_s": robot.period_s,
        "steps": steps,
        "decisions": decisions,
        "events": [asdict(e) for e in robot.events],
        "time_to_success_s": robot.time_to_success_s,
    }


def run_episode(env: Any, planner: Any, seed: int, *, keep_timeline: bool = False) -> EpisodeOutcome:
    """One episode of ``planner`` on a ``ClosedLoopSplitEnv`` (SB3 ``predict`` with ``episode_start``)."""
    obs, _ = env.reset(seed=seed)
    first = True
    lat: list[float] = []
    misses = decisions = 0
    up = 0.0
    log_dec: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    while True:
        a, _ = planner.predict(obs, None, np.array([first]), True)
        first = False
        obs, _, term, trunc, info = env.step(np.asarray(a).reshape(-1))
        decisions += 1
        if info["inferred"]:
            lat.append(float(info["latency_ms"]))
        misses += bool(info["deadline_miss"])
        up += float(info["up_bytes"])
        if keep_timeline:
            log_dec.append(
                {
                    "time_s": info["time_s"],
                    "obs_index": info["obs_index"],
                    "skip": info["skip"],
                    "cut": info["cut"],
                    "arrival_step": info["arrival_step"],
                    "latency_ms": info["latency_ms"],
                }
            )
        if term or trunc:
            break
    cl = env.closed_loop
    return EpisodeOutcome(
        planner="",
        task=cl.task,
        vla=cl.vla,
        events=cl.events.label,
        seed=int(seed),
        success=bool(info["success"]),
        time_to_success_s=info["time_to_success_s"],
        inferences=len(lat),
        decisions=decisions,
        inference_latency_ms=lat,
        deadline_misses=misses,
        up_bytes=up,
        timeline=robot_timeline(env.robot, log_dec) if keep_timeline else None,
    )


def run_expert(robot: Any, seed: int, horizon_steps: int, *, keep_timeline: bool = False) -> EpisodeOutcome:
    """The zero-latency expert ceiling on the same scene and events."""
    from ecc_env.closed_loop import run_expert_episode

    ep = run_expert_episode(robot, seed, horizon_steps)
    cl = robot.config
    return EpisodeOutcome(
        planner=EXPERT,
        task=cl.task,
        vla="-",
        events=cl.events.label,
        seed=int(seed),
        success=ep.success,
        time_to_success_s=ep.time_to_success_s,
        inferences=ep.steps,
        decisions=ep.steps,
        inference_latency_ms=[0.0] * ep.steps,
        deadline_misses=0,
        up_bytes=0.0,
        timeline=robot_timeline(robot, []) if keep_timeline else None,
    )


def summarize(outcomes: Sequence[EpisodeOutcome], *, pool_tasks: bool = False) -> list[dict[str, Any]]:
    """One row per (planner, task, vla, events): the figures of the module docstring. ``pool_tasks``: one row per
    (planner, vla, events) over all tasks (task ``"all"``)."""
    groups: dict[tuple, list[EpisodeOutcome]] = {}
    for o in outcomes:
        groups.setdefault((o.planner, "all" if pool_tasks else o.task, o.vla, o.events), []).append(o)
    rows = []
    for (planner, task, vla, events), eps in groups.items():
        n = len(eps)
        k = sum(e.success for e in eps)
        lo, hi = wilson_interval(k, n)
        tts = [e.time_to_success_s for e in eps if e.success and e.time_to_success_s is not None]
        lat = [x for e in eps for x in e.inference_latency_ms]
        rows.append(
            {
                "planner": planner,
                "task": task,
                "vla": vla,
                "events": events,
                "episodes": n,
                "success_rate": k / n,
                "success_ci_low": lo,
                "success_ci_high": hi,
                "median_tts_s": float(np.median(tts)) if tts else math.nan,
                "p90_tts_s": float(np.percentile(tts, 90)) if tts else math.nan,
                "mean_inference_latency_ms": float(np.mean(lat)) if lat else math.nan,
                "inferences_per_episode": float(np.mean([e.inferences for e in eps])),
                "deadline_misses_per_episode": float(np.mean([e.deadline_misses for e in eps])),
                "up_bytes_per_episode": float(np.mean([e.up_bytes for e in eps])),
            }
        )
    return rows


@dataclass
class ClosedLoopReport:
    """Rows (see :func:`summarize`), every episode's outcome, and the run's metadata."""

    rows: list[dict[str, Any]]
    episodes: list[EpisodeOutcome]
    meta: dict[str, Any]

    @classmethod
    def from_json(cls, path: str | Path) -> ClosedLoopReport:
        """A report written by :meth:`to_json` (plain JSON; rows recomputed from the episodes)."""
        path = Path(path)
        try:
            body = json.loads(path.read_text())
            if body.get("format") != "vla-ecc/closed-loop" or body.get("version") != 1:
                raise ValueError("not a vla-ecc/closed-loop version 1 report")
            eps = [EpisodeOutcome(**e) for e in body["episodes"]]
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: cannot read a closed-loop report: {e}") from e
        return cls(summarize(eps), eps, body.get("meta", {}))

    def to_json(self, path: str | Path) -> Path:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        path = Path(path)
        body = {
            "format": "vla-ecc/closed-loop",
            "version": 1,
            "meta": clean(self.meta),
            "rows": clean(self.rows),
            "episodes": clean([asdict(e) for e in self.episodes]),
        }
        path.write_text(json.dumps(body, indent=1))
        return path

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        return path


def eval_profiles(cfg: ClosedLoopEvalConfig) -> tuple[Any, Any]:
    """The Profile pair, priced under the run's wire configuration, as ``ecc eval`` prices it."""
    from agents.evaluation import EvalConfig, resolve_profiles

    backend = "executor" if cfg.backend == "executor" or cfg.emulated_profiles else "profile"
    return resolve_profiles(
        EvalConfig(
            model=cfg.model,
            preset=cfg.preset,
            hardware=cfg.hardware,
            profiles=cfg.profiles,
            backend=backend,
            wire=cfg.wire,
        )
    )


def run_closed_loop_eval(
    cfg: ClosedLoopEvalConfig,
    *,
    trace_set: Any = None,
    profiles: tuple[Any, Any] | None = None,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
    sims: dict[str, Any] | None = None,
    keep_timelines: bool = False,
) -> ClosedLoopReport:
    """Evaluate every planner (and the expert ceiling) on every task, VLA and event setting; writes ``cfg.out``.

    ``sims``: simulators per task to use (built into it when missing, and left open: the caller closes them), so
    that several evaluations (trace families, models) share the simulators' remembered steps and frames.
    ``keep_timelines``: every episode's timeline (default: the first seed's, for the plot)."""
    # planner names and construction are ecc eval's (one list of planners for both evaluations)
    from agents.evaluation import build_planner, load_traces, parse_planners
    from agents.planner import BandwidthPrior, PlannerContext
    from agents.training import deadline_rule
    from ecc_env.closed_loop import (
        ClosedLoopConfig,
        ClosedLoopRobot,
        ClosedLoopSplitEnv,
        EventConfig,
        sim_steps_per_control,
    )
    from ecc_env.metaworld_sim import MetaWorldSim, check_task
    from ecc_env.split_env import EnvConfig

    specs = parse_planners(cfg.planners)
    if any(name == "oracle" for _, name, _ in specs):
        raise ValueError("the oracle plans on recorded streams; it has no closed-loop form")
    tasks = split_list(cfg.tasks)
    for t in tasks:
        check_task(t)
    t_start = time.perf_counter()
    from traces.rtt import apply_rtt, rtt_rule_label

    traces = apply_rtt(trace_set if trace_set is not None else load_traces(cfg.traces), cfg.rtt_ms)
    edge, cloud = profiles if profiles is not None else eval_profiles(cfg)
    env_cfg = EnvConfig(
        episode_s=cfg.episode_s, segment_margin_s=cfg.episode_s, deadline=deadline_rule(cfg), trace_split="all"
    )
    event_cfgs = {ev: EventConfig.named(ev) for ev in EVENT_SETTINGS}
    backend_kw: dict[str, Any] = {}
    if cfg.backend == "executor":
        from ecc_env.backends import ExecutorConfig

        backend_kw = {
            "backend": "executor",
            "executor": ExecutorConfig(
                family=cfg.model, preset=cfg.preset, emulate_edge=edge, emulate_cloud=cloud, wire=cfg.wire
            ),
        }
    outcomes: list[EpisodeOutcome] = []
    seeds = [cfg.seed + i for i in range(cfg.episodes)]

    def record(o: EpisodeOutcome) -> None:
        outcomes.append(o)
        if on_episode is not None:
            on_episode(o)

    for task in tasks:
        sim = sims.get(task) if sims is not None else None
        if sim is None:
            sim = MetaWorldSim(
                task,
                image_hw=(cfg.image_px, cfg.image_px),
                sim_steps_per_control=sim_steps_per_control(env_cfg.period_ms),
            )
            if sims is not None:
                sims[task] = sim
        try:
            for ev in split_list(cfg.events):
                robot = ClosedLoopRobot(
                    ClosedLoopConfig(task, events=event_cfgs[ev]),
                    env_cfg.period_ms,
                    env_cfg.chunk_size,
                    env_cfg.features,
                    sim,
                )
                horizon = int(round(cfg.episode_s * 1e3 / env_cfg.period_ms))
                for s in seeds:
                    o = run_expert(robot, s, horizon, keep_timeline=keep_timelines or s == seeds[0])
                    record(o)
                for vla in split_list(cfg.vlas):
                    cl = ClosedLoopConfig(
                        task, vla=vla, entry=cfg.entry, events=event_cfgs[ev], image_hw=(cfg.image_px, cfg.image_px)
                    )
                    env = ClosedLoopSplitEnv(edge, cloud, traces, closed_loop=cl, config=env_cfg, sim=sim, **backend_kw)
                    try:
                        ctx = PlannerContext.from_env(env, prior=BandwidthPrior.from_trace_set(traces))
                        for label, name, arg in specs:
                            planner = build_planner(name, arg, ctx, env, budget_ms=cfg.budget_ms, rtt_ms=cfg.rtt_ms)
                            for s in seeds:
                                o = run_episode(env, planner, s, keep_timeline=keep_timelines or s == seeds[0])
                                o.planner = label
                                record(o)
                    finally:
                        env.close()  # the executor backend's server and link
        finally:
            if sims is None:
                sim.close()
    wall = time.perf_counter() - t_start
    meta = {
        "config": {k: v for k, v in asdict(cfg).items()},
        "seeds": seeds,
        "wall_s": wall,
        "period_ms": env_cfg.period_ms,
        "chunk_size": env_cfg.chunk_size,
        "profiles": f"{edge.model_id}/{edge.preset} {edge.device}+{cloud.device}",
        "backend": cfg.backend,
        "traces": getattr(traces, "name", str(cfg.traces)),
        "events_on": asdict(EventConfig.on()),
        "wire": edge.notes.get("wire"),
        "rtt_rule": rtt_rule_label(cfg.rtt_ms),
    }
    report = ClosedLoopReport(summarize(outcomes), outcomes, meta)
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "closed_loop.json")
        report.to_csv(out / "closed_loop.csv")
        if cfg.plots:
            from agents.closed_loop_plots import plot_success_vs_time, plot_timeline

            plot_success_vs_time(report.rows, out / "closed_loop_success.png")
            pick = next((o for o in outcomes if o.planner != EXPERT and o.events == "on" and o.timeline), None)
            if pick is not None:
                plot_timeline(pick, out / "closed_loop_timeline.png")
    return report


TABLE_COLUMNS = (
    ("planner", "planner", "{}"),
    ("task", "task", "{}"),
    ("vla", "vla", "{}"),
    ("events", "events", "{}"),
    ("success", "success_rate", "{:.2f}"),
    ("95% CI", None, ""),
    ("median tts s", "median_tts_s", "{:.2f}"),
    ("p90 tts s", "p90_tts_s", "{:.2f}"),
    ("lat/inf ms", "mean_inference_latency_ms", "{:.0f}"),
    ("inf/ep", "inferences_per_episode", "{:.1f}"),
    ("miss/ep", "deadline_misses_per_episode", "{:.1f}"),
    ("MB up/ep", "up_bytes_per_episode", "{:.2f}"),
)


def table_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison table (for the CLI and the docs)."""
    head = [h for h, _, _ in TABLE_COLUMNS]
    body = []
    for r in rows:
        cells = []
        for _, key, fmt in TABLE_COLUMNS:
            if key is None:
                cells.append(f"[{r['success_ci_low']:.2f}, {r['success_ci_high']:.2f}]")
                continue
            v = r[key]
            if key == "up_bytes_per_episode":
                v = v / 1e6
            cells.append("-" if isinstance(v, float) and not math.isfinite(v) else fmt.format(v))
        body.append(cells)
    return head, body


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head, body = table_rows(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c) + " |" for c in body]
    return "\n".join(lines)
