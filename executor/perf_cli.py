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

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import tyro

from executor import catalog

if TYPE_CHECKING:
    from executor.perf.configs import VLAConfig
from executor.catalog import NetworkLink
from executor.perf.configs import ActionHead, ConfigError, model_names, resolve_model
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
from traces.cliargs import parse_config


@dataclass(frozen=True)
class PerfArgs:
    """The options of ``ecc perf`` (``ecc perf sweep`` and ``ecc perf list`` are its two sub-commands)."""

    model: str = "pi0"  # a catalogue model (the list sub-command names them) or a Hugging Face config.json
    mode: str = "on-device"  # deployment mode: on-device, edge-server, cloud, split, cut, async, dual-system
    base: str | None = None  # placement under --mode async/dual-system (None: edge-server / on-device)
    device: str = "Jetson AGX Thor"  # the robot's computer (catalogue name or alias)
    server: str = "B100"  # edge server / cloud GPU
    network: str = "WiFi 7"  # robot <-> server link (catalogue name or alias)
    wan: str | None = None  # WAN hop for --mode cloud (None: 'WAN hop, fast cloud')
    up_mbps: float | None = None  # custom link instead of --network: upload Mbit/s
    down_mbps: float | None = None  # custom link: download Mbit/s
    latency_ms: float | None = None  # custom link: one-way latency (ms)
    steps: int | None = None  # denoising steps (None: the model's)
    chunk: int | None = None  # action chunk size (None: the model's)
    dof: int | None = None  # action degrees of freedom (None: the model's)
    timesteps: int | None = None  # past timesteps kept in the VLM context (None: the model's)
    action_head: ActionHead | None = None
    """flow expert, autoregressive, or ar-parallel (all action tokens in one VLM pass) (None: the model's)"""
    accounting: Literal["complete", "paper"] = "complete"
    """'paper' reproduces VLA-Perf's GenZ accounting (GiB units, second expert QKV)"""
    attention: Literal["onchip", "materialised", "fused"] | None = None
    """attention accounting (None: onchip, scores stay on chip, as GenZ)"""
    s2_cap_hz: float = 5.0  # dual-system: System-2 rate cap
    jpeg_ratio: float = 0.1  # compressed / raw image bytes
    dtype: str = "bfloat16"  # compute dtype (bfloat16, float16, float32, int8)
    cut: int | None = None  # with --mode cut: this cut index (None: fastest)
    all_cuts: bool = False  # with --mode cut: print every cut
    json: bool = False  # print the result as JSON


@dataclass(frozen=True)
class SweepArgs:
    """Run sweeps; write CSV, JSON and PNG."""

    out: str  # output folder
    names: tyro.conf.Positional[tuple[str, ...]] = ("all",)  # 'all' or the sweeps to run (names above)
    model: str = "pi0"  # the model swept (a catalogue model or a Hugging Face config.json)
    plots: bool = True  # a PNG beside each table (--no-plots: the tables only)


def _fmt_ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def render(r: PerfResult) -> str:
    """Human-readable breakdown of one result."""
    where = ", ".join(
        x
        for x in (
            f"device {r.device}" if r.device else "",
            f"server {r.server}" if r.server else "",
            f"network {r.network}" if r.network else "",
            f"wan {r.wan}" if r.wan else "",
        )
        if x
    )
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
        lines.append(
            f"System 2 (VLM) {r.s2_ms:.2f} ms capped at {r.s2_cap_hz:g} Hz; System 1 step {r.latency_ms:.2f} ms"
        )
    link = "-" if math.isinf(r.link_hz) else f"{r.link_hz:.1f}"
    lines.append(
        f"frequency: sync {r.sync_hz:.1f} Hz | async {r.async_hz:.1f} Hz (compute {r.compute_hz:.1f}, "
        f"link {link}) | control ({r.execution}) {r.control_hz:.1f} Hz"
    )
    for m in r.memory:
        lines.append(f"memory {m.hardware}: {m.required_bytes / 1e9:.2f} / {m.capacity_bytes / 1e9:.0f} GB")
    return "\n".join(lines)


