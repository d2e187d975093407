"""Adapter from the edge runtime's ``executor.runtime.StepContext`` to ``ObservationBuilder.build_from_raw``.

The edge runtime receives a callable ``StepContext -> np.ndarray`` (``executor`` never imports ``ecc_env``); this is
that callable, so the runtime builds its observations with the env's one builder. It is stateful (one instance
per runtime): it keeps the joint history (for the kinematic scores), the visual change of every step (for the
change since the current actions' observation) and the wall time of every step's observation.

Field by field (``ctx`` = the StepContext):

| builder input | from the context | same as the env? |
| --- | --- | --- |
| uplink_mbps / uplink_age_s | ``ctx.bandwidth`` newest first; age = ``ctx.now_wall_s - s.uplink_done_s`` | yes |
| downlink_mbps | newest finite ``downlink_mbps`` of ``ctx.bandwidth`` (None without one; a missed call has none) | yes |
| rtt_ms | ``ctx.rtt_ms`` | yes (the env: 2 x one-way delay at the last upload) |
| edge_queue / server_queue | ``ctx.frames_waiting`` / ``ctx.server_queue_length`` | yes |
| action_age_s | now - capture time of step ``ctx.chunk_step``'s observation (the env's definition: frame key ``capture_time_s``, else that step's ``now_wall_s``); else ``ctx.newest_action_age_s`` | yes when the chunk's step went through this adapter with its capture time |
| actions_left | ``ctx.actions_left_in_chunk`` | yes |
| visual (mad, changed, structural) | ``features.visual_change(previous frame, frame)`` of camera ``camera`` of ``image_key`` (zeros on the first step) | yes |
| visual_since_action | sum of this adapter's per-step mad after step ``ctx.chunk_step`` | yes, except frames the env dropped from its queue (the runtime never sees them) |
| kinematic | ``features.kinematic_scores`` of the last ``features.history_len()`` joint samples (``joint_vel_key`` / ``joint_torque_key`` of the frame) | yes |
| prev_cut / prev_skip | ``ctx.previous_action`` (edge-only, no skip before the first step) | the runtime records the requested action, the env the executed one (they differ only for masked actions) |
| prev_deadline_miss / prev_latency_ms | ``ctx.prev_deadline_miss`` / ``ctx.prev_latency_ms`` | yes |
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ecc_env.features import history_len, visual_change
from ecc_env.observation import ObservationBuilder


class RuntimeObservationAdapter:
    """``__call__(ctx) -> observation``: the env's ``ObservationBuilder`` fed from a runtime ``StepContext``.

    image_key / camera: where the camera frame is in ``ctx.frame`` (``(cams, H, W, 3)`` or ``(H, W, 3)`` uint8).
    joint_vel_key / joint_torque_key: the frame's joint velocity and torque vectors (same length every step).
    dt_s: the control period (the joint history's sample spacing).
    capture_time_key: the frame's capture time (wall clock, s) when it carries one; otherwise the observation's
        time is ``ctx.now_wall_s`` of its step (equal when the runtime handles observations as they arrive).
    """

    def __init__(
        self,
        builder: ObservationBuilder,
        *,
        dt_s: float,
        image_key: str = "images",
        camera: int = 0,
        joint_vel_key: str = "joint_vel",
        joint_torque_key: str = "joint_torque",
        capture_time_key: str | None = "capture_time_s",
    ) -> None:
        if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s must be finite and > 0, got {dt_s!r}")
        if camera < 0:
            raise ValueError(f"camera must be >= 0, got {camera!r}")
        self.builder = builder
        self.dt_s = float(dt_s)
        self.image_key = image_key
        self.camera = int(camera)
        self.joint_vel_key = joint_vel_key
        self.joint_torque_key = joint_torque_key
        self.capture_time_key = capture_time_key
        n = history_len(builder.feature_config)
        self._vel: collections.deque[np.ndarray] = collections.deque(maxlen=n)
        self._tau: collections.deque[np.ndarray] = collections.deque(maxlen=n)
        self._mad: dict[int, float] = {}
        self._obs_wall: dict[int, float] = {}
        self._prev_image: np.ndarray | None = None

    def reset(self) -> None:
        """Forget every history (a new episode)."""
        self._vel.clear()
        self._tau.clear()
        self._mad.clear()
        self._obs_wall.clear()
        self._prev_image = None

    def _image(self, frame: Mapping[str, Any]) -> np.ndarray:
        if self.image_key not in frame:
            raise ValueError(f"frame has no {self.image_key!r} (keys: {sorted(frame)})")
        img = np.asarray(frame[self.image_key])
        if img.ndim == 4:
            if self.camera >= img.shape[0]:
                raise ValueError(f"camera {self.camera} requested, the frame has {img.shape[0]} cameras")
            img = img[self.camera]
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"{self.image_key!r} must be (H, W, 3) or (cams, H, W, 3), got shape {img.shape}")
        return img

    def _joint(self, frame: Mapping[str, Any], key: str) -> np.ndarray:
        if key not in frame:
            raise ValueError(f"frame has no {key!r} (keys: {sorted(frame)})")
        return np.asarray(frame[key], dtype=np.float64).reshape(-1)

    def __call__(self, ctx: Any) -> np.ndarray:
        step = int(ctx.step)
        now = float(ctx.now_wall_s)
        image = self._image(ctx.frame)
        vel = self._joint(ctx.frame, self.joint_vel_key)
        tau = self._joint(ctx.frame, self.joint_torque_key)
        if self._vel and self._vel[-1].shape != vel.shape:
            raise ValueError(f"joint vector length changed from {self._vel[-1].shape[0]} to {vel.shape[0]}")
        self._vel.append(vel)
        self._tau.append(tau)
        prev = self._prev_image if self._prev_image is not None and self._prev_image.shape == image.shape else image
        self._prev_image = image
        captured = ctx.frame.get(self.capture_time_key) if self.capture_time_key else None
        self._obs_wall[step] = now if captured is None else float(captured)

        self._mad[step] = float(visual_change(prev, image, self.builder.feature_config)[0])
        samples = list(reversed(ctx.bandwidth))  # newest first
        chunk_step = ctx.chunk_step
        has_chunk = chunk_step is not None and ctx.actions_left_in_chunk is not None
        if has_chunk and chunk_step in self._obs_wall:
            action_age = now - self._obs_wall[chunk_step]
        else:
            action_age = ctx.newest_action_age_s
        prev_cut, prev_skip = ctx.previous_action if ctx.previous_action is not None else (ctx.edge_only_cut, 0)
        obs = self.builder.build_from_raw(
            prev_frame=prev,
            frame=image,
            joint_vel_history=np.stack(self._vel),
            joint_torque_history=np.stack(self._tau),
            dt_s=self.dt_s,
            uplink_mbps=[s.uplink_mbps for s in samples],
            uplink_age_s=[now - s.uplink_done_s for s in samples],
            downlink_mbps=next((s.downlink_mbps for s in samples if s.downlink_mbps == s.downlink_mbps), None),
            rtt_ms=ctx.rtt_ms,
            edge_queue=ctx.frames_waiting,
            server_queue=ctx.server_queue_length,
            action_age_s=action_age,
            actions_left=ctx.actions_left_in_chunk,
            visual_since_action=(
                sum(v for s, v in self._mad.items() if chunk_step < s <= step) if chunk_step is not None else 0.0
            ),
            prev_cut=int(prev_cut),
            prev_skip=bool(prev_skip),
            prev_deadline_miss=bool(ctx.prev_deadline_miss),
            prev_latency_ms=float(ctx.prev_latency_ms),
        )
        # bounded memory: keep only steps that a chunk can still refer to
        oldest = chunk_step if chunk_step is not None else step
        for table in (self._mad, self._obs_wall):
            for s in [s for s in table if s < oldest]:
                del table[s]
        return obs


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W, C)`` image resampled to ``(height, width, C)`` by nearest neighbour (no dependency, exact repeat)."""
    img = np.asarray(image)
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {img.shape}")
    rows = (np.arange(height) * img.shape[0]) // height
    cols = (np.arange(width) * img.shape[1]) // width
    return img[rows][:, cols]


def stream_frame(
    stream: Any,
    template: Mapping[str, np.ndarray],
    step: int,
    *,
    camera_key: str = "camera",
    image_key: str = "images",
) -> dict[str, np.ndarray]:
    """The runtime frame of one step of an ``ObservationStream`` (recorded or procedural).

    The model's input ``template`` (its ``make_observation``) with ``image_key`` replaced by the stream's frame
    resized to the model's image size on every camera, plus the stream's own frame under ``camera_key`` (the
    adapter's visual features read it, as the env reads the stream) and its ``joint_vel`` / ``joint_torque``.
    Consecutive steps are consecutive stream frames, never independent random frames.
    """
    if not 0 <= step < stream.num_steps:
        raise ValueError(f"step {step!r} outside 0..{stream.num_steps - 1} (the stream's length)")
    spec = np.asarray(template[image_key])
    if spec.ndim != 4 or spec.shape[-1] != 3:
        raise ValueError(f"model input {image_key!r} must be (cams, H, W, 3), got shape {spec.shape}")
    cams, h, w = spec.shape[0], spec.shape[1], spec.shape[2]
    raw = stream.frames[step]
    small = resize_nearest(raw, h, w).astype(spec.dtype)
    frame = dict(template)
    frame[image_key] = np.ascontiguousarray(np.broadcast_to(small, (cams, h, w, 3)))
    frame[camera_key] = raw
    frame["joint_vel"] = np.asarray(stream.joint_vel[step])
    frame["joint_torque"] = np.asarray(stream.joint_torque[step])
    return frame
