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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

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

    def __post_init__(self) -> None:
        if self.num_frames < 2 or self.sim_steps_per_frame < 1:
            raise ValueError(f"num_frames must be >= 2 and sim_steps_per_frame >= 1, got {self}")
        if min(self.image_hw) < 16:
            raise ValueError(f"image_hw must be at least 16x16, got {self.image_hw}")

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
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


def record_metaworld_stream(config: MetaWorldConfig = MetaWorldConfig()) -> ObservationStream:
    """Run the task's scripted expert and record a stream (see the module docstring)."""
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
        meta={"generator": "metaworld", **asdict(config), "success_frame": int(np.argmax(success)) if success.any()
              else -1},
    )


def metaworld_stream(config: MetaWorldConfig = MetaWorldConfig(), cache_dir: str | Path | None = None
                     ) -> ObservationStream:
    """The stream for ``config`` from the cache, recording (and caching) it on first use."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{config.key()}.npz"
    if path.is_file():
        try:
            return ObservationStream.load(path)
        except StreamFormatError as e:
            log.warning("cached stream %s unreadable (%s); recording it again", path, e)
    stream = record_metaworld_stream(config)
    tmp = path.with_suffix(".tmp.npz")
    stream.save(tmp)
    tmp.replace(path)
    log.info("recorded %s (%d frames) into %s", stream.name, stream.num_steps, path)
    return stream
