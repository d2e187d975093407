"""Hostile input against a real `ecc serve` process (loopback only; every loop bounded; everything stops by itself).

    python benchmarks/bench_hostile.py                       # openvla tiny, 10,000 messages, 1,000 idle connections
    python benchmarks/bench_hostile.py --messages 2000 --idle 200 --latency-calls 100   # quicker

Three phases against one server subprocess with its default settings (``ecc serve --model M --preset P --port 0``):

1. fuzz: ``--messages`` seeded hostile messages over every class of ``tests/executor/test_net_hostile.py``
   (random bytes, bit flips, truncations, zero-and-huge dimensions, NUL-filled fields, huge ids, text frames,
   openpi maps that lie about their arrays ...), sent one after another on connections reopened whenever the server
   closes one for too many bad messages (1008, by design). Counted: replies of each kind, ``internal`` error
   replies and 1011 closes (unhandled errors), a dead server (crash), the server's RSS growth and its log bytes.
2. lockout: ``--idle`` idle websocket connections plus a slowloris client (a frame announced, then one byte every
   0.5 s) held open while a new well-formed client connects and runs one exact inference.
3. oversize: a well-formed client's latency (cut ``--cut``) in ``--rounds`` rounds; in each, blocks of ``--block``
   calls take turns between clean (nothing else running) and each condition of ``--conditions`` until every
   condition has ``--latency-calls`` calls: ``oversize``, an attacker process that keeps opening connections and
   sending a message one byte over the server's limit (``--attack-rate`` per second); each must be rejected before
   it is decoded (close 1009, the socket dropped mid-upload, or, once the address is out of strikes
   (``--oversized-per-minute``), the connection dropped at accept); ``oversize_header``, the same attacker sending
   only the frame header that announces such a message (the server's side of the attack without the attacker's own
   4 MB upload on this machine); ``connect``, a control opening well-formed
   connections at the same rate; ``spin`` (``--control``), a control CPU-bound process with no network, which shows
   what any extra busy process costs on this machine; ``light_spin``, a control busy 5 ms in every 50 ms (about
   the attacker process's own CPU). Reported per condition: p50/p99 per round, the median over
   rounds of the p99 and of its ratio to clean's in the same round, the pooled p99, the server's CPU per call and
   the attacker process's own CPU.

    python benchmarks/bench_hostile.py --phases oversize --rounds 9 --control      # run A of docs/security.md
    python benchmarks/bench_hostile.py --phases oversize --conditions oversize,connect \\
        --serve-arg=--oversized-per-minute=1000000                                 # without the per-address strikes
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "executor"))

from executor.server_process import ServerProcess  # noqa: E402


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class HostileServer(ServerProcess):
    """``ecc serve`` in a child process (executor.server_process.ServerProcess); its stderr (the log) goes to a file
    whose size is the log volume."""

    def __init__(self, model: str, preset: str, log_path: Path, extra: list[str]) -> None:
        super().__init__(model, preset, extra_args=extra, stderr_path=log_path)
        self.log_path = log_path
        try:
            self.start()
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {log_path.read_text(errors='replace')[-2000:]}") from e

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return _rss_bytes(self.pid)

    def log_bytes(self) -> int:
        return self.log_path.stat().st_size


def _raw_ws(port: int, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("handshake refused")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(buf.split(b"\r\n", 1)[0].decode())
    return sock


def phase_fuzz(server: HostileServer, edge, n: int, seed: int) -> dict:
    from test_net_hostile import fuzz_messages
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from executor import msgpack_numpy, wire

    messages = fuzz_messages(edge, n, seed)
    rss0, log0 = server.rss(), server.log_bytes()
    counts: dict[str, int] = {}
    closes: dict[int, int] = {}
    unanswered = internal = 0
    max_reply = 0
    i = 0
    t0 = time.perf_counter()
    while i < len(messages) and server.alive:
        with connect(server.url, compression=None, max_size=None, open_timeout=10) as ws:
            msgpack_numpy.unpackb(ws.recv(timeout=10))
            while i < len(messages):
                _, message = messages[i]
                i += 1
                try:
                    ws.send(message)
                    raw = ws.recv(timeout=10)
                except ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd is not None else 1006
                    closes[code] = closes.get(code, 0) + 1
                    if code == 1008:  # closed for too many bad messages (by design): resend on a new connection
                        i -= 1
                    else:
                        unanswered += 1
                    break
                except TimeoutError:
                    unanswered += 1
                    break
                max_reply = max(max_reply, len(raw))
                kind = "text" if isinstance(raw, str) else wire.decode(raw).meta["ecc"]
                if kind == "error" and wire.decode(raw).meta["code"] == "internal":
                    internal += 1
                counts[kind] = counts.get(kind, 0) + 1
    wall = time.perf_counter() - t0
    return {
        "messages": n,
        "sent": i,
        "replies": counts,
        "closes": {str(k): v for k, v in closes.items()},
        "unhandled_1011": closes.get(1011, 0),
        "internal_errors": internal,
        "unanswered": unanswered,
        "crashed": not server.alive,
        "rss_growth_mb": (server.rss() - rss0) / 1e6,
        "log_growth_kb": (server.log_bytes() - log0) / 1e3,
        "max_reply_bytes": max_reply,
        "wall_s": wall,
    }


def _exact_call(edge, url: str, cut: int = 3) -> float:
    from executor.client import ClientConfig, EdgeClient

    obs = edge.make_observation(7)
    t0 = time.perf_counter()
    with EdgeClient(edge, url, ClientConfig(connect_timeout_s=10.0)) as client:
        client.connect()
        out = client.infer(obs, cut, deadline=time.perf_counter() + 10.0)
    np.testing.assert_array_equal(out.actions, edge.forward(obs))
    return time.perf_counter() - t0


def phase_lockout(server: HostileServer, edge, idle: int) -> dict:
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(idle):
        try:
            socks.append(_raw_ws(server.port))
        except (ConnectionError, OSError):
            refused += 1
    slow = _raw_ws(server.port)
    slow.sendall(bytes([0x82, 0x80 | 126]) + struct.pack(">H", 60000) + b"\0\0\0\0")
    stop = threading.Event()

    def trickle() -> None:
        for _ in range(240):  # at most 2 minutes
            if stop.wait(0.5):
                return
            try:
                slow.sendall(b"\0")
            except OSError:
                return

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    time.sleep(1.5)  # everyone idle past the eviction threshold
    try:
        new_client_s = _exact_call(edge, server.url)
        ok = True
    except Exception as e:  # noqa: BLE001 - reported
        new_client_s, ok = float("nan"), False
        print(f"new client failed: {type(e).__name__}: {e}", file=sys.stderr)
    stop.set()
    th.join(2)
    for s in socks + [slow]:
        s.close()
    return {
        "idle_opened": len(socks),
        "idle_refused": refused,
        "slowloris": True,
        "new_client_ok": ok,
        "new_client_connect_and_infer_s": new_client_s,
        "server_alive": server.alive,
    }


ATTACKER = r"""
import struct, sys, time
from websockets.sync.client import connect
url, limit, rate, kind = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
big = b"ECCW" + b"\0" * limit  # one byte over the limit; its content never matters: it must not be decoded
header = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", limit + 1) + b"\0\0\0\0"  # announces it, sends nothing more
counts = {"attempts": 0, "refused": 0, "opened": 0, "closed_1009": 0, "dropped": 0, "answered": 0}
t_next = time.monotonic()
while True:  # ends when the parent terminates it (or closes stdout)
    if kind in ("spin", "light_spin"):  # controls: a CPU-bound process, no network at all
        t_end = time.monotonic() + (0.05 if kind == "spin" else 0.005)
        while time.monotonic() < t_end:
            pass
        if kind == "light_spin":
            time.sleep(0.045)
        print(0, 0, 0, 0, 0, 0, flush=True)
        continue
    counts["attempts"] += 1
    try:
        ws = connect(url, compression=None, max_size=None, open_timeout=10)
    except Exception:
        counts["refused"] += 1  # dropped before the handshake (the address is out of oversized-message strikes)
        ws = None
    if ws is not None:
        with ws:
            try:
                ws.recv(timeout=10)
                counts["opened"] += 1  # handshake done, metadata read
                if kind in ("oversize", "oversize_header"):
                    if kind == "oversize":
                        ws.send(big)
                    else:
                        ws.socket.sendall(header)
                    ws.recv(timeout=10)
                    counts["answered"] += 1  # a reply: the oversized message was accepted (must never happen)
            except Exception as e:
                rcvd = getattr(e, "rcvd", None)
                if rcvd is not None and rcvd.code == 1009:
                    counts["closed_1009"] += 1  # the close frame arrived before the socket went
                else:
                    counts["dropped"] += 1  # the server dropped the socket mid-upload (reset/broken pipe)
    print(*counts.values(), flush=True)
    if rate > 0:
        t_next += 1.0 / rate
        time.sleep(max(0.0, t_next - time.monotonic()))
