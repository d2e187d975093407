"""Value of information: how much of PPO's gap to the hindsight Oracle a perfect bandwidth sensor or a perfect
short-term forecast would close.

For each MODEL:EDGE:FAMILY combo, three PPO policies are trained with the same config and seed (train.py's
defaults on ``--traces``), differing only in what they observe (``ecc_env.privileged``):

- ``probes``: the regular observation (what the edge runtime has: probe and transfer samples);
- ``+now``: plus the trace's true uplink rate at the decision time (a perfect bandwidth sensor);
- ``+now+ahead``: plus the true harmonic-mean uplink rate over the next ``--horizon-s`` (a perfect forecast);
- ``hindsight`` (only when asked for by ``--variants``): plus what the Oracle knows of the actions, the held
  action's true deviation from the reference action over the next ``--deviation-steps`` steps;
- ``all`` (likewise): the fields of ``+now+ahead`` and ``hindsight`` together.

They are evaluated with the heuristic and the Oracle on the family's TEST traces (the split ``ecc eval --traces``
uses; never trained or tuned on). The privileged policies cannot be deployed (``load_policy`` refuses them): they
bound what better measurement or forecasting could buy. Run folders
``<runs>/foresight-<variant>-<model>-<edge>-s<seed>`` are reused when they hold a policy.

    python benchmarks/bench_foresight.py --runs /tmp/foresight --combos pi0:orin:5G openvla:orin:mahimahi
    python benchmarks/bench_foresight.py --runs /tmp/foresight --combos pi0:orin:5G --hedge --variants probes hindsight

``--hedge`` trains and evaluates every planner with hedged execution (``train.py --hedge``); its run folders carry
``-hedge`` in their names, and a budget other than 1M steps of 64x64 (``--timesteps``, ``--net-arch``) its size.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("probes", "now", "ahead", "hindsight", "all")


def _privileged(variant: str, horizon_s: float, deviation_steps: int = 2):  # type: ignore[no-untyped-def]
    from ecc_env.privileged import PrivilegedConfig

    return {
        "probes": None,
        "now": PrivilegedConfig(),
        "ahead": PrivilegedConfig(horizon_s=horizon_s),
        "hindsight": PrivilegedConfig(now=False, held_deviation_steps=deviation_steps),
        "all": PrivilegedConfig(horizon_s=horizon_s, held_deviation_steps=deviation_steps),
    }[variant]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(REPO / "runs"), help="parent folder of the foresight run folders")
    p.add_argument("--traces", default=str(REPO.parent / "shared" / "traces"))
    p.add_argument(
        "--combos",
        nargs="+",
        default=["pi0:orin:5G", "openvla:orin:mahimahi"],
        help="MODEL:EDGE:FAMILY (FAMILY: text contained in the trace family's folder path)",
    )
    p.add_argument("--timesteps", type=int, default=1_000_000, help="PPO steps per policy")
    p.add_argument("--net-arch", type=int, nargs="+", default=[64, 64], help="hidden layers of the PPO MLPs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--horizon-s", type=float, default=0.5, help="window of the +ahead field")
    p.add_argument("--deviation-steps", type=int, default=2, help="steps ahead of the hindsight variant's fields")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:3]))
    p.add_argument("--hedge", action="store_true", help="hedged execution for training and every planner")
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--beam", type=int, default=4, help="Oracle beam width")
    args = p.parse_args(argv)
    if args.deviation_steps < 1 and {"hindsight", "all"} & set(args.variants):
        p.error(f"--deviation-steps must be >= 1, got {args.deviation_steps}")
    if args.timesteps < 1 or any(n < 1 for n in args.net_arch):
        p.error(f"--timesteps and --net-arch need positive sizes, got {args.timesteps}, {args.net_arch}")
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from agents.artifact import load_model
    from agents.evaluate import evaluate
    from agents.heuristics import HeuristicPlanner
    from agents.oracle import Oracle
    from agents.planner import BandwidthPrior, ObsView, PlannerContext
    from agents.policy import PPOPlanner
    from agents.report import traces_of_family
    from agents.training import TrainConfig, make_env, profiles_for, train
    from ecc_env.privileged import PrivilegedBandwidth
    from traces.traceset import TraceSet

    shared = TraceSet.load(args.traces)
    split = shared.split(0)
    seeds = list(range(args.episodes))
    for combo in args.combos:
        try:
            model, edge_hw, family = combo.split(":")
        except ValueError:
            p.error(f"combo {combo!r} is not MODEL:EDGE:FAMILY")
        try:
            test = traces_of_family(split.test, family, "test")
        except ValueError as e:
            p.error(str(e))
        cfg = TrainConfig(
            model=model,
            edge=edge_hw,
            traces=(args.traces,),
            total_timesteps=args.timesteps,
            seed=args.seed,
            run_dir=args.runs,
            hedge=args.hedge,
            net_arch=tuple(args.net_arch),
        )
        policies = {}
        tag = "-hedge" if args.hedge else ""
        budget = (
            ""
            if (args.timesteps, tuple(args.net_arch)) == (1_000_000, (64, 64))
            else f"-{args.timesteps // 1000}k-{'x'.join(map(str, args.net_arch))}"
        )
        for variant in args.variants:
            name = f"foresight{tag}-{variant}-{model}-{edge_hw}-s{args.seed}{budget}"
            path = Path(args.runs) / name / "policy.safetensors"
            if not path.is_file():
                t0 = time.perf_counter()
                priv = _privileged(variant, args.horizon_s, args.deviation_steps)
                train(replace(cfg, run_name=name), privileged=priv)
                print(f"trained {name} in {time.perf_counter() - t0:.0f} s")
            policies[variant] = load_model(path)
        edge, cloud = profiles_for(cfg)
        env = make_env(edge, cloud, test, cfg)
        ctx = PlannerContext.from_env(env, prior=BandwidthPrior.from_trace_set(split.train))
        e = env.unwrapped
        rows = {
            "heuristic": evaluate(HeuristicPlanner(ctx), env, seeds, name="heuristic").summary(),
            "oracle": evaluate(Oracle(cut_candidates=2, beam=args.beam), env, seeds, name="oracle").summary(),
        }
        for variant, m in policies.items():
            priv = _privileged(variant, args.horizon_s, args.deviation_steps)
            venv = env if priv is None else PrivilegedBandwidth(env, priv)
            rows[variant] = evaluate(
                PPOPlanner(m, e.cut_fits, ObsView(e.builder.config)), venv, seeds, name=variant
            ).summary()
        oracle = rows["oracle"]["mean_latency_ms"]
        print(
            f"\n{model} {edge_hw}+a100, {family} test traces ({len(test)}), {args.episodes} episodes x "
            f"{cfg.episode_s:.0f} s, PPO {args.timesteps} steps seed {args.seed}, Oracle beam {args.beam}"
            f"{', hedged' if args.hedge else ''}"
        )
        print(f"{'planner':<22}{'mean ms':>9}{'/ Oracle':>10}{'p95 ms':>9}{'return':>10}{'misses':>8}{'skip':>7}")
        labels = {
            "probes": "PPO (probes)",
            "now": "PPO +now",
            "ahead": f"PPO +now+ahead {args.horizon_s:g} s",
            "hindsight": f"PPO +deviation {args.deviation_steps} st",
            "all": "PPO +all",
            "heuristic": "heuristic",
            "oracle": "Oracle",
        }
        for key in ("heuristic", *args.variants, "oracle"):
            s = rows[key]
            print(
                f"{labels[key]:<22}{s['mean_latency_ms']:>9.2f}{s['mean_latency_ms'] / oracle:>10.3f}"
                f"{s['p95_latency_ms']:>9.1f}{s['mean_return']:>10.2f}"
                f"{round(s['deadline_miss_rate'] * s['steps']):>8d}{s['skip_rate']:>7.2f}"
            )
        env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
