"""Fixtures of the ecc_env tests: a hand-built 3-block Profile pair, constant traces, a tiny known stream."""

from __future__ import annotations

import numpy as np
import pytest

from ecc_env.streams import ObservationStream
from executor.profile import CutSpec, Profile
from traces import synthetic
from traces.traceset import TraceSet

MB = 1_000_000

# Edge block times (ms), cloud block times (ms), parameter bytes per block.
EDGE_MS = (10.0, 20.0, 30.0)
CLOUD_MS = (1.0, 2.0, 3.0)
PARAMS = (100 * MB, 200 * MB, 300 * MB)
# Cut k: (up_bytes, down_bytes, round_trips, rt_up, rt_down). k=0 raw upload, k=3 edge-only.
CUTS = (
    (100_000, 56, 0, 0, 0),
    (50_000, 56, 0, 0, 0),
    (20_000, 56, 2, 1_000, 10),
    (0, 0, 0, 0, 0),
)


def make_profiles(edge_ms=EDGE_MS, cloud_ms=CLOUD_MS, memory_bytes=0, cuts=CUTS) -> tuple[Profile, Profile]:
    specs = tuple(
        CutSpec(
            k=k, up_bytes=u, down_bytes=d, round_trips=r, round_trip_up_bytes=ru, round_trip_down_bytes=rd, name=f"k{k}"
        )
        for k, (u, d, r, ru, rd) in enumerate(cuts)
    )
    common = dict(
        model_id="toy",
        preset="tiny",
        dtype="float32",
        source="measured",
        block_names=("a", "b", "c"),
        cuts=specs,
        block_param_bytes=PARAMS,
    )
    edge = Profile(device="edge", block_ms=tuple(edge_ms), device_memory_bytes=memory_bytes, **common)
    cloud = Profile(device="cloud", block_ms=tuple(cloud_ms), **common)
    return edge, cloud


@pytest.fixture
def profiles() -> tuple[Profile, Profile]:
    return make_profiles()


def constant_set(up=10.0, down=20.0, rtt=40.0, duration_s=600.0) -> TraceSet:
    return TraceSet.from_traces([synthetic.constant(up, down, rtt_ms=rtt, duration_s=duration_s)], "const")


@pytest.fixture
def const_traces() -> TraceSet:
    return constant_set()


def known_stream(num_steps: int = 20, hw: int = 16) -> ObservationStream:
    """A stream with reference action a[t] = (t/10, -t/20) and smooth frames."""
    t = np.arange(num_steps, dtype=np.float64)
    frames = np.zeros((num_steps, hw, hw, 3), dtype=np.uint8)
    for i in range(num_steps):
        frames[i, :, : min(i, hw)] = 200
    q = np.stack([np.sin(0.1 * t), np.cos(0.1 * t)], axis=1)
    return ObservationStream(
        frames=frames,
        joint_pos=q,
        joint_vel=np.gradient(q, 0.1, axis=0),
        joint_torque=np.ones_like(q),
        ref_actions=np.stack([t / 10.0, -t / 20.0], axis=1),
        phases=np.zeros(num_steps, dtype=np.int64),
        dt_s=0.1,
        name="known",
    )


@pytest.fixture
def stream() -> ObservationStream:
    return known_stream()


class Toy:
    """The helpers above, handed to tests as one fixture (test modules cannot import conftest)."""

    MB = MB
    EDGE_MS = EDGE_MS
    CLOUD_MS = CLOUD_MS
    PARAMS = PARAMS
    CUTS = CUTS
    make_profiles = staticmethod(make_profiles)
    constant_set = staticmethod(constant_set)
    known_stream = staticmethod(known_stream)


@pytest.fixture
def toy() -> type[Toy]:
    return Toy
