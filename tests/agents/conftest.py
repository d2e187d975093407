"""Fixtures of the agents tests: hand-built Profile pairs, synthetic traces, small envs (profile backend)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import ecc_env
from ecc_env.latency import DeadlineConfig
from executor.profile import CutSpec, Profile
from traces import synthetic
from traces.traceset import TraceSet

MB = 1_000_000


def two_cut_profiles(
    edge_ms: float = 50.0, cloud_ms: float = 5.0, up_bytes: int = 125_000, down_bytes: int = 100
) -> tuple[Profile, Profile]:
    """One block: cut 0 uploads ``up_bytes`` (cloud-only), cut 1 is edge-only."""
    cuts = (CutSpec(k=0, up_bytes=up_bytes, down_bytes=down_bytes, name="cloud_only"), CutSpec(k=1, name="edge_only"))
    common = dict(
        model_id="toy",
        preset="one",
        dtype="float32",
        source="measured",
        block_names=("all",),
        cuts=cuts,
        block_param_bytes=(100 * MB,),
    )
    return (
        Profile(device="edge", block_ms=(edge_ms,), **common),
        Profile(device="cloud", block_ms=(cloud_ms,), **common),
    )


def three_block_profiles() -> tuple[Profile, Profile]:
    """Three blocks and a middle cut with extra round trips (as ecc_env's tests use)."""
    cuts = (
        CutSpec(k=0, up_bytes=100_000, down_bytes=56, name="k0"),
        CutSpec(k=1, up_bytes=50_000, down_bytes=56, name="k1"),
        CutSpec(
            k=2,
            up_bytes=20_000,
            down_bytes=56,
            round_trips=2,
            round_trip_up_bytes=1_000,
            round_trip_down_bytes=10,
            name="k2",
        ),
        CutSpec(k=3, name="k3"),
    )
    common = dict(
        model_id="toy",
        preset="tiny",
        dtype="float32",
        source="measured",
        block_names=("a", "b", "c"),
        cuts=cuts,
        block_param_bytes=(100 * MB, 200 * MB, 300 * MB),
    )
    return (
        Profile(device="edge", block_ms=(20.0, 30.0, 40.0), **common),
        Profile(device="cloud", block_ms=(1.0, 2.0, 3.0), **common),
    )


def alternating_set(
    high_mbps: float = 100.0,
    low_mbps: float = 2.0,
    block_s: float = 4.0,
    blocks: int = 40,
    seed: int = 0,
    rtt_ms: float = 20.0,
    n: int = 3,
) -> TraceSet:
    """Traces switching between a fast and a slow uplink in blocks of random length around ``block_s``."""
    traces = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        levels = np.where(np.arange(blocks) % 2 == 0, high_mbps, low_mbps) * rng.uniform(0.8, 1.2, blocks)
        lengths = rng.uniform(0.5, 1.5, blocks) * block_s
        t = np.repeat(levels, np.maximum(np.round(lengths / 0.5).astype(int), 1))
        traces.append(synthetic.step(t, 0.5, down_levels_mbps=t * 2, rtt_ms=rtt_ms, name=f"alt/alt-{i}"))
    return TraceSet.from_traces(traces, "alt")


def make_env(profiles: tuple[Profile, Profile], trace_set: TraceSet, **kw):
    kw.setdefault("trace_split", "all")
    kw.setdefault("episode_s", 3.0)
    kw.setdefault("deadline", DeadlineConfig(300.0))
    return gym.make(ecc_env.ENV_ID, edge_profile=profiles[0], cloud_profile=profiles[1], trace_set=trace_set, **kw)


def tiny_train_config(run_dir: object, run_name: str, **changes: object):
    """A TrainConfig for a seconds-long PPO run (one env, one evaluation episode of 2 s); ``changes`` override."""
    from agents.training import TrainConfig

    kw: dict = dict(
        total_timesteps=256, n_envs=1, n_steps=128, batch_size=64, eval_every_steps=256, eval_episodes=1, episode_s=2.0
    )
    return TrainConfig(**{**kw, "run_dir": str(run_dir), "run_name": run_name, **changes})


class Toy:
    """The helpers above as one fixture (test modules cannot import conftest)."""

    two_cut_profiles = staticmethod(two_cut_profiles)
    three_block_profiles = staticmethod(three_block_profiles)
    alternating_set = staticmethod(alternating_set)
    make_env = staticmethod(make_env)
    tiny_train_config = staticmethod(tiny_train_config)


@pytest.fixture(scope="session")
def toy() -> type[Toy]:
    return Toy
