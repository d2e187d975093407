"""Networked split executor figures: framework overhead, shaped-link accuracy, server throughput, failover time.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_network.py`` (``--quick`` for fewer repetitions).
Everything runs on loopback on this machine; medians are printed. The machine is shared, so the numbers are
indicative; the ratios (shaped-link accuracy) are the robust part.

1. Framework overhead per call on an unshaped loopback link: client encode + websocket send + server receive +
   decode (validation, copy to torch) + reply + client decode, for synthetic payloads of 0.1 / 1 / 10 MB (the server
   decodes them fully, then rejects them before any model compute), as ms per call and ms per MB; plus the overhead
   of real split calls of the ``small`` models (total - edge compute - cloud compute).
2. Shaped-link accuracy: measured / ideal one-way transfer time (bytes / rate + one-way delay) through the relay for
   100 KB, 1 MB, 10 MB at 10 and 100 Mbit/s (20 ms RTT).
3. Server throughput (requests/s, cloud-only cut) with 1, 4, 8 concurrent clients.
4. Time from server death (SIGKILL of a server process) to the runtime's first fallback action.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def _torch_one_thread() -> None:
    import torch

    torch.set_num_threads(1)


# -------------------------------------------------------------------------------------------- 1. overhead
def bench_overhead(reps: int) -> None:
    from executor import wire
    from executor.client import EdgeClient
    from executor.models import build_model
    from executor.protocol import ERROR, TYPE_KEY
    from executor.server import CloudServer, ServerConfig

    print("\n== 1. framework overhead per call, unshaped loopback (median) ==")
    cloud = build_model("openvla", "tiny", seed=0)
    edge = build_model("openvla", "tiny", seed=0)
    # the synthetic payloads are refused by design (after a full decode): allow that many "bad" messages
    config = ServerConfig(port=0, max_errors_per_connection=10_000)
    with CloudServer(cloud, config) as server, EdgeClient(edge, server.url) as client:
        client.connect()
        print(f"{'payload':>10} {'encode ms':>10} {'round trip ms':>14} {'ms per MB':>10}")
        for mb in (0.1, 1.0, 10.0):
            n = int(mb * 1e6) // 4
            arr = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
            enc, rtt = [], []
            for i in range(reps):
                header = {
                    TYPE_KEY: "split",
                    "request_id": 10_000 + i,
                    "cut": 1,
                    "payload": {"kind": "activations", "cut": 1, "step": 0, "activations": ["junk"], "meta": {}},
                }
                t0 = time.perf_counter()
                data = wire.encode({"junk": arr}, header)
                t1 = time.perf_counter()
                ws = client.connection.require_ws()
                import asyncio

                ex = asyncio.run_coroutine_threadsafe(
                    client.connection.exchange(ws, data, 10_000 + i), client.connection.loop
                ).result(30)
                reply = wire.decode(ex.reply)
                t2 = time.perf_counter()
                assert reply.meta[TYPE_KEY] == ERROR  # decoded fully, refused before compute
                enc.append((t1 - t0) * 1e3)
                rtt.append((t2 - t0) * 1e3)
            med = statistics.median(rtt)
            print(f"{mb:>8.1f}MB {statistics.median(enc):>10.2f} {med:>14.2f} {med / mb:>10.2f}")

    print("\n   real split calls of the small models (overhead = total - edge compute - cloud compute):")
    print(f"   {'model':>8} {'cut':>4} {'MB up':>7} {'total ms':>9} {'overhead ms':>12} {'ms per MB':>10}")
    for family, cuts in (("openvla", (0, 6, 12)), ("pi0", (0, 6, 12))):
        cloud = build_model(family, "small", seed=0)
        edge = build_model(family, "small", seed=0)
        obs = edge.make_observation(0)
        with CloudServer(cloud, ServerConfig(port=0)) as server, EdgeClient(edge, server.url) as client:
            client.connect()
            for cut in cuts:
                rows = []
                for _ in range(max(3, reps // 2)):
                    t = client.infer(obs, cut, deadline=time.perf_counter() + 60).timing
                    rows.append((t.total_ms, t.total_ms - t.edge_ms - t.cloud_compute_ms, t.bytes_up + t.bytes_down))
                total = statistics.median(r[0] for r in rows)
                over = statistics.median(r[1] for r in rows)
                mb = rows[0][2] / 1e6
                print(f"   {family:>8} {cut:>4} {mb:>7.3f} {total:>9.2f} {over:>12.2f} {over / mb:>10.2f}")


# -------------------------------------------------------------------------------------------- 2. shaped link
def _sink(port_q: queue.Queue, arrivals: list[float]) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn, srv:
        while True:
            head = conn.recv(8, socket.MSG_WAITALL)
            if len(head) < 8:
                return
            n = int.from_bytes(head, "little")
            while n > 0:
                got = conn.recv(min(n, 1 << 20))
                if not got:
                    return
                n -= len(got)
            arrivals.append(time.perf_counter())
            conn.sendall(b"k")


def bench_link(quick: bool) -> None:
    from executor.link import ShapedLink
    from traces.trace import BandwidthTrace

    print("\n== 2. shaped-link accuracy: measured / ideal (bytes*8/rate + one-way delay 10 ms), median ==")
    print(f"{'size':>8} {'rate':>10} {'ideal ms':>9} {'measured ms':>12} {'ratio':>7}")
    for rate in (10.0, 100.0):
        trace = BandwidthTrace(times_s=[0.0], up_mbps=[rate], down_mbps=[rate], rtt_ms=20.0, name=f"const{rate}")
        for nbytes in (100_000, 1_000_000, 10_000_000):
            port_q: queue.Queue = queue.Queue()
            arrivals: list[float] = []
            threading.Thread(target=_sink, args=(port_q, arrivals), daemon=True).start()
            with ShapedLink(trace, "127.0.0.1", port_q.get(timeout=5)) as link:
                with socket.create_connection(link.address) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.sendall((1).to_bytes(8, "little") + b"w")
                    s.recv(1)
                    reps = 1 if (quick or nbytes * 8 / (rate * 1e6) > 2) else 3
                    measured = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        s.sendall(nbytes.to_bytes(8, "little") + b"x" * nbytes)
                        s.recv(1)
                        measured.append(arrivals[-1] - t0)
            ideal = (nbytes + 8) * 8 / (rate * 1e6) + 0.010
            m = statistics.median(measured)
            print(f"{nbytes / 1e6:>6.1f}MB {rate:>6.0f}Mbps {ideal * 1e3:>9.1f} {m * 1e3:>12.1f} {m / ideal:>7.3f}")


# -------------------------------------------------------------------------------------------- 3. throughput
def bench_throughput(duration_s: float) -> None:
    from executor.client import EdgeClient
    from executor.models import build_model
    from executor.server import CloudServer, ServerConfig

    print(f"\n== 3. server throughput, cloud-only cut (all compute on the server), {duration_s:.0f} s per row ==")
    for family, preset in (("openvla", "tiny"), ("openvla", "small")):
        cloud = build_model(family, preset, seed=0)
        edge = build_model(family, preset, seed=0)
        obs = edge.make_observation(0)
        with CloudServer(cloud, ServerConfig(port=0)) as server:
            print(f"  {family}/{preset}")
            print(
                f"  {'clients':>8} {'req/s':>8} {'median latency ms':>18} {'median queue ms':>16} {'max queue len':>14}"
            )
            for n in (1, 4, 8):
                lat: list[float] = []
                qms: list[float] = []
                qlen: list[int] = []
                lock = threading.Lock()
                stop = time.perf_counter() + duration_s
                count = [0]

                def worker() -> None:
                    with EdgeClient(edge, server.url) as client:
                        client.connect()
                        while time.perf_counter() < stop:
                            t = client.infer(obs, 0, deadline=time.perf_counter() + 60).timing
                            with lock:
                                count[0] += 1
                                lat.append(t.total_ms)
                                qms.append(t.cloud_queue_ms)
                                qlen.append(t.server_queue_length)

                threads = [threading.Thread(target=worker) for _ in range(n)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                elapsed = time.perf_counter() - t0
                print(
                    f"  {n:>8} {count[0] / elapsed:>8.1f} {statistics.median(lat):>18.2f} "
                    f"{statistics.median(qms):>16.2f} {max(qlen):>14}"
                )


# -------------------------------------------------------------------------------------------- 4. failover
def bench_failover(reps: int) -> None:
    from executor.client import ClientConfig
    from executor.edge_cli import FixedCutPlanner
    from executor.models import build_model
    from executor.runtime import EdgeRuntime, RuntimeConfig
    from executor.server_process import ServerProcess

    print("\n== 4. server death (SIGKILL) -> first fallback action (runtime stepping back to back) ==")
    edge = build_model("openvla", "tiny", seed=0)
    obs = edge.make_observation(0)
    detect, total = [], []
    for _ in range(reps):
        server = ServerProcess("openvla", "tiny").start()
        proc, port = server.proc, server.port
        runtime = EdgeRuntime(
            edge,
            FixedCutPlanner(2),
            lambda ctx: np.zeros(1),
            server_url=f"ws://127.0.0.1:{port}",
            client_config=ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.5),
            config=RuntimeConfig(deadline_s=1.0, realtime=False, connect_timeout_s=30),
        )
        runtime.start()
        for _ in range(5):
            assert runtime.step(obs).mode == "split"
        t_kill = time.perf_counter()
        proc.kill()
        while True:
            rec = runtime.step(obs)
            if rec.mode == "fallback":
                t_action = time.perf_counter()
                break
        proc.wait()
        total.append((t_action - t_kill) * 1e3)
        detect.append(rec.latency_ms)
        runtime.close()
    print(
        f"  kill -> fallback action ready: median {statistics.median(total):.1f} ms over {reps} runs "
        f"(all: {', '.join(f'{x:.1f}' for x in total)})"
    )
    print(
        f"  latency of that fallback step (observation -> edge-only actions): median {statistics.median(detect):.1f} ms"
    )
    print("  at 10 Hz a real loop adds up to one control period before the next observation is taken.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", choices=("overhead", "link", "throughput", "failover"), default=None)
    args = parser.parse_args()
    _torch_one_thread()
    import logging

    logging.basicConfig(level=logging.WARNING)
    reps = 5 if args.quick else 15
    if args.only in (None, "overhead"):
        bench_overhead(reps)
    if args.only in (None, "link"):
        bench_link(args.quick)
    if args.only in (None, "throughput"):
        bench_throughput(3.0 if args.quick else 8.0)
    if args.only in (None, "failover"):
        bench_failover(3 if args.quick else 5)


if __name__ == "__main__":
    main()
