"""RAPID-style table: edge-only, a vision-triggered skip (raw frame difference), RAPID skip (kinematic importance +
noise-robust visual change) and PPO with skip, mean / p95 step latency and mean action deviation, on clean
observation streams and with injected visual noise (lighting flicker, sensor noise, camera shake).

Setup: ``full`` pi0 (roofline) on Orin+A100 by default, held-out (test split) embedded 4G/5G/WiFi traces, procedural
pick-and-place streams (``ecc_env.streams.procedural_stream``) and their noisy copies
(``inject_visual_noise``); vision and RAPID take their cut from StaticBestCut, PPO decides both. PPO is trained here
on the embedded training split with clean streams only (``agents.training.train``, ``--timesteps``), or loaded with
``--policy``. Every planner runs the same episodes (seeds, trace segments, stream offsets) in both conditions.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rapid_table.py [--timesteps 60000] [--episodes 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pi0")
    p.add_argument("--edge", default="orin")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--episode-s", type=float, default=30.0)
    p.add_argument("--timesteps", type=int, default=60_000, help="PPO budget when no --policy is given")
    p.add_argument("--policy", default="", help="policy.zip trained for this model/devices (skips training)")
    p.add_argument("--flicker", type=float, default=0.15, help="std of the flicker brightness gain")
    p.add_argument("--sensor-sigma", type=float, default=6.0, help="per-pixel noise std (0-255)")
    p.add_argument("--shake-px", type=int, default=2, help="camera shake (pixels)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from agents.artifact import PolicyExpectation, load_policy
    from agents.evaluation import EvalConfig, make_eval_env
    from agents.guard import GuardedPolicy
    from agents.heuristics import EdgeOnly, HeuristicPlanner, RapidSkip
    from agents.planner import BandwidthPrior, PlannerContext
    from agents.report import build_report, run_planners
    from agents.training import TrainConfig, quick, train
    from agents.vision_skip import VisionSkip
    from ecc_env.streams import VisualNoiseConfig, inject_visual_noise, procedural_stream
    from executor.roofline import roofline_profile_for
    from traces.embedded import embedded_default_set

    t_start = time.perf_counter()
    edge, cloud = roofline_profile_for(args.model, "full", args.edge), roofline_profile_for(args.model, "full", "a100")
    full = embedded_default_set()
    split = full.split(0)
    test = split.test.filter(lambda t: t.name.split("/")[1] in ("4g", "5g", "wifi6", "wifi7"))
    policy = args.policy
    train_s = 0.0
    if not policy:
        t0 = time.perf_counter()
        cfg = replace(quick(TrainConfig(model=args.model, edge=args.edge, run_dir=tempfile.mkdtemp(prefix="rapid-"),
                                        run_name="ppo")),
                      total_timesteps=args.timesteps, episode_s=20.0, eval_every_steps=max(args.timesteps // 8, 512),
                      eval_episodes=4)
        res = train(cfg, trace_set=full, profiles=(edge, cloud))
        policy = str(res.policy_path)
        train_s = time.perf_counter() - t0
    n_steps = int(args.episode_s / 0.1) + 100
    clean = [procedural_stream(100 + i, n_steps) for i in range(4)]
    noise = VisualNoiseConfig(flicker_gain=args.flicker, flicker_prob=0.3, sensor_sigma=args.sensor_sigma,
                              shake_px=args.shake_px)
    noisy = [inject_visual_noise(s, noise, seed=200 + i) for i, s in enumerate(clean)]
    seeds = list(range(3000, 3000 + args.episodes))
    ecfg = EvalConfig(episode_s=args.episode_s)
    prior = BandwidthPrior.from_trace_set(split.train)
    results = {}
    for cond, streams in (("clean", clean), ("visual noise", noisy)):
        env = make_eval_env(edge, cloud, test, ecfg, streams=streams)
        ctx = PlannerContext.from_env(env, prior=prior)
        ppo = GuardedPolicy(load_policy(policy, PolicyExpectation.for_env(env)), HeuristicPlanner(ctx))
        planners = {"edge-only": EdgeOnly(ctx), "vision-triggered skip": VisionSkip(ctx), "RAPID skip": RapidSkip(ctx),
                    "PPO with skip": ppo}
        results[cond] = {r["planner"]: r for r in build_report(run_planners(planners, env, seeds)).rows}
        env.close()
    print(f"{args.model} full on {args.edge}+a100 (roofline), {len(test)} held-out embedded traces (4G/5G/WiFi), "
          f"{args.episodes} episodes x {args.episode_s:g} s, 4 procedural pick-and-place streams; noise: flicker "
          f"{args.flicker}, sensor sigma {args.sensor_sigma}, shake {args.shake_px} px")
    print(f"PPO: {policy}" + (f" (trained here, {args.timesteps} steps, {train_s:.0f} s)" if train_s else ""))
    head = (f"{'planner':<24}{'clean ms':>9}{'p95':>8}{'skip':>6}{'dev':>8}   {'noise ms':>9}{'p95':>8}{'skip':>6}"
            f"{'dev':>8}{'x vision (noise)':>18}{'fallbacks':>10}")
    print(head)
    print("-" * len(head))
    vis_noise = results["visual noise"]["vision-triggered skip"]["mean_latency_ms"]
    for name in results["clean"]:
        c, n = results["clean"][name], results["visual noise"][name]
        fb = "-" if n["fallbacks"] is None else f"{c['fallbacks']}/{n['fallbacks']}"
        print(f"{name:<24}{c['mean_latency_ms']:>9.1f}{c['p95_latency_ms']:>8.1f}{c['skip_rate']:>6.2f}"
              f"{c['mean_deviation']:>8.4f}   {n['mean_latency_ms']:>9.1f}{n['p95_latency_ms']:>8.1f}"
              f"{n['skip_rate']:>6.2f}{n['mean_deviation']:>8.4f}{vis_noise / n['mean_latency_ms']:>18.2f}{fb:>10}")
    print(f"\nlatency: observation to actions (ms); dev: mean |executed - reference action|; "
          f"wall {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
