"""How long ``gymnasium.make("ecc_env/EdgeCloudSplit-v0")`` takes in a fresh Python process (median of N).

    .venv/bin/python benchmarks/bench_make.py             # 5 fresh processes, median
    .venv/bin/python benchmarks/bench_make.py --runs 9

Each run starts a new interpreter (no warm caches, as a user's first call), imports gymnasium and ecc_env, then times
the default ``gym.make`` (default Profiles from the package data, embedded traces, procedural streams) and one
``reset``. It also reports whether torch was imported along the way (it should not be). Target: make < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import gymnasium as gym, ecc_env
t1 = time.perf_counter()
env = gym.make(ecc_env.ENV_ID)
t2 = time.perf_counter()
env.reset(seed=0)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "make_s": t2 - t1, "reset_s": t3 - t2, "torch": "torch" in sys.modules}))
"""


def one_run() -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh processes to time (default 5)")
    args = p.parse_args()
    if args.runs < 1:
        p.error(f"--runs must be >= 1, got {args.runs}")
    runs = [one_run() for _ in range(args.runs)]
    for key in ("import_s", "make_s", "reset_s"):
        vals = [r[key] for r in runs]
        print(f"{key:<9} median {statistics.median(vals):6.3f} s   runs: {' '.join(f'{v:.3f}' for v in vals)}")
    print(f"torch imported: {sorted({r['torch'] for r in runs})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
