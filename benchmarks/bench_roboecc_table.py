"""RoboECC-style table: speedup over edge-only of cloud-only, Neurosurgeon's static best cut, the RoboECC planner
(co-aware split + network-aware adjustment) and the no-skip hindsight Oracle, for the ``full`` OpenVLA and pi0
(roofline Profiles) on Orin+A100 and Thor+A100, per trace family (WiFi, 4G, 5G).

Traces: the TEST side of the seeded split (seed 0) of ../shared/traces (dataset test folders, else the split's test
share; never used for training or tuning) and every trace of the embedded synthetic set, grouped by family:
WiFi = SBU mptraces *_wifi + embedded wifi6/wifi7; 4G = Lumos5G 4G + Mahimahi LTE + embedded 4g;
5G = Lumos5G mmWave 5G + embedded 5g. The shared files are mostly downlink recordings; the loader uses them for both
directions. The heuristics' bandwidth prior is the training side's mean. Every planner runs the same episodes.
No skipping here (RoboECC does not skip): see bench_rapid_table.py for that.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_roboecc_table.py [--episodes 4] [--episode-s 30]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]


def family(name: str) -> tuple[str, str] | None:
    """(family, source) of a trace name, or None for traces outside WiFi / 4G / 5G."""
    low = name.lower()
    if low.startswith("traces/"):
        low = low[len("traces/"):]
    if low.startswith("embedded/"):
        cls = low.split("/")[1]
        fam = {"wifi6": "WiFi", "wifi7": "WiFi", "4g": "4G", "5g": "5G"}.get(cls)
        return (fam, "embedded") if fam else None
    if low.startswith("wifi_cellular_sbu_mptraces/"):
        return ("WiFi", "shared") if "_wifi" in low else None
    if low.startswith("lumos5g_mmwave/4g/"):
        return "4G", "shared"
    if low.startswith("lumos5g_mmwave/5g/"):
        return "5G", "shared"
    if low.startswith("mahimahi_cellular_us/") and "lte" in low:
        return "4G", "shared"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--traces", default=str(REPO.parent / "shared" / "traces"))
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--episode-s", type=float, default=30.0)
    p.add_argument("--beam", type=int, default=8, help="Oracle beam width")
    p.add_argument("--combos", nargs="*", default=["openvla:orin", "openvla:thor", "pi0:orin", "pi0:thor"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from agents.evaluation import EvalConfig, make_eval_env
    from agents.heuristics import CloudOnly, EdgeOnly, RoboECCPlanner, StaticBestCut
    from agents.oracle import Oracle
    from agents.planner import BandwidthPrior, PlannerContext
    from agents.report import build_report, run_planners
    from executor.roofline import roofline_profile_for
    from traces.embedded import embedded_default_set
    from traces.traceset import TraceSet

    t_start = time.perf_counter()
    shared = TraceSet.load(args.traces)
    full = TraceSet([*embedded_default_set(), *shared], "embedded+shared")
    split = full.split(0)
    prior = BandwidthPrior.from_trace_set(split.train)
    groups: dict[tuple[str, str], list] = {}
    # shared: the test side only; embedded (synthetic, nothing is trained here): every trace of the family
    for t in [*split.test.filter(lambda t: not t.name.startswith("embedded/")), *embedded_default_set()]:
        key = family(t.name)
        if key is not None:
            groups.setdefault(key, []).append(t)
    order = [(f, s) for f in ("WiFi", "4G", "5G") for s in ("shared", "embedded") if (f, s) in groups]
    print("test traces per family: " + ", ".join(f"{f}/{s} {len(groups[(f, s)])}" for f, s in order))
    print(f"{args.episodes} episodes x {args.episode_s:g} s per family, same seeds for every planner; prior from the "
          f"train split ({prior.up_mbps:.1f} Mbit/s up, {prior.rtt_ms:.0f} ms RTT)\n")
    seeds = list(range(2000, 2000 + args.episodes))
    cfg = EvalConfig(episode_s=args.episode_s)
    header = (f"{'model':<8}{'devices':<11}{'family':<15}{'n':>3}{'edge ms':>9}{'RoboECC ms':>11}"
              f"{'cloud x':>9}{'static x':>9}{'RoboECC x':>10}{'oracle x':>9}{'RoboECC/oracle':>15}")
    print(header)
    print("-" * len(header))
    for combo in args.combos:
        model, hw = combo.split(":")
        edge, cloud = roofline_profile_for(model, "full", hw), roofline_profile_for(model, "full", "a100")
        for fam, src in order:
            ts = TraceSet.from_traces(groups[(fam, src)], f"{fam}-{src}")
            env = make_eval_env(edge, cloud, ts, cfg)
            ctx = PlannerContext.from_env(env, prior=prior)
            planners = {"edge": EdgeOnly(ctx), "cloud": CloudOnly(ctx), "static": StaticBestCut(ctx),
                        "roboecc": RoboECCPlanner(ctx), "oracle": Oracle(cut_candidates=2, beam=args.beam,
                                                                         allow_skip=False)}
            report = build_report(run_planners(planners, env, seeds))
            env.close()
            r = {row["planner"]: row for row in report.rows}
            print(f"{model:<8}{hw + '+a100':<11}{fam + ' (' + src + ')':<15}{len(ts):>3}"
                  f"{r['edge']['mean_latency_ms']:>9.1f}{r['roboecc']['mean_latency_ms']:>11.1f}"
                  f"{r['cloud']['speedup_vs_edge']:>9.2f}{r['static']['speedup_vs_edge']:>9.2f}"
                  f"{r['roboecc']['speedup_vs_edge']:>10.2f}{r['oracle']['speedup_vs_edge']:>9.2f}"
                  f"{r['roboecc']['ratio_to_oracle']:>15.3f}")
    print(f"\nspeedup x = edge-only mean step latency / planner mean step latency; wall {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
