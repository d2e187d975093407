"""`ecc train`: train a PPO policy (the same function as ``python train.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from agents.cliargs import add_dataclass_flags
from agents.training import EnvWorkersLost, TrainConfig, quick, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecc train", description="Train MaskablePPO on recorded bandwidth traces.")
    add_dataclass_flags(p, TrainConfig, {"net_arch": int})
    p.add_argument("--quick", action="store_true", help="tiny budget for tests and the demo (~4k steps)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: envs in this process (default); ray: envs on Ray actors (pip install 'vla-ecc[ray]')")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray env worker actors with --engine ray (default 2)")
    p.add_argument("--ray-address", "--address", dest="address", default=None,
                   help="Ray to use with --engine ray: 'local' starts a local instance; an address attaches to that "
                        "cluster (default: $RAY_ADDRESS if set, else local)")
    p.add_argument("--max-worker-restarts", type=int, default=3,
                   help="with --engine ray: dead env workers replaced before training stops early (default 3)")
    return p


def config_from_args(argv: Sequence[str]) -> TrainConfig:
    args = vars(build_parser().parse_args(list(argv)))
    q = args.pop("quick")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k in fields}
    cfg = TrainConfig(**kw)
    return quick(cfg) if q else cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(argv)
        engine = build_parser().parse_args(argv)
        if engine.engine == "ray":
            from agents.ray_training import RayTrainConfig, train_on_ray

            ray_config = RayTrainConfig(num_workers=engine.ray_workers, address=engine.address,
                                        max_worker_restarts=engine.max_worker_restarts)
    except ValueError as e:
        print(f"ecc train: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"ecc train: --engine ray needs Ray (pip install 'vla-ecc[ray]'): {e}", file=sys.stderr)
        return 2
    try:
        res = train_on_ray(cfg, ray_config) if engine.engine == "ray" else train(cfg)
    except ValueError as e:  # bad traces or trace selection (empty split, unknown family, ...)
        print(f"ecc train: {e}", file=sys.stderr)
        return 2
    except (EnvWorkersLost, ConnectionError) as e:  # Ray: no cluster, or the env workers lost before any step
        print(f"ecc train: {e}", file=sys.stderr)
        return 1
    print(f"run folder:        {res.run_dir}")
    print(f"policy:            {res.policy_path}")
    print(f"timesteps:         {res.timesteps}")
    print(f"best val return:   {res.best_val_return:.2f} (heuristic {res.heuristic_val_return:.2f})")
    print(f"wall time:         {res.wall_s:.0f} s")
    from executor.wire_config import WireConfig
    from traces.rtt import rtt_rule_label

    print(f"wire, RTT:         {WireConfig.parse(cfg.wire).label}; {rtt_rule_label(cfg.rtt_ms)}")
    if res.stopped_early:
        print(f"ecc train: stopped early: {res.stopped_early}; the policy is the best one so far", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
