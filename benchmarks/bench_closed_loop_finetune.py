"""Closed-loop fine-tuning, before and after: a policy against the run it was fine-tuned from, paired by episode.

Reads closed-loop reports (``bench_closed_loop.py --out``: one ``closed_loop.json`` per model, family and task)
holding both planners on the same seeds, and prints per trace family, event setting and task, and pooled per family and event setting: successes
of each with a 95% Wilson interval, the discordant pairs (gained: only the fine-tuned policy succeeded; lost:
only the base), the exact sign test's p, median time-to-success and inferences per episode
(``agents.closed_loop_finetune.paired_comparison``). The evaluation itself:

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_closed_loop.py --models openvla \
        --families ../shared/traces/lumos5g_mmwave/4G,../shared/traces/wifi_cellular_sbu_mptraces \
        --planners ppo:runs/ppo-openvla,ppo:runs/ppo-openvla-cl --tasks pick-place-v3,push-v3,peg-insert-side-v3 \
        --episodes 30 --seed 0 --events on --vlas aware --episode-s 5 --budget-ms inf --out runs/finetune_eval
    python benchmarks/bench_closed_loop_finetune.py --from-json "runs/finetune_eval/*/*/closed_loop.json" \
        --before ppo:ppo-openvla --after ppo:ppo-openvla-cl

``--probe RUN,RUN`` prints instead each policy's skip-minus-infer logit gap at the first decisions of openvla
pick-place episodes (events on, Lumos 4G, seeds 0-2; ``I``/``S``: its deterministic infer/skip): why a fine-tuning
that only samples the policy's own actions cannot learn to infer where the base is certain it should skip.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    from bench_closed_loop import expand_paths

    from agents.closed_loop_eval import ClosedLoopReport
    from agents.closed_loop_finetune import paired_comparison
    from agents.closed_loop_targets import family_label

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-json", default="", help="comma-separated closed_loop.json files (globs allowed)")
    p.add_argument("--before", default="", help="planner label of the base policy (e.g. ppo:ppo-openvla)")
    p.add_argument("--after", default="", help="planner label of the fine-tuned policy")
    p.add_argument("--probe", default="", help="comma-separated run folders: print their skip logit gaps")
    args = p.parse_args(argv)
    if args.probe:
        return probe(args.probe.split(","))
    if not (args.from_json and args.before and args.after):
        p.error("--from-json, --before and --after are needed (or --probe)")
    cells: dict[str, list] = {}
    for path in expand_paths(args.from_json):
        rep = ClosedLoopReport.from_json(path)
        fam = family_label(rep.meta.get("config", {}).get("traces", rep.meta.get("traces", "?")))
        for e in rep.episodes:
            cells.setdefault(f"{fam} ({e.events})", []).append(e)
    head = (
        "| family (events) | task | pairs | before success [95% CI] | after success [95% CI] | gained | lost | sign test p "
        "| before median tts s | after median tts s | before inf/ep | after inf/ep |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    for fam, eps in sorted(cells.items()):
        tasks = sorted({e.task for e in eps})
        for task in [*tasks, "all"]:
            sel = eps if task == "all" else [e for e in eps if e.task == task]
            try:
                r = paired_comparison(sel, args.before, args.after)
            except ValueError as e:
                print(f"{fam} {task}: {e}", file=sys.stderr)
                continue
            n = r["pairs"]

            def rate(side: str, r: dict = r, n: int = n) -> str:
                lo, hi = r[f"{side}_ci"]
                return f"{r[f'{side}_successes'] / n:.2f} [{lo:.2f}, {hi:.2f}]"

            def tts(side: str, r: dict = r) -> str:
                v = r[f"{side}_median_tts_s"]
                return "-" if math.isnan(v) else f"{v:.2f}"

            print(
                f"| {fam} | {task} | {n} | {rate('before')} | {rate('after')} | {r['gained']} | {r['lost']} "
                f"| {r['p_value']:.3g} | {tts('before')} | {tts('after')} | {r['before_inferences']:.1f} "
                f"| {r['after_inferences']:.1f} |"
            )
    return 0


def probe(runs: list[str], seeds: range = range(3), decisions: int = 6) -> int:
    """Skip-minus-infer logit gap of each policy at its first decisions (see the module docstring)."""
    import numpy as np

    from agents.artifact import PolicyExpectation, load_policy
    from agents.closed_loop_eval import ClosedLoopEvalConfig, eval_profiles
    from agents.evaluation import load_traces, policy_path
    from agents.training import deadline_rule
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopSplitEnv, EventConfig
    from ecc_env.split_env import EnvConfig
    from traces.rtt import apply_rtt

    fam = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "lumos5g_mmwave" / "4G"
    cfg = ClosedLoopEvalConfig(model="openvla", traces=str(fam), episode_s=5.0)
    edge, cloud = eval_profiles(cfg)
    env_cfg = EnvConfig(episode_s=5.0, segment_margin_s=5.0, deadline=deadline_rule(cfg), trace_split="all")
    cl = ClosedLoopConfig("pick-place-v3", events=EventConfig.on())
    env = ClosedLoopSplitEnv(
        edge, cloud, apply_rtt(load_traces(cfg.traces), cfg.rtt_ms), closed_loop=cl, config=env_cfg
    )
    pols = {r: load_policy(policy_path(r), PolicyExpectation.for_env(env)) for r in runs}
    print("| seed | policy | skip - infer logit at decisions 0.. (I: infers, S: skips) |")
    print("|---|---|---|")
    for seed in seeds:
        for run, pol in pols.items():
            obs, _ = env.reset(seed=seed)
            cells = []
            for _ in range(decisions):
                gap = pol.planner.logits(obs)[-1] - pol.planner.logits(obs)[-2]
                skippable = bool(pol.planner.masks(obs)[-1])
                a, _ = pol.predict(obs)
                cells.append(f"{gap:+.1f}{'S' if a[1] else 'I'}" if skippable else "-I")
                obs, _, term, trunc, _ = env.step(np.asarray(a).reshape(-1))
                if term or trunc:
                    break
            print(f"| {seed} | {Path(run).name} | {' '.join(cells)} |")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
