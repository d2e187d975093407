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
(:func:`network_floor_ms`); a deadline asked below it is an error (exit 2). See ``docs/deployment.md``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class DeadlineError(ValueError):
    """A deadline that no network step can meet on this link; the message says what to pass instead."""


def build_parser() -> argparse.ArgumentParser:
    """``executor.edge_cli``'s parser plus the observation-input and policy options (all in ``--help``)."""
    from executor import edge_cli

    p = edge_cli.build_parser()
    p.description = __doc__
    g = p.add_argument_group("observation input")
    g.add_argument("--stream", type=Path, default=None,
                   help="ObservationStream .npz (frames + joint state) to run on (default: the env's procedural "
                        "generator)")
    g.add_argument("--stream-seed", type=int, default=0, help="seed of the procedural stream (default 0)")
    g = p.add_argument_group("policy options")
    g.add_argument("--policy", type=Path, default=None, help="policy.zip written by `ecc train`")
    g.add_argument("--edge-profile", type=Path, default=None, help="edge Profile JSON the policy was trained on")
    g.add_argument("--cloud-profile", type=Path, default=None, help="cloud Profile JSON the policy was trained on")
    g.add_argument("--hardware", default=None, help="EDGE+CLOUD catalogue devices for roofline Profiles, e.g. orin+a100")
    g.add_argument("--budget-ms", type=float, default=2.0, help="policy decision budget before the fallback (ms)")
    g.add_argument("--strict", action="store_true",
                   help="a policy that cannot be used (missing, corrupt, mismatched) is an error (exit 2) instead "
                        "of a run decided by the heuristic")
    g.add_argument("--no-break-even-deadline", dest="break_even_deadline", action="store_false",
                   help="keep --deadline-ms as given instead of capping it at the edge-only time (as `ecc train` "
                        "and `ecc eval` do by default)")
    return p


def _profiles(args: argparse.Namespace, family: str, preset: str) -> tuple[Any, Any]:
    from executor.profile import Profile

    if args.edge_profile is not None or args.cloud_profile is not None:
        if args.edge_profile is None or args.cloud_profile is None:
            raise ValueError("--edge-profile and --cloud-profile go together")
        return (Profile.load(args.edge_profile, expect_model=family, expect_preset=preset),
                Profile.load(args.cloud_profile, expect_model=family, expect_preset=preset))
    if args.hardware is None or "+" not in args.hardware:
        raise ValueError("--policy needs the Profiles it was trained on: --edge-profile/--cloud-profile (a demo run "
                         "keeps them as profile_edge.json/profile_cloud.json), or --hardware EDGE+CLOUD (got "
                         f"{args.hardware!r})")
    from executor.roofline import roofline_profile_for

    edge, cloud = args.hardware.split("+", 1)
    return roofline_profile_for(family, preset, edge), roofline_profile_for(family, preset, cloud)


def resolved_deadline_ms(edge: Any, cloud: Any, deadline_ms: float, *, break_even: bool = True) -> float:
    """The deadline the env would apply for this Profile pair (``DeadlineConfig.resolve`` with the edge-only time,
    or none when edge-only does not fit the edge's memory), so the runtime abandons a network step when the env
    the policy was trained in would."""
    from agents.planner import PlannerContext
    from ecc_env.latency import DeadlineConfig

    ctx = PlannerContext.from_profiles(edge, cloud)
    edge_only = ctx.edge_only_ms if ctx.cut_fits[ctx.edge_only_index] else None
    return DeadlineConfig(deadline_ms, break_even=break_even).resolve(edge_only).deadline_ms


def network_floor_ms(edge: Any, cloud: Any, trace: Any = None) -> tuple[float, int]:
    """(ms, cut) of the fastest network step the Profiles allow on the link: every network cut that fits the edge's
    memory at the trace's peak rates and smallest RTT (``trace`` None: compute only, an unknown link adds its
    own time), as ``executor.costs.CutTable.latency_ms`` prices it. ``(inf, -1)`` when no network cut fits."""
    import numpy as np

    from agents.planner import PlannerContext

    ctx = PlannerContext.from_profiles(edge, cloud)
    if trace is None:
        up = down = math.inf
        one_way = 0.0
    else:
        up, down = float(np.max(trace.up_mbps)), float(np.max(trace.down_mbps))
        one_way = float(np.min(trace.rtt_ms)) / 2.0
    lat = ctx.table.latency_ms(up, down, one_way)
    ok = ctx.table.uses_network & ctx.cut_fits
    if not ok.any():
        return math.inf, -1
    k = int(np.flatnonzero(ok)[np.argmin(lat[ok])])
    return float(lat[k]), k


def deployment_deadline_ms(edge: Any, cloud: Any, deadline_ms: float, *, break_even: bool = True,
                           trace: Any = None) -> tuple[float, str | None]:
    """(deadline, note) for the runtime: the env's deadline (:func:`resolved_deadline_ms`), raised to the fastest
    network step (:func:`network_floor_ms`) when the break-even cap put it below (the note says so). A
    ``deadline_ms`` asked for below that floor raises :class:`DeadlineError` naming the value to pass."""
    floor, cut = network_floor_ms(edge, cloud, trace)
    if not math.isfinite(floor):
        return resolved_deadline_ms(edge, cloud, deadline_ms, break_even=break_even), None
    if deadline_ms < floor:
        raise DeadlineError(
            f"--deadline-ms {deadline_ms:g} is below the fastest network step of {edge.model_id}/{edge.preset} "
            f"(cut {cut}: {floor:.4g} ms on {'this link' if trace is not None else 'an ideal link'}): every network "
            f"step would miss; pass --deadline-ms {math.ceil(floor * 1000) / 1000:g} or more, or --cut "
            f"{edge.num_blocks} (edge-only)")
    resolved = resolved_deadline_ms(edge, cloud, deadline_ms, break_even=break_even)
    if resolved >= floor:
        return resolved, None
    note = (f"deadline {floor:.4g} ms (the fastest network step, cut {cut}) instead of the edge-only time "
            f"{resolved:.4g} ms of these Profiles, so a network step can succeed at all; the Profiles say edge-only "
            f"is faster than any network step (pass the Profiles this edge really has: --edge-profile/--cloud-profile "
            f"or --emulate)")
    return floor, note


