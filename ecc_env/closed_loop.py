"""Closed loop: a live MetaWorld robot driven by chunks from a perfect VLA, arriving when the latency model says.

## The timing rule (:class:`ChunkTimeline`)
Time is counted in control steps of ``EnvConfig.period_ms`` (100 ms = 8 MetaWorld steps); a chunk holds
``EnvConfig.chunk_size`` actions (8), one per control step: the same two fields the open-loop env uses.

- A chunk computed on the observation of step ``j`` whose inference completes at time ``t`` arrives at step
  ``c = ceil(t / period)`` (the first step boundary at or after ``t``): it drives steps ``c, c+1, ...``.
- It enters at the action meant for step ``c`` (``entry="aligned"``: index ``c - start``, its first actions are
  stale), or at index 0 (``entry="index0"``, as naive synchronous clients do).
- While an inference is in flight the robot executes the rest of its current chunk, then holds still: zero motion,
  keeping its last gripper command. Before the first chunk it holds with the gripper open.
- A skipped step sends nothing: the current chunk continues.

## The perfect VLA (:class:`ClosedLoopRobot`)
An inference on the observation of step ``j`` returns what the task's scripted expert would do, rolled forward in
an exact copy of the simulation at step ``j`` (``MetaWorldSim.expert_rollout``). It knows nothing of what happens
after step ``j`` (events included).

- ``vla="naive"`` plans as if its chunk ran from the observation time (as pi0 and OpenVLA do): actions for steps
  ``j .. j+n-1``, entered aligned (stale prefix skipped) or at index 0.
- ``vla="aware"`` plans from the actions already committed, as real-time chunking does: it rolls the copy through
  the actions the robot will execute until its chunk arrives (known exactly here: an RTC with an exact delay
  estimate) and returns the expert's actions for steps ``c .. c+n-1``, so the chunk enters at index 0 either way.

## The closed-loop env (:class:`ClosedLoopSplitEnv`)
``EdgeCloudSplitEnv`` with the live robot in place of a recorded stream: the same action space (cut, skip), the same
``ObservationBuilder`` (frame change from rendered frames, joint speed/acceleration/torque from the simulated arm,
link estimates), the same latency backend, deadline rule and probes. Each inference's completion time (from the
env's own latency model) decides when its chunk arrives; the robot advances lazily to each observation's time.
The episode terminates when the task succeeds; ``info`` carries ``success`` and ``time_to_success_s``.
The source of arrival times is pluggable: anything that calls :meth:`ClosedLoopRobot.infer` with the observation
step and the completion time (the zero-latency ceiling in :func:`run_expert_episode`, the real ``EdgeRuntime`` later).

## Events (:class:`EventConfig`, seeded by the episode seed)
The object displaced on the table, the goal moved (tasks in ``metaworld_sim.TASK_EVENTS``), and visual noise
(flicker, sensor noise, camera shake of ``streams.VisualNoiseConfig``) on every rendered frame, which changes
the frame features but not the task, so it should not trigger an inference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ecc_env.features import FeatureConfig, history_len, kinematic_scores, visual_change
from ecc_env.metaworld_sim import GRIPPER_OPEN, SIM_STEP_S, MetaWorldSim, SimState
from ecc_env.split_env import EdgeCloudSplitEnv, EnvConfig
from ecc_env.streams import PHASES, VisualNoiseConfig, apply_visual_noise

log = logging.getLogger(__name__)

VLAS = ("naive", "aware")
ENTRIES = ("aligned", "index0")
_EPS = 1e-9


# ------------------------------------------------------------------------------------------------ timing rule
@dataclass(frozen=True, eq=False)
class Delivery:
    """One chunk: ``actions[i]`` is meant for step ``start_step + i``; computed on the observation of ``obs_step``;
    drives the robot from ``arrival_step`` on, starting at index ``entry_index``."""

    actions: np.ndarray
    start_step: int
    obs_step: int
    arrival_step: int
    entry_index: int


@dataclass(frozen=True)
class StepAction:
    """What the robot executes at one control step and why: ``index`` into the active chunk (-1 = holding)."""

    action: np.ndarray
    delivery: Delivery | None
    index: int

    @property
    def holding(self) -> bool:
        return self.index < 0


class ChunkTimeline:
    """The timing rule (module docstring): which action the robot executes at each control step, given the chunks
    delivered so far. Steps already executed are fixed (``commit``); later ones can be previewed."""

    def __init__(self, entry: str = "aligned", action_dim: int = 4, idle_gripper: float = GRIPPER_OPEN) -> None:
        if entry not in ENTRIES:
            raise ValueError(f"entry must be one of {ENTRIES}, got {entry!r}")
        self.entry = entry
        self.action_dim = action_dim
        self.idle_gripper = idle_gripper
        self.executed: list[StepAction] = []
        self.deliveries: list[Delivery] = []

    def deliver(self, actions: np.ndarray, *, start_step: int, obs_step: int, arrival_step: int) -> Delivery:
        """Schedule a chunk. ``arrival_step`` may not lie before the next step to execute, nor before its
        ``obs_step``; ``start_step`` is the step its action 0 is meant for."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.action_dim or a.shape[0] < 1:
            raise ValueError(f"a chunk is (n >= 1, {self.action_dim}) actions, got shape {a.shape}")
        if arrival_step < len(self.executed):
            raise ValueError(
                f"chunk arrives at step {arrival_step}, but steps up to {len(self.executed) - 1} are already executed"
            )
        if not obs_step <= arrival_step or start_step > arrival_step:
            raise ValueError(
                f"need start_step ({start_step}) <= arrival_step ({arrival_step}) and obs_step "
                f"({obs_step}) <= arrival_step"
            )
        entry = arrival_step - start_step if self.entry == "aligned" else 0
        d = Delivery(a, int(start_step), int(obs_step), int(arrival_step), int(entry))
        self.deliveries.append(d)
        return d

    def _active(self, step: int) -> Delivery | None:
        best = None
        for d in self.deliveries:  # the latest arrival at or before ``step``; ties: the later delivery
            if d.arrival_step <= step and (best is None or d.arrival_step >= best.arrival_step):
                best = d
        return best

    def _rule(self, step: int, prev: StepAction | None) -> StepAction:
        d = self._active(step)
        if d is not None:
            i = d.entry_index + step - d.arrival_step
            if i < len(d.actions):
                return StepAction(d.actions[i], d, i)
        grip = self.idle_gripper if prev is None else float(prev.action[-1])
        hold = np.zeros(self.action_dim)
        hold[-1] = grip
        return StepAction(hold, d, -1)

    def preview(self, start: int, stop: int) -> list[StepAction]:
        """What the robot executes at steps ``start .. stop-1`` if no further chunk is delivered."""
        out: list[StepAction] = []
        prev = self.executed[-1] if self.executed else None
        for s in range(len(self.executed), stop):
            prev = self._rule(s, prev)
            if s >= start:
                out.append(prev)
        return self.executed[start : min(stop, len(self.executed))] + out

    def commit(self) -> StepAction:
        """Fix and return the action of the next step (``len(executed)``)."""
        s = len(self.executed)
        act = self._rule(s, self.executed[-1] if self.executed else None)
        self.executed.append(act)
        return act


