"""Closed-loop fine-tuning: PPO continues from a trained run inside the closed loop, with a success term in its reward.

PPO trains fast on recorded streams, where a skipped step is priced by the reward's action-deviation term. A lost
grasp after a displaced object costs the robot the task, which no per-step deviation prices (measured in
``docs/closed_loop.md``: openvla's PPO skips the first observation after the displacement and fails pick-place).
Fine-tuning runs the policy where that shows: episodes of :class:`ecc_env.closed_loop.ClosedLoopSplitEnv` (the live
MetaWorld robot, the perfect VLA, the seeded events, the env's own latency model and ``ObservationBuilder``).

## The env (:class:`ClosedLoopTrainingEnv`)
| | |
|---|---|
| Action space | the closed-loop env's ``MultiDiscrete([num_cuts, 2])`` (cut, skip), with its action masks |
| Observation space | the closed-loop env's: the planner's observation, built by the same ``ObservationBuilder`` |
| Reward | the env's reward (latency, deadline, deviation, drops) plus :class:`SuccessReward`'s term: ``success_bonus``
  at the step the task succeeds, minus ``time_cost_per_s`` x the control period at every step |
| Episode end | terminated at success; truncated at the horizon (``episode_s``) |

Each ``reset`` draws one (task, event setting) and an episode seed from the env's generator. Episode seeds lie in
the training scenes only (``scenes``: MetaWorld scene ``seed mod 50``; default 30-49, 30-44 when validating), so the evaluation's seeds 0-29
are scenes the fine-tuning never saw; the seed also fixes the trace segment and the events, as in the evaluation.

## The run (:func:`finetune_closed_loop`, ``train.py --closed-loop-finetune RUN``)
The base run's policy artifact (safetensors, checked like any policy) is copied into a fresh MaskablePPO with the
base run's network (its action logits optionally divided by ``finetune_temperature``: the same decisions, but
sampled choices it had become certain of come back, so PPO can learn what they are worth), and PPO continues for
``total_timesteps`` closed-loop steps. Model, hardware, wire, RTT rule,
deadline, chunk length and candidate cuts are the base run's (its ``train_config``); the traces too, unless
``traces`` is given (the training side of their split, each family equally likely, without the embedded set unless
no traces are named). The result is a normal policy artifact (same observation, action space, Profiles), so it loads
and deploys like the base run's; its metadata adds ``closed_loop_finetune`` (base run, weights hash, reward term,
tasks, events, scenes, steps) and ``finetune_curve.csv`` records success per rollout (sampled actions).

## Validation and the best checkpoint (``validate_every_steps`` > 0)
Every ``validate_every_steps`` steps (and at steps 0 and the last) the deterministic policy runs
``validation_episodes`` fixed episodes (seeds drawn once from ``validation_scenes``, default 45-49; training then
draws from 30-44; both disjoint from the evaluation's scenes 0-29) with the evaluation's episode runner
(:func:`agents.closed_loop_eval.run_episode`) on this module's envs; ``finetune_validation.csv`` records success
rate, median time-to-success and inferences per validation. The saved artifact is the best validation's policy
(highest success, then lower median time-to-success, then earlier); ``last/policy.safetensors`` keeps the last
model. Without validation (the default) the last model is saved, as before, and training scenes are 30-49.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

log = logging.getLogger(__name__)
# the PPO hyper-parameters a fine-tuning run takes from its own command line (the rest from the base run)
_PPO_FIELDS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "ent_coef")

MEMO_LIMIT = 20_000  # remembered simulator steps per task before the memo is cleared (bounded memory in training)
EVALUATION_SCENES = range(30)  # the closed-loop evaluation's seeds 0-29 (ecc closedloop): never validated on
TRAINING_SCENES = tuple(range(30, 50))  # training scenes without validation (the recipe of runs 1-5)
VALIDATED_TRAINING_SCENES = tuple(range(30, 45))  # training scenes when validating ...
VALIDATION_SCENES = tuple(range(45, 50))  # ... and the validation scenes
VALIDATION_CSV = "finetune_validation.csv"


@dataclass(frozen=True)
class SuccessReward:
    """The closed-loop term added to the env's reward: ``success_bonus`` at the step the task succeeds, and
    ``time_cost_per_s`` per second of episode until then (so finishing sooner pays)."""

    success_bonus: float = 20.0
    time_cost_per_s: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"SuccessReward.{name} must be finite and >= 0, got {value!r}")

    def term(self, *, succeeded: bool, period_s: float) -> float:
        """The term of one control step of ``period_s`` seconds; ``succeeded``: the task succeeded in it."""
        return (self.success_bonus if succeeded else 0.0) - self.time_cost_per_s * period_s


@dataclass(frozen=True)
class FinetuneSettings:
    """The closed-loop side of fine-tuning. ``tasks``: empty = the base run's ``metaworld_tasks`` (else all six);
    ``events``: event settings drawn per episode (off | on | noise; repeat one to weigh it; empty = the
    TrainConfig's ``closed_loop_events``); ``scenes``: MetaWorld
    scenes (``seed mod 50``) training episodes are drawn from (empty: 30-49, or 30-44 when validating);
    ``episode_s``: the horizon, as in the closing-note grid. ``validate_every_steps``: validate the deterministic
    policy this often (env steps; 0: never, the last model is saved); ``validation_episodes``: fixed episodes per
    validation; ``validation_scenes``: the scenes their seeds come from (empty: 45-49), disjoint from the training
    scenes and from the evaluation's 0-29. Empty ``scenes``/``validation_scenes`` are resolved on construction."""

    tasks: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    scenes: tuple[int, ...] = ()
    episode_s: float = 5.0
    vla: str = "aware"
    image_px: int = 64
    reward: SuccessReward = SuccessReward()
    validate_every_steps: int = 0
    validation_episodes: int = 8
    validation_scenes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        from ecc_env.closed_loop import EventConfig

        for ev in self.events:
            EventConfig.named(ev)  # ValueError naming a bad one
        check_validation(self.validate_every_steps, self.validation_episodes, self.validation_scenes)
        validating = self.validate_every_steps > 0
        if not self.scenes:
            object.__setattr__(self, "scenes", VALIDATED_TRAINING_SCENES if validating else TRAINING_SCENES)
        if validating and not self.validation_scenes:
            object.__setattr__(self, "validation_scenes", VALIDATION_SCENES)
        object.__setattr__(self, "scenes", tuple(int(s) for s in self.scenes))
        object.__setattr__(self, "validation_scenes", tuple(int(s) for s in self.validation_scenes))
        if any(not 0 <= s < 50 for s in self.scenes):
            raise ValueError(f"scenes are MetaWorld scene numbers 0-49, got {self.scenes}")
        both = sorted(set(self.scenes) & set(self.validation_scenes)) if validating else []
        if both:
            raise ValueError(f"validation_scenes {self.validation_scenes} overlap the training scenes at {both}")
        if not (math.isfinite(self.episode_s) and self.episode_s > 0):
            raise ValueError(f"episode_s must be finite and > 0, got {self.episode_s!r}")


def check_validation(every_steps: int, episodes: int, scenes: Sequence[int]) -> None:
    """ValueError naming the field for a bad validation setting: negative ``validate_every_steps``, fewer than one
    ``validation_episodes``, ``validation_scenes`` outside 0-49 or among the evaluation's scenes 0-29."""
    if every_steps < 0:
        raise ValueError(f"validate_every_steps must be >= 0 (0: no validation), got {every_steps}")
    if episodes < 1:
        raise ValueError(f"validation_episodes must be >= 1, got {episodes}")
    if any(not 0 <= s < 50 for s in scenes):
        raise ValueError(f"validation_scenes are MetaWorld scene numbers 0-49, got {tuple(scenes)}")
    held_out = sorted(set(scenes) & set(EVALUATION_SCENES))
    if held_out:
        raise ValueError(f"validation_scenes must not include the evaluation's scenes 0-29, got {held_out}")


def bound_memo(sims: Sequence[Any]) -> None:
    """Clear the remembered steps of every simulator that holds more than ``MEMO_LIMIT``."""
    for sim in sims:
        if len(sim._memo_steps) > MEMO_LIMIT:
            sim.clear_memo()


class ClosedLoopTrainingEnv(gym.Env):
    """Closed-loop episodes over several tasks and event settings as one Gymnasium env (module docstring).

    ``envs``: one ``ClosedLoopSplitEnv`` per (task, event setting), all with the same spaces and period; the
    wrapper owns them (``close`` closes them, and the simulators in ``sims``)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, envs: Sequence[Any], reward: SuccessReward, scenes: Sequence[int], sims: Sequence[Any] = ()
    ) -> None:
        if not envs:
            raise ValueError("need at least one closed-loop env")
        first = envs[0]
        for e in envs[1:]:
            if e.observation_space != first.observation_space or e.action_space != first.action_space:
                raise ValueError("every closed-loop env must have the same observation and action spaces")
            if e.config.period_ms != first.config.period_ms:
                raise ValueError("every closed-loop env must have the same control period")
        self.envs = list(envs)
        self.reward = reward
        self.scenes = tuple(int(s) for s in scenes)
        self.sims = list(sims)
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.period_s = first.config.period_ms * 1e-3
        self.active = first

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        self.active = self.envs[int(rng.integers(len(self.envs)))]
        episode_seed = int(self.scenes[int(rng.integers(len(self.scenes)))] + 50 * rng.integers(1, 1 << 20))
        bound_memo(self.sims)
        obs, info = self.active.reset(seed=episode_seed, options=options)
        info.update(episode_seed=episode_seed, task=self.active.closed_loop.task)
        info["events"] = self.active.closed_loop.events.label
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.active.step(action)
        term = self.reward.term(succeeded=bool(terminated and info["success"]), period_s=self.period_s)
        info["env_reward"] = reward
        info["success_term"] = term
        return obs, float(reward) + term, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.active.action_masks()

    def close(self) -> None:
        for e in self.envs:
            e.close()
        for sim in self.sims:
            sim.close()
        self.envs, self.sims = [], []


def closed_loop_env_config(base_cfg: Any, edge: Any, cloud: Any, episode_s: float) -> Any:
    """The EnvConfig of fine-tuning: the closed-loop evaluation's (trace_split 'all', ``episode_s``, the run's
    deadline rule) with the base run's chunk length and candidate cuts, so the action masks are the ones it trained
    with."""
    from agents.training import deadline_rule
    from ecc_env.split_env import EnvConfig

    allowed = None
    if base_cfg.candidate_cuts:
        from executor.cutmap import candidate_cuts

        allowed = tuple(candidate_cuts(edge, cloud))
    return EnvConfig(
        episode_s=episode_s,
        segment_margin_s=episode_s,
        deadline=deadline_rule(base_cfg),
        trace_split="all",
        chunk_size=base_cfg.chunk_size,
        allowed_cuts=allowed,
    )


def make_training_env(
    edge: Any, cloud: Any, trace_set: Any, env_cfg: Any, settings: FinetuneSettings, tasks: Sequence[str]
) -> ClosedLoopTrainingEnv:
    """One :class:`ClosedLoopTrainingEnv`: a simulator per task (shared by its event settings) and a
    ``ClosedLoopSplitEnv`` per (task, event setting)."""
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopSplitEnv, EventConfig, sim_steps_per_control
    from ecc_env.metaworld_sim import MetaWorldSim, check_task

    hw = (settings.image_px, settings.image_px)
    sims, envs = [], []
    for task in tasks:
        check_task(task)
        sim = MetaWorldSim(task, image_hw=hw, sim_steps_per_control=sim_steps_per_control(env_cfg.period_ms))
        sims.append(sim)
        for ev in settings.events:
            cl = ClosedLoopConfig(task, vla=settings.vla, events=EventConfig.named(ev), image_hw=hw)
            envs.append(ClosedLoopSplitEnv(edge, cloud, trace_set, closed_loop=cl, config=env_cfg, sim=sim))
    return ClosedLoopTrainingEnv(envs, settings.reward, settings.scenes, sims)


def base_train_config(meta: dict[str, Any], where: Any) -> Any:
    """The base run's TrainConfig, from its policy metadata (``train_config``). Raises PolicyLoadError."""
    from agents.artifact import PolicyLoadError
    from agents.training import TrainConfig

    raw = meta.get("train_config")
    if not isinstance(raw, dict):
        raise PolicyLoadError(f"{where}: no train_config in the policy metadata; cannot continue its training")
    known = {f.name: f for f in fields(TrainConfig)}
    kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
    try:
        return TrainConfig(**kw)
    except (TypeError, ValueError) as e:
        raise PolicyLoadError(f"{where}: train_config is not a valid TrainConfig ({e})") from e


