"""PPO training (sb3-contrib MaskablePPO) on the training split of a trace set; ``python train.py`` == ``ecc train``.

A run folder holds ``config.json`` (the resolved TrainConfig), ``learning_curve.csv`` (validation return and latency
per evaluation, with the heuristic baseline), ``policy.safetensors`` + ``policy.json`` (the best model on the
validation split, as a policy artifact: ``agents.artifact``) and, with ``tensorboard=True``, TensorBoard logs.

Generalisation: every training episode's trace segment is rescaled by a log-uniform factor (``rescale_min`` ..
``rescale_max``), several trace families can be mixed (the embedded set plus any directories), and episodes start
at random points of random traces and streams (the env's own seeded sampling). With ``family_power`` < 1 episodes
draw a trace family first (family weight ~ n_traces ** family_power; 0 = every family equally, the default), then a
trace of it, so a large family of slow links (e.g. FCC broadband, Oboe) does not drown the fast ones (5G, WiFi)
during training; the validation episodes that pick the best model are drawn the same way. ``exclude_families``
leaves families out of training and validation (after the split), to measure how a policy does on a network it
never saw.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from executor.control import DEFAULT_CHUNK_SIZE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (field comments are the CLI help)."""

    model: str = "pi0"  # model family: openvla | pi0 | smolvla
    preset: str = "full"  # model preset (executor.models.presets)
    edge: str = "orin"  # edge device in the hardware catalogue
    cloud: str = "a100"  # cloud device in the hardware catalogue
    traces: tuple[str, ...] = ()  # trace directories/files to train on (empty: the embedded set only)
    include_embedded: bool = True  # mix the embedded default set into the given traces
    split_seed: int = 0  # seed of the train/val/test split of the trace set
    total_timesteps: int = 1_000_000  # PPO environment steps (the default takes about 2-4 min on 2 cores)
    n_envs: int = 4  # parallel environments
    vec_env: str = "dummy"  # dummy | subproc (dummy measured faster here: the env step is ~50 us)
    episode_s: float = 30.0  # training episode length (trace seconds)
    rescale_min: float = 0.25  # smallest per-episode bandwidth rescaling factor (log-uniform draw)
    rescale_max: float = 4.0  # largest per-episode bandwidth rescaling factor
    family_power: float = 0.0  # episode sampling: family weight ~ n_traces**power (0: families equally, 1: traces)
    exclude_families: tuple[str, ...] = ()  # leave out traces whose family contains one of these texts (train+val)
    metaworld_tasks: tuple[str, ...] = ()  # MetaWorld tasks whose closed-loop streams (events off+on) join training
    metaworld_seeds: int = 3  # MetaWorld scenes per task and event setting (recorded once, cached)
    metaworld_frames: int = 50  # control steps per MetaWorld stream (at the env's period)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # actions per chunk (1 disables skipping)
    wire: str = "default"  # frames and activations on the wire: IMAGE,DTYPE (e.g. jpeg:90,fp16), default or exact
    rtt_ms: float = -1.0  # round-trip time (ms) of every trace; -1: each trace family's documented RTT (traces.rtt)
    candidate_cuts: bool = True  # let PPO choose only cuts that are optimal at some bandwidth (executor.cutmap)
    deadline_ms: float = 300.0  # deadline of a network step before it falls back to edge-only
    break_even_deadline: bool = True  # cap the deadline at the edge-only time (DeadlineConfig.break_even)
    hedge: bool = False  # hedged execution: the edge goes on locally during a transfer (DeadlineConfig.hedge)
    seed: int = 0  # seed of PPO and the envs
    eval_every_steps: int = 20_000  # evaluate on the validation split this often (env steps)
    eval_episodes: int = 16  # validation episodes per evaluation (fixed seeds)
    learning_rate: float = 3e-4  # Adam learning rate
    n_steps: int = 512  # rollout steps per env per update
    batch_size: int = 256  # minibatch size
    n_epochs: int = 5  # epochs per update
    gamma: float = 0.95  # discount
    gae_lambda: float = 0.9  # GAE lambda
    ent_coef: float = 0.01  # entropy bonus
    net_arch: tuple[int, ...] = (64, 64)  # hidden layers of the policy and value MLPs
    warm_start: str = "none"  # heuristic: behaviour-clone the fallback heuristic before PPO | none
    warm_start_steps: int = 40_000  # demonstration steps of the heuristic for the warm start
    warm_start_epochs: int = 10  # behaviour-cloning epochs over the demonstrations
    run_dir: str = "runs"  # parent folder of run folders
    run_name: str = ""  # run folder name (empty: model-edge-cloud-timestamp)
    closed_loop_finetune: str = ""  # run to continue in the closed loop (agents.closed_loop_finetune)
    success_bonus: float = 20.0  # closed-loop fine-tuning: reward added at the step the task succeeds
    time_cost_per_s: float = 1.0  # closed-loop fine-tuning: reward charged per second of episode until success
    closed_loop_events: tuple[str, ...] = ("on", "off")  # closed-loop fine-tuning: event settings drawn per episode
    finetune_temperature: float = 1.0  # closed-loop fine-tuning: base policy's logits / this (> 1: explore again)
    validate_every_steps: int = 0  # closed-loop fine-tuning: validate the deterministic policy every N steps (0: off)
    validation_episodes: int = 8  # closed-loop fine-tuning: fixed validation episodes per validation
    validation_scenes: tuple[int, ...] = ()  # closed-loop fine-tuning: their MetaWorld scenes (empty: 45-49)
    tensorboard: bool = False  # write TensorBoard logs into the run folder
    progress_bar: bool = False  # show SB3's progress bar (rich)

    def __post_init__(self) -> None:
        from executor.models import FAMILIES

        if self.model not in FAMILIES:
            raise ValueError(f"model must be one of {', '.join(FAMILIES)}, got {self.model!r}")
        if self.total_timesteps < 1 or self.n_envs < 1 or self.eval_episodes < 1 or self.eval_every_steps < 1:
            raise ValueError(f"timesteps, n_envs, eval_episodes and eval_every_steps must be >= 1: {self}")
        if any(not isinstance(x, str) or not x for x in self.exclude_families):
            raise ValueError(f"exclude_families must be non-empty texts, got {self.exclude_families!r}")
        if self.vec_env not in ("dummy", "subproc"):
            raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {self.vec_env!r}")
        if not (0 < self.rescale_min <= self.rescale_max and math.isfinite(self.rescale_max)):
            raise ValueError(f"need 0 < rescale_min <= rescale_max, got {self.rescale_min}, {self.rescale_max}")
        if not (math.isfinite(self.family_power) and self.family_power >= 0):
            raise ValueError(f"family_power must be finite and >= 0, got {self.family_power}")
        if self.warm_start not in ("heuristic", "none"):
            raise ValueError(f"warm_start must be 'heuristic' or 'none', got {self.warm_start!r}")
        if self.warm_start_steps < 1 or self.warm_start_epochs < 1:
            raise ValueError(f"warm_start_steps and warm_start_epochs must be >= 1: {self}")
        from executor.wire_config import WireConfig
        from traces.rtt import check_rtt_ms

        WireConfig.parse(self.wire)
        check_rtt_ms(self.rtt_ms)
        if self.metaworld_seeds < 1 or self.metaworld_frames < 2:
            raise ValueError(
                f"metaworld_seeds must be >= 1 and metaworld_frames >= 2, got {self.metaworld_seeds}, "
                f"{self.metaworld_frames}"
            )
        from agents.closed_loop_finetune import SuccessReward, check_validation

        SuccessReward(self.success_bonus, self.time_cost_per_s)  # ValueError naming a bad term
        check_validation(self.validate_every_steps, self.validation_episodes, self.validation_scenes)
        if not (math.isfinite(self.finetune_temperature) and self.finetune_temperature > 0):
            raise ValueError(f"finetune_temperature must be finite and > 0, got {self.finetune_temperature!r}")
        from agents.closed_loop_eval import EVENT_SETTINGS

        if not self.closed_loop_events or not set(self.closed_loop_events) <= set(EVENT_SETTINGS):
            raise ValueError(f"closed_loop_events must be some of {EVENT_SETTINGS}, got {self.closed_loop_events!r}")
        if self.batch_size < 2 or self.n_steps < 2:
            raise ValueError(f"batch_size and n_steps must be >= 2, got {self.batch_size}, {self.n_steps}")


