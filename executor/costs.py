"""Cost of every cut from a pair of Profiles (edge device, cloud device): the single place cuts are priced.

Used by the env's profile backend, the planners (RoboECC argmin, static best cut), the cut map and ``ecc perf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from executor.profile import Profile, ProfileError
from traces.units import BITS_PER_BYTE, MBIT


@dataclass(frozen=True)
class CutTable:
    """Per-cut arrays (index = cut index into ``Profile.cuts``)."""

    edge_ms: np.ndarray
    cloud_ms: np.ndarray
    up_bytes: np.ndarray
    down_bytes: np.ndarray
    round_trips: np.ndarray
    round_trip_up_bytes: np.ndarray
    round_trip_down_bytes: np.ndarray
    edge_param_bytes: np.ndarray
    uses_network: np.ndarray
    names: tuple[str, ...]

    @property
    def num_cuts(self) -> int:
        return int(self.edge_ms.shape[0])

    def latency_ms(self, up_mbps: float, down_mbps: float, one_way_ms: float) -> np.ndarray:
        """Latency of every cut at constant bandwidth and one-way delay (no queueing)."""
        if up_mbps < 0 or down_mbps < 0 or one_way_ms < 0:
            raise ValueError(f"bandwidth and delay must be >= 0, got up={up_mbps} down={down_mbps} delay={one_way_ms}")
        with np.errstate(divide="ignore", invalid="ignore"):
            up_s = _seconds(self.up_bytes + self.round_trips * self.round_trip_up_bytes, up_mbps)
            down_s = _seconds(self.down_bytes + self.round_trips * self.round_trip_down_bytes, down_mbps)
        net_ms = (up_s + down_s) * 1e3 + np.where(self.uses_network, 2 * one_way_ms * (1 + self.round_trips), 0.0)
        return self.edge_ms + self.cloud_ms + net_ms


def cut_wire_bytes(profile: Profile) -> np.ndarray:
    """Bytes one inference moves across each cut, both directions and every round trip (0 for edge-only)."""
    return np.array(
        [
            c.up_bytes + c.down_bytes + c.round_trips * (c.round_trip_up_bytes + c.round_trip_down_bytes)
            for c in profile.cuts
        ],
        dtype=np.float64,
    )


def executor_overhead_ms(profile: Profile, *, edge_side: bool) -> np.ndarray:
    """Per cut: the real executor's calibrated overhead on ``profile``'s device (``executor.calibration``), charged
    beside its blocks: the per-call ``overhead_ms`` wherever the device takes part in the inference (the edge always,
    the cloud on network cuts) plus ``overhead_ms_per_mb`` times the bytes the cut moves (network cuts only).
    Zeros for a Profile without calibration (catalogue, roofline)."""
    n = profile.num_cuts
    uses_network = np.array([c.uses_network for c in profile.cuts], dtype=bool)
    per_call = np.asarray(profile.overhead_ms, dtype=np.float64) if profile.overhead_ms else np.zeros(n)
    if not edge_side:
        per_call = np.where(uses_network, per_call, 0.0)
    return per_call + np.where(uses_network, cut_wire_bytes(profile) * 1e-6 * profile.overhead_ms_per_mb, 0.0)


def block_scale(profile: Profile) -> np.ndarray:
    """Per cut: the calibrated factor on the device's block time at that cut (``executor.calibration``: the executor's
    calls run colder than the profiler's back-to-back forwards); ones for a Profile without one."""
    if not profile.block_ms_scale:
        return np.ones(profile.num_cuts)
    return np.asarray(profile.block_ms_scale, dtype=np.float64)


def message_overhead_bytes(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Per cut: the calibrated bytes every message carries on the link beyond its payload (``executor.calibration``),
    edge -> cloud and cloud -> edge; zeros for the edge-only cut and for a Profile without calibration."""
    n = profile.num_cuts
    uses_network = np.array([c.uses_network for c in profile.cuts], dtype=bool)
    up = np.asarray(profile.overhead_up_bytes, dtype=np.float64) if profile.overhead_up_bytes else np.zeros(n)
    down = np.asarray(profile.overhead_down_bytes, dtype=np.float64) if profile.overhead_down_bytes else np.zeros(n)
    return np.where(uses_network, up, 0.0), np.where(uses_network, down, 0.0)


def _seconds(nbytes: np.ndarray, mbps: float) -> np.ndarray:
    if mbps == 0:
        return np.where(nbytes > 0, np.inf, 0.0)
    return nbytes * BITS_PER_BYTE / (mbps * MBIT)


def cut_table(edge: Profile, cloud: Profile) -> CutTable:
    """Combine an edge-device and a cloud-device Profile of the same model into per-cut costs."""
    if (edge.model_id, edge.preset, edge.block_names) != (cloud.model_id, cloud.preset, cloud.block_names):
        raise ProfileError(
            f"edge profile {edge.model_id}/{edge.preset} and cloud profile {cloud.model_id}/{cloud.preset} "
            "describe different block chains"
        )
    if len(edge.cuts) != len(cloud.cuts):
        raise ProfileError(f"edge profile has {len(edge.cuts)} cuts, cloud profile {len(cloud.cuts)}")
    e_ms = np.asarray(edge.block_ms, dtype=np.float64)
    c_ms = np.asarray(cloud.block_ms, dtype=np.float64)
    params = np.asarray(edge.block_param_bytes or (0,) * edge.num_blocks, dtype=np.float64)
    idx = range(edge.num_cuts)
    edge_ms = np.array([e_ms[list(edge.edge_blocks(i))].sum() for i in idx]) * block_scale(edge)
    cloud_ms = np.array([c_ms[list(edge.cloud_blocks(i))].sum() for i in idx]) * block_scale(cloud)
    if edge.codec_ms:  # payload encode/decode time (executor.wire_config), charged to the side that spends it
        edge_ms = edge_ms + np.asarray(edge.codec_ms, dtype=np.float64)
    if cloud.codec_ms:
        cloud_ms = cloud_ms + np.asarray(cloud.codec_ms, dtype=np.float64)
    edge_ms = edge_ms + executor_overhead_ms(edge, edge_side=True)
    cloud_ms = cloud_ms + executor_overhead_ms(cloud, edge_side=False)
    edge_params = np.array([params[list(edge.edge_blocks(i))].sum() for i in idx])
    cuts = edge.cuts
    up_extra, down_extra = message_overhead_bytes(edge)  # every message, the first exchange and each round trip
    trips = np.array([c.round_trips for c in cuts], dtype=np.float64)
    return CutTable(
        edge_ms=edge_ms,
        cloud_ms=cloud_ms,
        up_bytes=np.array([c.up_bytes for c in cuts], dtype=np.float64) + up_extra,
        down_bytes=np.array([c.down_bytes for c in cuts], dtype=np.float64) + down_extra,
        round_trips=trips,
        round_trip_up_bytes=np.array([c.round_trip_up_bytes for c in cuts], dtype=np.float64)
        + np.where(trips > 0, up_extra, 0.0),
        round_trip_down_bytes=np.array([c.round_trip_down_bytes for c in cuts], dtype=np.float64)
        + np.where(trips > 0, down_extra, 0.0),
        edge_param_bytes=edge_params,
        uses_network=np.array([c.uses_network for c in cuts], dtype=bool),
        names=tuple(c.name or f"k={c.k}" for c in cuts),
    )
