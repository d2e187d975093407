"""`ecc edge`: the edge runtime on real observation input, optionally with `--policy runs/.../policy.zip` wired to a
GuardedPolicy.

Observations: the frames and joint states of an ``ObservationStream`` (``--stream FILE.npz``, e.g. a recorded robot
episode), or by default the env's own procedural pick-and-place generator (``--stream-seed``): consecutive steps are
consecutive frames of one episode, as in training, never independent random frames. The model's camera input is the
stream's frame resized to the model's image size; the observation builder reads the stream's own frame.

Without ``--policy`` the planner is a fixed cut (``--cut``) or ``--planner module:factory``. With it: the policy
artifact is loaded against the Profile pair it must have been trained on (``--edge-profile`` / ``--cloud-profile``
JSON, e.g. a demo run's ``profile_edge.json`` / ``profile_cloud.json``, or ``--hardware EDGE+CLOUD`` for roofline
Profiles of the model preset) and the deployment's chunk length and period (``--chunk-size``, ``--period-ms``;
``executor.control``); the fallback is the HeuristicPlanner (RoboECC cut + RAPID skip) on the same Profiles;
observations come from the env's one ``ObservationBuilder`` through ``ecc_env.runtime_adapter``. A policy that does
not load (missing, corrupt, trained for another model, Profile, observation spec, chunk length or period) is
reported and the heuristic decides every step; with ``--strict`` it is an error (exit 2).

The deadline of a network step is the env's (``--deadline-ms``, capped at the edge-only time unless
``--no-break-even-deadline``), but never below the fastest network step the Profiles and the link allow
on the link (:func:`network_floor_ms`: the trace's peak rates and RTT, or the server's TCP connect time); a deadline
or a Profile pair that puts it below is an error (exit 2) naming what to pass instead. See ``docs/deployment.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from agents.cliargs import parse_config
from executor.edge_cli import EdgeArgs

log = logging.getLogger(__name__)


class DeadlineError(ValueError):
    """A deadline that no network step can meet on this link; the message says what to pass instead."""


@dataclass(frozen=True)
class EdgePolicyArgs:
    """``executor.edge_cli``'s runtime options plus the observation-input and policy options (all in ``--help``)."""

    runtime: Annotated[EdgeArgs, tyro.conf.OmitArgPrefixes]  # the runtime options (executor.edge_cli.EdgeArgs)
    stream: Path | None = None
    """ObservationStream .npz (frames + joint state) to run on (None: the env's procedural generator)"""
    stream_seed: int = 0  # seed of the procedural stream
    policy: Path | None = None
    """policy artifact written by `ecc train` (any of its files: policy.safetensors, policy.json, or the policy.zip
    name of earlier versions)"""
    trust_pickle: bool = False
    """load a format-1 policy (a pickled SB3 zip, which can run code); prefer `ecc policy migrate`"""
    edge_profile: Path | None = None  # edge Profile JSON the policy was trained on
    cloud_profile: Path | None = None  # cloud Profile JSON the policy was trained on
    hardware: str | None = None  # EDGE+CLOUD catalogue devices for roofline Profiles, e.g. orin+a100
    budget_ms: float = 2.0  # policy decision budget before the fallback (ms)
    strict: bool = False
    """a policy that cannot be used (missing, corrupt, mismatched) is an error (exit 2) instead of a run decided by
    the heuristic"""
    break_even_deadline: bool = True
    """cap --deadline-ms at the edge-only time, as `ecc train` and `ecc eval` do (--no-break-even-deadline: keep
    --deadline-ms as given)"""


def parse_args(argv: Sequence[str]) -> EdgePolicyArgs:
    """The command line of ``ecc edge``."""
    return parse_config(EdgePolicyArgs, argv, prog="ecc edge", description=__doc__)


def _profiles(args: EdgePolicyArgs, family: str, preset: str, wire: str = "default") -> tuple[Any, Any]:
    from executor.profile import Profile

    if args.edge_profile is not None or args.cloud_profile is not None:
        if args.edge_profile is None or args.cloud_profile is None:
            raise ValueError("--edge-profile and --cloud-profile go together")
        return (
            Profile.load(args.edge_profile, expect_model=family, expect_preset=preset),
            Profile.load(args.cloud_profile, expect_model=family, expect_preset=preset),
        )
    if args.hardware is None or "+" not in args.hardware:
        raise ValueError(
            "--policy needs the Profiles it was trained on: --edge-profile/--cloud-profile (a demo run "
            "keeps them as profile_edge.json/profile_cloud.json), or --hardware EDGE+CLOUD (got "
            f"{args.hardware!r})"
        )
    from executor.wire_config import roofline_pair

    edge, cloud = args.hardware.split("+", 1)
    return roofline_pair(family, preset, edge, cloud, wire)  # priced under the wire the client uses (--wire)