def wire_policy(policy_path: Path, edge: Any, cloud: Any, *, period_ms: float, deadline_ms: float,
                budget_ms: float = 2.0, hedge: bool = False, chunk_size: int | None = None) -> tuple[Any, Any]:
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
    ctx = PlannerContext.from_profiles(edge, cloud, period_ms=period_ms, deadline_ms=deadline_ms,
                                       chunk_size=control.chunk_size)
    builder = ObservationBuilder(ObservationConfig(num_cuts=edge.num_cuts, chunk_size=control.chunk_size))
    expect = PolicyExpectation(observation=builder.spec(), model_id=f"{edge.model_id}/{edge.preset}",
                               edge_profile_id=profile_id(edge), cloud_profile_id=profile_id(cloud),
                               num_cuts=edge.num_cuts, chunk_size=control.chunk_size, period_ms=control.period_ms)
    guarded = GuardedPolicy(policy_path, HeuristicPlanner(ctx), expect=expect, budget_ms=budget_ms)
    trained = (guarded.policy.metadata.get("env") or {}).get("deadline_ms") if guarded.policy is not None else None
    if trained is not None and abs(float(trained) - deadline_ms) > 1e-6:
        log.warning("the policy was trained with a %.4g ms deadline, the runtime abandons network steps at %.4g ms "
                    "(see --deadline-ms and --no-break-even-deadline)", float(trained), deadline_ms)
    mismatch = hedge_mismatch(guarded.policy.metadata, hedge) if guarded.policy is not None else None
    if mismatch:
        log.warning("%s", mismatch)
    return guarded, RuntimeObservationAdapter(builder, dt_s=control.period_s, image_key="camera")


def _stream(args: argparse.Namespace) -> Any:
    from ecc_env.streams import ObservationStream, procedural_stream

    if args.stream is not None:
        return ObservationStream.load(args.stream)  # StreamFormatError (a ValueError) names the file and field
    return procedural_stream(args.stream_seed, max(args.steps, 2))


def main(argv: Sequence[str] = ()) -> int:
    from executor import edge_cli

    args = build_parser().parse_args(list(argv))
    if args.policy is None and any(v is not None for v in (args.edge_profile, args.cloud_profile, args.hardware)):
        print("ecc edge: --edge-profile/--cloud-profile/--hardware only apply with --policy", file=sys.stderr)
        return 2
    if args.policy is not None and (args.planner is not None or args.cut is not None or args.builder is not None):
        print("ecc edge: --policy replaces --planner, --builder and --cut", file=sys.stderr)
        return 2
    planner = builder = None
    try:
        stream = _stream(args)
        if args.steps > stream.num_steps:
            raise ValueError(f"--steps {args.steps} is longer than the stream ({stream.num_steps} steps in "
                             f"{args.stream})")
        if args.policy is not None:
            from executor.control import ControlSpec, chunk_shortfall

            control = ControlSpec(args.chunk_size, args.period_ms)
            if abs(stream.dt_s * 1e3 - control.period_ms) > 1e-6:
                log.warning("the stream was recorded every %.4g ms, the runtime runs every %.4g ms",
                            stream.dt_s * 1e3, control.period_ms)
            edge, cloud = _profiles(args, args.model, args.preset)
            trace = None
            if args.trace is not None:
                from traces import load_trace

                trace = load_trace(args.trace)
            args.deadline_ms, note = deployment_deadline_ms(edge, cloud, args.deadline_ms,
                                                            break_even=args.break_even_deadline, trace=trace)
            if note:
                print(f"ecc edge: {note}", file=sys.stderr)
            planner, builder = wire_policy(args.policy, edge, cloud, period_ms=control.period_ms,
                                           deadline_ms=args.deadline_ms, budget_ms=args.budget_ms, hedge=args.hedge,
                                           chunk_size=control.chunk_size)
            short = chunk_shortfall(control, args.model, args.preset)
            if short:
                print(f"ecc edge: {short}", file=sys.stderr)
            if planner.load_error:
                if args.strict:
                    print(f"ecc edge: policy not usable (--strict): {planner.load_error}", file=sys.stderr)
                    return 2
                print(f"ecc edge: policy not loaded, the heuristic decides every step: {planner.load_error}",
                      file=sys.stderr)
    except ValueError as e:  # ProfileError, StreamFormatError and DeadlineError are ValueErrors
        print(f"ecc edge: {e}", file=sys.stderr)
        return 2
    from ecc_env.runtime_adapter import stream_frame

    template: dict[str, Any] = {}

    def frame(model: Any, i: int) -> dict[str, Any]:
        if not template:
            template.update(model.make_observation(seed=0))
        return stream_frame(stream, template, i)

    rc = edge_cli.run(args, planner=planner, builder=builder, frames=frame,
                      banner="guarded policy" if args.policy is not None else "")
    describe = getattr(planner, "describe_out_of_range", None)
    if callable(describe) and describe():
        print("out-of-range fields (the heuristic took these steps):\n" + describe())
    return rc
