"""Planner benchmark: return (the yardstick), mean / p95 step latency, action deviation, skip and miss rates, decision
time per step, for PPO, the heuristics and the Oracle, on the TEST split of ../shared/traces: the side ``train.py
--traces ../shared/traces`` splits off and never trains or validates on (``agents.training.split_sources``, the same
side ``ecc eval --split test`` evaluates).

Profiles: roofline ``full`` OpenVLA and pi0 on orin+a100 and thor+a100, priced under ``--wire`` (default: the
deployed wire configuration, jpeg:90 frames and fp16 activations), with each trace family's RTT (``traces.rtt``;
``--rtt-ms`` overrides it); both are printed with every table and must match the policies'. PPO policies come from
run folders
``<runs>/bench-<model>-<edge>/policy.zip`` (train them with
``python train.py --model M --edge E --traces ../shared/traces --run-name bench-M-E --run-dir RUNS``; the figures of
docs/results.md add ``--total-timesteps 1000000 --net-arch 128 128``); a missing policy is left out of the table.
``--hedge`` runs every planner with hedged execution (``DeadlineConfig.hedge``), for policies trained with ``--hedge``
(``--prefix`` names their run folders).
"without skip" forces skip = 0 (the Oracle searches cuts only; PPO and the heuristic are the same policies with
skip disabled, not retrained).

    python benchmarks/bench_agents.py --runs /tmp/ecc_runs --episodes 6 [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(REPO / "runs"), help="folder with bench-<model>-<edge> run folders")
    p.add_argument("--traces", default=str(REPO.parent / "shared" / "traces"))
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--episode-s", type=float, default=30.0)
    p.add_argument("--beam", type=int, default=16, help="Oracle beam width")
    p.add_argument("--combos", nargs="*", default=["openvla:orin", "openvla:thor", "pi0:orin", "pi0:thor"])
    p.add_argument(
        "--hedge",
        action="store_true",
        help="hedged execution (DeadlineConfig.hedge) for every planner; policies trained with --hedge",
    )
    p.add_argument("--prefix", default="bench", help="run folders are <runs>/<prefix>-<model>-<edge> (default bench)")
    p.add_argument("--wire", default="default", help="IMAGE,DTYPE on the wire (default: jpeg:90,fp16; exact: raw,fp32)")
    p.add_argument("--rtt-ms", type=float, default=-1.0, help="RTT of every trace (ms); -1: each family's (default)")
    p.add_argument("--out", default="", help="write every planner's summary per combination to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from agents.artifact import PolicyExpectation, PolicyLoadError, load_policy
    from agents.eval_cli import wire_rtt_line
    from agents.evaluate import evaluate
    from agents.evaluation import wire_rtt_meta
    from agents.heuristics import CloudOnly, EdgeOnly, HeuristicPlanner, NoSkip, RoboECCPlanner, StaticBestCut
    from agents.oracle import Oracle
    from agents.planner import BandwidthPrior, PlannerContext
    from agents.training import TrainConfig, load_trace_sources, make_env, profiles_for, split_sources
    from traces.rtt import rtt_mismatch

    def config(model: str, edge_hw: str) -> TrainConfig:
        return TrainConfig(
            model=model,
            edge=edge_hw,
            traces=(args.traces,),
            episode_s=args.episode_s,
            hedge=args.hedge,
            wire=args.wire,
            rtt_ms=args.rtt_ms,
        )

    first = config(*args.combos[0].split(":"))
    split = split_sources(load_trace_sources(first), first.split_seed)  # exactly train.py's sides
    test = split.test.filter(lambda t: not t.name.startswith("embedded/"))
    print(f"test split: {len(test)} shared traces; train split {len(split.train)} traces (never evaluated here)")
    seeds = list(range(1000, 1000 + args.episodes))
    out: dict[str, dict[str, object]] = {}
    for combo in args.combos:
        model, edge_hw = combo.split(":")
        cfg = config(model, edge_hw)
        edge, cloud = profiles_for(cfg)
        meta = wire_rtt_meta(edge, cfg.rtt_ms, test)
        env = make_env(edge, cloud, test, cfg)
        ctx = PlannerContext.from_env(env, prior=BandwidthPrior.from_trace_set(split.train))
        planners: dict[str, object] = {}
        run = Path(args.runs) / f"{args.prefix}-{model}-{edge_hw}" / "policy.zip"
        try:
            ppo = load_policy(run, PolicyExpectation.for_env(env))
            planners["ppo"] = ppo
            if warning := rtt_mismatch(ppo.metadata, cfg.rtt_ms):
                print(f"  (warning: {run}: {warning})")
        except PolicyLoadError as e:
            print(f"  (no PPO policy for {combo}: {e})")
            ppo = None
        planners.update(
            heuristic=HeuristicPlanner(ctx),
            roboecc=RoboECCPlanner(ctx),
            static=StaticBestCut(ctx),
            edge=EdgeOnly(ctx),
            cloud=CloudOnly(ctx),
            oracle=Oracle(cut_candidates=2, beam=args.beam),
        )
        no_skip = {
            "ppo": NoSkip(ppo) if ppo else None,
            "heuristic": NoSkip(HeuristicPlanner(ctx)),
            "oracle": Oracle(cut_candidates=2, beam=args.beam, allow_skip=False),
        }
        print(
            f"\n== {model} full, {edge_hw}+a100: {len(seeds)} episodes x {args.episode_s:g} s on the test split"
            f"{', hedged execution' if args.hedge else ''}"
        )
        print(wire_rtt_line(meta))
        print(
            f"{'planner':<18}{'return':>9}{'mean ms':>9}{'p95 ms':>9}{'dev':>7}{'skip':>6}{'miss':>6}"
            f"{'dec med ms':>11}{'dec p99 ms':>11}"
        )
        rows = [(n, p) for n, p in planners.items()] + [(f"{n} (no skip)", p) for n, p in no_skip.items() if p]
        results = {}
        for name, planner in rows:
            t0 = time.perf_counter()
            s = evaluate(planner, env, seeds, name=name).summary()
            results[name] = s
            print(
                f"{name:<18}{s['mean_return']:>9.1f}{s['mean_latency_ms']:>9.1f}{s['p95_latency_ms']:>9.1f}"
                f"{s['mean_deviation']:>7.3f}{s['skip_rate']:>6.2f}{s['deadline_miss_rate']:>6.2f}"
                f"{s['decision_median_ms']:>11.4f}{s['decision_p99_ms']:>11.4f}   ({time.perf_counter() - t0:.0f} s)"
            )
        if "ppo" in results:
            heur_best = min(results[n]["mean_latency_ms"] for n in ("heuristic", "roboecc", "static", "edge", "cloud"))
            print(
                f"PPO / Oracle mean latency: {results['ppo']['mean_latency_ms'] / results['oracle']['mean_latency_ms']:.3f}"
                f"; PPO / best heuristic: {results['ppo']['mean_latency_ms'] / heur_best:.3f}"
                f"; returns PPO {results['ppo']['mean_return']:.1f}, Oracle {results['oracle']['mean_return']:.1f}"
            )
        env.close()
        out[combo] = {
            **meta,
            "episodes": len(seeds),
            "episode_s": args.episode_s,
            "hedge": args.hedge,
            "test_traces": list(test.names),
            "planners": results,
        }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