def soften_action_logits(policy: Any, temperature: float) -> None:
    """Divide the policy's action logits by ``temperature`` (its last layer's weights and bias): every deterministic
    decision (an argmax per action component) stays the same, but a policy that had become certain (a skip logit
    gap of ~8 after a displacement: measured in docs/closed_loop.md) samples the other choice again, so PPO can
    learn what it is worth. 1 leaves the policy as it is."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    import torch

    with torch.no_grad():
        policy.action_net.weight.div_(temperature)
        policy.action_net.bias.div_(temperature)


class _CurveCallback:
    """Per rollout: closed-loop episodes finished, their success rate, median time to success, inferences."""

    def __new__(cls, path: Path) -> Any:  # a BaseCallback subclass built lazily (SB3 is a heavy import)
        from stable_baselines3.common.callbacks import BaseCallback

        class CurveCallback(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.rows: list[dict[str, float]] = []
                self.episodes: list[tuple[bool, float | None, int]] = []
                self._inf: dict[int, int] = {}
                self.low: np.ndarray | None = None
                self.high: np.ndarray | None = None
                self.t0 = time.perf_counter()

            def _on_step(self) -> bool:
                obs = np.asarray(self.locals["new_obs"])
                lo, hi = obs.min(axis=0), obs.max(axis=0)
                self.low = lo if self.low is None else np.minimum(self.low, lo)
                self.high = hi if self.high is None else np.maximum(self.high, hi)
                for i, (info, done) in enumerate(zip(self.locals["infos"], self.locals["dones"])):
                    self._inf[i] = self._inf.get(i, 0) + bool(info.get("inferred"))
                    if done:
                        self.episodes.append((bool(info["success"]), info["time_to_success_s"], self._inf.pop(i)))
                return True

            def _on_rollout_end(self) -> None:
                eps, self.episodes = self.episodes, []
                tts = [t for ok, t, _ in eps if ok and t is not None]
                self.rows.append(
                    {
                        "timesteps": self.num_timesteps,
                        "wall_s": time.perf_counter() - self.t0,
                        "episodes": len(eps),
                        "success_rate": float(np.mean([ok for ok, _, _ in eps])) if eps else math.nan,
                        "median_tts_s": float(np.median(tts)) if tts else math.nan,
                        "inferences_per_episode": float(np.mean([n for _, _, n in eps])) if eps else math.nan,
                    }
                )
                log.info("closed-loop fine-tuning: %s", self.rows[-1])
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                    w.writeheader()
                    w.writerows(self.rows)

        return CurveCallback()


def state_sha256(state: dict[str, Any]) -> str:
    """SHA-256 of a policy's ``state_dict`` (names, dtypes, shapes and values in name order): which checkpoint a
    saved policy is, whatever file it was written to."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def validation_plan(settings: FinetuneSettings, n_envs: int, seed: int) -> list[tuple[int, int]]:
    """The fixed validation episodes, drawn once: (index of the (task, event setting) env, episode seed). Envs
    cycle so every task and event setting is validated; scenes cycle through ``validation_scenes``; the seed is
    ``scene + 50 k`` as in training (scene = ``seed mod 50``), with ``k`` from ``seed``'s generator."""
    rng = np.random.default_rng([seed, 45])
    scenes = settings.validation_scenes
    return [
        (i % n_envs, int(scenes[i % len(scenes)] + 50 * rng.integers(1, 1 << 20)))
        for i in range(settings.validation_episodes)
    ]