def resolved_deadline_ms(edge: Any, cloud: Any, deadline_ms: float, *, break_even: bool = True) -> float:
    """The deadline the env would apply for this Profile pair (``DeadlineConfig.resolve`` with the edge-only time,
    or none when edge-only does not fit the edge's memory), so the runtime abandons a network step when the env
    the policy was trained in would."""
    from agents.planner import PlannerContext
    from ecc_env.latency import DeadlineConfig

    ctx = PlannerContext.from_profiles(edge, cloud)
    edge_only = ctx.edge_only_ms if ctx.cut_fits[ctx.edge_only_index] else None
    return DeadlineConfig(deadline_ms, break_even=break_even).resolve(edge_only).deadline_ms


def connect_rtt_ms(url: str, tries: int = 3, timeout_s: float = 1.0) -> float | None:
    """Smallest TCP connect time to ``url``'s host and port (one round trip of the link), or None if unreachable."""
    import socket
    import time
    from urllib.parse import urlparse

    u = urlparse(url)
    best = None
    for _ in range(max(1, tries)):
        t0 = time.perf_counter()
        try:
            with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=timeout_s):
                dt = (time.perf_counter() - t0) * 1e3
        except OSError:
            return None
        best = dt if best is None else min(best, dt)
    return best


def network_floor_ms(edge: Any, cloud: Any, trace: Any = None, rtt_ms: float | None = None) -> tuple[float, int]:
    """(ms, cut) of the fastest network step the Profiles allow on the link: every network cut that fits the edge's
    memory at the trace's peak rates and smallest RTT, as ``executor.costs.CutTable.latency_ms`` prices it.
    Without a trace the rates are unbounded and the RTT is ``rtt_ms`` (e.g. :func:`connect_rtt_ms` of the server;
    None: 0). ``(inf, -1)`` when no network cut fits."""
    import numpy as np

    from agents.planner import PlannerContext

    ctx = PlannerContext.from_profiles(edge, cloud)
    if trace is None:
        up = down = math.inf
        one_way = (rtt_ms or 0.0) / 2.0
    else:
        up, down = float(np.max(trace.up_mbps)), float(np.max(trace.down_mbps))
        one_way = max(float(np.min(trace.rtt_ms)), rtt_ms or 0.0) / 2.0
    lat = ctx.table.latency_ms(up, down, one_way)
    ok = ctx.table.uses_network & ctx.cut_fits
    if not ok.any():
        return math.inf, -1
    k = int(np.flatnonzero(ok)[np.argmin(lat[ok])])
    return float(lat[k]), k


def deployment_deadline_ms(
    edge: Any,
    cloud: Any,
    deadline_ms: float,
    *,
    break_even: bool = True,
    trace: Any = None,
    rtt_ms: float | None = None,
) -> float:
    """The runtime's deadline: the env's (:func:`resolved_deadline_ms`), never below the fastest network step on the
    link (:func:`network_floor_ms`). Raises :class:`DeadlineError`, naming what to pass instead, when the deadline
    asked for or the Profiles' break-even cap (their edge-only time) is below that floor: every network step
    would miss."""
    floor, cut = network_floor_ms(edge, cloud, trace, rtt_ms)
    resolved = resolved_deadline_ms(edge, cloud, deadline_ms, break_even=break_even)
    if not math.isfinite(floor) or resolved >= floor:
        return resolved
    link = "this link" if trace is not None or rtt_ms is not None else "an ideal link"
    fastest = f"the fastest network step of {edge.model_id}/{edge.preset} (cut {cut}: {floor:.4g} ms on {link})"
    if deadline_ms < floor:
        raise DeadlineError(
            f"--deadline-ms {deadline_ms:g} is below {fastest}: every network step would miss; pass "
            f"--deadline-ms {math.ceil(floor * 1000) / 1000:g} or more, or --cut {edge.num_blocks} "
            "(edge-only)"
        )
    raise DeadlineError(
        f"the Profiles' edge-only time {resolved:.4g} ms ({edge.device}, source {edge.source}) caps the deadline "
        f"below {fastest}: every network step would miss. Pass Profiles of the hardware this runs on "
        "(--edge-profile/--cloud-profile, e.g. a demo run's profile_edge.json/profile_cloud.json with --emulate "
        "profile_edge.json; see docs/deployment.md), or --no-break-even-deadline to keep --deadline-ms"
    )


