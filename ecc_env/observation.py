"""The one place observations are built, for the env and for the edge runtime alike.

Every field is scaled by a fixed, documented rule (no running statistics) and the vector is clipped into the
declared ``Box(0, 1)``. ``H`` = ``ObservationConfig.bandwidth_history``. ``lg(x, s)`` = ``log1p(x) / log1p(s)``.

| index | field | input (unit) | scaling |
| --- | --- | --- | --- |
| 0 .. H-1 | uplink_mbps[i] | last H uplink estimates, newest first (Mbit/s) | lg(mbps, bandwidth_scale_mbps); 0 = none |
| H .. 2H-1 | uplink_age[i] | age of each estimate (s) | age / max_age_s; 1 = none |
| 2H | downlink_mbps | newest downlink estimate (Mbit/s) | lg(mbps, bandwidth_scale_mbps) |
| 2H+1 | rtt | RTT estimate (ms) | lg(ms, rtt_scale_ms) |
| 2H+2 | edge_queue | observations waiting at the edge (count) | count / queue_capacity |
| 2H+3 | server_queue | server's reported queue length (requests) | count / server_queue_scale |
| 2H+4 | action_age | age of the observation behind the current actions (s) | age / action_age_scale_s |
| 2H+5 | actions_left | actions left in the current chunk (count) | count / chunk_size |
| 2H+6 | visual_mad | mean abs frame difference (0-1) | mad / mad_scale |
| 2H+7 | visual_changed | changed-pixel fraction after blur (0-1) | as is |
| 2H+8 | visual_structural | low-res structural distance (0-1) | as is |
| 2H+9 | visual_since_action | sum of visual_mad since the current actions' observation | sum / mad_accum_scale |
| 2H+10 | joint_speed | joint speed norm (rad/s) | speed / joint_speed_scale |
| 2H+11 | accel_anomaly | acceleration anomaly score (0-1) | as is |
| 2H+12 | torque_change | torque-change score (0-1) | as is |
| 2H+13 | prev_cut | previous cut index | index / (num_cuts - 1) |
| 2H+14 | prev_skip | previous step skipped (0/1) | as is |
| 2H+15 | prev_deadline_miss | previous step missed its deadline (0/1) | as is |
| 2H+16 | prev_latency | previous step's latency (ms) | lg(ms, latency_scale_ms) |

Uplink estimates (spec version 2) come from three sources, newest first by the time they were measured:
network steps whose actions came back in time (``uplink_estimate_mbps`` = payload bits / the uplink transfer's
duration as the edge's sender sees it); network steps that missed their deadline (the upper bound
``executor.protocol.missed_upload_mbps`` = upload bits / (deadline - upload start), so a failed offload still tells
the planner the link was too slow); and the background probes of ``ecc_env.latency.ProbeConfig`` (a padded ping
every 0.25 s by default and one at connect, sent by the runtime's client whatever the planner does), so a planner
that stays on the edge still sees the link, from the first decision on. The RTT estimate is the round trip at the
last completed upload (the runtime measures it by ping or as network time / (round trips + 1)).
``visual_since_action`` sums ``visual_mad`` of every stream step (dropped ones included) after the observation
the current actions were computed from. Values outside [0, 1] are clipped; NaN becomes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from ecc_env.features import FeatureConfig, kinematic_scores, visual_change
from executor.control import DEFAULT_CHUNK_SIZE
from traces.units import rate_mbps

OBS_SPEC_VERSION = 2  # 2: a missed deadline leaves an upper-bound uplink sample
_INF = float("inf")

_TAIL_FIELDS = (
    "downlink_mbps",
    "rtt",
    "edge_queue",
    "server_queue",
    "action_age",
    "actions_left",
    "visual_mad",
    "visual_changed",
    "visual_structural",
    "visual_since_action",
    "joint_speed",
    "accel_anomaly",
    "torque_change",
    "prev_cut",
    "prev_skip",
    "prev_deadline_miss",
    "prev_latency",
)


@dataclass(frozen=True)
class ObservationConfig:
    """Fixed scales of the observation (see the module table); part of a policy's observation spec."""

    bandwidth_history: int = 8
    bandwidth_scale_mbps: float = 10_000.0
    max_age_s: float = 10.0
    rtt_scale_ms: float = 2_000.0
    queue_capacity: int = 3
    server_queue_scale: float = 16.0
    action_age_scale_s: float = 2.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    mad_scale: float = 0.25
    mad_accum_scale: float = 1.0
    joint_speed_scale: float = 4.0
    latency_scale_ms: float = 10_000.0
    num_cuts: int = 2

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ObservationConfig.{name} must be finite and > 0, got {value!r}")
        if self.num_cuts < 1:
            raise ValueError(f"num_cuts must be >= 1, got {self.num_cuts}")