"""
ATTACK_COUNTS = ("attempts", "refused", "opened", "closed_1009", "dropped", "answered")
CONDITIONS = {
    "oversize": "an attacker process opening a connection and sending a message one byte over the limit, --attack-rate "
    "per second",
    "oversize_header": "the attacker sending only the frame header of such a message (the server's side of the attack "
    "without the attacker's own upload)",
    "connect": "control: a process opening and closing well-formed connections (metadata read, no message) at the "
    "same rate",
    "spin": "control: a CPU-bound process, no network (what any extra busy process costs on this machine)",
    "light_spin": "control: a process busy 5 ms in every 50 ms, no network (about the attacker's own CPU)",
}


def _start_attacker(url: str, limit: int, rate: float, kind: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, url, str(limit), str(rate), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdout.readline()  # the first attempt is over: the attack is on
    return proc


def _stop_attacker(proc: subprocess.Popen) -> tuple[dict[str, int], float]:
    """The attacker's counts (``ATTACK_COUNTS``) and its CPU seconds."""
    cpu = _cpu_s(proc.pid)
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    lines = out.decode().split()
    n = len(ATTACK_COUNTS)
    values = [int(v) for v in lines[-n:]] if len(lines) >= n else [0] * n
    return dict(zip(ATTACK_COUNTS, values, strict=True)), cpu