def validation_key(row: dict[str, Any]) -> tuple[float, float, int]:
    """Sort key of a validation row, best first: higher success, then lower median time-to-success (none: last),
    then earlier."""
    tts = row["median_tts_s"]
    return (-row["success_rate"], tts if math.isfinite(tts) else math.inf, int(row["timesteps"]))


class _ValidationCallback:
    """At the first rollout start (after PPO's update) at or past every multiple of ``every_steps`` env steps, and
    at step 0 and the end (:meth:`finish`), runs the deterministic policy on the fixed episodes of ``plan`` in
    ``env`` (a :class:`ClosedLoopTrainingEnv`), writes ``path`` (CSV) and keeps the best policy's weights in memory
    (``best_state``)."""

    def __new__(cls, env: Any, plan: list[tuple[int, int]], every_steps: int, path: Path) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        from agents.closed_loop_eval import run_episode
        from agents.planner import ObsView, PlannerContext
        from agents.policy import PPOPlanner

        class ValidationCallback(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.rows: list[dict[str, Any]] = []
                self.best_state: dict[str, Any] | None = None
                self.best: dict[str, Any] | None = None
                self.next_at = every_steps
                self.t0 = time.perf_counter()

            def _on_training_start(self) -> None:
                self.validate()

            def _on_rollout_start(self) -> None:  # after PPO's update: the weights of every step so far
                if self.num_timesteps >= self.next_at:
                    self.next_at = (self.num_timesteps // every_steps + 1) * every_steps
                    self.validate()

            def _on_step(self) -> bool:
                return True

            def finish(self) -> None:
                """Validate the last model unless its step was validated."""
                if not self.rows or self.rows[-1]["timesteps"] != self.num_timesteps:
                    self.validate()

            def validate(self) -> None:
                bound_memo(env.sims)
                outcomes = []
                for j, seed in plan:
                    e = env.envs[j]
                    ctx = PlannerContext.from_env(e)
                    planner = PPOPlanner(self.model, ctx.cut_fits, ObsView(ctx.obs_config))
                    outcomes.append(run_episode(e, planner, seed))
                tts = [o.time_to_success_s for o in outcomes if o.success and o.time_to_success_s is not None]
                state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
                row = {
                    "timesteps": self.num_timesteps,
                    "wall_s": time.perf_counter() - self.t0,
                    "episodes": len(outcomes),
                    "success_rate": float(np.mean([o.success for o in outcomes])),
                    "median_tts_s": float(np.median(tts)) if tts else math.nan,
                    "inferences_per_episode": float(np.mean([o.inferences for o in outcomes])),
                    "weights_sha256": state_sha256(state),
                }
                self.rows.append(row)
                if self.best is None or validation_key(row) < validation_key(self.best):
                    self.best, self.best_state = row, state
                log.info("closed-loop validation: %s (best so far: step %d)", row, self.best["timesteps"])
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    w.writeheader()
                    w.writerows(self.rows)

        return ValidationCallback()


def check_base_profiles(meta: dict[str, Any], mpath: Path, edge: Any, cloud: Any) -> dict[str, str]:
    """The current ids of ``edge`` and ``cloud`` ({side: id}, what the fine-tuned policy is saved under). Raises
    PolicyLoadError unless the base run's metadata names both by their current ids, or both by their legacy ids (a
    base saved before the later calibration fields); a mixed pair is refused."""
    from agents.artifact import PolicyLoadError, legacy_profile_id, profile_id, profile_id_mismatch

    sides = [(side, profile_id(p), legacy_profile_id(p)) for side, p in (("edge", edge), ("cloud", cloud))]
    want = {side: pid for side, pid, _ in sides}
    msg = profile_id_mismatch(meta.get("profiles"), sides, all_same_rule=True)
    if msg:
        raise PolicyLoadError(
            f"{mpath}: {msg}; the policy was trained on Profiles {meta.get('profiles')}, its train_config gives {want}"
        )
    return want


@dataclass(frozen=True)
class FinetuneResult:
    """Where the fine-tuned run went and what it did."""

    run_dir: Path
    policy_path: Path
    timesteps: int
    wall_s: float
    curve: list[dict[str, float]]
    validation: list[dict[str, Any]] = field(default_factory=list)  # finetune_validation.csv's rows (none: off)
    best_step: int | None = None  # the step the saved policy comes from (validation on)
    last_policy_path: Path | None = None  # the last model (validation on; off: policy_path is the last)


def finetune_closed_loop(
    cfg: Any,
    *,
    settings: FinetuneSettings | None = None,
    trace_set: Any = None,
    profiles: tuple[Any, Any] | None = None,
) -> FinetuneResult:
    """Continue PPO from the run ``cfg.closed_loop_finetune`` in the closed loop for ``cfg.total_timesteps`` steps.

    From ``cfg`` (a TrainConfig): the steps, PPO's hyper-parameters (learning rate, n_steps, batch size, epochs,
    entropy), ``n_envs``, ``seed``, ``run_dir``/``run_name``, the reward term (``success_bonus``,
    ``time_cost_per_s``), the event settings (``closed_loop_events``), ``metaworld_tasks`` and ``traces`` (when
    given), and without ``settings`` the validation fields (``validate_every_steps``, ``validation_episodes``,
    ``validation_scenes``). Everything that defines the policy's
    world comes from the base run (module docstring). ``trace_set``/``profiles`` replace them (tests). Raises
    PolicyLoadError for a base artifact that does not load or does not match its Profiles."""
    import torch
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.artifact import PolicyLoadError, load_model, read_metadata, save_policy, weights_path
    from agents.evaluation import policy_path
    from agents.training import FamilyBalancedTraceSet, make_model, profiles_for, training_traces

    t_start = time.perf_counter()
    torch.set_num_threads(1)
    base = policy_path(cfg.closed_loop_finetune)
    meta, mpath = read_metadata(base)
    base_cfg = base_train_config(meta, mpath)
    settings = settings or FinetuneSettings(
        validate_every_steps=cfg.validate_every_steps,
        validation_episodes=cfg.validation_episodes,
        validation_scenes=tuple(cfg.validation_scenes),
    )
    settings = replace(
        settings,
        events=settings.events or FinetuneSettings(events=tuple(cfg.closed_loop_events)).events,
        reward=SuccessReward(cfg.success_bonus, cfg.time_cost_per_s),
    )
    from ecc_env.metaworld_sim import CLOSED_LOOP_TASKS

    tasks = settings.tasks or cfg.metaworld_tasks or base_cfg.metaworld_tasks or CLOSED_LOOP_TASKS
    edge, cloud = profiles if profiles is not None else profiles_for(base_cfg)
    want = check_base_profiles(meta, mpath, edge, cloud)
    if trace_set is None:
        src = replace(base_cfg, traces=cfg.traces or base_cfg.traces)
        src = replace(src, include_embedded=not src.traces)  # the recorded families the closed loop is judged on
        trace_set = FamilyBalancedTraceSet(training_traces(src).train, 0.0)
    env_cfg = closed_loop_env_config(base_cfg, edge, cloud, settings.episode_s)

    name = cfg.run_name or f"{Path(base).parent.name}-closed-loop"
    run_dir = Path(cfg.run_dir).expanduser().resolve() / name
    run_dir.mkdir(parents=True, exist_ok=True)
    ft_meta = {
        "base_run": str(Path(base).parent),
        "base_weights_sha256": meta.get("weights_sha256"),
        "timesteps": int(cfg.total_timesteps),
        "tasks": list(tasks),
        "events": list(settings.events),
        "scenes": list(settings.scenes),
        "episode_s": settings.episode_s,
        "vla": settings.vla,
        "reward": asdict(settings.reward),
        "ppo": {k: getattr(cfg, k) for k in _PPO_FIELDS},
        "temperature": cfg.finetune_temperature,
        "n_envs": cfg.n_envs,
        "seed": cfg.seed,
    }
    validating = settings.validate_every_steps > 0
    if validating:
        ft_meta["validation"] = {
            "every_steps": settings.validate_every_steps,
            "scenes": list(settings.validation_scenes),
        }
    (run_dir / "config.json").write_text(json.dumps({"closed_loop_finetune": ft_meta}, indent=2))

    def factory() -> Any:
        return Monitor(make_training_env(edge, cloud, trace_set, env_cfg, settings, tasks))

    venv = DummyVecEnv([factory] * cfg.n_envs)
    val_env = make_training_env(edge, cloud, trace_set, env_cfg, settings, tasks) if validating else None
    try:
        venv.seed(cfg.seed)
        space = venv.observation_space
        want_shape = (meta.get("network") or {}).get("observation_space", {}).get("shape")
        if list(space.shape or ()) != want_shape:
            raise PolicyLoadError(f"{mpath}: the policy observes {want_shape} features, the closed loop {space.shape}")
        ppo_cfg = replace(
            base_cfg,
            **{k: getattr(cfg, k) for k in (*_PPO_FIELDS, "seed")},
        )
        model = make_model(ppo_cfg, venv, run_dir)
        model.policy.load_state_dict(load_model(base).policy.state_dict())
        soften_action_logits(model.policy, cfg.finetune_temperature)
        callback = _CurveCallback(run_dir / "finetune_curve.csv")
        callbacks: list[Any] = [callback]
        if val_env is not None:
            plan = validation_plan(settings, len(val_env.envs), cfg.seed)
            ft_meta["validation"]["seeds"] = [seed for _, seed in plan]
            validator = _ValidationCallback(val_env, plan, settings.validate_every_steps, run_dir / VALIDATION_CSV)
            callbacks.append(validator)
        model.learn(cfg.total_timesteps, callback=callbacks, progress_bar=cfg.progress_bar)
        if val_env is not None:
            validator.finish()
    finally:
        venv.close()
        if val_env is not None:
            val_env.close()
    rng = meta.get("obs_range") or {}
    low = np.asarray(rng.get("low", callback.low), dtype=np.float64)
    high = np.asarray(rng.get("high", callback.high), dtype=np.float64)
    out_meta = {
        **{k: v for k, v in meta.items() if k not in ("network", "action_space", "weights_sha256", "versions")},
        "obs_range": {
            "low": np.minimum(low, callback.low).tolist(),
            "high": np.maximum(high, callback.high).tolist(),
        },
        "profiles": want,
        "closed_loop_finetune": ft_meta,
    }
    if val_env is None:
        path = save_policy(model, run_dir / "policy.safetensors", out_meta)
        wall = time.perf_counter() - t_start
        log.info("closed-loop fine-tuning of %s: %d steps in %.0f s -> %s", base, model.num_timesteps, wall, path)
        return FinetuneResult(run_dir, weights_path(path), int(model.num_timesteps), wall, callback.rows)
    last, best = validator.rows[-1], validator.best
    last_path = save_policy(model, run_dir / "last" / "policy.safetensors", with_validation(out_meta, last, False))
    model.policy.load_state_dict(validator.best_state)
    path = save_policy(model, run_dir / "policy.safetensors", with_validation(out_meta, best, True))
    wall = time.perf_counter() - t_start
    log.info(
        "closed-loop fine-tuning of %s: %d steps in %.0f s -> %s (validation step %d: success %.2f; last: %s)",
        *(base, model.num_timesteps, wall, path, best["timesteps"], best["success_rate"], last_path),
    )
    return FinetuneResult(
        run_dir,
        weights_path(path),
        int(model.num_timesteps),
        wall,
        callback.rows,
        validation=validator.rows,
        best_step=int(best["timesteps"]),
        last_policy_path=weights_path(last_path),
    )


def with_validation(meta: dict[str, Any], row: dict[str, Any], selected: bool) -> dict[str, Any]:
    """``meta`` with the validation of the saved policy in ``closed_loop_finetune.validation``: its step, figures,
    and whether it was selected as the best (else: the last model)."""
    ft = meta["closed_loop_finetune"]
    figures = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k != "wall_s"}
    validation = {**ft["validation"], **figures, "selected": selected}
    return {**meta, "closed_loop_finetune": {**ft, "validation": validation}}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test) on the discordant pairs: the probability, with no effect,
    of a split at least this uneven."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(episodes: Sequence[Any], before: str, after: str) -> dict[str, Any]:
    """Success of planner ``after`` against ``before`` on the same episodes (task, events, seed: each pair shares
    the scene, trace segment and events): successes of each, the discordant pairs (``gained``: only ``after``
    succeeded, ``lost``: only ``before``), the sign test's p, and the median time-to-success of each."""
    from agents.closed_loop_eval import wilson_interval

    by: dict[str, dict[tuple, Any]] = {before: {}, after: {}}
    for e in episodes:
        if e.planner in by:
            by[e.planner][(e.task, e.vla, e.events, e.seed)] = e
    keys = sorted(set(by[before]) & set(by[after]))
    if not keys:
        raise ValueError(f"no episodes of both {before!r} and {after!r} on the same task, events and seed")
    pairs = [(by[before][k], by[after][k]) for k in keys]
    out: dict[str, Any] = {"pairs": len(pairs)}
    for name, i in (("before", 0), ("after", 1)):
        ok = [p[i] for p in pairs if p[i].success]
        tts = [e.time_to_success_s for e in ok if e.time_to_success_s is not None]
        out[f"{name}_successes"] = len(ok)
        out[f"{name}_ci"] = wilson_interval(len(ok), len(pairs))
        out[f"{name}_median_tts_s"] = float(np.median(tts)) if tts else math.nan
        out[f"{name}_inferences"] = float(np.mean([p[i].inferences for p in pairs]))
    out["gained"] = sum(not b.success and a.success for b, a in pairs)
    out["lost"] = sum(b.success and not a.success for b, a in pairs)
    out["p_value"] = sign_test_p(out["gained"], out["lost"])
    return out
