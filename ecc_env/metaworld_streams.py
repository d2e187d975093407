"""Real robot episodes from MetaWorld (Sawyer arm, MuJoCo) as observation streams, rendered off-screen and cached.

Optional: needs ``pip install metaworld`` (the ``sim`` extra; no torch). Off-screen rendering uses EGL (software
Mesa works): ``MUJOCO_GL`` is set to ``egl`` unless already set, before MuJoCo is imported.

The scripted expert policy of the task drives the arm; every ``sim_steps_per_frame`` simulation steps (MetaWorld
steps are 12.5 ms, so 8 give a 100 ms control period) the stream records a camera frame (the fixed cameras render
upside down: rotated 180 degrees here), the 7 arm joint positions and velocities, the effective joint torques
(the arm is moved by a mocap weld, so they are ``data.qfrc_constraint[:7]``) and the expert's action at that step.
Phases are labelled from the expert's gripper command and the task's success flag: approach (open, before the
first grasp), grasp (the 2 frames around a close command), transport (closed), place (the 2 frames around a
release), idle (after success). Episodes are large (~4 MB per 100 frames at 224x224), so they are generated into a
cache folder outside git on first use and loaded from there afterwards.

With ``MetaWorldConfig.closed_loop_events`` ("off" or "on") the stream is recorded through the closed loop's own
robot instead (``ecc_env.closed_loop.ClosedLoopRobot`` on ``MetaWorldSim``, the zero-latency expert driving it,
``EventConfig.off()``/``on()``): the same scene per seed (task ``seed mod 50``), the same seeded events (object
displaced, goal moved, visual noise on the frames) and the same sensing as ``ecc closedloop``, so PPO can train on
closed-loop-like streams (``TrainConfig.metaworld_tasks``). The stream runs on past success (idle frames).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecc_env.streams import PHASES, ObservationStream, StreamFormatError

log = logging.getLogger(__name__)

TASKS = ("pick-place-v3", "drawer-open-v3", "peg-insert-side-v3", "reach-v3")


@dataclass(frozen=True)
class MetaWorldConfig:
    """What to record. ``num_frames`` stream steps of ``sim_steps_per_frame`` MetaWorld steps each."""

    task: str = "pick-place-v3"
    seed: int = 0
    num_frames: int = 100
    sim_steps_per_frame: int = 8
    image_hw: tuple[int, int] = (224, 224)
    camera: str = "corner"
    shadows: bool = False
    closed_loop_events: str | None = None  # None: gym MT1 recorder; "off" | "on": the closed loop's robot + events

    def __post_init__(self) -> None:
        if self.num_frames < 2 or self.sim_steps_per_frame < 1:
            raise ValueError(f"num_frames must be >= 2 and sim_steps_per_frame >= 1, got {self}")
        if min(self.image_hw) < 16:
            raise ValueError(f"image_hw must be at least 16x16, got {self.image_hw}")
        if self.closed_loop_events not in (None, "off", "on"):
            raise ValueError(f"closed_loop_events must be None, 'off' or 'on', got {self.closed_loop_events!r}")

    def key(self) -> str:
        fields = asdict(self)
        if self.closed_loop_events is None:
            del fields["closed_loop_events"]  # keys of streams recorded before the field existed stay valid
        blob = json.dumps(fields, sort_keys=True).encode()
        return f"{self.task}-s{self.seed}-{hashlib.sha256(blob).hexdigest()[:12]}"


def default_cache_dir() -> Path:
    """``$ECC_CACHE_DIR/streams``, else ``~/.cache/vla-ecc/streams`` (never inside the repository)."""
    base = os.environ.get("ECC_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "vla-ecc") / "streams"


def _label_phases(grip: np.ndarray, success: np.ndarray) -> np.ndarray:
    closed = grip > 0
    phases = np.where(closed, PHASES.index("transport"), PHASES.index("approach"))
    change = np.flatnonzero(np.diff(closed.astype(np.int8))) + 1
    for c in change:
        label = PHASES.index("grasp") if closed[c] else PHASES.index("place")
        phases[max(c - 1, 0) : c + 1] = label
    if not closed.any():
        phases[:] = PHASES.index("approach")
    done = np.flatnonzero(success)
    if done.size:
        phases[done[0] + 1 :] = PHASES.index("idle")
    return phases.astype(np.int64)


def record_closed_loop_stream(config: MetaWorldConfig, sim: Any = None) -> ObservationStream:
    """Record ``config.num_frames`` control steps of the closed loop's robot driven by the zero-latency expert
    (an inference on every step, as ``closed_loop.run_expert_episode``), with ``config.closed_loop_events``.
    ``sim``: a ``MetaWorldSim`` of the task to reuse (building one costs ~3 s); the caller keeps it."""
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopRobot, EventConfig
    from ecc_env.metaworld_sim import SIM_STEP_S

    events = EventConfig.on() if config.closed_loop_events == "on" else EventConfig.off()
    period_ms = SIM_STEP_S * 1e3 * config.sim_steps_per_frame
    cl = ClosedLoopConfig(config.task, events=events, image_hw=config.image_hw, camera=config.camera)
    if config.shadows:
        raise ValueError("closed-loop streams are rendered without shadows (as the closed loop renders)")
    robot = ClosedLoopRobot(cl, period_ms, chunk_size=1, sim=sim)
    n = config.num_frames
    h, w = config.image_hw
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    q, qd, tau = np.empty((n, 7)), np.empty((n, 7)), np.empty((n, 7))
    success = np.zeros(n, dtype=bool)
    try:
        robot.reset(config.seed)
        for i in range(n):
            frames[i] = robot.frame
            q[i], qd[i], tau[i] = robot.sim.joints()
            robot.infer(i, i * robot.period_s)
            robot.advance_to(i + 1)
            success[i] = robot.succeeded
        actions = np.clip(np.array(robot.expert[:n]), -1.0, 1.0)
        events = [asdict(e) for e in robot.events]
    finally:
        robot.close()
    return ObservationStream(
        frames=frames,
        joint_pos=q,
        joint_vel=qd,
        joint_torque=tau,
        ref_actions=actions,
        phases=np.array(robot.phase[:n], dtype=np.int64),
        dt_s=robot.period_s,
        name=f"metaworld-{config.task}-s{config.seed}-events-{config.closed_loop_events}",
        meta={
            "generator": "metaworld-closed-loop",
            **asdict(config),
            "events": events,
            "success_frame": int(np.argmax(success)) if success.any() else -1,
        },
    )


def record_metaworld_stream(config: MetaWorldConfig = MetaWorldConfig()) -> ObservationStream:
    """Run the task's scripted expert and record a stream (see the module docstring)."""
    if config.closed_loop_events is not None:
        return record_closed_loop_stream(config)
    from ecc_env.metaworld_sim import expert_policy, joint_state, make_metaworld_env, offscreen_viewer, render_frame

    h, w = config.image_hw
    env = make_metaworld_env(config.task, config.seed, config.image_hw, config.camera)
    try:
        obs, _ = env.reset(seed=config.seed)
        policy = expert_policy(config.task)
        data = env.unwrapped.data
        offscreen_viewer(env, config.shadows)
        n = config.num_frames
        frames = np.empty((n, h, w, 3), dtype=np.uint8)
        q, qd, tau = np.empty((n, 7)), np.empty((n, 7)), np.empty((n, 7))
        actions = np.empty((n, 4))
        success = np.zeros(n, dtype=bool)
        solved = False
        for i in range(n):
            action = np.asarray(policy.get_action(obs), dtype=np.float64)
            frames[i] = render_frame(env)
            q[i], qd[i], tau[i] = joint_state(data)
            actions[i] = np.clip(action, -1.0, 1.0)
            for _ in range(config.sim_steps_per_frame):
                obs, _, _, _, info = env.step(policy.get_action(obs))
                solved = solved or bool(info.get("success", 0.0))
            success[i] = solved
    finally:
        env.close()
    dt = float(env.unwrapped.dt) * config.sim_steps_per_frame
    return ObservationStream(
        frames=frames,
        joint_pos=q,
        joint_vel=qd,
        joint_torque=tau,
        ref_actions=actions,
        phases=_label_phases(actions[:, 3], success),
        dt_s=dt,
        name=f"metaworld-{config.task}-s{config.seed}",
        meta={
            "generator": "metaworld",
            **asdict(config),
            "success_frame": int(np.argmax(success)) if success.any() else -1,
        },
    )


