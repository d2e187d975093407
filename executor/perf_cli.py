"""`ecc perf`: VLA-Perf-style what-if analysis: latency breakdown, control frequency and memory fit of a VLA on
catalogue hardware, networks and deployment modes (roofline model, no GPU needed).

    ecc perf --model pi0 --mode on-device --device thor
    ecc perf --model pi0-L --mode edge-server --server b100 --network 5g
    ecc perf --model pi0 --mode cloud --network eth10g --wan "wan slow"
    ecc perf --model pi0 --mode split --device orin --server a100 --network wifi7
    ecc perf --model pi0 --mode async --network 4g          # async over edge-server (--base to change)
    ecc perf --model pi0 --mode dual-system --s2-cap-hz 10
    ecc perf --model pi0 --mode cut --device orin --server a100 --network wifi6 --all-cuts
    ecc perf --model path/to/config.json --steps 5 --chunk 10
    ecc perf sweep all --out perf_out            # CSV + JSON + PNG per sweep
    ecc perf list                                # models, devices, networks, modes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from executor import catalog
from executor.perf.configs import ACTION_HEADS, ConfigError, model_names, resolve_model
from executor.perf.modes import (
    MODES,
    Payloads,
    PerfInputError,
    PerfResult,
    check_parameters,
    custom_link,
    evaluate_mode,
    resolve_mode,
)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ecc perf", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pi0", help=f"{', '.join(model_names())} or a Hugging Face config.json")
    ap.add_argument("--mode", default="on-device", help=f"one of {', '.join(MODES)}")
    ap.add_argument("--base", default=None, help="placement under --mode async/dual-system "
                                                 "(default edge-server / on-device)")
    ap.add_argument("--device", default="Jetson AGX Thor", help="the robot's computer (catalogue name or alias)")
    ap.add_argument("--server", default="B100", help="edge server / cloud GPU")
    ap.add_argument("--network", default="WiFi 7", help="robot <-> server link (catalogue name or alias)")
    ap.add_argument("--wan", default=None, help="WAN hop for --mode cloud (default 'WAN hop, fast cloud')")
    ap.add_argument("--up-mbps", type=float, default=None, help="custom link instead of --network: upload Mbit/s")
    ap.add_argument("--down-mbps", type=float, default=None, help="custom link: download Mbit/s")
    ap.add_argument("--latency-ms", type=float, default=None, help="custom link: one-way latency (ms)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps")
    ap.add_argument("--chunk", type=int, default=None, help="action chunk size")
    ap.add_argument("--dof", type=int, default=None, help="action degrees of freedom")
    ap.add_argument("--timesteps", type=int, default=None, help="past timesteps kept in the VLM context")
    ap.add_argument("--action-head", choices=ACTION_HEADS, default=None,
                    help="flow expert, autoregressive, or ar-parallel (all action tokens in one VLM pass)")
    ap.add_argument("--accounting", choices=("complete", "paper"), default="complete",
                    help="'paper' reproduces VLA-Perf's GenZ accounting (GiB units, second expert QKV)")
    ap.add_argument("--attention", choices=("onchip", "materialised", "fused"), default=None,
                    help="attention accounting (default onchip: scores stay on chip, as GenZ)")
    ap.add_argument("--s2-cap-hz", type=float, default=5.0, help="dual-system: System-2 rate cap")
    ap.add_argument("--jpeg-ratio", type=float, default=0.1, help="compressed / raw image bytes")
    ap.add_argument("--dtype", default="bfloat16", help="compute dtype (bfloat16, float16, float32, int8)")
    ap.add_argument("--cut", type=int, default=None, help="--mode cut: this cut index (default: fastest)")
    ap.add_argument("--all-cuts", action="store_true", help="--mode cut: print every cut")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap


def _fmt_ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def render(r: PerfResult) -> str:
    """Human-readable breakdown of one result."""
    where = ", ".join(x for x in (f"device {r.device}" if r.device else "", f"server {r.server}" if r.server else "",
                                  f"network {r.network}" if r.network else "", f"wan {r.wan}" if r.wan else "") if x)
    head = f"{r.model} | {r.placement} ({r.execution}){' cut ' + r.cut if r.cut else ''} | {where}"
    lines = [head, "-" * len(head)]
    if not r.feasible:
        lines.append(f"INFEASIBLE: {r.reason}")
        return "\n".join(lines)
    lines.append(f"{'part':16s} {'where':22s} {'ms':>9s}  bound")
    for p in r.parts:
        lines.append(f"{p.name:16s} {p.where[:22]:22s} {p.time_ms:9.2f}  {p.bound}")
    lines.append(f"{'latency':16s} {'':22s} {r.latency_ms:9.2f}")
    if r.execution == "dual-system":
        lines.append(f"System 2 (VLM) {r.s2_ms:.2f} ms capped at {r.s2_cap_hz:g} Hz; System 1 step {r.latency_ms:.2f} ms")
    link = "-" if math.isinf(r.link_hz) else f"{r.link_hz:.1f}"
    lines.append(f"frequency: sync {r.sync_hz:.1f} Hz | async {r.async_hz:.1f} Hz (compute {r.compute_hz:.1f}, "
                 f"link {link}) | control ({r.execution}) {r.control_hz:.1f} Hz")
    for m in r.memory:
        lines.append(f"memory {m.hardware}: {m.required_bytes / 1e9:.2f} / {m.capacity_bytes / 1e9:.0f} GB")
    return "\n".join(lines)


def _sweep_main(argv: Sequence[str]) -> int:
    from executor.perf import plots, sweeps

    ap = argparse.ArgumentParser(prog="ecc perf sweep", description="run sweeps; write CSV, JSON and PNG")
    ap.add_argument("names", nargs="+", help=f"'all' or any of {', '.join(sweeps.SWEEPS)}")
    ap.add_argument("--model", default="pi0")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(list(argv))
    names = list(sweeps.SWEEPS) if args.names == ["all"] else args.names
    cfg = resolve_model(args.model)
    for name in names:
        rows = sweeps.run_sweep(name, None if name == "scale" else cfg)
        stem = Path(args.out) / f"perf_{name.replace('-', '_')}"
        c, j = sweeps.write_table(rows, stem)
        print(f"{name}: {len(rows)} rows -> {c}, {j}")
        if not args.no_plots:
            print(f"  plot -> {plots.plot_sweep(rows, stem.with_suffix('.png'))}")
    return 0


def _list() -> int:
    print("models:   " + ", ".join(model_names()) + ", or a path to a Hugging Face config.json")
    print("modes:    " + ", ".join(MODES))
    print("devices:\n  " + "\n  ".join(catalog.hardware_names()))
    print("networks:\n  " + "\n  ".join(catalog.network_names()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ecc perf`; returns the exit code (2 for bad input, with the reason on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "sweep":
            return _sweep_main(argv[1:])
        if argv and argv[0] == "list":
            return _list()
        args = _parser().parse_args(argv)
        check_parameters(steps=args.steps, chunk=args.chunk, dof=args.dof, timesteps=args.timesteps)
        if resolve_mode(args.mode, args.base)[0] == "cut" and args.model not in model_names():
            return _family_cut(args)  # an executor family without an analytic config (e.g. smolvla)
        cfg = resolve_model(args.model)
        changes = {k: v for k, v in (("denoising_steps", args.steps), ("chunk", args.chunk), ("dof", args.dof),
                                     ("timesteps", args.timesteps), ("action_head", args.action_head)) if v is not None}
        if changes:
            cfg = cfg.with_(**changes)
        custom = (args.up_mbps, args.down_mbps, args.latency_ms)
        network = args.network
        if any(v is not None for v in custom):
            if any(v is None for v in custom):
                raise PerfInputError("a custom link needs --up-mbps, --down-mbps and --latency-ms together")
            network = custom_link(*custom)  # type: ignore[arg-type]
        r = evaluate_mode(cfg, args.mode, base=args.base, device=args.device, server=args.server, network=network,
                          wan=args.wan, payloads=Payloads(jpeg_ratio=args.jpeg_ratio), s2_cap_hz=args.s2_cap_hz,
                          dtype=args.dtype, cut=args.cut, accounting=args.accounting, attention=args.attention)
        if args.json:
            print(json.dumps(r.to_dict(), indent=1))
        else:
            print(render(r))
            if args.all_cuts and r.placement == "cut":
                _print_cuts(cfg, args)
        return 0
    except (ConfigError, PerfInputError, ValueError) as e:
        print(f"ecc perf: {e}", file=sys.stderr)
        return 2


def _family_cut(args: argparse.Namespace) -> int:
    from executor.perf.cuts import evaluate_cut

    r = evaluate_cut(args.model, catalog.hardware(args.device), catalog.hardware(args.server),
                     catalog.network(args.network), dtype=args.dtype, cut=args.cut)
    print(json.dumps(r.to_dict(), indent=1) if args.json else render(r))
    if args.all_cuts and not args.json:
        _print_cuts(args.model, args)
    return 0


def _print_cuts(cfg: object, args: argparse.Namespace) -> None:
    from executor.perf.cuts import cut_rows

    rows, _, _ = cut_rows(cfg, catalog.hardware(args.device), catalog.hardware(args.server),  # type: ignore[arg-type]
                          catalog.network(args.network), dtype=args.dtype)
    print(f"\n{'cut':>4s} {'name':34s} {'edge ms':>9s} {'cloud ms':>9s} {'net ms':>9s} {'total ms':>9s} {'up KB':>9s} "
          f"{'down KB':>9s}")
    for c in rows:
        total = _fmt_ms(c.latency_ms) if c.feasible else "infeas."
        print(f"{c.index:4d} {c.name[:34]:34s} {c.edge_ms:9.2f} {c.cloud_ms:9.2f} {c.network_ms:9.2f} {total:>9s} "
              f"{c.up_bytes / 1e3:9.1f} {c.down_bytes / 1e3:9.1f}")


if __name__ == "__main__":
    sys.exit(main())