QUICK = dict(
    total_timesteps=4_096,
    n_envs=2,
    n_steps=256,
    batch_size=128,
    eval_every_steps=2_048,
    eval_episodes=2,
    episode_s=10.0,
    warm_start_steps=1_000,
    warm_start_epochs=2,
)


class _TraceSetView:
    """A read-only view of a TraceSet that changes only how episodes are sampled (``sample_segment``)."""

    def __init__(self, base: Any) -> None:
        if len(base) == 0:
            raise ValueError(f"trace set {getattr(base, 'name', base)!r} is empty")
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.base)

    def stats(self) -> Any:
        return self.base.stats()

    def fingerprint(self) -> str:
        return self.base.fingerprint()


class RescaledTraceSet(_TraceSetView):
    """A TraceSet whose sampled segments are rescaled by a log-uniform factor drawn from the env's generator."""

    def __init__(self, base: Any, low: float, high: float) -> None:
        super().__init__(base)
        self.low, self.high = float(low), float(high)
        self.name = f"{base.name}*[{low:g}..{high:g}]"

    def sample_segment(self, rng: np.random.Generator, duration_s: float) -> Any:
        seg = self.base.sample_segment(rng, duration_s)
        if self.high > self.low:
            seg = seg.rescaled(float(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return seg


class FamilyBalancedTraceSet(_TraceSetView):
    """A TraceSet view whose ``sample_segment`` draws a trace family first, then a trace of it uniformly, then a
    uniform start point (wrapping), all from the env's generator.

    A family is what ``family_of`` (default: ``agents.report.family_of``, the trace's folder path without
    train*/test*/val* folders) returns for a trace name. Family ``f`` with ``n_f`` traces is drawn with probability
    ``n_f ** power / sum_g n_g ** power``: ``power=0`` weighs every family equally, ``power=1`` every trace equally
    (plain ``TraceSet.sample_segment``).
    """

    def __init__(self, base: Any, power: float = 0.0, family_of: Any = None) -> None:
        super().__init__(base)
        if not (math.isfinite(power) and power >= 0):
            raise ValueError(f"power must be finite and >= 0, got {power!r}")
        if family_of is None:
            from agents.report import family_of
        self.power = float(power)
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(base):
            groups.setdefault(str(family_of(t.name)), []).append(i)
        self.families: tuple[str, ...] = tuple(sorted(groups))
        self.members: tuple[tuple[int, ...], ...] = tuple(tuple(groups[f]) for f in self.families)
        w = np.array([len(m) for m in self.members], dtype=float) ** self.power
        self.weights: np.ndarray = w / w.sum()
        self.name = f"{base.name}|families^{power:g}"
        log.info(
            "family-balanced sampling over %d families: %s",
            len(self.families),
            ", ".join(f"{f} {len(m)} traces p={p:.3f}" for f, m, p in zip(self.families, self.members, self.weights)),
        )

    def sample_segment(self, rng: np.random.Generator, duration_s: float) -> Any:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        members = self.members[int(rng.choice(len(self.families), p=self.weights))]
        t = self.base[members[int(rng.integers(len(members)))]]
        return t.segment(float(rng.uniform(0.0, t.duration_s)), duration_s)


def exclude_families(sets: list[Any], texts: tuple[str, ...]) -> list[Any]:
    """Each of ``sets`` without the traces whose family (``agents.report.family_of``) contains any of ``texts``.
    ``train`` applies it to the train and validation sides after the split, so the test side of every family stays
    exactly what ``ecc eval`` evaluates. A text that matches no family of the sets raises ValueError naming them."""
    from agents.report import family_of

    families = sorted({family_of(t.name) for s in sets for t in s})
    for text in texts:
        if not text or not any(text in f for f in families):
            raise ValueError(f"exclude_families: {text!r} matches no trace family; families: {', '.join(families)}")
    out = [s.filter(lambda t: not any(text in family_of(t.name) for text in texts)) for s in sets]
    log.info(
        "left out %d of %d traces (families containing %s)",
        sum(map(len, sets)) - sum(map(len, out)),
        sum(map(len, sets)),
        ", ".join(map(repr, texts)),
    )
    return out


def load_trace_sources(cfg: TrainConfig) -> list[Any]:
    """The trace sets named by the config, one per source: the embedded set and/or the given paths."""
    from traces.embedded import embedded_default_set
    from traces.traceset import TraceSet

    sets = []
    if cfg.include_embedded or not cfg.traces:
        sets.append(embedded_default_set())
    if cfg.traces:
        given = TraceSet.load(list(cfg.traces))
        if len(given) == 0:  # never fall back to the embedded set silently
            first = f"; first: {given.errors[0][0]}: {given.errors[0][1]}" if given.errors else ""
            raise ValueError(
                f"traces {', '.join(cfg.traces)} loaded no trace ({len(given.errors)} file(s) failed{first})"
            )
        sets.append(given)
    from traces.rtt import apply_rtt

    return [apply_rtt(s, cfg.rtt_ms) for s in sets]


def load_trace_set(cfg: TrainConfig) -> Any:
    """The trace set named by the config: the embedded set and/or the given paths, as one set."""
    return _union(load_trace_sources(cfg))


def _union(sets: list[Any]) -> Any:
    from traces.traceset import TraceSet

    if len(sets) == 1:
        return sets[0]
    return TraceSet([t for s in sets for t in s], "+".join(s.name for s in sets))


def split_sources(sets: list[Any], seed: int) -> Any:
    """Split every source by itself and join the sides, so mixing in the embedded set never moves a trace of the
    given directories to another side: their test side is exactly what ``ecc eval --traces DIR`` evaluates on."""
    from traces.traceset import TraceSet, TraceSplit

    if len(sets) == 1:
        return sets[0].split(seed)
    parts = [s.split(seed) for s in sets]
    name = "+".join(s.name for s in sets)
    side = {k: TraceSet([t for p in parts for t in getattr(p, k)], f"{name}:{k}") for k in ("train", "val", "test")}
    return TraceSplit(side["train"], side["val"], side["test"], int(seed))


def profiles_for(cfg: TrainConfig) -> tuple[Any, Any]:
    """The run's (edge, cloud) roofline Profiles, priced under its wire configuration."""
    from executor.wire_config import roofline_pair

    return roofline_pair(cfg.model, cfg.preset, cfg.edge, cfg.cloud, cfg.wire)


def wire_metadata(edge: Any, rtt_ms: float) -> dict[str, Any]:
    """The policy-metadata fields of the wire configuration its Profiles were priced under and of its RTT rule."""
    from traces.rtt import rtt_rule_label

    return {"wire": edge.notes.get("wire"), "rtt_rule": {"rtt_ms": float(rtt_ms), "label": rtt_rule_label(rtt_ms)}}


def deadline_rule(cfg: Any) -> Any:
    """The ``ecc_env.latency.DeadlineConfig`` of a run's config (``TrainConfig`` or ``ecc eval``'s ``EvalConfig``:
    ``deadline_ms``, ``break_even_deadline``, ``hedge``)."""
    from ecc_env.latency import DeadlineConfig

    return DeadlineConfig(cfg.deadline_ms, break_even=cfg.break_even_deadline, hedge=cfg.hedge)


def training_streams(cfg: TrainConfig) -> list[Any] | None:
    """The observation streams of a run: None (the env's procedural streams) without ``metaworld_tasks``; else the
    env's procedural streams plus closed-loop-like MetaWorld streams (``metaworld_streams.closed_loop_streams``:
    every task x ``metaworld_seeds`` scenes x events off and on, the closed loop's robot, events and 64 px frames),
    recorded at the env's period (``EnvConfig.period_ms``: one source for the period; chunks: ``cfg.chunk_size``)."""
    if not cfg.metaworld_tasks:
        return None
    from ecc_env.closed_loop import ClosedLoopConfig
    from ecc_env.metaworld_streams import closed_loop_streams
    from ecc_env.split_env import EnvConfig
    from ecc_env.streams import procedural_stream

    env_cfg = EnvConfig()
    n = math.ceil(cfg.episode_s * 1e3 / env_cfg.period_ms) + 100  # as the env's own procedural streams
    streams = [
        procedural_stream(env_cfg.stream_seed + i, n, env_cfg.procedural) for i in range(env_cfg.procedural_streams)
    ]
    mw = closed_loop_streams(
        cfg.metaworld_tasks,
        cfg.metaworld_seeds,
        cfg.metaworld_frames,
        env_cfg.period_ms,
        image_hw=ClosedLoopConfig().image_hw,
    )
    log.info(
        "training on %d procedural + %d MetaWorld closed-loop streams (%s)",
        len(streams),
        len(mw),
        ", ".join(cfg.metaworld_tasks),
    )
    return streams + mw


def make_env(edge: Any, cloud: Any, trace_set: Any, cfg: TrainConfig, **overrides: Any) -> Any:
    """An EdgeCloudSplitEnv on ``trace_set`` (used as is: ``trace_split='all'``) with the run's settings."""
    import gymnasium as gym

    from ecc_env import ENV_ID

    kw: dict[str, Any] = dict(
        edge_profile=edge,
        cloud_profile=cloud,
        trace_set=trace_set,
        trace_split="all",
        episode_s=cfg.episode_s,
        chunk_size=cfg.chunk_size,
        deadline=deadline_rule(cfg),
    )
    kw.update(overrides)
    return gym.make(ENV_ID, **kw)


class _EnvFactory:
    """Picklable env constructor for SubprocVecEnv."""

    def __init__(
        self, edge: Any, cloud: Any, trace_set: Any, cfg: TrainConfig, overrides: dict[str, Any], privileged: Any = None
    ) -> None:
        self.args = (edge, cloud, trace_set, cfg)
        self.overrides = overrides
        self.privileged = privileged

    def __call__(self) -> Any:
        from stable_baselines3.common.monitor import Monitor

        return Monitor(_privileged(make_env(*self.args, **self.overrides), self.privileged))


def _privileged(env: Any, privileged: Any) -> Any:
    if privileged is None:
        return env
    from ecc_env.privileged import PrivilegedBandwidth

    return PrivilegedBandwidth(env, privileged)


class EnvWorkersLost(RuntimeError):
    """The environments' workers failed beyond repair (e.g. a Ray env worker that could not be replaced). ``train``
    stops there, keeps the best policy so far, and says why in ``TrainResult.stopped_early``."""


@dataclass
class TrainResult:
    """What a run produced (``stopped_early``: why training ended before its budget, or None)."""

    run_dir: Path
    policy_path: Path
    best_val_return: float
    heuristic_val_return: float
    wall_s: float
    timesteps: int
    curve: list[dict[str, float]] = field(default_factory=list)
    stopped_early: str | None = None


def _eval_callback(cfg: TrainConfig, val_env: Any, ctx: Any, run_dir: Path, obs_size: int):  # type: ignore[no-untyped-def]
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.evaluate import evaluate
    from agents.planner import ObsView
    from agents.policy import PPOPlanner

    seeds = [10_000 + i for i in range(cfg.eval_episodes)]

    class ValidationCallback(BaseCallback):
        """Evaluates on fixed validation seeds, keeps the best model, records the learning curve and the training
        observation range."""

        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf
            self.next_eval = cfg.eval_every_steps
            self.curve: list[dict[str, float]] = []
            self.low = np.full(obs_size, np.inf)
            self.high = np.full(obs_size, -np.inf)
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            obs = self.locals.get("new_obs")
            if obs is not None:
                o = np.asarray(obs).reshape(-1, obs_size)
                np.minimum(self.low, o.min(axis=0), out=self.low)
                np.maximum(self.high, o.max(axis=0), out=self.high)
            if self.num_timesteps >= self.next_eval:
                self.next_eval += cfg.eval_every_steps
                self.evaluate()
            return True

        def evaluate(self) -> None:
            planner = PPOPlanner(self.model, ctx.cut_fits, ObsView(ctx.obs_config))
            s = evaluate(planner, val_env, seeds, name="ppo").summary()
            row = {
                "timesteps": self.num_timesteps,
                "wall_s": time.perf_counter() - self.t0,
                "val_mean_return": s["mean_return"],
                "val_mean_latency_ms": s["mean_latency_ms"],
                "val_p95_latency_ms": s["p95_latency_ms"],
                "val_skip_rate": s["skip_rate"],
            }
            self.curve.append(row)
            log.info(
                "step %d: validation return %.2f, mean latency %.1f ms",
                self.num_timesteps,
                s["mean_return"],
                s["mean_latency_ms"],
            )
            if s["mean_return"] > self.best:
                self.best = s["mean_return"]
                self.model.save(str(run_dir / "best_model.zip"))

    return ValidationCallback(), seeds


@dataclass(frozen=True)
class TrainingTraces:
    """The trace set of a run and the two sides training uses (the test side is never touched here)."""

    full: Any
    train: Any
    val: Any


def training_traces(cfg: TrainConfig, trace_set: Any = None) -> TrainingTraces:
    """The train and validation sides of ``trace_set`` (default: the set ``cfg`` names), split by
    ``cfg.split_seed``, ``exclude_families`` left out; validation falls back to the training side when empty."""
    if trace_set is not None:
        from traces.rtt import apply_rtt

        trace_set = apply_rtt(trace_set, cfg.rtt_ms)
        full, split = trace_set, trace_set.split(cfg.split_seed)
    else:
        sources = load_trace_sources(cfg)
        full = _union(sources)
        split = split_sources(sources, cfg.split_seed)
    train_set, val_set = split.train, split.val
    if cfg.exclude_families:
        train_set, val_set = exclude_families([train_set, val_set], cfg.exclude_families)
    if len(train_set) == 0:
        raise ValueError(f"the training split of {full.name!r} is empty")
    if len(val_set) == 0:
        log.warning("validation split of %s is empty; validating on the training split", full.name)
        val_set = train_set
    return TrainingTraces(full, train_set, val_set)


def env_overrides_for(cfg: TrainConfig, edge: Any, cloud: Any, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """EnvConfig fields the run sets beyond ``make_env``'s: ``given`` ones, MetaWorld streams
    (``metaworld_tasks``) and the candidate cuts (``candidate_cuts``) unless given."""
    overrides = dict(given or {})
    if cfg.metaworld_tasks and "streams" not in overrides:
        overrides["streams"] = training_streams(cfg)
    if cfg.candidate_cuts and "allowed_cuts" not in overrides:
        from executor.cutmap import candidate_cuts

        overrides["allowed_cuts"] = candidate_cuts(edge, cloud)
        log.info(
            "PPO chooses among %d of %d cuts: %s",
            len(overrides["allowed_cuts"]),
            edge.num_cuts,
            overrides["allowed_cuts"],
        )
    return overrides


def start_run(cfg: TrainConfig, traces: TrainingTraces, overrides: dict[str, Any], privileged: Any = None) -> Path:
    """The run folder (``run_dir/run_name``), made, with the resolved config in ``config.json``."""
    name = cfg.run_name or f"{cfg.model}-{cfg.edge}-{cfg.cloud}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run_dir).expanduser().resolve() / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                **asdict(cfg),
                "env_overrides": {
                    k: (f"{len(v)} streams" if k == "streams" else repr(v)) for k, v in overrides.items()
                },
                "train_traces": {
                    "name": traces.train.name,
                    "n": len(traces.train),
                    "fingerprint": traces.train.fingerprint(),
                },
                "val_traces": {"name": traces.val.name, "n": len(traces.val)},
                "privileged": privileged.describe() if privileged is not None else None,
            },
            indent=2,
        )
    )
    return run_dir


