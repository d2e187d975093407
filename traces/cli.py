"""`ecc traces`: statistics tables, format conversion and plots of bandwidth traces.

    ecc traces stats PATH... [--embedded] [--pattern GLOB] [--json] [--summary-only]
    ecc traces convert SRC DST --to mahimahi|text|csv|json
    ecc traces plot PATH... -o out.png [--max-traces N]

Exit codes: 0 ok, 1 a path is missing or some files failed to load (the good ones are still reported), 2 bad
arguments. rich and matplotlib are imported only by the sub-command that needs them.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from traces.cliargs import parse_config
from traces.readers import TraceFormatError, load_trace
from traces.trace import OUTAGE_MBPS
from traces.traceset import TraceSet

log = logging.getLogger(__name__)


def _positive_bin_s(bin_s: float) -> None:
    if not (bin_s > 0 and math.isfinite(bin_s)):
        raise ValueError(f"--bin-s must be > 0, got {bin_s}")


@dataclass(frozen=True)
class StatsArgs:
    """Per-trace and per-set statistics table."""

    paths: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="PATH...")] = ()
    """trace files and/or directories"""
    embedded: bool = False  # include the embedded default set
    pattern: str = "*"  # file-name glob inside directories
    no_recursive: tyro.conf.FlagCreatePairsOff[bool] = False  # do not descend into sub-directories
    bin_s: float = 1.0  # Mahimahi bin width in s
    json: bool = False  # print JSON instead of a table
    summary_only: bool = False  # only the set summary and the failures

    def __post_init__(self) -> None:
        _positive_bin_s(self.bin_s)


@dataclass(frozen=True)
class ConvertArgs:
    """Convert one trace to another format."""

    src: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SRC")]  # the trace file to read
    dst: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="DST")]
    """output file (for mahimahi: DST.up and DST.down)"""
    to: Literal["mahimahi", "text", "csv", "json"]  # output format (traces.writers.WRITERS)
    src_format: Annotated[
        Literal["auto", "mahimahi", "text", "csv", "csv_header", "json"], tyro.conf.arg(name="from")
    ] = "auto"
    """input format (traces.readers.FORMATS; auto: from the file)"""
    bin_s: float = 1.0  # Mahimahi bin width in s when reading

    def __post_init__(self) -> None:
        _positive_bin_s(self.bin_s)


@dataclass(frozen=True)
class PlotArgs:
    """Plot bandwidth over time to a PNG."""

    output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]  # image file to write (.png)
    paths: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="PATH...")] = ()
    """trace files and/or directories"""
    embedded: bool = False  # plot the embedded default set
    pattern: str = "*"  # file-name glob inside directories
    max_traces: int = 6  # plot at most this many traces
    bin_s: float = 1.0  # Mahimahi bin width in s

    def __post_init__(self) -> None:
        _positive_bin_s(self.bin_s)


TracesArgs = Union[  # noqa: UP007 (tyro reads the sub-commands from a typing.Union)
    Annotated[StatsArgs, tyro.conf.subcommand("stats")],
    Annotated[ConvertArgs, tyro.conf.subcommand("convert")],
    Annotated[PlotArgs, tyro.conf.subcommand("plot")],
]


def parse_args(argv: Sequence[str]) -> StatsArgs | ConvertArgs | PlotArgs:
    """The command line of ``ecc traces``: ``stats``, ``convert`` or ``plot``."""
    return parse_config(TracesArgs, argv, prog="ecc traces", description=__doc__)  # type: ignore[arg-type]


def _err(msg: str) -> None:
    print(f"ecc traces: error: {msg}", file=sys.stderr)


def _load(paths: Sequence[Path], embedded: bool, pattern: str, recursive: bool, bin_s: float) -> TraceSet | None:
    """Load the requested traces; print missing paths and return None if any."""
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        _err(f"no such file or directory: {p}")
    if missing:
        return None
    sets = []
    if embedded:
        from traces.embedded import embedded_default_set

        sets.append(embedded_default_set())
    if paths:
        try:
            sets.append(TraceSet.load(list(paths), pattern, recursive=recursive, bin_s=bin_s))
        except TraceFormatError as e:
            _err(str(e))
            return None
    traces = [t for s in sets for t in s]
    errors = [e for s in sets for e in s.errors]
    skipped = [p for s in sets for p in s.skipped]
    name = "+".join(s.name for s in sets)
    return TraceSet(traces, name, errors=errors, skipped=skipped)


def _nan_to_none(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _fmt(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _stats(args: StatsArgs) -> int:
    if not args.paths and not args.embedded:
        _err("give at least one PATH or --embedded")
        return 2
    ts = _load(args.paths, args.embedded, args.pattern, not args.no_recursive, args.bin_s)
    if ts is None:
        return 1
    summary = ts.stats()
    if args.json:
        out = {
            "traces": []
            if args.summary_only
            else [{"name": t.name, "source": t.source, "symmetric": t.symmetric, **t.stats().as_dict()} for t in ts],
            "summary": summary.as_dict(),
            "fingerprint": ts.fingerprint(),
            "errors": [{"path": str(p), "reason": r} for p, r in ts.errors],
            "skipped": [str(p) for p in ts.skipped],
        }
        print(json.dumps(_nan_to_none(out), indent=1))
        return 1 if ts.errors else 0

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    if not args.summary_only:
        table = Table(title=f"Bandwidth traces: {ts.name}", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("dur s", justify="right")
        for d in ("up", "down"):
            for k in ("mean", "p10", "p90"):
                table.add_column(f"{d} {k}", justify="right")
        table.add_column("outage", justify="right")
        for t in ts:
            s = t.stats()
            up = [_fmt(s.mean_up_mbps), _fmt(s.p10_up_mbps), _fmt(s.p90_up_mbps)]
            if t.symmetric:
                up = ["=down", "", ""]
            table.add_row(
                t.name,
                f"{s.duration_s:,.0f}",
                *up,
                _fmt(s.mean_down_mbps),
                _fmt(s.p10_down_mbps),
                _fmt(s.p90_down_mbps),
                f"{100 * s.outage_fraction:.1f}%",
            )
        console.print(table)
        console.print(
            f"rates in Mbit/s, time-weighted; up '=down': one recorded direction serves both; "
            f"outage: time with a rate < {OUTAGE_MBPS} Mbit/s",
            highlight=False,
        )
    p = summary.pooled
    n_sym = sum(t.symmetric for t in ts)
    console.print(
        f"[bold]set[/bold] {ts.name}: {len(ts)} traces ({n_sym} one-direction), {p.duration_s / 3600:.2f} h; "
        f"failed to load: {len(ts.errors)}"
        + (f"; documentation files skipped: {len(ts.skipped)}" if ts.skipped else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"pooled: up mean {_fmt(p.mean_up_mbps)} (p10 {_fmt(p.p10_up_mbps)}, p90 {_fmt(p.p90_up_mbps)}) Mbit/s; "
        f"down mean {_fmt(p.mean_down_mbps)} (p10 {_fmt(p.p10_down_mbps)}, p90 {_fmt(p.p90_down_mbps)}) Mbit/s; "
        f"outage {100 * p.outage_fraction:.1f}% of the time",
        highlight=False,
        soft_wrap=True,
    )
    if ts.errors:
        console.print(f"[bold red]{len(ts.errors)} file(s) failed to load:[/bold red]")
        for path, reason in ts.errors:
            console.print(f"  {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
    return 1 if ts.errors else 0


def _convert(args: ConvertArgs) -> int:
    from traces.writers import WRITERS

    if not args.src.exists():
        _err(f"no such file or directory: {args.src}")
        return 1
    if args.src.is_dir():
        _err(f"convert takes one trace file, got a directory: {args.src}")
        return 2
    try:
        trace = load_trace(args.src, format=args.src_format, bin_s=args.bin_s)
        out = WRITERS[args.to](trace, args.dst)
    except (TraceFormatError, ValueError, OSError) as e:
        _err(str(e))
        return 1
    for p in out if isinstance(out, tuple) else (out,):
        print(f"wrote {p}")
    return 0


def _plot(args: PlotArgs) -> int:
    if not args.paths and not args.embedded:
        _err("give at least one PATH or --embedded")
        return 2
    if args.max_traces < 1:
        _err(f"--max-traces must be >= 1, got {args.max_traces}")
        return 2
    ts = _load(args.paths, args.embedded, args.pattern, True, args.bin_s)
    if ts is None:
        return 1
    if len(ts) == 0:
        _err("no trace loaded")
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = ts.traces[: args.max_traces]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.2 * len(shown)), squeeze=False, sharex=False)
    for ax, t in zip(axes[:, 0], shown):
        x = np.append(t.times_s, t.duration_s)
        ax.step(
            x,
            np.append(t.down_mbps, t.down_mbps[-1]),
            where="post",
            lw=0.8,
            label="down = up" if t.symmetric else "down",
        )
        if not t.symmetric:
            ax.step(x, np.append(t.up_mbps, t.up_mbps[-1]), where="post", lw=0.8, label="up")
        ax.set_title(t.name, fontsize=8, loc="left")
        ax.set_ylabel("Mbit/s")
        ax.set_xlim(0, t.duration_s)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(args.output, dpi=100)
    except (OSError, ValueError) as e:
        _err(f"cannot write {args.output}: {e}")
        return 1
    finally:
        plt.close(fig)
    print(f"wrote {args.output} ({len(shown)} of {len(ts)} traces)")
    if ts.errors:
        for path, reason in ts.errors:
            _err(f"{path}: {reason}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ecc traces`; returns the exit code (usage errors: 2)."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a usage error (2), message already printed
        return int(e.code or 0)
    if isinstance(args, StatsArgs):
        return _stats(args)
    return _convert(args) if isinstance(args, ConvertArgs) else _plot(args)


if __name__ == "__main__":
    sys.exit(main())