# ------------------------------------------------------------------------------------------------ events
@dataclass(frozen=True)
class EventConfig:
    """Seeded scene events. Times in seconds from the episode start (rounded to a control step); None = off.

    displace_at_s / displace_m: the free object moves on the table by a random direction and a distance drawn
    from ``displace_m`` (metres). goal_at_s / goal_m: the goal moves likewise. noise: visual noise on every frame.
    Events a task does not support (``metaworld_sim.TASK_EVENTS``) are left out for it.
    """

    displace_at_s: float | None = None
    displace_m: tuple[float, float] = (0.04, 0.07)
    goal_at_s: float | None = None
    goal_m: tuple[float, float] = (0.04, 0.07)
    noise: VisualNoiseConfig | None = None

    def __post_init__(self) -> None:
        for name in ("displace_at_s", "goal_at_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be None or finite and >= 0, got {v!r}")
        for name in ("displace_m", "goal_m"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)!r}")

    @property
    def enabled(self) -> bool:
        return self.displace_at_s is not None or self.goal_at_s is not None or self.noise is not None

    @classmethod
    def off(cls) -> EventConfig:
        return cls()

    @classmethod
    def on(cls) -> EventConfig:
        """The evaluation's events: object displaced at 0.1 s, goal moved at 0.3 s, mild flicker/noise/shake.
        (MetaWorld's experts finish pick-place in ~0.7 s; displaced at 0.2 s, during the descent, even the
        zero-latency expert failed pick-place on 4 of 5 seeds, at 0.1 s it recovered on 5 of 5.)"""
        return cls(
            displace_at_s=0.1,
            goal_at_s=0.3,
            noise=VisualNoiseConfig(flicker_gain=0.1, flicker_prob=0.3, sensor_sigma=3.0, shake_px=1),
        )

    @classmethod
    def noise_only(cls) -> EventConfig:
        """The visual noise of :meth:`on` alone: the scene does not change, so it should not trigger inferences."""
        return cls(noise=cls.on().noise)

    @classmethod
    def named(cls, label: str) -> EventConfig:
        """The event setting called ``label``: off | on | noise (the labels of :attr:`label`)."""
        makers = {"off": cls.off, "on": cls.on, "noise": cls.noise_only}
        if label not in makers:
            raise ValueError(f"event setting must be one of {tuple(makers)}, got {label!r}")
        return makers[label]()

    @property
    def label(self) -> str:
        """off | noise (visual noise alone) | on (any scene event)."""
        if not self.enabled:
            return "off"
        return "noise" if self.displace_at_s is None and self.goal_at_s is None else "on"


