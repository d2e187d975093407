"""`ecc edge`: run the edge runtime (the on-robot loop) against an `ecc serve` server, optionally over a shaped link.

Example: ``ecc edge --server ws://127.0.0.1:8765 --model openvla --preset small --cut 6 --steps 50``.

The planner is a fixed cut (``--cut K``, default edge-only) or any object with SB3's ``predict`` built by a factory
named ``module:callable`` (``--planner``; called with the model). The observation builder is a callable
``StepContext -> np.ndarray`` built the same way (``--builder``, called with the model), or a zero vector for the
fixed planner. Run alone (``python -m executor.edge_cli``), frames are the model's synthetic observations
(``make_observation(seed=step)``); ``ecc edge`` (``agents.edge_cli``) feeds consecutive frames of an observation
stream instead (``--stream`` or the env's procedural generator).
``--trace FILE`` inserts the user-space shaped link (``executor.link``) between the edge and the server, pacing bytes
by that bandwidth trace. ``--emulate PROFILE.json`` pads the edge's blocks to that Profile (hardware emulation; the
report says so). Prints a per-mode summary and writes every step to ``--out`` (JSON lines) when asked, with the
runtime's and the planner's reports (a GuardedPolicy's fallbacks by reason and out-of-range fields) in ``<out>.summary.json``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from executor.control import DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS
from traces.cliargs import parse_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeArgs:
    """The runtime options of ``ecc edge`` (``python -m executor.edge_cli`` takes these alone)."""

    model: str  # model family, e.g. openvla, pi0
    server: str | None = None  # ws://HOST:PORT of `ecc serve` (None: edge-only)
    preset: str = "small"  # tiny | small; must match the server
    seed: int = 0  # weight seed; must match the server
    cut: int | None = None  # fixed cut index (None: edge-only)
    planner: str | None = None  # module:factory returning a planner (called with the model)
    builder: str | None = None  # module:factory returning an observation builder (called with the model)
    steps: int = 20  # observations to process
    period_ms: float = DEFAULT_PERIOD_MS  # control period in ms (executor.control)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """actions executed per inference, at most the model's chunk (executor.control; the env's chunk_size)"""
    deadline_ms: float = 300.0  # split deadline in ms
    realtime: bool = True  # run a step every period (--no-realtime: back to back)
    hedge: bool = False
    """hedged execution: on cuts with one request and one reply, run the cloud's blocks locally while the payload
    travels and use the first actions (executor.hedge)"""
    api_key: str | None = None  # token for the server (None: $ECC_API_KEY)
    cafile: str | None = None  # PEM CA that signed a wss:// server's certificate (None: the system's)
    wire: str = "default"
    """frames and activations on the wire: IMAGE,DTYPE (e.g. jpeg:90,fp16 or raw,fp32), 'default' (jpeg:90,fp16) or
    'exact' (raw,fp32; bit-exact actions); see executor.wire_config"""
    trace: Path | None = None  # bandwidth trace file to shape the link with
    emulate: Path | None = None  # Profile JSON whose per-block times the edge emulates
    threads: int | None = None  # torch CPU threads (None: torch's setting)
    out: Path | None = None  # write one JSON line per step here


def _factory(spec: str, model: Any) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected module:callable, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {spec!r}: {e}") from e
    return factory(model)


class FixedCutPlanner:
    """Always the same cut, never skips (SB3 ``predict`` signature)."""

    def __init__(self, cut: int) -> None:
        self.cut = cut

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        return np.array([self.cut, 0]), state


_HINTS = {
    "no_server": "no --server given, so every network step ran edge-only (start `ecc serve` and pass --server)",
    "disconnected": "the server was not reachable; the client reconnects in the background",
    "deadline": "the actions were not back by the deadline (--deadline-ms; see docs/deployment.md)",
}


def _record_dict(r: Any) -> dict[str, Any]:
    return {
        "step": r.step,
        "mode": r.mode,
        "cut_requested": r.cut_requested,
        "cut_used": r.cut_used,
        "skip": r.skip_requested,
        "latency_ms": round(r.latency_ms, 3),
        "decision_ms": round(r.decision_ms, 3),
        "late_ms": round(r.late_ms, 3),
        "fallback_reason": r.fallback_reason,
        "error": r.error,
        "timing": r.timing.to_dict() if r.timing is not None else None,
    }


def main(argv: Sequence[str] = ()) -> int:
    return run(parse_config(EdgeArgs, argv, prog="ecc edge", description=__doc__))


def run(
    args: EdgeArgs,
    *,
    planner: Any = None,
    builder: Any = None,
    frames: Callable[[Any, int], dict[str, Any]] | None = None,
    banner: str = "",
    preflight: Callable[[Any], str | None] | None = None,
) -> int:
    """Run the edge runtime for ``args``. ``planner`` / ``builder`` objects (e.g. a GuardedPolicy and the
    env's observation adapter, wired by ``agents.edge_cli``) replace ``--planner`` / ``--builder`` / ``--cut``;
    ``frames(model, step)`` replaces the model's synthetic observations; ``preflight(model)`` (after hardware
    emulation is attached) returns a reason not to run (exit 2) or None."""
    if args.steps < 1 or args.period_ms <= 0 or args.deadline_ms <= 0 or args.chunk_size < 1:
        print("ecc edge: --steps, --period-ms, --deadline-ms and --chunk-size must be positive", file=sys.stderr)
        return 2
    import torch

    from executor.client import ClientConfig
    from executor.models import build_model
    from executor.runtime import EdgeRuntime, RuntimeConfig

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    link = None
    emulator = None
    try:
        model = build_model(args.model, args.preset, seed=args.seed)
        if planner is not None:
            pass
        elif args.planner is not None:
            planner = _factory(args.planner, model)
        else:
            cut = model.num_blocks if args.cut is None else args.cut
            if not 0 <= cut < model.num_cuts:
                raise ValueError(f"--cut {cut} out of range 0..{model.num_cuts - 1}")
            planner = FixedCutPlanner(cut)
        if builder is None:
            builder = (
                _factory(args.builder, model) if args.builder is not None else (lambda ctx: np.zeros(1, np.float32))
            )
        if args.emulate is not None:
            from executor.emulation import HardwareEmulator
            from executor.profile import Profile

            emulator = HardwareEmulator(
                model, Profile.load(args.emulate, expect_model=args.model, expect_preset=args.preset)
            ).attach()
        if preflight is not None:
            problem = preflight(model)
            if problem:
                raise ValueError(problem)
        url = args.server
        if url is not None and args.trace is not None:
            from urllib.parse import urlparse

            from executor.link import ShapedLink
            from traces import load_trace

            target = urlparse(url)
            link = ShapedLink(load_trace(args.trace), target.hostname or "127.0.0.1", target.port or 80).start()
            url = f"{target.scheme}://127.0.0.1:{link.port}"  # wss: the certificate must name 127.0.0.1
        client_config = ClientConfig(
            api_key=args.api_key or os.environ.get("ECC_API_KEY") or None, cafile=args.cafile, wire=args.wire
        )
        config = RuntimeConfig(
            control_period_s=args.period_ms / 1e3,
            deadline_s=args.deadline_ms / 1e3,
            realtime=args.realtime,
            hedge=args.hedge,
            chunk_size=args.chunk_size,
        )
    except ValueError as e:
        print(f"ecc edge: {e}", file=sys.stderr)
        if emulator is not None:
            emulator.detach()
        if link is not None:
            link.stop()
        return 2
    make_frame = frames if frames is not None else (lambda m, i: m.make_observation(seed=i))
    frame_iter = (make_frame(model, i) for i in range(args.steps))
    runtime = EdgeRuntime(
        model, planner, builder, server_url=url, client_config=client_config, config=config, emulator=emulator
    )
    try:
        with runtime:
            records = runtime.run(frame_iter)
    finally:
        if link is not None:
            link.stop()
    report = runtime.report()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w") as f:
            for r in records:
                f.write(json.dumps(_record_dict(r)) + "\n")
        planner_report = getattr(planner, "report", None)
        summary = {"runtime": report, "planner": planner_report() if callable(planner_report) else None}
        args.out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2, default=str))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ecc edge: {args.model}/{args.preset}, {len(records)} steps")
    for col in ("mode", "steps", "median latency ms"):
        table.add_column(col, justify="right")
    for mode in sorted({r.mode for r in records}):
        lat = [r.latency_ms for r in records if r.mode == mode]
        table.add_row(mode, str(len(lat)), f"{float(np.median(lat)):.2f}")
    console = Console()
    console.print(table)
    reasons = report["fallback_reasons"] or "none"
    console.print(f"fallbacks by reason: {reasons}; deadline {config.deadline_s * 1e3:g} ms")
    for reason in sorted(report["fallback_reasons"]):
        if reason in _HINTS:
            console.print(f"  {reason}: {_HINTS[reason]}")
    guard_report = getattr(planner, "report", None)
    if callable(guard_report):
        console.print(f"{banner or 'planner'}: {guard_report()}", markup=False)
    emu = report["emulation"]
    console.print("hardware emulation: " + (f"ON ({emu['device']})" if emu.get("emulated") else "off"))
    return 0 if all(r.mode != "failed" for r in records) else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
