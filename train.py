"""The training recipe on one page: `python train.py [ARGS]` trains the same policy as `ecc train [ARGS]`.

Every step is a function of ``agents.training`` (``agents.training.train`` runs the same steps, with hooks for
custom trace sets, Profiles and Ray envs); ``python train.py --help`` lists every setting of ``TrainConfig``.

Examples:
    python train.py --quick                      # seconds: a smoke run
    python train.py --model openvla --edge thor  # the default budget (<= 10 min on 2 cores)
    python train.py --traces ../shared/traces/lumos5g_mmwave ../shared/traces/mahimahi_cellular_us
    python train.py --closed-loop-finetune runs/ppo-openvla --total-timesteps 20000  # continue in the closed loop
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

from agents import training
from agents.cliargs import parse_config
from agents.training import TrainConfig, TrainResult


@dataclasses.dataclass(frozen=True)
class Args(TrainConfig):
    """Train MaskablePPO on recorded bandwidth traces (the settings of agents.training.TrainConfig)."""

    quick: bool = False  # tiny budget for a smoke run (~4k steps)


def run(cfg: TrainConfig) -> TrainResult:
    """Train one policy per ``cfg``: its run folder holds config.json, learning_curve.csv and the policy artifact."""
    import torch

    t_start = time.perf_counter()
    torch.set_num_threads(1)  # the env step is ~50 us: one thread is fastest on a shared CPU

    # 1. Profiles: roofline per-block latency and bytes of the model on the edge and cloud devices
    edge, cloud = training.profiles_for(cfg)
    overrides = training.env_overrides_for(cfg, edge, cloud)  # candidate cuts, MetaWorld streams

    # 2. Traces: the embedded set (+ --traces), split train/val/test by seed; the test side is never touched here
    traces = training.training_traces(cfg)
    run_dir = training.start_run(cfg, traces, overrides)  # run folder + config.json

    # 3. Envs: n_envs EdgeCloudSplitEnv copies on rescaled training traces, one validation env
    envs = training.make_envs(cfg, edge, cloud, traces, overrides)

    # 4. Callbacks: validation on fixed seeds every eval_every_steps, the best model kept; the heuristic's baseline
    callback, heuristic_return = training.make_validation(cfg, envs, run_dir)

    # 5. Model: MaskablePPO with the env's action masks (optionally warm-started from the heuristic)
    model = training.make_model(cfg, envs.venv, run_dir)
    if cfg.warm_start == "heuristic":
        training.warm_start_from_heuristic(cfg, model, envs, callback)
    stopped_early = training.learn(cfg, model, callback, envs.venv)

    # 6. Save: the best model as a policy artifact (policy.safetensors + policy.json) and the learning curve
    policy_path = training.save_run(cfg, run_dir, edge, cloud, traces, envs, callback, heuristic_return)
    return training.finish(run_dir, policy_path, model, callback, heuristic_return, t_start, stopped_early)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, train, say where the policy went; exit 2 on bad traces or settings."""
    args = parse_config(Args, sys.argv[1:] if argv is None else argv, prog="python train.py")
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    cfg = training.quick(TrainConfig(**fields)) if args.quick else TrainConfig(**fields)
    try:
        if cfg.closed_loop_finetune:  # PPO continues from that run in the closed loop (agents.closed_loop_finetune)
            from agents.artifact import PolicyLoadError
            from agents.closed_loop_finetune import finetune_closed_loop

            try:
                ft = finetune_closed_loop(cfg)
            except PolicyLoadError as e:
                raise ValueError(str(e)) from e
            print(f"policy {ft.policy_path}: {ft.timesteps} closed-loop steps in {ft.wall_s:.0f} s")
            if ft.best_step is not None:
                print(f"selected: the validation at step {ft.best_step}; last model: {ft.last_policy_path}")
            return 0
        res = run(cfg)
    except ValueError as e:  # bad traces or trace selection (empty split, unknown family, ...)
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    print(
        f"policy {res.policy_path}: best validation return {res.best_val_return:.2f} "
        f"(heuristic {res.heuristic_val_return:.2f}), {res.timesteps} steps in {res.wall_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