def edge_speed_mismatch(
    model: Any, edge: Any, frame: Any, *, runs: int = 2, tolerance: float = 2.0, slack_ms: float = 1.0
) -> str | None:
    """Why the edge Profile does not describe the machine the runtime runs on, or None: the real edge-only time of
    ``model`` on ``frame`` (median of ``runs`` after one warm-up, hardware emulation included when attached) above
    ``tolerance`` x the Profile's edge-only time + ``slack_ms``. A policy trained on that Profile would see
    latencies (``prev_latency``) it never saw and the guard would hand most steps to the heuristic."""
    import statistics
    import time

    obs = {name: frame[name] for name in model.make_observation(seed=0)}
    session = model.edge_session(model.num_blocks)
    session.start(obs)  # warm-up
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        model.edge_session(model.num_blocks).start(obs)
        times.append((time.perf_counter() - t0) * 1e3)
    real = statistics.median(times)
    profiled = float(sum(edge.block_ms))
    if real <= tolerance * profiled + slack_ms:
        return None
    return (
        f"this machine runs {edge.model_id}/{edge.preset} edge-only in {real:.3g} ms, the edge Profile "
        f"({edge.device}, {edge.source}) says {profiled:.3g} ms: the policy would see latencies it was never "
        "trained on. Pass Profiles this machine can run (a demo run's profile_edge.json/profile_cloud.json with "
        "--emulate profile_edge.json, or `ecc profile` of this machine; see docs/deployment.md)"
    )


def wire_policy(
    policy_path: Path,
    edge: Any,
    cloud: Any,
    *,
    period_ms: float,
    deadline_ms: float,
    budget_ms: float = 2.0,
    hedge: bool = False,
    chunk_size: int | None = None,
    trust_pickle: bool = False,
) -> tuple[Any, Any]:
    """(GuardedPolicy, observation adapter) for the edge runtime, both built from the Profile pair and the
    deployment's chunk length and period (``chunk_size`` None: ``executor.control.DEFAULT_CHUNK_SIZE``);
    ``deadline_ms`` is the deadline in force (see :func:`deployment_deadline_ms`), ``hedge`` whether the runtime
    hedges; a policy trained under another deadline or hedging rule is loaded with a warning that names the
    difference, one trained for another chunk length or period is refused (``agents.compat``)."""
    from agents.artifact import PolicyExpectation, hedge_mismatch, profile_id
    from agents.guard import GuardedPolicy
    from agents.heuristics import HeuristicPlanner
    from agents.planner import PlannerContext
    from ecc_env.observation import ObservationBuilder, ObservationConfig
    from ecc_env.runtime_adapter import RuntimeObservationAdapter
    from executor.control import ControlSpec

    control = ControlSpec(period_ms=period_ms) if chunk_size is None else ControlSpec(chunk_size, period_ms)
    ctx = PlannerContext.from_profiles(
        edge, cloud, period_ms=period_ms, deadline_ms=deadline_ms, chunk_size=control.chunk_size
    )
    builder = ObservationBuilder(ObservationConfig(num_cuts=edge.num_cuts, chunk_size=control.chunk_size))
    expect = PolicyExpectation(
        observation=builder.spec(),
        model_id=f"{edge.model_id}/{edge.preset}",
        edge_profile_id=profile_id(edge),
        cloud_profile_id=profile_id(cloud),
        num_cuts=edge.num_cuts,
        chunk_size=control.chunk_size,
        period_ms=control.period_ms,
    )
    guarded = GuardedPolicy(
        policy_path, HeuristicPlanner(ctx), expect=expect, budget_ms=budget_ms, trust_pickle=trust_pickle
    )
    trained = (guarded.policy.metadata.get("env") or {}).get("deadline_ms") if guarded.policy is not None else None
    if trained is not None and abs(float(trained) - deadline_ms) > 1e-6:
        log.warning(
            "the policy was trained with a %.4g ms deadline, the runtime abandons network steps at %.4g ms "
            "(see --deadline-ms and --no-break-even-deadline)",
            float(trained),
            deadline_ms,
        )
    mismatch = hedge_mismatch(guarded.policy.metadata, hedge) if guarded.policy is not None else None
    if mismatch:
        log.warning("%s", mismatch)
    return guarded, RuntimeObservationAdapter(builder, dt_s=control.period_s, image_key="camera")