def uplink_estimate_mbps(nbytes: float, transfer_s: float) -> float:
    """Bandwidth the edge measures from one completed uplink transfer: payload bits / transfer time, in Mbit/s."""
    if transfer_s <= 0:
        raise ValueError(f"transfer_s must be > 0, got {transfer_s!r}")
    return rate_mbps(nbytes, transfer_s)


class ObservationBuilder:
    """Builds the observation vector from plain inputs; ``space`` is the declared ``Box``."""

    def __init__(self, config: ObservationConfig, feature_config: FeatureConfig = FeatureConfig()) -> None:
        self.config = config
        self.feature_config = feature_config
        h = config.bandwidth_history
        self.history = h
        self.field_names: tuple[str, ...] = (
            tuple(f"uplink_mbps[{i}]" for i in range(h)) + tuple(f"uplink_age[{i}]" for i in range(h)) + _TAIL_FIELDS
        )
        self.size = len(self.field_names)
        self.index = {name: i for i, name in enumerate(self.field_names)}
        self.space = spaces.Box(low=0.0, high=1.0, shape=(self.size,), dtype=np.float32)
        c = config
        self._bw_log = 1.0 / math.log1p(c.bandwidth_scale_mbps)
        self._rtt_log = 1.0 / math.log1p(c.rtt_scale_ms)
        self._lat_log = 1.0 / math.log1p(c.latency_scale_ms)
        self._cut_div = 1.0 / max(c.num_cuts - 1, 1)

    def bandwidth_feature(self, mbps: float) -> float:
        """One rate in Mbit/s on the bandwidth fields' scale, ``lg(mbps, bandwidth_scale_mbps)`` (not yet clipped)."""
        return math.log1p(max(mbps, 0.0)) * self._bw_log

    def spec(self) -> dict:
        """Observation spec for policy metadata: version, field names and every scale."""
        return {
            "version": OBS_SPEC_VERSION,
            "fields": list(self.field_names),
            "scales": asdict(self.config),
            "features": asdict(self.feature_config),
        }

    def empty(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.float32)

    def build(
        self,
        *,
        uplink_mbps: Sequence[float] | np.ndarray,
        uplink_age_s: Sequence[float] | np.ndarray,
        downlink_mbps: float | None,
        rtt_ms: float | None,
        edge_queue: int,
        server_queue: float,
        action_age_s: float | None,
        actions_left: int,
        visual: Sequence[float] | np.ndarray,
        visual_since_action: float,
        kinematic: Sequence[float] | np.ndarray,
        prev_cut: int,
        prev_skip: bool,
        prev_deadline_miss: bool,
        prev_latency_ms: float,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Observation from feature values. ``uplink_mbps`` / ``uplink_age_s``: up to H newest-first samples
        (fewer or NaN = missing); None = not measured yet. ``visual``: (mad, changed, structural); ``kinematic``:
        (joint_speed, accel_anomaly, torque_change). Writes into ``out`` when given and returns it."""
        c = self.config
        h = self.history
        n = len(uplink_mbps)
        if len(uplink_age_s) != n:
            raise ValueError(f"uplink_mbps has {n} samples but uplink_age_s has {len(uplink_age_s)}")
        n = min(n, h)
        bw_log = self._bw_log
        vals = [0.0] * h + [1.0] * h
        for i in range(n):
            mbps = float(uplink_mbps[i])
            age = float(uplink_age_s[i])
            if mbps == mbps and age == age and mbps != _INF and age != _INF:  # finite sample
                vals[i] = math.log1p(mbps if mbps > 0.0 else 0.0) * bw_log
                vals[h + i] = age / c.max_age_s
        vals += (
            0.0 if downlink_mbps is None else self.bandwidth_feature(downlink_mbps),
            0.0 if rtt_ms is None else math.log1p(max(rtt_ms, 0.0)) * self._rtt_log,
            edge_queue / c.queue_capacity,
            server_queue / c.server_queue_scale,
            1.0 if action_age_s is None else action_age_s / c.action_age_scale_s,
            actions_left / c.chunk_size,
            visual[0] / c.mad_scale,
            visual[1],
            visual[2],
            visual_since_action / c.mad_accum_scale,
            kinematic[0] / c.joint_speed_scale,
            kinematic[1],
            kinematic[2],
            prev_cut * self._cut_div,
            1.0 if prev_skip else 0.0,
            1.0 if prev_deadline_miss else 0.0,
            math.log1p(max(prev_latency_ms, 0.0)) * self._lat_log,
        )
        o = self.empty() if out is None else out
        # clip into [0, 1]; NaN (never expected) maps to 0, +inf to 1
        o[:] = [(x if x <= 1.0 else 1.0) if x > 0.0 else 0.0 for x in vals]
        return o

    def decode(self, obs: np.ndarray) -> dict[str, Any]:
        """Inverse of the fixed scales: physical units from an observation vector, read through :attr:`index`.

        The one decoder of the package (``agents.planner.ObsView`` wraps it). Conventions: a value that was not
        measured (no uplink sample in a slot, no RTT or downlink estimate yet) is NaN; ``action_age_s`` is ``inf``
        when there are no actions yet (or the age is beyond ``action_age_scale_s``), so ``age >= limit`` holds;
        counts and ``prev_cut`` are ints; ``prev_skip`` / ``prev_deadline_miss`` are bools. Other saturated fields
        (clipped at 1) decode to their scale's maximum. An uplink slot is empty when its rate is 0 and its age
        field saturated (the builder's "none" encoding). Keys: ``uplink_mbps`` / ``uplink_age_s`` (arrays, newest
        first), ``downlink_mbps``, ``rtt_ms``, ``edge_queue``, ``server_queue``, ``action_age_s``,
        ``actions_left``, ``visual_mad``, ``visual_changed``, ``visual_structural``, ``visual_since_action``,
        ``joint_speed``, ``accel_anomaly``, ``torque_change``, ``prev_cut``, ``prev_skip``,
        ``prev_deadline_miss``, ``prev_latency_ms``. Accepts shape ``(size,)`` or ``(1, size)``.
        """
        o = np.asarray(obs, dtype=np.float64)
        if o.ndim == 2 and o.shape[0] == 1:
            o = o[0]
        if o.shape != (self.size,):
            raise ValueError(f"observation has shape {np.shape(obs)}, expected ({self.size},)")
        c, h, ix = self.config, self.history, self.index
        nan = math.nan
        up = o[ix["uplink_mbps[0]"] : ix["uplink_mbps[0]"] + h]
        age = o[ix["uplink_age[0]"] : ix["uplink_age[0]"] + h]
        present = ~((up <= 0.0) & (age >= 1.0))

        def v(name: str) -> float:
            return float(o[ix[name]])

        def unlog(name: str, inv_scale: float) -> float:
            return math.expm1(v(name) / inv_scale) if v(name) > 0 else nan

        return {
            "uplink_mbps": np.where(present, np.expm1(up / self._bw_log), nan),
            "uplink_age_s": np.where(present, age * c.max_age_s, nan),
            "downlink_mbps": unlog("downlink_mbps", self._bw_log),
            "rtt_ms": unlog("rtt", self._rtt_log),
            "edge_queue": v("edge_queue") * c.queue_capacity,
            "server_queue": v("server_queue") * c.server_queue_scale,
            "action_age_s": v("action_age") * c.action_age_scale_s if v("action_age") < 1.0 else math.inf,
            "actions_left": int(round(v("actions_left") * c.chunk_size)),
            "visual_mad": v("visual_mad") * c.mad_scale,
            "visual_changed": v("visual_changed"),
            "visual_structural": v("visual_structural"),
            "visual_since_action": v("visual_since_action") * c.mad_accum_scale,
            "joint_speed": v("joint_speed") * c.joint_speed_scale,
            "accel_anomaly": v("accel_anomaly"),
            "torque_change": v("torque_change"),
            "prev_cut": int(round(v("prev_cut") / self._cut_div)),
            "prev_skip": v("prev_skip") > 0.5,
            "prev_deadline_miss": v("prev_deadline_miss") > 0.5,
            "prev_latency_ms": math.expm1(v("prev_latency") / self._lat_log),
        }

    def build_from_raw(
        self,
        *,
        prev_frame: np.ndarray,
        frame: np.ndarray,
        joint_vel_history: np.ndarray,
        joint_torque_history: np.ndarray,
        dt_s: float,
        **kwargs,
    ) -> np.ndarray:
        """Observation from raw inputs (the edge runtime's path): the two latest frames and the joint history
        (oldest first, ``features.history_len()`` steps give the same scores as the env); other arguments as
        in :meth:`build`."""
        visual = visual_change(prev_frame, frame, self.feature_config)
        kin = kinematic_scores(joint_vel_history, joint_torque_history, dt_s, self.feature_config)[-1]
        return self.build(visual=visual, kinematic=kin, **kwargs)
