"""Observation streams: camera frames + robot joint state + the reference action per control step.

A stream is the robot side of an episode. It has a file format of its own (``.npz``, no pickle) that users can
fill from their own robot logs:

| key            | dtype / shape            | meaning                                                        |
|----------------|--------------------------|----------------------------------------------------------------|
| schema_version | int64 scalar             | ``STREAM_SCHEMA_VERSION``                                      |
| frames         | uint8 (T, H, W, 3)       | RGB camera frames, one per control step                        |
| joint_pos      | float (T, J)             | joint positions (rad or m)                                     |
| joint_vel      | float (T, J)             | joint velocities (per second)                                  |
| joint_torque   | float (T, J)             | joint torques (N m), measured or effective                     |
| ref_actions    | float (T, A)             | the reference (expert / recorded) action at each step          |
| phases         | int64 (T,)               | phase label index into ``phase_names`` per step                |
| phase_names    | str (P,)                 | names of the phases                                            |
| dt_s           | float64 scalar           | control period of the recording                                |
| name           | str scalar               | stream name                                                    |

``procedural_stream`` generates a seeded synthetic pick-and-place stream (approach, grasp, transport, place, idle)
for fast tests and training; ``inject_visual_noise`` adds lighting flicker, sensor noise and camera shake.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STREAM_SCHEMA_VERSION = 1
PHASES: tuple[str, ...] = ("approach", "grasp", "transport", "place", "idle")


class StreamFormatError(ValueError):
    """A stream file or array set that cannot be used; the message names the file and the offending field."""


@dataclass(frozen=True, eq=False)
class ObservationStream:
    """One recorded or generated robot episode; arrays are read-only. See the module docstring for the fields."""

    frames: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    joint_torque: np.ndarray
    ref_actions: np.ndarray
    phases: np.ndarray
    phase_names: tuple[str, ...] = PHASES
    dt_s: float = 0.1
    name: str = "stream"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise StreamFormatError(
                f"stream {self.name!r}: frames must be uint8 (T, H, W, 3), got "
                f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
            )
        t = frames.shape[0]
        if t < 2:
            raise StreamFormatError(f"stream {self.name!r}: needs at least 2 steps, got {t}")
        for key in ("joint_pos", "joint_vel", "joint_torque", "ref_actions"):
            arr = np.asarray(getattr(self, key))
            if arr.ndim != 2 or arr.shape[0] != t:
                raise StreamFormatError(
                    f"stream {self.name!r}: {key} has shape {arr.shape}, expected ({t}, n) to match {t} frames"
                )
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise StreamFormatError(f"stream {self.name!r}: {key} must be finite numbers")
            object.__setattr__(self, key, _readonly(arr.astype(np.float64, copy=False)))
        j = self.joint_pos.shape[1]
        if self.joint_vel.shape[1] != j or self.joint_torque.shape[1] != j:
            raise StreamFormatError(
                f"stream {self.name!r}: joint arrays disagree on the joint count: pos {j}, "
                f"vel {self.joint_vel.shape[1]}, torque {self.joint_torque.shape[1]}"
            )
        phases = np.asarray(self.phases)
        if phases.shape != (t,) or not np.issubdtype(phases.dtype, np.integer):
            raise StreamFormatError(f"stream {self.name!r}: phases must be int (T,) = ({t},), got {phases.shape}")
        names = tuple(str(p) for p in self.phase_names)
        if t and (phases.min() < 0 or phases.max() >= len(names)):
            raise StreamFormatError(
                f"stream {self.name!r}: phase labels span [{phases.min()}, {phases.max()}], "
                f"outside the {len(names)} phase_names"
            )
        if not (self.dt_s > 0 and math.isfinite(self.dt_s)):
            raise StreamFormatError(f"stream {self.name!r}: dt_s must be finite and > 0, got {self.dt_s!r}")
        object.__setattr__(self, "phase_names", names)
        object.__setattr__(self, "phases", _readonly(phases.astype(np.int64, copy=False)))
        object.__setattr__(self, "frames", _readonly(frames))

    @property
    def num_steps(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.joint_pos.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.ref_actions.shape[1])

    def slice(self, start: int, stop: int) -> ObservationStream:
        """Steps [start, stop) as a new stream."""
        return replace(
            self,
            frames=self.frames[start:stop],
            joint_pos=self.joint_pos[start:stop],
            joint_vel=self.joint_vel[start:stop],
            joint_torque=self.joint_torque[start:stop],
            ref_actions=self.ref_actions[start:stop],
            phases=self.phases[start:stop],
            name=f"{self.name}[{start}:{stop}]",
        )

    def save(self, path: str | Path) -> Path:
        """Write the stream as a compressed ``.npz`` (see the module docstring for the keys)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                schema_version=np.int64(STREAM_SCHEMA_VERSION),
                frames=self.frames,
                joint_pos=self.joint_pos,
                joint_vel=self.joint_vel,
                joint_torque=self.joint_torque,
                ref_actions=self.ref_actions,
                phases=self.phases,
                phase_names=np.array(self.phase_names, dtype=str),
                dt_s=np.float64(self.dt_s),
                name=np.array(self.name, dtype=str),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ObservationStream:
        """Read and validate a stream file; ``StreamFormatError`` names the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise StreamFormatError(f"stream file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise StreamFormatError(f"{path}: not a readable npz stream ({e})") from e
        version = int(data["schema_version"]) if "schema_version" in data else None
        if version != STREAM_SCHEMA_VERSION:
            raise StreamFormatError(f"{path}: stream schema version {version!r}, expected {STREAM_SCHEMA_VERSION}")
        required = ("frames", "joint_pos", "joint_vel", "joint_torque", "ref_actions", "phases")
        missing = [k for k in required if k not in data]
        if missing:
            raise StreamFormatError(f"{path}: missing keys {missing}")
        try:
            return cls(
                frames=data["frames"],
                joint_pos=data["joint_pos"],
                joint_vel=data["joint_vel"],
                joint_torque=data["joint_torque"],
                ref_actions=data["ref_actions"],
                phases=data["phases"],
                phase_names=tuple(data["phase_names"].tolist()) if "phase_names" in data else PHASES,
                dt_s=float(data["dt_s"]) if "dt_s" in data else 0.1,
                name=str(data["name"]) if "name" in data else path.stem,
                meta={"source": str(path)},
            )
        except StreamFormatError as e:
            raise StreamFormatError(f"{path}: {e}") from e

    def phase_of(self, step: int) -> str:
        return self.phase_names[int(self.phases[step])]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


# --------------------------------------------------------------------------------------------------------------
# Procedural stream


@dataclass(frozen=True)
class ProceduralConfig:
    """Shape and timing of a procedural pick-and-place stream (durations in control steps)."""

    image_hw: tuple[int, int] = (64, 64)
    dt_s: float = 0.1
    num_joints: int = 7
    approach_steps: tuple[int, int] = (12, 30)
    grasp_steps: tuple[int, int] = (3, 6)
    transport_steps: tuple[int, int] = (12, 30)
    place_steps: tuple[int, int] = (3, 6)
    idle_steps: tuple[int, int] = (5, 25)
    object_mass_kg: float = 0.5


def _min_jerk(n: int) -> np.ndarray:
    s = (np.arange(1, n + 1) / n).astype(np.float64)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def procedural_stream(seed: int, num_steps: int, config: ProceduralConfig = ProceduralConfig()) -> ObservationStream:
    """A seeded synthetic pick-and-place stream of ``num_steps`` steps, repeating tasks with random placements.

    The gripper follows minimum-jerk paths between waypoints (approach the object, grasp, transport, place, idle);
    joint state is a smooth nonlinear map of the gripper pose, torques carry gravity, the held object's load and a
    contact spike at grasp and release; reference actions are MetaWorld-style (dx, dy, dz, grip) in [-1, 1].
    Frames are drawn from the scene (textured background, table, object, gripper, target marker), so they change
    little while idle and a lot while moving.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps!r}")
    rng = np.random.default_rng(seed)
    cfg = config
    # ---- gripper path (x, y in [0, 1] image coordinates; z height in [0, 1]) and gripper closure
    pos = np.zeros((num_steps, 3))
    grip = np.zeros(num_steps)
    holding = np.zeros(num_steps, dtype=bool)
    phase = np.zeros(num_steps, dtype=np.int64)
    obj_xy = np.zeros((num_steps, 2))
    target_xy = np.zeros((num_steps, 2))
    cur = np.array([0.5, 0.2, 0.8])
    i = 0
    while i < num_steps:
        obj = rng.uniform([0.2, 0.45], [0.8, 0.85])
        tgt = rng.uniform([0.2, 0.45], [0.8, 0.85])
        segments = [
            (0, np.array([obj[0], obj[1], 0.15]), cfg.approach_steps, 0.0, False),
            (1, np.array([obj[0], obj[1], 0.12]), cfg.grasp_steps, 1.0, True),
            (2, np.array([tgt[0], tgt[1], 0.2]), cfg.transport_steps, 1.0, True),
            (3, np.array([tgt[0], tgt[1], 0.15]), cfg.place_steps, 0.0, False),
            (4, np.array([tgt[0], tgt[1], 0.15]), cfg.idle_steps, 0.0, False),  # the arm rests where it placed
        ]
        for ph, goal, (lo, hi), g, hold in segments:
            n = int(rng.integers(lo, hi + 1))
            n = min(n, num_steps - i)
            if n <= 0:
                break
            s = _min_jerk(n)[:, None]
            pos[i : i + n] = cur + (goal - cur) * s
            grip[i : i + n] = g
            holding[i : i + n] = hold
            phase[i : i + n] = ph
            target_xy[i : i + n] = tgt
            if ph == 2:  # the object moves with the gripper
                obj_xy[i : i + n] = pos[i : i + n, :2]
            elif ph in (3, 4):
                obj_xy[i : i + n] = tgt
            else:
                obj_xy[i : i + n] = obj
            cur = pos[i + n - 1].copy()
            i += n
    dt = cfg.dt_s
    # ---- joints: smooth nonlinear map of the gripper pose
    nj = cfg.num_joints
    mix = rng.normal(0, 1.0, (nj, 3))
    offs = rng.uniform(-0.5, 0.5, nj)
    q = np.sin(pos @ mix.T + offs) * 1.2 + 0.3 * (pos @ mix.T)
    qd = np.gradient(q, dt, axis=0)
    qdd = np.gradient(qd, dt, axis=0)
    gravity = 2.0 * np.cos(q) + 0.5
    load = holding[:, None] * cfg.object_mass_kg * 9.81 * 0.3 * np.abs(mix[:, 2])[None, :]
    contact = np.zeros(num_steps)
    changes = np.flatnonzero(np.diff(grip) != 0) + 1
    for c in changes:
        contact[c : c + 2] = 1.0
    tau = gravity + load + 0.05 * qdd + contact[:, None] * rng.normal(3.0, 0.5, nj)[None, :]
    tau += rng.normal(0, 0.02, tau.shape)
    # ---- reference actions: position deltas to the next step, scaled to [-1, 1], and grip command
    delta = np.diff(pos, axis=0, append=pos[-1:])
    act = np.clip(delta / 0.05, -1.0, 1.0)
    ref = np.concatenate([act, (2 * grip - 1)[:, None]], axis=1)
    frames = _render(cfg.image_hw, pos, grip, obj_xy, target_xy, rng)
    return ObservationStream(
        frames=frames,
        joint_pos=q,
        joint_vel=qd,
        joint_torque=tau,
        ref_actions=ref,
        phases=phase,
        phase_names=PHASES,
        dt_s=dt,
        name=f"procedural-{seed}",
        meta={"generator": "procedural_stream", "seed": seed},
    )


