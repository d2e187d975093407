"""Change features of the robot's inputs: visual change of consecutive frames and RAPID-style kinematic scores.

All functions are vectorised over time so the env precomputes a whole stream at once, and the edge runtime calls
the same functions on its short history (taking the last element): one implementation for both.

Visual (per pair of consecutive frames, values in [0, 1]):
- ``mad``: mean absolute difference of the RGB frames / 255.
- ``changed_fraction``: fraction of pixels whose grey value changed by more than ``change_threshold`` (0-255) after
  a ``blur_px`` x ``blur_px`` box blur, so independent sensor noise does not count.
- ``structural``: (1 - SSIM) / 2 of ``lowres`` x ``lowres`` grey thumbnails (block means), SSIM averaged over
  4x4-pixel windows of the thumbnail: a low-resolution structural distance.

Kinematic (per step, from the joint history up to and including that step):
- ``joint_speed``: L2 norm of the joint velocities.
- ``accel_anomaly``: z-score of the joint-acceleration norm against the previous ``window`` steps (sliding-window
  normalisation, std floored at ``accel_floor``), clipped to [0, ``z_max``] and divided by ``z_max``.
- ``torque_change``: the same score for the norm of the torque change between consecutive steps
  (floor ``torque_floor``): small in a free approach, spikes at contact and grasp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the change features (pixel values on the 0-255 scale)."""

    blur_px: int = 4
    change_threshold: float = 12.0
    lowres: int = 16
    window: int = 10
    z_max: float = 4.0
    accel_floor: float = 0.5
    torque_floor: float = 0.3

    def __post_init__(self) -> None:
        if self.blur_px < 1 or self.lowres < 4 or self.window < 2 or self.z_max <= 0:
            raise ValueError(f"invalid feature config: {self}")
        if self.accel_floor <= 0 or self.torque_floor <= 0:
            raise ValueError(f"floors must be > 0, got {self}")


_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _grey(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ _GREY


def _block_mean(img: np.ndarray, by: int, bx: int) -> np.ndarray:
    """Mean over by x bx blocks of the trailing two axes (cropping the remainder)."""
    h, w = img.shape[-2:]
    hh, ww = (h // by) * by, (w // bx) * bx
    img = img[..., :hh, :ww]
    return img.reshape(img.shape[:-2] + (hh // by, by, ww // bx, bx)).mean(axis=(-3, -1))


def _thumb(grey: np.ndarray, n: int) -> np.ndarray:
    h, w = grey.shape[-2:]
    return _block_mean(grey, max(h // n, 1), max(w // n, 1))[..., :n, :n]


def visual_change(prev: np.ndarray, cur: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Visual change of frame pairs: (..., H, W, 3) uint8 each -> (..., 3) float64 [mad, changed_fraction,
    structural]."""
    prev = np.asarray(prev)
    cur = np.asarray(cur)
    if prev.shape != cur.shape or prev.ndim < 3 or prev.shape[-1] != 3:
        raise ValueError(f"frames must share a (..., H, W, 3) shape, got {prev.shape} and {cur.shape}")
    mad = np.abs(cur.astype(np.int16) - prev.astype(np.int16)).mean(axis=(-3, -2, -1)) / 255.0
    gp, gc = _grey(prev), _grey(cur)
    bp, bc = _block_mean(gp, cfg.blur_px, cfg.blur_px), _block_mean(gc, cfg.blur_px, cfg.blur_px)
    changed = (np.abs(bc - bp) > cfg.change_threshold).mean(axis=(-2, -1))
    tp, tc = _thumb(gp, cfg.lowres), _thumb(gc, cfg.lowres)
    ssim = _ssim_windows(tp, tc, 4)
    structural = np.clip((1.0 - ssim) / 2.0, 0.0, 1.0)
    return np.stack([mad, changed, structural], axis=-1).astype(np.float64)


def _ssim_windows(a: np.ndarray, b: np.ndarray, win: int) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = a.shape[-2:]
    shape = a.shape[:-2] + (h // win, win, w // win, win)
    a = a[..., : (h // win) * win, : (w // win) * win].reshape(shape).astype(np.float64)
    b = b[..., : (h // win) * win, : (w // win) * win].reshape(shape).astype(np.float64)
    ma, mb = a.mean(axis=(-3, -1)), b.mean(axis=(-3, -1))
    va = a.var(axis=(-3, -1))
    vb = b.var(axis=(-3, -1))
    cov = (a * b).mean(axis=(-3, -1)) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return s.mean(axis=(-2, -1))


def stream_visual_change(frames: np.ndarray, cfg: FeatureConfig = FeatureConfig(), chunk: int = 256) -> np.ndarray:
    """Visual change of every consecutive pair of a (T, H, W, 3) stream -> (T, 3); row 0 (no predecessor) is 0."""
    t = frames.shape[0]
    out = np.zeros((t, 3))
    for s in range(1, t, chunk):
        e = min(s + chunk, t)
        out[s:e] = visual_change(frames[s - 1 : e - 1], frames[s:e], cfg)
    return out


def _window_score(x: np.ndarray, window: int, floor: float, z_max: float) -> np.ndarray:
    """z-score of x[t] against x[t-window:t] (fewer at the start; 0 for t = 0), clipped to [0, z_max] / z_max."""
    t = x.shape[0]
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    idx = np.arange(t)
    lo = np.maximum(idx - window, 0)
    n = idx - lo
    safe_n = np.maximum(n, 1)
    mean = (c1[idx] - c1[lo]) / safe_n
    var = np.maximum((c2[idx] - c2[lo]) / safe_n - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), floor)
    z = np.where(n > 0, (x - mean) / std, 0.0)
    return np.clip(z, 0.0, z_max) / z_max


def kinematic_scores(
    joint_vel: np.ndarray, joint_torque: np.ndarray, dt_s: float, cfg: FeatureConfig = FeatureConfig()
) -> np.ndarray:
    """Kinematic features per step of a (T, J) history -> (T, 3) [joint_speed, accel_anomaly, torque_change]."""
    qd = np.asarray(joint_vel, dtype=np.float64)
    tau = np.asarray(joint_torque, dtype=np.float64)
    if qd.ndim != 2 or qd.shape != tau.shape:
        raise ValueError(f"joint_vel and joint_torque must be (T, J) of one shape, got {qd.shape} and {tau.shape}")
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s!r}")
    speed = np.linalg.norm(qd, axis=1)
    acc = np.zeros(qd.shape[0])
    acc[1:] = np.linalg.norm(np.diff(qd, axis=0), axis=1) / dt_s
    dtau = np.zeros(qd.shape[0])
    dtau[1:] = np.linalg.norm(np.diff(tau, axis=0), axis=1)
    acc_score = _window_score(acc, cfg.window, cfg.accel_floor, cfg.z_max)
    tau_score = _window_score(dtau, cfg.window, cfg.torque_floor, cfg.z_max)
    acc_score[0] = tau_score[0] = 0.0
    return np.stack([speed, acc_score, tau_score], axis=1)


def history_len(cfg: FeatureConfig = FeatureConfig()) -> int:
    """Joint-history length that makes the runtime's last-step scores equal the env's whole-stream scores."""
    return cfg.window + 2
