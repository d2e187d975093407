"""Trace library figures: files loaded from ../shared/traces (and failures), load-all time, transfer_time_s speed.

    .venv/bin/python benchmarks/bench_traces.py [--repeats 3] [--calls 100000]

Prints medians over ``--repeats`` runs. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from traces import TraceSet
from traces.embedded import embedded_default_set
from traces.paths import shared_traces_dir


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_transfer(trace, calls: int, repeats: int, seed: int = 0) -> tuple[float, float]:
    """(scalar calls/s, vectorised transfers/s), medians; payloads 1 kB..2 MB from random start times."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0.0, 10 * trace.duration_s, calls)
    nbytes = rng.integers(1_000, 2_000_000, calls)
    s_list, n_list = starts.tolist(), nbytes.tolist()
    f = trace.transfer_time_s

    def scalar() -> None:
        for s, n in zip(s_list, n_list):
            f(n, s, "up", max_wait_s=1e9)

    t_scalar, _ = _median_time(scalar, repeats)
    t_vec, _ = _median_time(lambda: trace.transfer_times_s(nbytes, starts, "up"), repeats)
    return calls / t_scalar, calls / t_vec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args(argv)

    root = shared_traces_dir()
    sets = []
    if root is None:
        print("shared traces: not found (set ECC_SHARED_TRACES); benchmarking the embedded set only")
    else:
        t_load, ts = _median_time(lambda: TraceSet.load(root), args.repeats)
        assert isinstance(ts, TraceSet)
        n_files = sum(1 for p in root.rglob("*") if p.is_file())
        print(f"shared traces: {root}")
        print(f"  files: {n_files} ({len(ts.skipped)} documentation files skipped)")
        print(f"  traces loaded: {len(ts)} (Mahimahi .up/.down pairs count as one trace)")
        print(f"  failures: {len(ts.errors)}")
        for path, reason in ts.errors:
            print(f"    {path}: {reason}")
        by_ds: dict[str, int] = {}
        for t in ts:
            ds = t.name.split("/")[1]
            by_ds[ds] = by_ds.get(ds, 0) + 1
        for ds, n in sorted(by_ds.items()):
            print(f"    {ds}: {n}")
        print(f"  load-all time: median {t_load:.3f} s over {args.repeats} runs")
        sets.append(ts)

    picks = []
    if sets:
        by_name = {t.name: t for t in sets[0]}
        for key in ("mahimahi_cellular_us/ATT-LTE-driving", "lumos5g_mmwave/5G/5g_trace_100_walking"):
            match = [t for n, t in by_name.items() if n.endswith(key)]
            picks += match[:1]
    picks.append(embedded_default_set()[8])
    for tr in picks:
        per_s, vec_per_s = bench_transfer(tr, args.calls, args.repeats)
        print(
            f"transfer_time_s on {tr.name} ({len(tr)} samples): {per_s:,.0f} calls/s scalar, "
            f"{vec_per_s:,.0f} transfers/s vectorised (median of {args.repeats}, {args.calls:,} calls)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