def _stream(args: EdgePolicyArgs) -> Any:
    from ecc_env.streams import ObservationStream, procedural_stream

    if args.stream is not None:
        return ObservationStream.load(args.stream)  # StreamFormatError (a ValueError) names the file and field
    return procedural_stream(args.stream_seed, max(args.runtime.steps, 2))


def main(argv: Sequence[str] = ()) -> int:
    from executor import edge_cli

    args = parse_args(argv)
    runtime = args.runtime
    if args.policy is None and any(v is not None for v in (args.edge_profile, args.cloud_profile, args.hardware)):
        print("ecc edge: --edge-profile/--cloud-profile/--hardware only apply with --policy", file=sys.stderr)
        return 2
    if args.policy is not None and any(v is not None for v in (runtime.planner, runtime.cut, runtime.builder)):
        print("ecc edge: --policy replaces --planner, --builder and --cut", file=sys.stderr)
        return 2
    planner = builder = None
    try:
        stream = _stream(args)
        if runtime.steps > stream.num_steps:
            raise ValueError(
                f"--steps {runtime.steps} is longer than the stream ({stream.num_steps} steps in {args.stream})"
            )
        if args.policy is not None:
            from executor.control import ControlSpec, chunk_shortfall

            control = ControlSpec(runtime.chunk_size, runtime.period_ms)
            if abs(stream.dt_s * 1e3 - control.period_ms) > 1e-6:
                log.warning(
                    "the stream was recorded every %.4g ms, the runtime runs every %.4g ms",
                    stream.dt_s * 1e3,
                    control.period_ms,
                )
            edge, cloud = _profiles(args, runtime.model, runtime.preset, runtime.wire)
            trace = None
            if runtime.trace is not None:
                from traces import load_trace

                trace = load_trace(runtime.trace)
            rtt = connect_rtt_ms(runtime.server) if runtime.server is not None else None
            deadline_ms = deployment_deadline_ms(
                edge, cloud, runtime.deadline_ms, break_even=args.break_even_deadline, trace=trace, rtt_ms=rtt
            )
            runtime = dataclasses.replace(runtime, deadline_ms=deadline_ms)
            planner, builder = wire_policy(
                args.policy,
                edge,
                cloud,
                period_ms=control.period_ms,
                deadline_ms=runtime.deadline_ms,
                budget_ms=args.budget_ms,
                hedge=runtime.hedge,
                chunk_size=control.chunk_size,
                trust_pickle=args.trust_pickle,
            )
            short = chunk_shortfall(control, runtime.model, runtime.preset)
            if short:
                print(f"ecc edge: {short}", file=sys.stderr)
            if planner.load_error:
                if args.strict:
                    print(f"ecc edge: policy not usable (--strict): {planner.load_error}", file=sys.stderr)
                    return 2
                print(
                    f"ecc edge: policy not loaded, the heuristic decides every step: {planner.load_error}",
                    file=sys.stderr,
                )
    except ValueError as e:  # ProfileError, StreamFormatError and DeadlineError are ValueErrors
        print(f"ecc edge: {e}", file=sys.stderr)
        return 2
    from ecc_env.runtime_adapter import stream_frame

    template: dict[str, Any] = {}

    def frame(model: Any, i: int) -> dict[str, Any]:
        if not template:
            template.update(model.make_observation(seed=0))
        return stream_frame(stream, template, i)

    preflight = None
    if args.policy is not None:

        def preflight(model: Any) -> str | None:
            return edge_speed_mismatch(model, edge, frame(model, 0))

    rc = edge_cli.run(
        runtime,
        planner=planner,
        builder=builder,
        frames=frame,
        banner="guarded policy" if args.policy is not None else "",
        preflight=preflight,
    )
    describe = getattr(planner, "describe_out_of_range", None)
    if callable(describe) and describe():
        print("out-of-range fields (the heuristic took these steps):\n" + describe())
    return rc
