"""A fleet of robots on one cloud server: throughput and latency, measured here and predicted for an A100; the time to
recover from a killed and from a frozen Ray Serve replica.

1. Fleet (measured, this machine, loopback): 1, 4, 8, 16 robots (``--robots``), each an ``EdgeClient`` on its own
   connection sending back-to-back requests at ``--cut`` for ``--seconds`` (after one warm-up each), against the
   single-process server (``local``) and Ray Serve with ``--replicas`` replicas (``ray``), each with batching off
   (one request at a time per model instance) and on (``--max-batch``, ``--batch-wait-ms``: the server's batcher,
   or Ray Serve's ``@serve.batch`` in each replica). Throughput (requests/s) and client latency p50/p99 (ms).
2. Fleet (predicted, ``--hardware``, roofline of the ``--predict-preset`` model): the cloud half at ``--cut`` for a
   closed loop of N robots, batching off (one at a time: throughput 1/t1, latency N t1) and on (batches of
   b = min(N, max batch): throughput b/tb, latency ceil(N/b) tb), with ``executor.roofline.batched_cloud_ms``.
3. Batched forward alone (``--forward-families``, no network): the cloud half at ``--cut`` for B requests as one
   ``SplitModel.cloud_batch`` against B lone ``cloud_session(cut).on_request`` calls, interleaved, median of
   ``--forward-repeats``: ms per request both ways and the speed-up.
4. Recovery (Ray, 2 replicas, one robot streaming with a ``--deadline-ms`` budget): a replica killed (``ray.kill``)
   and a replica frozen (SIGSTOP): requests lost (error replies or missed deadlines), the median and slowest
   request, and the seconds until Serve runs two healthy replicas again without the victim (a frozen replica is
   replaced when it fails Serve's health check: period 2 s, timeout 10 s).

    python benchmarks/bench_fleet.py --model openvla --preset tiny --seconds 3 --skip-recovery
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def fleet_run(edge, url: str, robots: int, cut: int, seconds: float) -> dict[str, float]:
    """Throughput, p50/p99 latency and errors of ``robots`` clients sending back-to-back requests."""
    import numpy as np

    from executor.client import EdgeClient

    obs = edge.make_observation(0)
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(robots + 1)
    stop_at = [float("inf")]

    def robot() -> None:
        with EdgeClient(edge, url) as client:
            client.connect(timeout_s=30)
            client.infer(obs, cut, deadline=time.perf_counter() + 60)  # warm-up
            barrier.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    client.infer(obs, cut, deadline=t0 + 30)
                except Exception:  # noqa: BLE001 - counted
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    lat.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=robot, daemon=True) for _ in range(robots)]
    for t in threads:
        t.start()
    barrier.wait()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    for t in threads:
        t.join(seconds + 60)
    wall = time.perf_counter() - t_start
    a = np.asarray(lat) if lat else np.asarray([float("nan")])
    return {
        "robots": robots,
        "throughput_rps": len(lat) / wall,
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": errors[0],
        "requests": len(lat),
    }


def predicted(
    family: str, preset: str, hardware: str, cut: int, robots: list[int], max_batch: int
) -> list[dict[str, float]]:
    """Closed-loop fleet on ``hardware`` by the roofline, batching off and on (see the module docstring)."""
    from executor.models import build_model
    from executor.roofline import batched_cloud_ms

    specs = build_model(family, preset, device="meta").block_specs()
    t1 = batched_cloud_ms(specs, hardware, 1, cut)
    rows = []
    for n in robots:
        b = min(n, max_batch)
        tb = batched_cloud_ms(specs, hardware, b, cut)
        rows.append(
            {
                "robots": n,
                "off_throughput_rps": 1e3 / t1,
                "off_latency_ms": n * t1,
                "on_throughput_rps": b * 1e3 / tb,
                "on_latency_ms": -(-n // b) * tb,
            }
        )
    return rows


def batched_forward(family: str, preset: str, cut: int, sizes: list[int], repeats: int) -> list[dict[str, float]]:
    """Per-request ms of B requests at ``cut`` run as one batch vs one by one (interleaved, medians)."""
    from executor.models import build_model

    model = build_model(family, preset, seed=0)
    rows = []
    for b in sizes:
        payloads = [model.edge_session(cut).start(model.make_observation(s)) for s in range(b)]
        batch_ms, alone_ms = [], []
        for _ in range(repeats + 1):  # the first round warms up
            t0 = time.perf_counter()
            model.cloud_batch(cut, payloads)
            t1 = time.perf_counter()
            for p in payloads:
                model.cloud_session(cut).on_request(p)
            t2 = time.perf_counter()
            batch_ms.append((t1 - t0) * 1e3 / b)
            alone_ms.append((t2 - t1) * 1e3 / b)
        one, batched = statistics.median(alone_ms[1:]), statistics.median(batch_ms[1:])
        rows.append(
            {
                "family": family,
                "batch": b,
                "alone_ms_per_request": one,
                "batched_ms_per_request": batched,
                "speedup": one / batched,
            }
        )
    return rows


def recovery(serving, edge, cut: int, fault: str, deadline_ms: float, watch_s: float) -> dict[str, float]:
    """One robot streams requests; one replica is killed or frozen; what the robot saw and when Serve recovered."""
    import ray

    from executor.client import EdgeClient
    from executor.protocol import RemoteError, TransportTimeout

    handle = serving.server._deployment
    pids: dict[int, str] = {}  # pid -> actor id (hex) of each replica
    t_end = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < t_end:
        d = handle.describe.remote().result(timeout_s=60)
        pids[d["pid"]] = d["actor_id"]
    victim_pid = min(pids)
    actors = serving.replica_actors()
    obs = edge.make_observation(0)
    lat: list[float] = []
    lost = [0]
    stop = threading.Event()

    def robot() -> None:
        with EdgeClient(edge, serving.url) as client:
            client.connect(timeout_s=30)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.infer(obs, cut, deadline=t0 + deadline_ms / 1e3)
                    lat.append((time.perf_counter() - t0) * 1e3)
                except (RemoteError, TransportTimeout):
                    lost[0] += 1
                time.sleep(0.02)

    t = threading.Thread(target=robot, daemon=True)
    t.start()
    time.sleep(1.0)
    n_before = len(lat)
    t_fault = time.monotonic()
    if fault == "kill":
        victim_id = actors[0]._actor_id
        ray.kill(actors[0], no_restart=True)
    else:
        victim_id = next(a for a in actors if a._actor_id.hex() == pids[victim_pid])._actor_id
        os.kill(victim_pid, signal.SIGSTOP)
    recovered_s = float("nan")
    try:
        while time.monotonic() - t_fault < watch_s:
            alive = serving.replica_actors()
            ids = {a._actor_id for a in alive}
            if victim_id not in ids and serving.running_replicas() == 2 and len(alive) == 2:
                recovered_s = time.monotonic() - t_fault
                break
            time.sleep(0.25)
    finally:
        if fault == "freeze":
            try:
                os.kill(victim_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    time.sleep(1.0)
    stop.set()
    t.join(30)
    after = lat[n_before:]
    return {
        "fault": fault,
        "requests": len(after),
        "lost": lost[0],
        "max_latency_ms": max(after) if after else float("nan"),
        "median_latency_ms": statistics.median(after) if after else float("nan"),
        "recovered_s": recovered_s,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="openvla")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--cut", type=int, default=0, help="split point of every request (default 0: full offload)")
    p.add_argument("--robots", default="1,4,8,16")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per fleet size")
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=16, help="batch size limit with batching on (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0, help="batch wait with batching on (default 0)")
    p.add_argument("--batching", default="off,on", help="which settings to measure (default off,on)")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--hardware", default="a100")
    p.add_argument("--predict-preset", default="full", help="model preset the roofline prediction prices")
    p.add_argument("--deadline-ms", type=float, default=2000.0, help="robot's budget per request in recovery runs")
    p.add_argument("--watch-s", type=float, default=60.0, help="bound on the wait for Serve's recovery")
    p.add_argument("--skip-recovery", action="store_true")
    p.add_argument(
        "--forward-families",
        default="",
        help="e.g. openvla,pi0,smolvla: also time the batched forward alone (no network) for these families",
    )
    p.add_argument("--forward-sizes", default="1,4,8,16")
    p.add_argument("--forward-repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    robots = [int(x) for x in args.robots.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    import torch

    from executor.models import build_model
    from executor.server import CloudServer, ServerConfig

    torch.set_num_threads(1)
    edge = build_model(args.model, args.preset, seed=0)
    out: dict[str, object] = {"args": vars(args), "measured": {}, "predicted": [], "recovery": []}
    print(
        f"# {args.model}/{args.preset} cut {args.cut}, {args.seconds:g} s per fleet size, this machine "
        f"({os.cpu_count()} cores); batching on = --max-batch {args.max_batch} --batch-wait-ms {args.batch_wait_ms:g}"
    )
    print(
        f"{'engine':8} {'batch':>5} {'robots':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'mean batch':>10}"
    )
    recovered = args.skip_recovery
    for engine in engines:
        for setting in [b for b in args.batching.split(",") if b]:
            config = ServerConfig(
                port=0, max_batch=args.max_batch if setting == "on" else 1, batch_wait_ms=args.batch_wait_ms
            )
            rows = []
            if engine == "local":
                with CloudServer(build_model(args.model, args.preset, seed=0), config) as server:
                    for n in robots:
                        before = _batch_counts(server)
                        rows.append(fleet_run(edge, server.url, n, args.cut, args.seconds))
                        after = _batch_counts(server)
                        batches = after[0] - before[0]
                        rows[-1]["mean_batch"] = (after[1] - before[1]) / batches if batches else 1.0
                        _print_row(engine, setting, rows[-1])
            else:
                from executor.ray_serve import RayServeConfig, RayServing

                rc = RayServeConfig(
                    replicas=args.replicas,
                    num_cpus_per_replica=args.ray_cpus / args.replicas,
                    num_cpus=args.ray_cpus,
                    address="local",
                    object_store_memory_bytes=100_000_000,
                )
                with RayServing(args.model, args.preset, config, rc, seed=0) as serving:
                    for n in robots:
                        rows.append(fleet_run(edge, serving.url, n, args.cut, args.seconds))
                        _print_row(f"ray x{args.replicas}", setting, rows[-1])
                    if not recovered:
                        recovered = True
                        for fault in ("kill", "freeze"):
                            r = recovery(serving, edge, args.cut, fault, args.deadline_ms, args.watch_s)
                            out["recovery"].append(r)  # type: ignore[union-attr]
            out["measured"][f"{engine}-batching-{setting}"] = rows  # type: ignore[index]
    pred = predicted(args.model, args.predict_preset, args.hardware, args.cut, robots, args.max_batch)
    out["predicted"] = pred
    print(
        f"\n# predicted: {args.model}/{args.predict_preset} cloud half at cut {args.cut} on {args.hardware} "
        f"(roofline, bf16), closed loop of N robots, batching on = batches of up to {args.max_batch}"
    )
    print(f"{'robots':>6} {'off req/s':>10} {'off ms':>8} {'on req/s':>10} {'on ms':>8}")
    for r in pred:
        print(
            f"{r['robots']:>6} {r['off_throughput_rps']:>10.1f} {r['off_latency_ms']:>8.1f} "
            f"{r['on_throughput_rps']:>10.1f} {r['on_latency_ms']:>8.1f}"
        )
    forward_rows = []
    for family in [f for f in args.forward_families.split(",") if f]:
        forward_rows += batched_forward(
            family, args.preset, args.cut, [int(x) for x in args.forward_sizes.split(",")], args.forward_repeats
        )
    out["batched_forward"] = forward_rows
    if forward_rows:
        print(
            f"\n# batched forward alone: {args.preset} cloud half at cut {args.cut}, this machine, ms per request "
            f"(median of {args.forward_repeats}, interleaved)"
        )
        print(f"{'family':8} {'batch':>5} {'alone':>8} {'batched':>8} {'speed-up':>8}")
        for r in forward_rows:
            print(
                f"{r['family']:8} {r['batch']:>5} {r['alone_ms_per_request']:>8.2f} "
                f"{r['batched_ms_per_request']:>8.2f} {r['speedup']:>8.2f}"
            )
    if out["recovery"]:
        print(f"\n# recovery (ray x{args.replicas}, one robot, {args.deadline_ms:g} ms budget per request)")
        print(f"{'fault':8} {'requests':>8} {'lost':>5} {'median ms':>10} {'max ms':>8} {'recovered s':>11}")
        for r in out["recovery"]:  # type: ignore[union-attr]
            print(
                f"{r['fault']:8} {r['requests']:>8} {r['lost']:>5} {r['median_latency_ms']:>10.1f} "
                f"{r['max_latency_ms']:>8.1f} {r['recovered_s']:>11.1f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def _batch_counts(server) -> tuple[int, int]:
    """(batches, requests in them) the server's batcher has run so far ((0, 0) with batching off)."""
    b = server._batcher
    return (b.batches, b.batched_requests) if b is not None else (0, 0)


def _print_row(engine: str, setting: str, r: dict[str, float]) -> None:
    mean = f"{r['mean_batch']:>10.1f}" if "mean_batch" in r else f"{'-':>10}"
    print(
        f"{engine:8} {setting:>5} {r['robots']:>6} {r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} "
        f"{r['p99_ms']:>8.1f} {r['errors']:>6} {mean}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