def phase_oversize(
    server: HostileServer,
    edge,
    calls: int,
    cut: int,
    block: int,
    rate: float,
    rounds: int,
    kinds: tuple[str, ...] = ("oversize",),
) -> dict:
    """A well-formed client's latency under each condition of ``kinds`` and without (clean), interleaved: each of
    ``rounds`` rounds runs blocks of ``block`` calls cycling clean, kinds[0], kinds[1], ... until every condition
    has ``calls`` calls in that round, so every condition sees the same drift of the machine's load. Per round and
    condition: p50, p99 and the p99's ratio to clean; reported: their medians over the rounds, the pooled ones, the
    server's CPU per well-formed call and the attacker process's own CPU share."""
    from websockets.sync.client import connect

    from executor import msgpack_numpy
    from executor.client import ClientConfig, EdgeClient

    with connect(server.url, compression=None, max_size=None) as ws:
        limit = int(msgpack_numpy.unpackb(ws.recv(timeout=10))["max_message_bytes"])
    obs = edge.make_observation(3)
    conditions = ("clean", *kinds)
    lat: dict[str, list[list[float]]] = {c: [[] for _ in range(rounds)] for c in conditions}
    cpu = dict.fromkeys(conditions, 0.0)  # the server's CPU seconds in each condition's blocks
    wall = dict.fromkeys(conditions, 0.0)
    attacker_cpu = dict.fromkeys(conditions, 0.0)
    attack = {k: dict.fromkeys(ATTACK_COUNTS, 0) for k in kinds}
    with EdgeClient(edge, server.url, ClientConfig(connect_timeout_s=10.0, probe_interval_s=None)) as client:
        client.connect()
        for _ in range(5):
            client.infer(obs, cut, deadline=time.perf_counter() + 10.0)
        for r in range(rounds):
            for _ in range(max(1, calls // block)):
                for cond in conditions:
                    attacker = _start_attacker(server.url, limit, rate, cond) if cond != "clean" else None
                    a0 = _cpu_s(attacker.pid) if attacker is not None else 0.0  # its start-up not counted
                    c0, w0 = _cpu_s(server.pid), time.perf_counter()
                    try:
                        for _ in range(block):
                            t0 = time.perf_counter()
                            client.infer(obs, cut, deadline=time.perf_counter() + 10.0)
                            lat[cond][r].append((time.perf_counter() - t0) * 1e3)
                    finally:
                        cpu[cond] += _cpu_s(server.pid) - c0
                        wall[cond] += time.perf_counter() - w0
                        if attacker is not None:
                            counts, a_cpu = _stop_attacker(attacker)
                            attacker_cpu[cond] += a_cpu - a0
                            for k, v in counts.items():
                                attack[cond][k] += v
    per_round = [
        {
            c: {"p50_ms": float(np.percentile(lat[c][r], 50)), "p99_ms": float(np.percentile(lat[c][r], 99))}
            for c in conditions
        }
        for r in range(rounds)
    ]
    for row in per_round:
        for c in kinds:
            row[c]["p99_ratio"] = row[c]["p99_ms"] / row["clean"]["p99_ms"]
    out: dict = {
        "limit_bytes": limit,
        "attack_rate_per_s": rate,
        "rounds": rounds,
        "calls_per_condition_per_round": len(lat["clean"][0]),
        "per_round": per_round,
        "server_alive": server.alive,
    }
    for c in conditions:
        pooled = [x for rnd in lat[c] for x in rnd]
        d = {
            "median_p50_ms": float(np.median([row[c]["p50_ms"] for row in per_round])),
            "median_p99_ms": float(np.median([row[c]["p99_ms"] for row in per_round])),
            "pooled_p50_ms": float(np.percentile(pooled, 50)),
            "pooled_p99_ms": float(np.percentile(pooled, 99)),
            "server_cpu_ms_per_call": 1e3 * cpu[c] / len(pooled),
            "server_cpu_share": cpu[c] / wall[c],
        }
        if c != "clean":
            d["median_p99_ratio"] = float(np.median([row[c]["p99_ratio"] for row in per_round]))
            d["pooled_p99_ratio"] = d["pooled_p99_ms"] / out["clean"]["pooled_p99_ms"]
            d["attacker_cpu_share"] = attacker_cpu[c] / wall[c]
            d["attempts"] = attack[c]
            n = attack[c]["attempts"]
            extra = cpu[c] - out["clean"]["server_cpu_ms_per_call"] / 1e3 * len(pooled)  # beyond the calls' own
            d["server_cpu_ms_per_attempt"] = 1e3 * extra / n if n else float("nan")
        out[c] = d
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="openvla")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--phases", default="fuzz,lockout,oversize", help="comma-separated phases to run (default all)")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--idle", type=int, default=1_000)
    p.add_argument("--latency-calls", type=int, default=100, help="well-formed calls per condition and round")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the oversize phase (medians are over these)")
    p.add_argument("--block", type=int, default=20, help="calls per block (conditions take turns block by block)")
    p.add_argument("--cut", type=int, default=3)
    p.add_argument("--attack-rate", type=float, default=20.0, help="attacker connections per second (0: back to back)")
    p.add_argument("--control", action="store_true", help="add the 'spin' condition (a CPU-bound process)")
    p.add_argument(
        "--conditions",
        default="oversize",
        help=f"comma-separated conditions of the oversize phase beside clean, of {sorted(CONDITIONS)}",
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for ecc serve, e.g. --serve-arg=--oversized-per-minute=1000000 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if min(args.messages, args.idle, args.latency_calls, args.block, args.rounds) < 1:
        p.error("--messages, --idle, --latency-calls, --rounds and --block must be >= 1")
    phases = [x for x in args.phases.split(",") if x]
    kinds = tuple(dict.fromkeys([x for x in args.conditions.split(",") if x] + (["spin"] if args.control else [])))
    if not set(phases) <= {"fuzz", "lockout", "oversize"} or not set(kinds) <= set(CONDITIONS):
        p.error(f"--phases takes fuzz,lockout,oversize; --conditions takes {','.join(sorted(CONDITIONS))}")
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from executor.models import build_model

    edge = build_model(args.model, args.preset, seed=0)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_hostile_server_{os.getpid()}.log"
    server = HostileServer(args.model, args.preset, log_path, args.serve_arg)
    results: dict = {"model": f"{args.model}/{args.preset}", "server_url": server.url, "serve_args": args.serve_arg}
    try:
        rss_start = server.rss()
        if "fuzz" in phases:
            results["fuzz"] = phase_fuzz(server, edge, args.messages, args.seed)
            results["fuzz"]["client_exact_after"] = bool(_exact_call(edge, server.url) > 0)
        if "lockout" in phases:
            results["lockout"] = phase_lockout(server, edge, args.idle)
        if "oversize" in phases:
            results["oversize"] = phase_oversize(
                server, edge, args.latency_calls, args.cut, args.block, args.attack_rate, args.rounds, kinds
            )
        results["server_rss_mb"] = {"start": rss_start / 1e6, "end": server.rss() / 1e6}
        results["server_log_kb"] = server.log_bytes() / 1e3
    finally:
        server.stop()
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    print()
    if "fuzz" in results:
        f = results["fuzz"]
        print(
            f"fuzz: {f['sent']} messages, {f['unhandled_1011']} 1011 closes, {f['internal_errors']} internal "
            f"errors, crashed={f['crashed']}, RSS +{f['rss_growth_mb']:.1f} MB, log +{f['log_growth_kb']:.0f} kB"
        )
    if "lockout" in results:
        lo = results["lockout"]
        print(
            f"lockout: {lo['idle_opened']} idle + slowloris; new client ok={lo['new_client_ok']} in "
            f"{lo['new_client_connect_and_infer_s']:.2f} s"
        )
    if "oversize" in results:
        ov = results["oversize"]
        c = ov["clean"]
        print(
            f"oversize ({ov['rounds']} rounds x {ov['calls_per_condition_per_round']} calls per condition): clean "
            f"p50 {c['median_p50_ms']:.1f} ms, p99 {c['median_p99_ms']:.1f} ms (medians over rounds); server CPU "
            f"{c['server_cpu_ms_per_call']:.1f} ms per call"
        )
        for k in kinds:
            d = ov[k]
            per_round = ", ".join(f"{row[k]['p99_ratio']:.2f}" for row in ov["per_round"])
            print(
                f"  {k}: p50 {d['median_p50_ms']:.1f} ms, p99 {d['median_p99_ms']:.1f} ms, p99 ratio median "
                f"x{d['median_p99_ratio']:.2f} (per round: {per_round}), pooled "
                f"x{d['pooled_p99_ratio']:.2f}; server CPU {d['server_cpu_ms_per_call']:.1f} ms per call, "
                f"{d['server_cpu_ms_per_attempt']:.2f} ms per attempt; "
                f"attacker CPU {100 * d['attacker_cpu_share']:.0f}% of a core; attempts {d['attempts']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