@dataclass(frozen=True)
class ClosedLoopConfig:
    """The robot side of the closed loop. ``vla``: naive | aware; ``entry``: aligned | index0 (module docstring);
    ``image_hw``/``camera``: the rendered frame the planners' visual features come from (shadows off)."""

    task: str = "pick-place-v3"
    vla: str = "aware"
    entry: str = "aligned"
    events: EventConfig = field(default_factory=EventConfig)
    image_hw: tuple[int, int] = (64, 64)
    camera: str = "corner"
    task_seed: int = 0

    def __post_init__(self) -> None:
        if self.vla not in VLAS:
            raise ValueError(f"vla must be one of {VLAS}, got {self.vla!r}")
        if self.entry not in ENTRIES:
            raise ValueError(f"entry must be one of {ENTRIES}, got {self.entry!r}")


def arrival_step(completion_s: float, period_s: float) -> int:
    """The first control step boundary at or after ``completion_s``: the step a chunk complete then drives first."""
    return int(math.ceil(completion_s / period_s - _EPS))


def sim_steps_per_control(period_ms: float) -> int:
    """MetaWorld steps per control period; the period must be a whole number of 12.5 ms steps."""
    n = period_ms * 1e-3 / SIM_STEP_S
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f"period_ms {period_ms} is not a whole number of MetaWorld steps ({SIM_STEP_S * 1e3} ms)")
    return int(round(n))


# ------------------------------------------------------------------------------------------------ the robot
@dataclass
class EventLog:
    """An event that happened: its kind, control step and what changed."""

    kind: str
    step: int
    detail: list[float]