def _sweep_main(argv: Sequence[str]) -> int:
    from executor.perf import plots, sweeps

    args = parse_config(
        SweepArgs,
        argv,
        prog="ecc perf sweep",
        description=f"Run sweeps ({', '.join(sweeps.SWEEPS)}); write CSV, JSON and PNG.",
    )
    names = list(sweeps.SWEEPS) if args.names == ("all",) else args.names
    cfg = resolve_model(args.model)
    for name in names:
        rows = sweeps.run_sweep(name, None if name == "scale" else cfg)
        stem = Path(args.out) / f"perf_{name.replace('-', '_')}"
        c, j = sweeps.write_table(rows, stem)
        print(f"{name}: {len(rows)} rows -> {c}, {j}")
        if args.plots:
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
        args = parse_config(PerfArgs, argv, prog="ecc perf", description=__doc__)
        check_parameters(steps=args.steps, chunk=args.chunk, dof=args.dof, timesteps=args.timesteps)
        if resolve_mode(args.mode, args.base)[0] == "cut" and args.model not in model_names():
            return _family_cut(args)  # an executor family without an analytic config (e.g. smolvla)
        cfg = resolve_model(args.model)
        changes = {
            k: v
            for k, v in (
                ("denoising_steps", args.steps),
                ("chunk", args.chunk),
                ("dof", args.dof),
                ("timesteps", args.timesteps),
                ("action_head", args.action_head),
            )
            if v is not None
        }
        if changes:
            cfg = cfg.with_(**changes)
        custom = (args.up_mbps, args.down_mbps, args.latency_ms)
        network: NetworkLink | str = args.network
        if any(v is not None for v in custom):
            if any(v is None for v in custom):
                raise PerfInputError("a custom link needs --up-mbps, --down-mbps and --latency-ms together")
            network = custom_link(*custom)  # type: ignore[arg-type]
        r = evaluate_mode(
            cfg,
            args.mode,
            base=args.base,
            device=args.device,
            server=args.server,
            network=network,
            wan=args.wan,
            payloads=Payloads(jpeg_ratio=args.jpeg_ratio),
            s2_cap_hz=args.s2_cap_hz,
            dtype=args.dtype,
            cut=args.cut,
            accounting=args.accounting,
            attention=args.attention,
        )
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


def _family_cut(args: PerfArgs) -> int:
    from executor.perf.cuts import evaluate_cut

    r = evaluate_cut(
        args.model,
        catalog.hardware(args.device),
        catalog.hardware(args.server),
        catalog.network(args.network),
        dtype=args.dtype,
        cut=args.cut,
    )
    print(json.dumps(r.to_dict(), indent=1) if args.json else render(r))
    if args.all_cuts and not args.json:
        _print_cuts(args.model, args)
    return 0


def _print_cuts(cfg: VLAConfig | str, args: PerfArgs) -> None:
    from executor.perf.cuts import cut_rows

    rows, _, _ = cut_rows(
        cfg,
        catalog.hardware(args.device),
        catalog.hardware(args.server),
        catalog.network(args.network),
        dtype=args.dtype,
    )
    print(
        f"\n{'cut':>4s} {'name':34s} {'edge ms':>9s} {'cloud ms':>9s} {'net ms':>9s} {'total ms':>9s} {'up KB':>9s} "
        f"{'down KB':>9s}"
    )
    for c in rows:
        total = _fmt_ms(c.latency_ms) if c.feasible else "infeas."
        print(
            f"{c.index:4d} {c.name[:34]:34s} {c.edge_ms:9.2f} {c.cloud_ms:9.2f} {c.network_ms:9.2f} {total:>9s} "
            f"{c.up_bytes / 1e3:9.1f} {c.down_bytes / 1e3:9.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