def metaworld_stream(
    config: MetaWorldConfig = MetaWorldConfig(), cache_dir: str | Path | None = None, sim: Any = None
) -> ObservationStream:
    """The stream for ``config`` from the cache, recording (and caching) it on first use (``sim``: a
    ``MetaWorldSim`` to reuse for a closed-loop recording)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{config.key()}.npz"
    if path.is_file():
        try:
            return ObservationStream.load(path)
        except StreamFormatError as e:
            log.warning("cached stream %s unreadable (%s); recording it again", path, e)
    if sim is not None and config.closed_loop_events is not None:
        stream = record_closed_loop_stream(config, sim)
    else:
        stream = record_metaworld_stream(config)
    tmp = path.with_suffix(".tmp.npz")
    stream.save(tmp)
    tmp.replace(path)
    log.info("recorded %s (%d frames) into %s", stream.name, stream.num_steps, path)
    return stream


def closed_loop_streams(
    tasks: tuple[str, ...] | list[str],
    seeds: int,
    num_frames: int,
    period_ms: float,
    image_hw: tuple[int, int] = (64, 64),
    events: tuple[str, ...] = ("off", "on"),
    cache_dir: str | Path | None = None,
) -> list[ObservationStream]:
    """Closed-loop-like training streams: every task x scene seed ``0 .. seeds-1`` x event setting, ``num_frames``
    control steps of ``period_ms`` each (a whole number of 12.5 ms MetaWorld steps: the env's period), cached.
    One simulator per task is built only when a stream is missing from the cache."""
    from ecc_env.closed_loop import sim_steps_per_control

    spf = sim_steps_per_control(period_ms)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: list[ObservationStream] = []
    for task in tasks:
        configs = [
            MetaWorldConfig(
                task=task,
                seed=s,
                num_frames=num_frames,
                sim_steps_per_frame=spf,
                image_hw=tuple(image_hw),
                closed_loop_events=ev,
            )
            for s in range(seeds)
            for ev in events
        ]
        sim = None
        try:
            for c in configs:
                if sim is None and not (folder / f"{c.key()}.npz").is_file():
                    from ecc_env.metaworld_sim import MetaWorldSim

                    sim = MetaWorldSim(task, image_hw=tuple(image_hw), camera=c.camera, sim_steps_per_control=spf)
                out.append(metaworld_stream(c, folder, sim=sim))
        finally:
            if sim is not None:
                sim.close()
    return out