class ClosedLoopRobot:
    """The world side of the closed loop: the simulator, the timing rule, the perfect VLA, the events, and the
    per-step sensing the observation builder needs (frame change, joint scores, the expert's action, a phase)."""

    def __init__(
        self,
        config: ClosedLoopConfig,
        period_ms: float,
        chunk_size: int,
        features: FeatureConfig = FeatureConfig(),
        sim: MetaWorldSim | None = None,
    ) -> None:
        self.config = config
        self.period_s = period_ms * 1e-3
        self.chunk_size = int(chunk_size)
        self.features = features
        spc = sim_steps_per_control(period_ms)
        if sim is not None and (sim.sim_steps_per_control != spc or sim.task != config.task):
            raise ValueError(
                f"sim runs {sim.task} at {sim.sim_steps_per_control} steps per control, the config "
                f"needs {config.task} at {spc}"
            )
        self._owns_sim = sim is None
        if sim is None:
            sim = MetaWorldSim(
                config.task,
                image_hw=config.image_hw,
                camera=config.camera,
                sim_steps_per_control=spc,
                task_seed=config.task_seed,
            )
        self.sim = sim
        self._hist = history_len(features)
        self.seed = -1

    def close(self) -> None:
        """Close the simulator if this robot built it (a simulator passed in belongs to the caller)."""
        if self._owns_sim:
            self.sim.close()

    def _event_step(self, at_s: float | None) -> int | None:
        return None if at_s is None else int(round(at_s / self.period_s))

    def reset(self, seed: int) -> None:
        cfg = self.config
        self.seed = int(seed)
        self.sim.reset(seed)
        self.timeline = ChunkTimeline(cfg.entry)
        self.step = 0
        self.snapshots: list[SimState] = []
        self.visual: list[list[float]] = []
        self.kinematic: list[list[float]] = []
        self.expert: list[list[float]] = []
        self.phase: list[int] = []
        self.cum_mad: list[float] = [0.0]
        self.events: list[EventLog] = []
        self._vel: list[np.ndarray] = []
        self._tau: list[np.ndarray] = []
        self._frame: np.ndarray | None = None
        self._grasped = False
        ev = cfg.events
        rng = np.random.default_rng([self.seed, 26])  # same events for every planner on this seed
        self._noise_rng = np.random.default_rng([self.seed, 27])
        self._pending: list[tuple[int, str, np.ndarray]] = []
        supported = self.sim.events
        for kind, at_s, (lo, hi) in (("object", ev.displace_at_s, ev.displace_m), ("goal", ev.goal_at_s, ev.goal_m)):
            angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(lo, hi)  # drawn whether used or not
            step = self._event_step(at_s)
            if step is not None and kind in supported:
                self._pending.append((step, kind, dist * np.array([math.cos(angle), math.sin(angle)])))
        self._sense()

    def _sense(self) -> None:
        """Record the observation of the current step: frame features, joint scores, expert action, snapshot."""
        frame = self.sim.render()
        noise = self.config.events.noise
        if noise is not None:
            frame = apply_visual_noise(frame[None], noise, self._noise_rng)[0]
        vis = [0.0, 0.0, 0.0] if self._frame is None else visual_change(self._frame, frame, self.features).tolist()
        self._frame = frame
        _, qd, tau = self.sim.joints()
        self._vel.append(qd)
        self._tau.append(tau)
        self._vel, self._tau = self._vel[-self._hist :], self._tau[-self._hist :]
        kin = kinematic_scores(np.array(self._vel), np.array(self._tau), self.period_s, self.features)[-1]
        self.visual.append(vis)
        self.cum_mad.append(self.cum_mad[-1] + vis[0])
        self.kinematic.append(kin.tolist())
        act = self.sim.expert_action()
        self.expert.append(act.tolist())
        self._grasped = self._grasped or act[-1] > 0
        if self.sim.success_sim_step is not None:
            ph = "idle"
        else:
            ph = "transport" if act[-1] > 0 else ("place" if self._grasped else "approach")
        self.phase.append(PHASES.index(ph))
        self.snapshots.append(self.sim.snapshot())

    @property
    def frame(self) -> np.ndarray | None:
        """The latest rendered frame (with visual noise when on)."""
        return self._frame

    @property
    def succeeded(self) -> bool:
        return self.sim.success_sim_step is not None

    @property
    def time_to_success_s(self) -> float | None:
        return self.sim.time_to_success_s

    def advance_to(self, step: int) -> None:
        """Execute control steps until the robot is at ``step`` (sensing each new step)."""
        while self.step < step:
            for ev in [p for p in self._pending if p[0] == self.step]:
                self._pending.remove(ev)
                _, kind, off = ev
                new = self.sim.displace_object(off) if kind == "object" else self.sim.move_goal(off)
                self.events.append(EventLog(kind, self.step, new.tolist()))
            self.sim.step_control(self.timeline.commit().action)
            self.step += 1
            self._sense()

    def infer(self, obs_step: int, completion_s: float) -> Delivery:
        """The perfect VLA's chunk for the observation of ``obs_step``, completed at ``completion_s``: computed from
        the exact copy of that step and delivered to the timeline (module docstring)."""
        if obs_step > self.step:
            raise ValueError(f"observation {obs_step} is in the future (robot at step {self.step})")
        c = max(arrival_step(completion_s, self.period_s), obs_step)
        n = self.chunk_size
        if self.config.vla == "naive":
            actions = self.sim.expert_rollout(self.snapshots[obs_step], [], n)
            start = obs_step
        else:
            committed = [a.action for a in self.timeline.preview(obs_step, c)]
            actions = self.sim.expert_rollout(self.snapshots[obs_step], committed, n)
            start = c
        return self.timeline.deliver(actions, start_step=start, obs_step=obs_step, arrival_step=c)


