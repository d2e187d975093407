"""`ecc train`: train a PPO policy (the same function as ``python train.py``)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Annotated, Literal

import tyro

from agents.cliargs import parse_config
from agents.training import EnvWorkersLost, TrainConfig, quick, train


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """Train MaskablePPO on recorded bandwidth traces."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=TrainConfig)
    quick: bool = False  # tiny budget for tests and the demo (~4k steps)
    engine: Literal["local", "ray"] = "local"  # local: envs in this process; ray: envs on Ray actors (vla-ecc[ray])
    ray_workers: int = 2  # Ray env worker actors with --engine ray
    ray_address: Annotated[str | None, tyro.conf.arg(aliases=("--address",))] = None
    """Ray for --engine ray: 'local' starts one here; an address attaches to it (None: $RAY_ADDRESS, else local)"""
    max_worker_restarts: int = 3  # with --engine ray: dead env workers replaced before training stops early

    @property
    def train_config(self) -> TrainConfig:
        """The TrainConfig asked for, ``--quick`` applied."""
        return quick(self.config) if self.quick else self.config


def parse_args(argv: Sequence[str]) -> TrainArgs:
    """The command line of ``ecc train`` (and ``python train.py``)."""
    return parse_config(TrainArgs, argv, prog="ecc train")


def config_from_args(argv: Sequence[str]) -> TrainConfig:
    """The TrainConfig a command line asks for (``--quick`` applied)."""
    return parse_args(argv).train_config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    engine = parse_args(argv)
    cfg = engine.train_config
    try:
        if engine.engine == "ray":
            from agents.ray_training import RayTrainConfig, train_on_ray

            ray_config = RayTrainConfig(
                num_workers=engine.ray_workers,
                address=engine.ray_address,
                max_worker_restarts=engine.max_worker_restarts,
            )
    except ValueError as e:
        print(f"ecc train: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"ecc train: --engine ray needs Ray (pip install 'vla-ecc[ray]'): {e}", file=sys.stderr)
        return 2
    if cfg.closed_loop_finetune:  # PPO continues from that run in the closed loop (agents.closed_loop_finetune)
        from agents.artifact import PolicyLoadError
        from agents.closed_loop_finetune import finetune_closed_loop

        try:
            ft = finetune_closed_loop(cfg)
        except (ValueError, PolicyLoadError) as e:
            print(f"ecc train: {e}", file=sys.stderr)
            return 2
        print(f"policy:            {ft.policy_path}")
        print(f"closed-loop steps: {ft.timesteps} in {ft.wall_s:.0f} s")
        if ft.best_step is not None:
            print(f"selected:          validation at step {ft.best_step} (finetune_validation.csv)")
            print(f"last model:        {ft.last_policy_path}")
        return 0
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
