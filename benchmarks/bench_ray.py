"""Ray engine figures on this machine (loopback, local Ray instance).

1. Serving: throughput (requests/s) and p95 client latency (ms) with the single-process server and with 1 and 2
   Ray Serve replicas, for 1, 4 and 8 concurrent edge clients; every client sends back-to-back split requests at
   ``--cut`` for ``--seconds`` (after one warm-up request each). Medians of ``--repeats`` runs.
2. Training environments: env steps/s of ``RayVecEnv`` with 1 and 2 Ray workers (``--n-envs`` envs, random valid
   actions), beside DummyVecEnv in this process.

    python benchmarks/bench_ray.py --model pi0 --preset small --seconds 5
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _clients_run(edge, url: str, n_clients: int, cut: int, seconds: float) -> tuple[float, float, int]:
    """(requests/s, p95 latency ms, errors) of n_clients sending back-to-back requests for ``seconds``."""
    from bench_fleet import fleet_run  # the same client loop as the fleet benchmark (this folder is on sys.path)

    r = fleet_run(edge, url, n_clients, cut, seconds)
    return r["throughput_rps"], r["p95_ms"], int(r["errors"])


def bench_serving(args: argparse.Namespace) -> None:
    import ray
    import torch

    from executor.models import build_model
    from executor.ray_serve import RayServeConfig, RayServing
    from executor.server import CloudServer, ServerConfig

    torch.set_num_threads(1)
    edge = build_model(args.model, args.preset, seed=0)
    clients = (1, 4, 8)
    rows = []

    def measure(label: str, url: str) -> None:
        for n in clients:
            runs = [_clients_run(edge, url, n, args.cut, args.seconds) for _ in range(args.repeats)]
            rps = statistics.median(r[0] for r in runs)
            p95 = statistics.median(r[1] for r in runs)
            err = sum(r[2] for r in runs)
            rows.append((label, n, rps, p95, err))
            print(f"  {label:<16} {n:>2} clients: {rps:8.1f} req/s  p95 {p95:8.1f} ms  errors {err}", flush=True)

    local = CloudServer(build_model(args.model, args.preset, seed=0), ServerConfig(port=0)).start()
    try:
        measure("single process", local.url)
    finally:
        local.stop()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=200_000_000,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    try:
        for replicas in (1, 2):
            rc = RayServeConfig(
                replicas=replicas, num_cpus_per_replica=min(1.0, os.cpu_count() / 2), app_name=f"bench-{replicas}"
            )
            with RayServing(args.model, args.preset, ServerConfig(port=0), rc, seed=0) as serving:
                measure(f"ray {replicas} replica(s)", serving.url)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    print(
        f"\nserving {args.model}/{args.preset} at cut {args.cut}, {args.seconds:g} s per point, median of "
        f"{args.repeats}; {os.cpu_count()} CPU cores"
    )
    print("| engine | clients | throughput (req/s) | p95 latency (ms) | errors |\n|---|---|---|---|---|")
    for label, n, rps, p95, err in rows:
        print(f"| {label} | {n} | {rps:.1f} | {p95:.1f} | {err} |")


def bench_envs(args: argparse.Namespace) -> None:
    import numpy as np
    import ray
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ray_training import RayTrainConfig, RayVecEnv
    from agents.training import TrainConfig, load_trace_set, make_env, profiles_for

    cfg = TrainConfig(model=args.model if args.model in ("openvla", "pi0") else "pi0", preset="full")
    edge, cloud = profiles_for(cfg)
    fns = [functools.partial(make_env, edge, cloud, load_trace_set(cfg), cfg)] * args.n_envs

    def steps_per_s(venv) -> float:
        rng = np.random.default_rng(0)
        nvec = venv.action_space.nvec
        venv.seed(0)
        venv.reset()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            masks = np.stack(venv.env_method("action_masks"))
            actions = np.array(
                [[rng.choice(np.flatnonzero(p)) for p in np.split(m, np.cumsum(nvec)[:-1])] for m in masks]
            )
            venv.step(actions)
            n += venv.num_envs
        rate = n / (time.perf_counter() - t0)
        venv.close()
        return rate

    rows = [
        ("DummyVecEnv (this process)", statistics.median(steps_per_s(DummyVecEnv(fns)) for _ in range(args.repeats)))
    ]
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=100_000_000,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    try:
        for w in (1, 2):
            rc = RayTrainConfig(num_workers=w, num_cpus_per_worker=1.0)
            rate = statistics.median(steps_per_s(RayVecEnv(fns, rc)) for _ in range(args.repeats))
            rows.append((f"RayVecEnv, {w} worker(s)", rate))
    finally:
        ray.shutdown()
    print(
        f"\nenv steps/s, {args.n_envs} envs ({cfg.model}/full profile backend), {args.seconds:g} s per point, median of "
        f"{args.repeats}; {os.cpu_count()} CPU cores"
    )
    print("| vec env | env steps/s |\n|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pi0")
    p.add_argument("--preset", default="small")
    p.add_argument("--cut", type=int, default=0, help="cut index of the split requests (default 0: cloud only)")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time per point")
    p.add_argument("--repeats", type=int, default=1, help="runs per point (median)")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--only", choices=("serving", "envs"), default=None)
    args = p.parse_args(argv)
    if args.only in (None, "serving"):
        bench_serving(args)
    if args.only in (None, "envs"):
        bench_envs(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