@dataclass
class TrainingEnvs:
    """The vectorised training envs, the validation env (plain, and as PPO observes it) and the planners' context."""

    venv: Any
    factory: Any
    val_env: Any
    ppo_val_env: Any
    ctx: Any


def make_envs(
    cfg: TrainConfig,
    edge: Any,
    cloud: Any,
    traces: TrainingTraces,
    overrides: dict[str, Any],
    privileged: Any = None,
    venv_factory: Any = None,
) -> TrainingEnvs:
    """``n_envs`` training envs on the rescaled (and family-balanced) training side, seeded by ``cfg.seed``, and
    one validation env; ``venv_factory(env_fns) -> VecEnv`` replaces DummyVecEnv/SubprocVecEnv (e.g. Ray)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from agents.planner import BandwidthPrior, PlannerContext

    def sampled(s: Any) -> Any:
        return s if cfg.family_power == 1.0 else FamilyBalancedTraceSet(s, cfg.family_power)

    factory = _EnvFactory(
        edge,
        cloud,
        RescaledTraceSet(sampled(traces.train), cfg.rescale_min, cfg.rescale_max),
        cfg,
        overrides,
        privileged,
    )
    vec_cls = SubprocVecEnv if cfg.vec_env == "subproc" else DummyVecEnv
    venv = (venv_factory or vec_cls)([factory] * cfg.n_envs)
    venv.seed(cfg.seed)
    val_env = make_env(edge, cloud, sampled(traces.val), cfg, **overrides)
    ctx = PlannerContext.from_env(val_env, prior=BandwidthPrior.from_trace_set(traces.train))
    # the heuristic baseline sees the plain observation; PPO the privileged one, if any
    return TrainingEnvs(venv, factory, val_env, _privileged(val_env, privileged), ctx)


def make_validation(cfg: TrainConfig, envs: TrainingEnvs, run_dir: Path) -> tuple[Any, float]:
    """The validation callback (evaluates every ``eval_every_steps``, keeps the best model, records the learning
    curve and the observation range) and the heuristic's validation return on the same seeds, the baseline."""
    from agents.evaluate import evaluate
    from agents.heuristics import HeuristicPlanner

    obs_size = int(envs.ppo_val_env.observation_space.shape[0])
    callback, seeds = _eval_callback(cfg, envs.ppo_val_env, envs.ctx, run_dir, obs_size)
    heur = evaluate(HeuristicPlanner(envs.ctx), envs.val_env, seeds, name="heuristic").summary()
    log.info("heuristic validation return %.2f, mean latency %.1f ms", heur["mean_return"], heur["mean_latency_ms"])
    return callback, float(heur["mean_return"])


