"""The cost and the payoff of compressing payloads (executor.wire_config), as Markdown tables for docs/payloads.md.

``frames``: per camera-frame codec, the frames' bytes and PSNR (photographic sample frames, executor.camera), encode and
decode time on this CPU, and the action error against the exact (raw) run of the ``tiny`` and ``small`` presets at
cut 0 (the frames travel encoded; every block runs on the JPEG-decoded frames); per activation dtype, the action error
at every middle cut (activations through the real wire codec). Models have random weights: the errors show how far
the numbers move, not how a trained policy's task success would change.

``choice``: whether choosing the frame codec per step (an action dimension) would pay, from the cut costs.

``speedup``: the split alone (skipping off, chunk size 1: RoboECC, StaticBestCut and, with ``--ppo-steps``, PPO
trained and evaluated with chunk size 1) against edge-only on Orin+A100 over recorded families (test side of each
family's seeded split), under raw/fp32 and under the default wire configuration, with each family's RTT
(traces.rtt), profile backend (roofline Profiles).

``target``: why OpenVLA's split alone misses 3.3x over edge-only: what uplink and RTT the target needs (cut costs)
against the families' uplink, and the measured speedup as a function of the RTT and of the bandwidth.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_codecs.py frames [--presets tiny small] [--seeds 4]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_codecs.py speedup [--episodes 8] [--traces ../shared/traces]
                                                                      [--rtt-ms -1] [--ppo-steps 30000]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_codecs.py choice [--rtt-ms 20]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_codecs.py target [--episodes 6]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

FRAME_CODECS = ("raw", "png", "jpeg:95", "jpeg:90", "jpeg:75", "jpeg:50", "resize:112+jpeg:90")
ACT_DTYPES = ("float32", "float16", "bfloat16", "int8")
FAMILIES = ("lumos5g_mmwave/4G", "wifi_cellular_sbu_mptraces", "mahimahi_cellular_us")
MODELS = ("openvla", "pi0", "smolvla")
ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_codecs")


def _error(actions: np.ndarray, exact: np.ndarray, family: str) -> float:
    """openvla: share of action tokens (bins) that differ; others: relative L2 error of the action chunk."""
    if family == "openvla":
        return float(np.mean(actions != exact))
    return float(np.linalg.norm(actions - exact) / max(np.linalg.norm(exact), 1e-12))


def frames_table(presets: list[str], seeds: int) -> str:
    from executor import wire
    from executor.camera import (
        ImageEncoding,
        image_shape,
        measure_encoding,
        sample_frames,
    )
    from executor.models import build_model, run_split

    lines = []
    models = {(f, p): build_model(f, p, seed=0) for f in MODELS for p in presets}
    head = "| frames | " + " | ".join(f"{f}/{p}" for f, p in models) + " | bytes (% raw) | PSNR dB | enc/dec ms |"
    lines += [
        (
            "Action error at cut 0 vs the raw run (openvla: share of action tokens that change; pi0, smolvla: "
            "relative L2 error of the chunk), mean over seeds; bytes, PSNR and times for the largest preset's "
            "frames (3 x 224 px for the full models: see the second table)."
        ),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for spec in FRAME_CODECS:
        enc = ImageEncoding.parse(spec)
        errs = []
        for (fam, _p), m in models.items():
            shape = image_shape(m)
            e = []
            for s in range(seeds):
                obs = m.make_observation(s)
                obs["images"] = sample_frames(shape.cameras, shape.image_px, s)
                exact = m.forward(obs)
                got = m.forward(dict(obs, images=enc.encode(obs["images"]).decode()))
                e.append(_error(got, exact, fam))
            errs.append(f"{np.mean(e):.2%}" if fam == "openvla" else f"{np.mean(e):.2e}")
        big = max(models.values(), key=lambda m: image_shape(m).raw_bytes)
        sh = image_shape(big)
        st = measure_encoding(enc, sample_frames(sh.cameras, sh.image_px), repeats=5)
        lines.append(
            f"| {spec} | " + " | ".join(errs) + f" | {st.encoded_bytes:,} ({st.ratio:.1%}) | "
            f"{st.psnr_db:.1f} | {st.encode_ms:.2f}/{st.decode_ms:.2f} |"
        )
    lines += [
        "",
        "Full-size frames (224 px, 3 cameras as pi0; bytes, PSNR, encode/decode ms on this CPU):",
        "",
        "| frames | bytes | % of raw | PSNR dB | encode ms | decode ms |",
        "|---|---|---|---|---|---|",
    ]
    for spec in FRAME_CODECS:
        st = measure_encoding(spec, sample_frames(3, 224), repeats=5)
        lines.append(
            f"| {spec} | {st.encoded_bytes:,} | {st.ratio:.1%} | {st.psnr_db:.1f} | {st.encode_ms:.2f} | "
            f"{st.decode_ms:.2f} |"
        )
    head = "| activations | " + " | ".join(f"{f}/{p}" for f, p in models) + " |"
    lines += [
        "",
        (
            "Action error vs the fp32 run, activations through the real wire codec, mean over every middle cut "
            "(1..N-1) and seeds:"
        ),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for dt in ACT_DTYPES:
        codec = {"float32": "none", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}[dt]

        def transport(p, codec=codec):
            return wire.decode_payload(wire.encode_payload(p, compression=codec), device="cpu")

        errs = []
        for (fam, _p), m in models.items():
            e = []
            for s in range(seeds):
                obs = m.make_observation(s)
                exact = m.forward(obs)
                for k in range(1, m.num_blocks):
                    got, _ = run_split(m, obs, k, transport)
                    e.append(_error(got, exact, fam))
            errs.append(f"{np.mean(e):.2%}" if fam == "openvla" else f"{np.mean(e):.2e}")
        lines.append(f"| {dt} | " + " | ".join(errs) + " |")
    return "\n".join(lines)


def _family_sets(traces: Path, rtt_ms: float) -> dict[str, tuple[Any, Any]]:
    """Per family: (the loaded TraceSet with the RTT rule applied, its seeded split)."""
    from traces.rtt import apply_rtt
    from traces.traceset import TraceSet

    out = {}
    for fam in FAMILIES:
        ts = apply_rtt(TraceSet.load([str(traces / fam)]), rtt_ms)
        out[fam] = (ts, ts.split(0))
    return out


def train_chunk1_ppo(
    model: str, wire: str, sets: dict[str, tuple[Any, Any]], steps: int, run_dir: Path, rtt_ms: float = -1.0
) -> Path:
    """PPO trained with chunk size 1 (skipping off) under ``wire`` on the train+val sides of every family's own
    split (never a test trace), family-balanced; returns the policy path."""
    from agents.training import TrainConfig, train
    from traces.traceset import TraceSet

    pool = TraceSet(
        [t for _, split in sets.values() for side in (split.train, split.val) for t in side], "families:train+val"
    )
    cfg = TrainConfig(
        model=model,
        preset="full",
        chunk_size=1,
        wire=wire,
        rtt_ms=rtt_ms,
        total_timesteps=steps,
        n_envs=2,
        eval_every_steps=max(steps // 4, 1),
        eval_episodes=4,
        run_dir=str(run_dir),
        run_name=f"{model}-{wire}-chunk1",
    )
    t0 = time.perf_counter()
    result = train(cfg, trace_set=pool)
    log.info(
        "PPO %s %s chunk 1: %d steps in %.0f s (validation return %.2f, heuristic %.2f)",
        model,
        wire,
        result.timesteps,
        time.perf_counter() - t0,
        result.best_val_return,
        result.heuristic_val_return,
    )
    return result.policy_path


def speedup_table(
    traces: Path, episodes: int, episode_s: float, rtt_ms: float = -1.0, ppo_steps: int = 0, run_dir: Path | None = None
) -> str:
    """The split alone against edge-only; with ``ppo_steps`` > 0 a PPO policy trained with chunk size 1 per model and
    wire (``train_chunk1_ppo``, into ``run_dir``) is evaluated beside RoboECC and StaticBestCut."""
    from agents.evaluation import EvalConfig, run_eval

    sets = _family_sets(traces, rtt_ms)
    ppo_head = " PPO ms | x |" if ppo_steps else ""
    lines = [
        "| model | family | RTT ms | wire | edge-only ms | RoboECC ms | x | StaticBestCut ms | x |" + ppo_head,
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if ppo_steps else ""),
    ]
    rows: dict[tuple[str, str, str], str] = {}
    for model in MODELS:
        for wire in ("exact", "default"):
            planners = "edge,roboecc,static"
            if ppo_steps:
                policy = train_chunk1_ppo(model, wire, sets, ppo_steps, run_dir or Path("runs"), rtt_ms)
                planners += f",ppo:{policy}"
            for fam, (ts, _) in sets.items():
                rtts = sorted({float(t.rtt_at_ms(0.0)) for t in ts})
                cfg = EvalConfig(
                    planners=planners,
                    model=model,
                    preset="full",
                    hardware="orin+a100",
                    episodes=episodes,
                    episode_s=episode_s,
                    chunk_size=1,
                    wire=wire,
                    plots=False,
                    rtt_ms=rtt_ms,
                )
                t0 = time.perf_counter()
                _, runs = run_eval(cfg, trace_set=ts)
                mean = {r.name: float(np.mean(r.result.latency_ms)) for r in runs}
                e = mean["edge"]
                label = "raw,fp32" if wire == "exact" else "jpeg:90,fp16"
                row = (
                    f"| {model} | {fam} | {'/'.join(f'{r:g}' for r in rtts)} | {label} | {e:.1f} | "
                    f"{mean['roboecc']:.1f} | {e / mean['roboecc']:.2f} | {mean['static']:.1f} | "
                    f"{e / mean['static']:.2f} |"
                )
                if ppo_steps:
                    row += f" {mean['ppo']:.1f} | {e / mean['ppo']:.2f} |"
                rows[(fam, model, wire)] = row
                log.info("%s %s %s: %.1f s", model, fam, wire, time.perf_counter() - t0)
    lines += [rows[(fam, model, wire)] for fam in FAMILIES for model in MODELS for wire in ("exact", "default")]
    return "\n".join(lines)


TARGET_X = 3.3  # the target for the split alone (RoboECC's published 3.16-3.28x)


def _uplink_samples(ts: Any, step_s: float = 0.5) -> np.ndarray:
    """Time-weighted uplink samples (Mbit/s) of every trace of ``ts``, one per ``step_s``."""
    return np.concatenate([t.bandwidth_at(np.arange(0.0, t.duration_s, step_s), "up") for t in ts])


def target_needs_table(traces: Path, rtts: tuple[float, ...] = (0.0, 7.0, 20.0, 50.0)) -> str:
    """What the target needs, from the cut costs (openvla full, Orin+A100, roofline, constant symmetric link, no
    queueing): per wire and RTT, the best split's floor (infinite bandwidth), the uplink the best cut needs to serve
    an inference in edge-only / 3.3 and in one control period (no queueing at chunk size 1), and the share of time
    each family's test traces offer that uplink."""
    from ecc_env.split_env import EnvConfig
    from executor.costs import cut_table
    from executor.wire_config import roofline_pair

    period_ms = EnvConfig().period_ms
    sets = _family_sets(traces, -1.0)
    groups = {"4G": _uplink_samples(sets["lumos5g_mmwave/4G"][1].test)}
    wc = sets["wifi_cellular_sbu_mptraces"][1].test
    groups["WiFi"] = _uplink_samples(wc.filter(lambda t: "_wifi" in t.name))
    groups["cellular"] = _uplink_samples(wc.filter(lambda t: "_cellular" in t.name))
    groups["Mahimahi"] = _uplink_samples(sets["mahimahi_cellular_us"][1].test)
    bw = np.geomspace(0.1, 10_000, 600)
    medians = ", ".join(f"{k} {np.median(v):.1f}" for k, v in groups.items())
    lines = [
        f"Median uplink of the test traces (Mbit/s): {medians}.",
        "",
        f"| wire | RTT ms | edge-only ms | best split at infinite bandwidth ms (x) | uplink for {TARGET_X}x "
        f"| uplink for <= {period_ms:g} ms | share of time >= uplink for {TARGET_X}x: " + ", ".join(groups) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for wire in ("exact", "default"):
        t = cut_table(*roofline_pair("openvla", "full", "orin", "a100", wire))
        label = "raw,fp32" if wire == "exact" else "jpeg:90,fp16"
        for r in rtts:
            lat = np.array([t.latency_ms(b, b, r / 2).min() for b in bw])
            edge = float(t.latency_ms(1.0, 1.0, r / 2)[~t.uses_network].min())  # edge-only: no network
            floor = float(t.latency_ms(1e9, 1e9, r / 2).min())

            def need(limit_ms: float, lat: np.ndarray = lat) -> float:
                ok = np.nonzero(lat <= limit_ms)[0]
                return float(bw[ok[0]]) if len(ok) else float("inf")

            b33, bp = need(edge / TARGET_X), need(period_ms)
            shares = ", ".join(f"{np.mean(v >= b33):.0%}" for v in groups.values())
            lines.append(
                f"| {label} | {r:g} | {edge:.1f} | {floor:.1f} ({edge / floor:.1f}x) | {b33:.3g} Mbit/s | "
                f"{bp:.3g} Mbit/s | {shares} |"
            )
    return "\n".join(lines)


def target_sweep_table(
    traces: Path,
    episodes: int,
    episode_s: float,
    rtts: tuple[float, ...] = (-1.0, 0.0, 10.0, 20.0, 30.0, 50.0),
    factors: tuple[float, ...] = (2.0, 4.0),
) -> str:
    """Measured (env, chunk size 1, default wire): openvla's split-alone speedup over edge-only on 4G and
    WiFi/cellular as a function of the RTT (every trace set to it; -1: the family rule) and, at the family RTT,
    of the bandwidth (every test trace rescaled by a factor)."""
    from agents.evaluation import EvalConfig, run_eval
    from traces.traceset import TraceSet

    sets = _family_sets(traces, -1.0)
    lines = [
        "| family | RTT ms | bandwidth | edge-only ms | RoboECC ms | x | StaticBestCut ms | x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam in FAMILIES[:2]:
        ts, _ = sets[fam]
        cases = [(r, 1.0) for r in rtts] + [(-1.0, f) for f in factors]
        for rtt_ms, factor in cases:
            run_set = ts if factor == 1.0 else TraceSet([t.rescaled(factor) for t in ts], f"{ts.name}*{factor:g}")
            cfg = EvalConfig(
                planners="edge,roboecc,static",
                model="openvla",
                preset="full",
                hardware="orin+a100",
                episodes=episodes,
                episode_s=episode_s,
                chunk_size=1,
                wire="default",
                plots=False,
                rtt_ms=rtt_ms,
            )
            _, runs = run_eval(cfg, trace_set=run_set)
            mean = {r.name: float(np.mean(r.result.latency_ms)) for r in runs}
            e = mean["edge"]
            rtt = "family" if rtt_ms < 0 else f"{rtt_ms:g}"
            lines.append(
                f"| {fam} | {rtt} | x{factor:g} | {e:.1f} | {mean['roboecc']:.1f} | {e / mean['roboecc']:.2f} "
                f"| {mean['static']:.1f} | {e / mean['static']:.2f} |"
            )
            log.info("%s rtt %s x%g done", fam, rtt, factor)
    return "\n".join(lines)


def choice_table(rtt_ms: float, codecs: tuple[str, ...] = ("raw", "png", "jpeg:95", "jpeg:90")) -> str:
    """Would a per-step codec choice (an action dimension) pay? Best-cut latency under each frame codec (fp16
    activations, roofline Orin+A100, symmetric link, codec time charged) vs always jpeg:90, over 0.5..10^4 Mbit/s."""
    from executor.costs import cut_table
    from executor.wire_config import WireConfig, roofline_pair

    bw = np.geomspace(0.5, 10_000, 400)
    lines = [
        f"| model | best codec by bandwidth (RTT {rtt_ms:g} ms) | max gain of choosing over jpeg:90 | at |",
        "|---|---|---|---|",
    ]
    for model in MODELS:
        lat = {}
        for c in codecs:
            t = cut_table(*roofline_pair(model, "full", "orin", "a100", WireConfig(c, "fp16")))
            lat[c] = np.array([t.latency_ms(b, b, rtt_ms / 2).min() for b in bw])
        stack = np.stack([lat[c] for c in codecs])
        best = np.where(stack.max(axis=0) - stack.min(axis=0) <= 1e-9, -1, stack.argmin(axis=0))  # -1: a tie
        runs, start = [], 0
        for i in range(1, len(bw) + 1):
            if i == len(bw) or best[i] != best[start]:
                name = "any (edge-only)" if best[start] < 0 else codecs[best[start]]
                runs.append(f"{name} {bw[start]:.3g}-{bw[i - 1]:.3g}")
                start = i
        gain = lat["jpeg:90"] - stack.min(axis=0)
        j = int(np.argmax(gain))
        lines.append(
            f"| {model} | {'; '.join(runs)} | {gain[j]:.3f} ms ({gain[j] / lat['jpeg:90'][j]:.2%}) | "
            f"{bw[j]:.3g} Mbit/s |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("frames")
    f.add_argument("--presets", nargs="+", default=["tiny", "small"])
    f.add_argument("--seeds", type=int, default=4)
    s = sub.add_parser("speedup")
    s.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    s.add_argument("--episodes", type=int, default=8)
    s.add_argument("--episode-s", type=float, default=30.0)
    s.add_argument("--rtt-ms", type=float, default=-1.0, help="RTT of every trace (default -1: the family rule)")
    s.add_argument(
        "--ppo-steps",
        type=int,
        default=0,
        help="train PPO with chunk size 1 for this many steps per model and wire and add its column (0: off)",
    )
    s.add_argument("--run-dir", type=Path, default=Path("runs/bench_codecs"), help="where the PPO runs go")
    t = sub.add_parser("target")
    t.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    t.add_argument("--episodes", type=int, default=6)
    t.add_argument("--episode-s", type=float, default=30.0)
    c = sub.add_parser("choice")
    c.add_argument("--rtt-ms", type=float, default=20.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("traces").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    if args.what == "choice":
        print(choice_table(args.rtt_ms))
    elif args.what == "frames":
        print(frames_table(args.presets, args.seeds))
    elif args.what == "target":
        if not args.traces.is_dir():
            raise SystemExit(f"traces folder not found: {args.traces}")
        print(target_needs_table(args.traces))
        print()
        print(target_sweep_table(args.traces, args.episodes, args.episode_s))
    else:
        if not args.traces.is_dir():
            raise SystemExit(f"traces folder not found: {args.traces}")
        print(speedup_table(args.traces, args.episodes, args.episode_s, args.rtt_ms, args.ppo_steps, args.run_dir))


if __name__ == "__main__":
    main()
