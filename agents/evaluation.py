"""Evaluation as a library: every planner on the same episodes of one env, one ``EvalReport``.

``EvalConfig`` names the planners, traces, model, hardware, wire and backend; ``run_eval`` builds the env
(``make_eval_env``), the planners (``build_planner``) and runs them on the same seeds, writing the report (JSON,
CSV, per-step CSV) and the plots when ``cfg.out`` is set. ``ecc eval`` (``agents.eval_cli``), the demo and the
benchmarks call these functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from executor.control import DEFAULT_CHUNK_SIZE

log = logging.getLogger(__name__)

PLANNER_NAMES: tuple[str, ...] = (
    "ppo:PATH",
    "heuristic",
    "roboecc",
    "rapid",
    "vision",
    "vision-entropy",
    "static",
    "edge",
    "cloud",
    "oracle",
    "hindsight",
)
_SIMPLE = tuple(n for n in PLANNER_NAMES if ":" not in n)


class PlannerSpecError(ValueError):
    """An unknown or malformed planner name; the message lists the valid ones."""


def parse_planners(text: str | Sequence[str]) -> list[tuple[str, str, str | None]]:
    """``"ppo:PATH,heuristic"`` -> ``[("ppo", "ppo", "PATH"), ("heuristic", "heuristic", None)]`` (label, name,
    argument); duplicates and unknown names raise PlannerSpecError naming the valid planners. The label of a single
    policy is ``ppo``; several get ``ppo:<run folder>``."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    out: list[tuple[str, str | None]] = []
    valid = ", ".join(PLANNER_NAMES)
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, sep, arg = item.partition(":")
        if name == "ppo":
            if not sep or not arg:
                raise PlannerSpecError(f"planner 'ppo' needs a policy path (ppo:PATH); valid planners: {valid}")
            out.append(("ppo", arg))
        elif name in _SIMPLE and not sep:
            out.append((name, None))
        else:
            raise PlannerSpecError(f"unknown planner {item!r}; valid planners: {valid}")
    if not out:
        raise PlannerSpecError(f"no planners given; valid planners: {valid}")
    several = sum(n == "ppo" for n, _ in out) > 1
    labels = [(_policy_label(a) if several and a is not None else n) for n, a in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise PlannerSpecError(f"planner(s) given twice: {dup}")
    return [(lab, n, a) for lab, (n, a) in zip(labels, out)]


def _policy_label(arg: str) -> str:
    p = Path(arg)
    return f"ppo:{p.parent.name if p.suffix == '.zip' else p.name}"


def policy_path(arg: str) -> Path:
    """A policy artifact path from ``ppo:ARG`` (a ``.zip`` or a run folder holding ``policy.zip``)."""
    p = Path(arg).expanduser()
    return p / "policy.zip" if p.is_dir() else p


def build_planner(
    name: str,
    arg: str | None,
    ctx: Any,
    env: Any,
    *,
    oracle_beam: int = 16,
    budget_ms: float = 2.0,
    trust_pickle: bool = False,
    rtt_ms: float = -1.0,
) -> Any:
    """The planner object for one parsed spec. ``ppo`` raises ``agents.artifact.PolicyLoadError`` when the artifact
    does not match ``env``; its GuardedPolicy hands a decision that took over ``budget_ms`` to the heuristic."""
    from agents import heuristics as h

    if name == "ppo":
        from agents.artifact import PolicyExpectation, hedge_mismatch, load_policy
        from agents.guard import GuardedPolicy

        loaded = load_policy(policy_path(arg or ""), PolicyExpectation.for_env(env), trust_pickle=trust_pickle)
        mismatch = hedge_mismatch(loaded.metadata, env.unwrapped.deadline.hedge)
        from traces.rtt import rtt_mismatch

        for warning in (mismatch, rtt_mismatch(loaded.metadata, rtt_ms)):
            if warning:
                log.warning("%s: %s", arg, warning)
        return GuardedPolicy(loaded, h.HeuristicPlanner(ctx), budget_ms=budget_ms)
    if name == "oracle":
        from agents.oracle import Oracle

        return Oracle(cut_candidates=2, beam=oracle_beam)
    if name == "hindsight":
        from agents.hindsight import HindsightPlanner

        return HindsightPlanner(env)
    if name == "vision":
        from agents.vision_skip import VisionSkip

        return VisionSkip(ctx)
    if name == "vision-entropy":
        from agents.vision_skip import EntropyVisionDispatch

        return EntropyVisionDispatch(ctx)
    table = {
        "heuristic": h.HeuristicPlanner,
        "roboecc": h.RoboECCPlanner,
        "rapid": h.RapidSkip,
        "static": h.StaticBestCut,
        "edge": h.EdgeOnly,
        "cloud": h.CloudOnly,
    }
    if name not in table:
        raise PlannerSpecError(f"unknown planner {name!r}; valid planners: {', '.join(PLANNER_NAMES)}")
    return table[name](ctx)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation (field comments are the CLI help)."""

    planners: str = "heuristic,roboecc,rapid,static,edge,cloud"  # comma-separated planner names
    traces: str = "embedded"  # 'embedded' or trace directories/files (comma-separated)
    split: str = "test"  # side of the seeded split to evaluate on: train | val | test | all
    split_seed: int = 0  # seed of the trace set's train/val/test split
    family: str = ""  # evaluate only traces whose family (folder path, see report.family_of) contains this text
    model: str = "pi0"  # model family: openvla | pi0 | smolvla
    preset: str = "full"  # model preset (full for the profile backend; tiny/small for the executor)
    hardware: str = "orin+a100"  # edge+cloud devices of the hardware catalogue
    backend: str = "profile"  # profile | executor
    profiles: str = ""  # EDGE.json,CLOUD.json Profiles instead of the roofline / emulated pair
    episodes: int = 8  # episodes per planner (the same seeds for every planner)
    seed: int = 0  # first episode seed (episode i uses seed + i)
    episode_s: float = 30.0  # episode length in trace seconds
    chunk_size: int = DEFAULT_CHUNK_SIZE  # actions per chunk (1 disables skipping)
    wire: str = "default"  # frames and activations on the wire: IMAGE,DTYPE (e.g. jpeg:90,fp16), default or exact
    rtt_ms: float = -1.0  # round-trip time (ms) of every trace; -1: each trace family's documented RTT (traces.rtt)
    deadline_ms: float = 300.0  # deadline of a network step before the edge-only fallback
    break_even_deadline: bool = True  # cap the deadline at the edge-only time (DeadlineConfig.break_even)
    hedge: bool = False  # hedged execution: the edge goes on locally during a transfer (DeadlineConfig.hedge)
    oracle_beam: int = 16  # beam width of the Oracle's search
    budget_ms: float = 2.0  # PPO decision budget (ms) before the heuristic takes the step, as in ecc edge; inf: none
    out: str = ""  # output folder for report.json, report.csv, steps.csv and plots (none: print only)
    plots: bool = True  # write the PNG plots into --out
    trust_pickle: bool = False  # load a format-1 ppo: policy (a pickled zip that can run code; see ecc policy migrate)

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {self.split!r}")
        if self.backend not in ("profile", "executor"):
            raise ValueError(f"backend must be 'profile' or 'executor', got {self.backend!r}")
        if "+" not in self.hardware:
            raise ValueError(f"hardware must be EDGE+CLOUD (e.g. orin+a100), got {self.hardware!r}")
        if self.episodes < 1 or self.episode_s <= 0 or self.chunk_size < 1 or self.oracle_beam < 1:
            raise ValueError(f"episodes, episode_s, chunk_size and oracle_beam must be positive: {self}")
        if not self.budget_ms > 0:
            raise ValueError(f"budget_ms must be > 0 (inf: no budget), got {self.budget_ms!r}")
        if self.profiles and len(self.profiles.split(",")) != 2:
            raise ValueError(f"profiles must be EDGE.json,CLOUD.json, got {self.profiles!r}")
        from executor.wire_config import WireConfig
        from traces.rtt import check_rtt_ms

        WireConfig.parse(self.wire)
        check_rtt_ms(self.rtt_ms)


def load_traces(spec: str) -> Any:
    """``embedded`` or comma-separated trace paths -> a TraceSet."""
    from traces.embedded import embedded_default_set
    from traces.traceset import TraceSet

    if spec == "embedded":
        return embedded_default_set()
    paths = [p for p in spec.split(",") if p]
    if not paths:
        raise ValueError("no trace paths given")
    return TraceSet.load(paths)


def resolve_profiles(cfg: EvalConfig) -> tuple[Any, Any]:
    """The (edge, cloud) Profile pair the config names."""
    from executor.profile import Profile

    edge_hw, cloud_hw = cfg.hardware.split("+", 1)
    if cfg.profiles:  # measured or predicted elsewhere (ecc profile): cuts re-priced under the run's wire
        from executor.models import build_model
        from executor.wire_config import priced_profiles

        e, c = (Profile.load(p) for p in cfg.profiles.split(","))
        try:
            model = build_model(e.model_id, e.preset, device="meta")
        except ValueError as err:
            log.warning("profiles of %s/%s kept as priced (not a known model: %s)", e.model_id, e.preset, err)
            return e, c
        return priced_profiles(e, c, model, cfg.wire)
    if cfg.backend == "executor":
        from agents.emulated_pair import emulated_pair

        return emulated_pair(cfg.model, cfg.preset, edge_hw, cloud_hw, wire=cfg.wire)
    from executor.wire_config import roofline_pair

    return roofline_pair(cfg.model, cfg.preset, edge_hw, cloud_hw, cfg.wire)


def make_eval_env(
    edge: Any,
    cloud: Any,
    trace_set: Any,
    cfg: EvalConfig,
    *,
    on_step: Any = None,
    executor: Any = None,
    **overrides: Any,
) -> Any:
    """A StepRecorder-wrapped EdgeCloudSplitEnv over ``trace_set`` (used as is) with the config's settings."""
    import gymnasium as gym

    from agents.report import StepRecorder
    from agents.training import deadline_rule
    from ecc_env import ENV_ID

    kw: dict[str, Any] = dict(
        edge_profile=edge,
        cloud_profile=cloud,
        trace_set=trace_set,
        trace_split="all",
        episode_s=cfg.episode_s,
        chunk_size=cfg.chunk_size,
        deadline=deadline_rule(cfg),
        backend=cfg.backend,
    )
    if cfg.backend == "executor":
        from ecc_env.backends import ExecutorConfig

        kw["executor"] = executor or ExecutorConfig(
            family=cfg.model, preset=cfg.preset, emulate_edge=edge, emulate_cloud=cloud, wire=cfg.wire
        )
    kw.update(overrides)
    return StepRecorder(gym.make(ENV_ID, **kw), on_step)


def run_eval(
    cfg: EvalConfig,
    *,
    progress: Any = None,
    trace_set: Any = None,
    profiles: tuple[Any, Any] | None = None,
    env_overrides: dict[str, Any] | None = None,
) -> tuple[Any, list[Any]]:
    """Evaluate the configured planners; returns ``(EvalReport, [PlannerRun])`` and writes ``cfg.out`` if set.
    ``progress`` is a rich Progress (optional); ``trace_set`` / ``profiles`` replace what the config names."""
    from agents.planner import BandwidthPrior, PlannerContext
    from agents.report import build_report, run_planners, write_steps_csv

    specs = parse_planners(cfg.planners)  # before anything heavy: bad names fail fast
    t0 = time.perf_counter()
    from traces.rtt import apply_rtt

    full = apply_rtt(trace_set if trace_set is not None else load_traces(cfg.traces), cfg.rtt_ms)
    if cfg.split == "all":
        eval_set, prior_set = full, full
    else:
        split = full.split(cfg.split_seed)
        eval_set = getattr(split, cfg.split)
        prior_set = split.train if len(split.train) else full
    if len(eval_set) == 0:
        raise ValueError(f"the {cfg.split!r} split of {full.name!r} is empty")
    if cfg.family:
        from agents.report import traces_of_family

        eval_set = traces_of_family(eval_set, cfg.family, cfg.split)
    edge, cloud = profiles if profiles is not None else resolve_profiles(cfg)
    task = None
    env = make_eval_env(edge, cloud, eval_set, cfg, **(env_overrides or {}))
    try:
        steps_per_ep = env.unwrapped.max_obs
        edge_only_cut = int(env.unwrapped.edge_only_index)
        if progress is not None:
            task = progress.add_task("eval", total=len(specs) * cfg.episodes * steps_per_ep)
            env.on_step = lambda: progress.advance(task)
        ctx = PlannerContext.from_env(env, prior=BandwidthPrior.from_trace_set(prior_set))
        planners = {
            lab: build_planner(
                n,
                a,
                ctx,
                env,
                oracle_beam=cfg.oracle_beam,
                budget_ms=cfg.budget_ms,
                trust_pickle=cfg.trust_pickle,
                rtt_ms=cfg.rtt_ms,
            )
            for lab, n, a in specs
        }
        seeds = [cfg.seed + i for i in range(cfg.episodes)]

        def on_planner(name: str) -> None:
            if progress is not None:
                progress.update(task, description=f"eval {name}")

        runs = run_planners(planners, env, seeds, on_planner=on_planner)
        backend_desc = (
            env.unwrapped.backend.describe() if hasattr(env.unwrapped.backend, "describe") else {"backend": cfg.backend}
        )
    finally:
        env.close()
    if progress is not None and task is not None:
        progress.update(task, completed=progress.tasks[task].total)
    from agents.artifact import profile_id

    meta = {
        "config": asdict(cfg),
        "traces": {"set": full.name, "split": cfg.split, "n_traces": len(eval_set), "names": list(eval_set.names)[:50]},
        "profiles": {"edge": profile_id(edge), "cloud": profile_id(cloud)},
        **wire_rtt_meta(edge, cfg.rtt_ms, eval_set),
        "seeds": seeds,
        "steps_per_planner": [len(r.result.latency_ms) for r in runs],
        "backend": backend_desc,
        "wall_s": time.perf_counter() - t0,
        "machine": _machine(),
    }
    report = build_report(runs, meta)
    if cfg.out:
        out = Path(cfg.out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        report.to_csv(out / "report.csv")
        write_steps_csv(runs, out / "steps.csv")
        if cfg.plots:
            from agents.plots import eval_plots

            eval_plots(
                runs, out, title=f"{cfg.model}/{cfg.preset} {cfg.hardware} ({cfg.backend})", edge_only_cut=edge_only_cut
            )
    return report, runs


def wire_rtt_meta(edge: Any, rtt_ms: float, eval_set: Any) -> dict[str, Any]:
    """The ``wire`` and ``rtt_rule`` fields of a result's metadata: the wire configuration ``edge`` (a Profile) was
    priced under, the RTT rule and the mean RTT per family of ``eval_set`` (printed by ``eval_cli.wire_rtt_line``)."""
    from traces.rtt import rtt_rule_label, rtt_summary

    return {
        "wire": edge.notes.get("wire"),
        "rtt_rule": {"rtt_ms": rtt_ms, "label": rtt_rule_label(rtt_ms), "mean_rtt_ms_by_family": rtt_summary(eval_set)},
    }


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
