"""Closed-loop fine-tuning, before and after: a policy against the run it was fine-tuned from, paired by episode.

Reads closed-loop reports (``bench_closed_loop.py --out``: one ``closed_loop.json`` per model, family and task)
holding both planners on the same seeds, and prints per trace family and task, and pooled per family: successes
of each with a 95% Wilson interval, the discordant pairs (gained: only the fine-tuned policy succeeded; lost:
only the base), the exact sign test's p, median time-to-success and inferences per episode
(``agents.closed_loop_finetune.paired_comparison``). The evaluation itself:

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_closed_loop.py --models openvla \
        --families ../shared/traces/lumos5g_mmwave/4G,../shared/traces/wifi_cellular_sbu_mptraces \
        --planners ppo:runs/ppo-openvla,ppo:runs/ppo-openvla-cl --tasks pick-place-v3,push-v3,peg-insert-side-v3 \
        --episodes 30 --seed 0 --events on --vlas aware --episode-s 5 --budget-ms inf --out runs/finetune_eval
    python benchmarks/bench_closed_loop_finetune.py --from-json "runs/finetune_eval/*/*/closed_loop.json" \
        --before ppo:ppo-openvla --after ppo:ppo-openvla-cl
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
    p.add_argument("--from-json", required=True, help="comma-separated closed_loop.json files (globs allowed)")
    p.add_argument("--before", required=True, help="planner label of the base policy (e.g. ppo:ppo-openvla)")
    p.add_argument("--after", required=True, help="planner label of the fine-tuned policy")
    args = p.parse_args(argv)
    cells: dict[str, list] = {}
    for path in expand_paths(args.from_json):
        rep = ClosedLoopReport.from_json(path)
        fam = family_label(rep.meta.get("config", {}).get("traces", rep.meta.get("traces", "?")))
        cells.setdefault(fam, []).extend(rep.episodes)
    head = (
        "| family | task | pairs | before success [95% CI] | after success [95% CI] | gained | lost | sign test p "
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


if __name__ == "__main__":
    sys.exit(main())
