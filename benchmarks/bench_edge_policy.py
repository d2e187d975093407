"""How often a trained policy decides in the real edge runtime (`ecc edge --policy`), and how often its guard hands
the step to the heuristic, by reason and by out-of-range field.

Runs the deployment of ``docs/deployment.md``: a Profile pair this CPU can emulate (``agents.emulated_pair``, as the
demo builds it, or a demo run's ``profile_edge.json`` / ``profile_cloud.json`` with ``--run``), a policy trained on
it (``--policy``, or a quick one trained here), ``ecc serve --emulate profile_cloud.json`` (a process), and
``ecc edge --policy ... --emulate profile_edge.json`` on the env's procedural stream. Also tries the roofline pair
(``--hardware orin+a100``, the README's first example), which ``ecc edge`` refuses with exit 2 and a reason.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_edge_policy.py [--run runs/demo-X] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="a demo run folder (profiles + ppo/policy.zip)")
    ap.add_argument("--policy", type=Path, default=None, help="policy.zip trained on the run's profiles")
    ap.add_argument("--family", default="openvla")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--timesteps", type=int, default=4096, help="PPO steps of the quick policy trained here")
    ap.add_argument("--steps", type=int, default=300, help="control steps of `ecc edge`")
    ap.add_argument("--headroom", type=float, default=2.5, help="emulated pair headroom (as the demo)")
    ap.add_argument(
        "--roofline-policy",
        type=Path,
        default=None,
        help="a policy trained on --hardware orin+a100 roofline Profiles (the README example)",
    )
    ap.add_argument("--deadline-ms", type=float, default=300.0, help="deadline in training and in `ecc edge`")
    ap.add_argument("--chunk-size", type=int, default=8, help="chunk length in training and in `ecc edge`")
    ap.add_argument("--realtime", action="store_true", help="pace steps to the control period")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from agents.edge_cli import main as edge_main

    work = Path(tempfile.mkdtemp(prefix="bench_edge_policy_"))
    if args.run is not None:
        edge_path, cloud_path = args.run / "profile_edge.json", args.run / "profile_cloud.json"
        policy = args.policy or args.run / "ppo" / "policy.zip"
    else:
        from agents.emulated_pair import emulated_pair
        from agents.training import TrainConfig, quick, train
        from traces.embedded import embedded_default_set

        edge, cloud = emulated_pair(args.family, args.preset, "orin", "a100", headroom=args.headroom)
        edge_path, cloud_path = work / "profile_edge.json", work / "profile_cloud.json"
        edge.save(edge_path)
        cloud.save(cloud_path)
        policy = args.policy
        if policy is None:
            cfg = replace(
                quick(
                    TrainConfig(
                        model=args.family,
                        preset=args.preset,
                        run_dir=str(work),
                        run_name="ppo",
                        chunk_size=args.chunk_size,
                        deadline_ms=args.deadline_ms,
                    )
                ),
                total_timesteps=args.timesteps,
                episode_s=20.0,
                eval_every_steps=max(args.timesteps // 4, 512),
                eval_episodes=2,
            )
            policy = train(cfg, trace_set=embedded_default_set(), profiles=(edge, cloud)).policy_path
    results = {}
    import os
    import re
    import subprocess

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "executor.serve_cli",
            "--model",
            args.family,
            "--preset",
            args.preset,
            "--port",
            "0",
            "--threads",
            "1",
            "--emulate",
            str(cloud_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    try:
        url = None
        for line in server.stdout:
            m = re.match(r"serving (ws://\S+)", line)
            if m:
                url = m.group(1)
                break
        if url is None:
            raise RuntimeError("ecc serve did not start")
        common = [
            "--server",
            url,
            "--model",
            args.family,
            "--preset",
            args.preset,
            "--steps",
            str(args.steps),
            "--deadline-ms",
            str(args.deadline_ms),
            "--chunk-size",
            str(args.chunk_size),
        ]
        if not args.realtime:
            common.append("--no-realtime")
        out = work / "emulated.jsonl"
        rc = edge_main(
            [
                "--policy",
                str(policy),
                "--edge-profile",
                str(edge_path),
                "--cloud-profile",
                str(cloud_path),
                "--emulate",
                str(edge_path),
                "--out",
                str(out),
                *common,
            ]
        )
        summary = json.loads(out.with_suffix(".summary.json").read_text()) if rc == 0 else None
        results["emulated pair (docs/deployment.md)"] = {"rc": rc, "summary": summary}
        if args.roofline_policy is not None:
            rc = edge_main(["--policy", str(args.roofline_policy), "--hardware", "orin+a100", *common])
            results["roofline orin+a100 (README example)"] = {"rc": rc}
    finally:
        server.kill()
        server.wait(10)
    print()
    for name, r in results.items():
        s = r.get("summary")
        if s is None:
            print(f"{name}: exit {r['rc']}")
            continue
        p = s["planner"]
        fb = sum(p["fallbacks"].values())
        print(
            f"{name}: exit {r['rc']}, {p['decisions']} decisions, guard fallbacks {fb} "
            f"({100.0 * fb / max(p['decisions'], 1):.2f}%) by reason {p['fallbacks']}; out-of-range fields "
            f"{p['out_of_range_fields'] or 'none'}; runtime modes {s['runtime']['modes']}, fallbacks "
            f"{s['runtime']['fallback_reasons'] or 'none'}"
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