def make_model(cfg: TrainConfig, venv: Any, run_dir: Path) -> Any:
    """MaskablePPO with the run's hyper-parameters on ``venv`` (CPU, seeded)."""
    from sb3_contrib import MaskablePPO

    return MaskablePPO(
        "MlpPolicy",
        venv,
        learning_rate=cfg.learning_rate,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        ent_coef=cfg.ent_coef,
        policy_kwargs={"net_arch": list(cfg.net_arch)},
        seed=cfg.seed,
        device="cpu",
        verbose=0,
        tensorboard_log=str(run_dir / "tb") if cfg.tensorboard else None,
    )


def warm_start_from_heuristic(cfg: TrainConfig, model: Any, envs: TrainingEnvs, callback: Any) -> None:
    """Behaviour-clone the fallback heuristic into ``model``; the clone is a candidate for the best model too."""
    from agents.heuristics import HeuristicPlanner
    from agents.warm_start import behaviour_clone, collect_demonstrations

    demos = collect_demonstrations(
        HeuristicPlanner(envs.ctx), envs.factory(), cfg.warm_start_steps, gamma=cfg.gamma, seed=cfg.seed + 1_000_000
    )
    behaviour_clone(
        model,
        demos,
        epochs=cfg.warm_start_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
    )
    callback.init_callback(model)
    callback.evaluate()  # the cloned policy at 0 PPO steps