def _render(hw, pos, grip, obj_xy, target_xy, rng) -> np.ndarray:
    h, w = hw
    t = pos.shape[0]
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.empty((h, w, 3), dtype=np.float32)
    bg[..., 0] = 90 + 40 * yy / h
    bg[..., 1] = 100 + 30 * xx / w
    bg[..., 2] = 120
    bg += rng.normal(0, 6, (h, w, 1)).astype(np.float32)  # static texture
    table_top = int(0.4 * h)
    bg[table_top:] = bg[table_top:] * 0.6 + np.array([110, 80, 50], dtype=np.float32) * 0.4
    base = np.clip(bg, 0, 255).astype(np.uint8)
    frames = np.repeat(base[None], t, axis=0)
    osz = max(2, h // 12)
    gsz = max(2, h // 10)
    for i in range(t):
        f = frames[i]
        tx, ty = int(target_xy[i, 0] * w), int(target_xy[i, 1] * h)
        f[max(ty - 1, 0) : ty + 1, max(tx - osz, 0) : tx + osz] = (40, 200, 40)
        ox, oy = int(obj_xy[i, 0] * w), int(obj_xy[i, 1] * h)
        f[max(oy - osz, 0) : oy + osz, max(ox - osz, 0) : ox + osz] = (200, 40, 40)
        # gripper: drawn higher in the image when it is lifted, arm line from the top
        gx = int(pos[i, 0] * w)
        gy = int((pos[i, 1] - 0.35 * pos[i, 2]) * h)
        gy = min(max(gy, gsz), h - gsz)
        gx = min(max(gx, gsz), w - gsz)
        f[0:gy, max(gx - 1, 0) : gx + 1] = (60, 60, 60)
        open_px = 1 if grip[i] > 0.5 else gsz // 2 + 1
        f[gy - gsz // 2 : gy + gsz // 2, max(gx - open_px - 1, 0) : gx - open_px + 1] = (230, 230, 230)
        f[gy - gsz // 2 : gy + gsz // 2, gx + open_px - 1 : gx + open_px + 1] = (230, 230, 230)
    return frames


# --------------------------------------------------------------------------------------------------------------
# Visual noise


@dataclass(frozen=True)
class VisualNoiseConfig:
    """Injected visual noise. flicker_gain: std of a per-frame global brightness gain (lighting flicker);
    flicker_prob: probability per frame of a flicker event; sensor_sigma: std of per-pixel Gaussian noise (0-255
    scale); shake_px: max camera translation per frame in pixels."""

    flicker_gain: float = 0.0
    flicker_prob: float = 0.3
    sensor_sigma: float = 0.0
    shake_px: int = 0

    def __post_init__(self) -> None:
        if self.flicker_gain < 0 or self.sensor_sigma < 0 or self.shake_px < 0 or not 0 <= self.flicker_prob <= 1:
            raise ValueError(f"noise parameters must be >= 0 (flicker_prob in [0, 1]), got {self}")


def inject_visual_noise(stream: ObservationStream, noise: VisualNoiseConfig, seed: int) -> ObservationStream:
    """A copy of ``stream`` with lighting flicker, sensor noise and camera shake applied to its frames."""
    out = apply_visual_noise(stream.frames, noise, np.random.default_rng(seed))
    meta = dict(stream.meta, noise=noise.__dict__.copy(), noise_seed=seed)
    return replace(stream, frames=out, name=f"{stream.name}+noise", meta=meta)


def apply_visual_noise(frames: np.ndarray, noise: VisualNoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """Flicker, shake and sensor noise on uint8 (T, H, W, 3) frames (a new array); the closed loop applies it to
    each rendered frame."""
    frames = frames.astype(np.float32)
    t = frames.shape[0]
    if noise.flicker_gain > 0:
        events = rng.random(t) < noise.flicker_prob
        gain = np.asarray(1.0 + events * rng.normal(0, noise.flicker_gain, t))
        frames *= gain[:, None, None, None].astype(np.float32)
    if noise.shake_px > 0:
        shifts = rng.integers(-noise.shake_px, noise.shake_px + 1, size=(t, 2))
        for i in range(t):
            frames[i] = np.roll(frames[i], shift=(int(shifts[i, 0]), int(shifts[i, 1])), axis=(0, 1))
    if noise.sensor_sigma > 0:
        frames += rng.normal(0, noise.sensor_sigma, frames.shape).astype(np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
