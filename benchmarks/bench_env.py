"""Env steps per second with the ``profile`` latency backend (random actions, one process).

    .venv/bin/python benchmarks/bench_env.py                 # 20,000 steps x 3 runs, median
    .venv/bin/python benchmarks/bench_env.py --steps 50000 --runs 5

Profiles: roofline OpenVLA ``full`` on Jetson AGX Orin (edge) + A100 (cloud) (87 cuts); traces: the embedded
default set's train split; streams: the procedural default. Actions are drawn up front from a seeded generator so
the figure is the env's own cost (resets on truncation included). Reported: the bare env class (what SB3's
DummyVecEnv steps) and ``gymnasium.make`` with its default wrappers (order enforcing + passive env checker).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import ecc_env  # noqa: E402
from ecc_env.backends import ServerLoadConfig  # noqa: E402
from ecc_env.split_env import EdgeCloudSplitEnv, default_profiles  # noqa: E402


def run(env, actions: np.ndarray) -> tuple[float, int]:
    """Steps/s over ``len(actions)`` steps, and the number of resets."""
    env.reset(seed=0)
    resets = 0
    step = env.step
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = step(a)
        if term or trunc:
            env.reset()
            resets += 1
    dt = time.perf_counter() - t0
    return len(actions) / dt, resets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000, help="steps per run")
    p.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    p.add_argument("--server-queue", type=float, default=1.0, help="mean server queue length")
    args = p.parse_args(argv)
    edge, cloud = default_profiles()
    kwargs = dict(server_load=ServerLoadConfig(mean_queue_len=args.server_queue))
    env = EdgeCloudSplitEnv(edge, cloud, **kwargs)
    rng = np.random.default_rng(0)
    actions = np.stack([rng.integers(env.num_cuts, size=args.steps), rng.integers(2, size=args.steps)], axis=1)
    print(
        f"profiles: {edge.model_id}/{edge.preset} on {edge.device} + {cloud.device}, {env.num_cuts} cuts; "
        f"traces: {env.trace_set.name} ({len(env.trace_set)}); {args.steps} random-action steps x {args.runs}"
    )
    for label, make in (
        ("EdgeCloudSplitEnv (bare)", lambda: EdgeCloudSplitEnv(edge, cloud, **kwargs)),
        (
            "gymnasium.make (wrapped)",
            lambda: gym.make(ecc_env.ENV_ID, edge_profile=edge, cloud_profile=cloud, **kwargs),
        ),
    ):
        e = make()
        rates, resets = [], 0
        for _ in range(args.runs):
            r, resets = run(e, actions)
            rates.append(r)
        print(
            f"{label:<28} median {statistics.median(rates):>9,.0f} steps/s   runs: "
            + ", ".join(f"{r:,.0f}" for r in rates)
            + f"   ({resets} resets per run)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