def learn(cfg: TrainConfig, model: Any, callback: Any, venv: Any) -> str | None:
    """PPO for ``total_timesteps``, then the final model's validation; closes ``venv``. Returns why training stopped
    early (env workers lost after some steps: what was learnt is kept), or None."""
    stopped_early = None
    try:
        model.learn(cfg.total_timesteps, callback=callback, progress_bar=cfg.progress_bar)
    except EnvWorkersLost as e:  # keep what was learnt: the model so far competes with the best below
        if model.num_timesteps == 0:
            raise
        stopped_early = f"{e} (after {model.num_timesteps} of {cfg.total_timesteps} steps)"
        log.error("training stopped early: %s; saving the best policy so far", stopped_early)
    callback.evaluate()  # the final model competes too
    try:
        venv.close()
    except Exception as e:  # noqa: BLE001 - a broken venv must not lose the policy
        log.warning("closing the environments: %s: %s", type(e).__name__, e)
    return stopped_early


def save_run(
    cfg: TrainConfig,
    run_dir: Path,
    edge: Any,
    cloud: Any,
    traces: TrainingTraces,
    envs: TrainingEnvs,
    callback: Any,
    heuristic_return: float,
    privileged: Any = None,
) -> Path:
    """The best model as a policy artifact (``policy.safetensors`` + ``policy.json``: observation, ranges, Profiles,
    env, traces, prior, config) and ``learning_curve.csv``; returns the artifact's path."""
    from sb3_contrib import MaskablePPO

    from agents.artifact import profile_id, save_policy

    best = MaskablePPO.load(str(run_dir / "best_model.zip"), device="cpu")
    e = envs.val_env.unwrapped
    meta = {
        "observation": e.builder.spec(),
        "obs_range": {"low": callback.low.tolist(), "high": callback.high.tolist()},
        "model_id": f"{edge.model_id}/{edge.preset}",
        "profiles": {"edge": profile_id(edge), "cloud": profile_id(cloud)},
        "cut_fits": e.cut_fits.tolist(),
        "edge_only_index": int(e.edge_only_index),
        "reward": asdict(e.config.reward),
        "env": {
            "period_ms": e.config.period_ms,
            "deadline_ms": e.deadline.deadline_ms,
            "hedge": e.deadline.hedge,
            "chunk_size": e.config.chunk_size,
            "queue_capacity": e.config.queue_capacity,
            "probe": asdict(e.config.probe),
        },
        "traces": {
            "name": traces.train.name,
            "n_traces": len(traces.train),
            "fingerprint": traces.train.fingerprint(),
            "rescale": [cfg.rescale_min, cfg.rescale_max],
        },
        "prior": asdict(envs.ctx.prior),
        "train_config": asdict(cfg),
        "best_val_return": callback.best,
        **wire_metadata(edge, cfg.rtt_ms),
    }
    if privileged is not None:
        meta["privileged"] = privileged.describe()
    policy_path = save_policy(best, run_dir / "policy.zip", meta)
    (run_dir / "best_model.zip").unlink(missing_ok=True)
    with (run_dir / "learning_curve.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(callback.curve[0]) + ["heuristic_val_return"])
        w.writeheader()
        for row in callback.curve:
            w.writerow({**row, "heuristic_val_return": heuristic_return})
    return Path(policy_path)


def train(
    cfg: TrainConfig,
    *,
    trace_set: Any = None,
    profiles: tuple[Any, Any] | None = None,
    env_overrides: dict[str, Any] | None = None,
    venv_factory: Any = None,
    privileged: Any = None,
) -> TrainResult:
    """Train MaskablePPO per ``cfg``; returns where the run folder and the policy artifact are. ``trace_set``,
    ``profiles`` and ``env_overrides`` (EnvConfig fields) replace what the config names (tests, custom setups);
    ``venv_factory(env_fns) -> VecEnv`` replaces DummyVecEnv/SubprocVecEnv (e.g. Ray actors, agents.ray_training).
    ``privileged`` (an ``ecc_env.privileged.PrivilegedConfig``) appends simulation-only true-bandwidth fields to what
    PPO observes, for value-of-information studies; the artifact records them and ``load_policy`` refuses it.
    The steps are those of the recipe in ``train.py``."""
    import torch

    if privileged is not None and cfg.warm_start == "heuristic":
        raise ValueError(
            "warm_start='heuristic' cannot clone into a policy with privileged fields "
            "(the heuristic's demonstrations lack them); use warm_start='none'"
        )
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    edge, cloud = profiles if profiles is not None else profiles_for(cfg)
    overrides = env_overrides_for(cfg, edge, cloud, env_overrides)
    traces = training_traces(cfg, trace_set)
    run_dir = start_run(cfg, traces, overrides, privileged)
    envs = make_envs(cfg, edge, cloud, traces, overrides, privileged, venv_factory)
    callback, heuristic_return = make_validation(cfg, envs, run_dir)
    model = make_model(cfg, envs.venv, run_dir)
    if cfg.warm_start == "heuristic":
        warm_start_from_heuristic(cfg, model, envs, callback)
    stopped_early = learn(cfg, model, callback, envs.venv)
    policy_path = save_run(cfg, run_dir, edge, cloud, traces, envs, callback, heuristic_return, privileged)
    return finish(run_dir, policy_path, model, callback, heuristic_return, t_start, stopped_early)


def finish(
    run_dir: Path,
    policy_path: Path,
    model: Any,
    callback: Any,
    heuristic_return: float,
    t_start: float,
    stopped_early: str | None = None,
) -> TrainResult:
    """The run's TrainResult (wall time since ``t_start``), logged."""
    wall = time.perf_counter() - t_start
    log.info(
        "run %s: best validation return %.2f (heuristic %.2f) in %.0f s", run_dir, callback.best, heuristic_return, wall
    )
    return TrainResult(
        run_dir,
        policy_path,
        callback.best,
        heuristic_return,
        wall,
        int(model.num_timesteps),
        callback.curve,
        stopped_early,
    )


def quick(cfg: TrainConfig) -> TrainConfig:
    """The config with the small test/demo budget."""
    return replace(cfg, **QUICK)
