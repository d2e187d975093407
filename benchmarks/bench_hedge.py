"""Hedged execution on the real split executor: the edge runtime with and without ``RuntimeConfig.hedge``.

A cloud server (tiny OpenVLA, this CPU, in a child process) and the edge runtime talk through a ``ShapedLink`` that replays a recorded
trace; the edge emulates a device whose blocks take ``--edge-block-ms`` each (``HardwareEmulator``), so edge-only
takes about ``num_blocks x edge-block-ms``. One fixed cut (default 1: one edge block, then a single exchange), the
break-even deadline (the measured edge-only time), realtime at ``--period-ms``. The two variants run one after the
other on fresh links started at the same trace time, and the pair is repeated ``--repeats`` times; printed: median
over repeats of mean / p95 step latency, and the fallbacks by reason.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hedge.py [--trace PATH] [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "traces" / "hsdpa_norway_3g"


def _network(conn, trace_path: str, rtt_ms: float, start_s: float) -> None:
    """Child process: the cloud server and, on each request, a fresh trace-shaped relay to it (so neither competes
    with the edge runtime's threads for this process's interpreter lock, as on a real robot)."""
    import torch

    torch.set_num_threads(1)
    from executor.link import LinkConfig, ShapedLink
    from executor.models import build_model
    from executor.server import CloudServer, ServerConfig
    from traces import TraceSet

    trace = TraceSet.load(trace_path)[0].with_rtt(rtt_ms)
    link = None
    with CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0)) as server:
        conn.send(trace.name)
        while conn.recv() == "link":
            if link is not None:
                link.stop()
            link = ShapedLink(trace, "127.0.0.1", server.port, LinkConfig(start_offset_s=start_s)).start()
            conn.send(link.port)
    if link is not None:
        link.stop()


def _run(edge, frames, url: str, *, cut: int, deadline_s: float, period_s: float, hedge: bool) -> dict:
    from executor.client import ClientConfig
    from executor.edge_cli import FixedCutPlanner
    from executor.runtime import EdgeRuntime, RuntimeConfig

    config = RuntimeConfig(
        control_period_s=period_s, deadline_s=deadline_s, realtime=True, connect_timeout_s=10.0, hedge=hedge
    )
    with EdgeRuntime(
        edge,
        FixedCutPlanner(cut),
        lambda ctx: np.zeros(4, np.float32),
        server_url=url,
        client_config=ClientConfig(connect_timeout_s=10.0),
        config=config,
    ) as runtime:
        records = runtime.run(frames)
        report = runtime.report()
    lat = np.array([r.latency_ms for r in records])
    return {
        "mean": float(lat.mean()),
        "p95": float(np.percentile(lat, 95)),
        "modes": report["modes"],
        "reasons": report["fallback_reasons"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="trace file, or a folder (its first file)")
    ap.add_argument("--rtt-ms", type=float, default=40.0, help="RTT added to the trace (ms)")
    ap.add_argument("--start-s", type=float, default=0.0, help="trace time at which each run starts")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cut", type=int, default=1)
    ap.add_argument("--edge-block-ms", type=float, default=8.0, help="emulated edge time per block (ms)")
    ap.add_argument("--period-ms", type=float, default=200.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from executor.emulation import HardwareEmulator
    from executor.models import build_model
    from executor.profile import Profile

    if not args.trace.exists():
        print(f"trace not found: {args.trace}", file=sys.stderr)
        return 2
    edge = build_model("openvla", "tiny", seed=0)
    profile = Profile(
        model_id=edge.family,
        preset=edge.preset,
        device="emulated-edge",
        dtype="float32",
        source="roofline",
        block_names=edge.block_names,
        block_ms=(args.edge_block_ms,) * edge.num_blocks,
        cuts=tuple(edge.cut_specs()),
    )
    HardwareEmulator(edge, profile).attach()
    frames = [edge.make_observation(seed=i) for i in range(args.steps)]
    t0 = time.perf_counter()
    for f in frames[:5]:
        edge.forward(f)
    edge_only_s = (time.perf_counter() - t0) / 5
    print(
        f"cut {args.cut}; edge-only {edge_only_s * 1e3:.1f} ms (the deadline); {args.steps} steps every "
        f"{args.period_ms:g} ms"
    )
    results: dict[bool, list[dict]] = {False: [], True: []}
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_network, args=(child, str(args.trace), args.rtt_ms, args.start_s), daemon=True)
    proc.start()
    try:
        print(f"trace {parent.recv()} (+{args.rtt_ms:g} ms RTT) from {args.start_s:g} s")
        for rep in range(args.repeats):
            for hedge in (False, True):
                parent.send("link")
                url = f"ws://127.0.0.1:{parent.recv()}"
                r = _run(
                    edge, frames, url, cut=args.cut, deadline_s=edge_only_s, period_s=args.period_ms / 1e3, hedge=hedge
                )
                results[hedge].append(r)
                print(
                    f"  repeat {rep} {'hedged' if hedge else 'plain '}: mean {r['mean']:.1f} ms, p95 {r['p95']:.1f}"
                    f" ms, modes {r['modes']}, fallbacks {r['reasons']}"
                )
    finally:
        parent.send("stop")
        proc.join(10)
    for hedge in (False, True):
        rs = results[hedge]
        print(
            f"{'hedged' if hedge else 'plain '}: median over {len(rs)} repeats: mean "
            f"{np.median([r['mean'] for r in rs]):.1f} ms, p95 {np.median([r['p95'] for r in rs]):.1f} ms"
        )
    ratio = np.median([h["mean"] / p["mean"] for p, h in zip(results[False], results[True], strict=True)])
    print(f"hedged / plain mean latency (median of per-repeat ratios): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