# ------------------------------------------------------------------------------------------------ the env
class ClosedLoopSplitEnv(EdgeCloudSplitEnv):
    """``EdgeCloudSplitEnv`` whose observations come from a live MetaWorld robot (module docstring).

    ``reset(seed=s)`` draws the trace segment from the env's RNG and starts MetaWorld scene ``s`` (or
    ``options["sim_seed"]``); the same seed gives every planner the same link, scene and events. Extra ``info``:
    ``success``, ``time_to_success_s`` (None until success), ``inferred`` (a chunk was requested this step),
    ``arrival_step``, ``up_bytes`` (uploaded by this step's inference), ``robot_step``.
    """

    def __init__(
        self,
        edge_profile: Any = None,
        cloud_profile: Any = None,
        trace_set: Any = None,
        *,
        closed_loop: ClosedLoopConfig | None = None,
        config: EnvConfig | None = None,
        sim: MetaWorldSim | None = None,
        **kwargs: Any,
    ) -> None:
        cl = closed_loop or ClosedLoopConfig()
        super().__init__(edge_profile, cloud_profile, trace_set, streams=(), config=config, **kwargs)
        self.closed_loop = cl
        self.robot = ClosedLoopRobot(cl, self.config.period_ms, self.config.chunk_size, self.config.features, sim)
        self._inferred: tuple[int, int] | None = None

    def close(self) -> None:
        self.robot.close()
        super().close()

    def _load_streams(self, streams: Sequence[Any] | None) -> tuple:
        return ()  # the live robot is the stream

    def _start_stream(self, rng: np.random.Generator, options: dict | None) -> dict:
        seed = (options or {}).get("sim_seed")
        if seed is None:
            seed = self._episode_seed if self._episode_seed is not None else int(rng.integers(1 << 30))
        r = self.robot
        r.reset(int(seed))
        self._n = self.max_obs
        self._vis, self._kin, self._ref, self._phase, self._cum_mad = (
            r.visual,
            r.kinematic,
            r.expert,
            r.phase,
            r.cum_mad,
        )
        self.stream = None
        self._offset = 0
        return {
            "stream": f"metaworld-{self.closed_loop.task}-s{seed}",
            "offset": 0,
            "sim_seed": int(seed),
            "task": self.closed_loop.task,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self._episode_seed = seed
        self._inferred = None
        return super().reset(seed=seed, options=options)

    def _observe(self) -> np.ndarray:
        self.robot.advance_to(min(self._idx, self._n - 1))
        return super()._observe()

    def _chunk_ready(self, obs_index: int, completion_s: float) -> None:
        d = self.robot.infer(obs_index, completion_s)
        self._inferred = (obs_index, d.arrival_step)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._inferred = None
        obs, reward, _, truncated, info = super().step(action)
        r = self.robot
        if truncated and not r.succeeded:
            r.advance_to(self._n)  # the last period too
        k = info["cut"]
        inferred = self._inferred is not None
        info.update(
            success=r.succeeded,
            time_to_success_s=r.time_to_success_s,
            inferred=inferred,
            arrival_step=self._inferred[1] if inferred else -1,
            up_bytes=float(self.rows[k].up_bytes) if (not info["skip"] and self.rows[k].uses_network) else 0.0,
            robot_step=r.step,
        )
        return obs, reward, r.succeeded, truncated and not r.succeeded, info


# ------------------------------------------------------------------------------------------------ ceiling
@dataclass(frozen=True)
class ExpertEpisode:
    """The zero-latency expert's episode: success, time to success, control steps run."""

    seed: int
    success: bool
    time_to_success_s: float | None
    steps: int


def run_expert_episode(robot: ClosedLoopRobot, seed: int, horizon_steps: int, latency_s: float = 0.0) -> ExpertEpisode:
    """The ceiling: an inference on every control step with zero latency (each chunk drives its own step).
    ``latency_s`` > 0: every inference completes that long after its observation (the floor of any planner with
    that latency: with a latency under one period each chunk drives the step after its observation)."""
    if not (math.isfinite(latency_s) and latency_s >= 0):
        raise ValueError(f"latency_s must be finite and >= 0, got {latency_s!r}")
    robot.reset(seed)
    for j in range(horizon_steps):
        robot.infer(j, j * robot.period_s + latency_s)
        robot.advance_to(j + 1)
        if robot.succeeded:
            break
    return ExpertEpisode(int(seed), robot.succeeded, robot.time_to_success_s, robot.step)


def closed_loop_env_config(base: EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """The env settings of the closed loop: ``base`` (default ``EnvConfig()``: 100 ms period, chunks of 8) with
    a 10 s episode unless overridden (MetaWorld's experts finish in 0.5-2.5 s)."""
    cfg = base or EnvConfig()
    return replace(cfg, **{"episode_s": 10.0, "segment_margin_s": 10.0, **overrides})
