"""`ecc edge`: the edge runtime, with `--policy runs/.../policy.zip` wired to a GuardedPolicy.

Without ``--policy`` this is exactly ``executor.edge_cli`` (fixed cut or ``--planner module:factory``). With it:
the policy artifact is loaded against the Profile pair it must have been trained on (``--edge-profile`` /
``--cloud-profile`` JSON, or ``--hardware EDGE+CLOUD`` for roofline Profiles of the model preset); the fallback is
the HeuristicPlanner (RoboECC cut + RAPID skip) on the same Profiles; observations come from the env's one
``ObservationBuilder`` through ``ecc_env.runtime_adapter``. A policy that does not load (missing, corrupt, trained
for another model, Profile or observation spec) is reported and the heuristic decides every step.
Joint velocities and torques of each frame come from a seeded procedural robot stream (``--stream-seed``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _extra_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--policy", type=Path, default=None, help="policy.zip written by `ecc train`")
    p.add_argument("--edge-profile", type=Path, default=None, help="edge Profile JSON the policy was trained on")
    p.add_argument("--cloud-profile", type=Path, default=None, help="cloud Profile JSON the policy was trained on")
    p.add_argument("--hardware", default=None, help="EDGE+CLOUD catalogue devices for roofline Profiles, e.g. orin+a100")
    p.add_argument("--budget-ms", type=float, default=2.0, help="policy decision budget before the fallback (ms)")
    p.add_argument("--stream-seed", type=int, default=0, help="seed of the procedural joint-state stream")
    p.add_argument("--no-break-even-deadline", dest="break_even_deadline", action="store_false",
                   help="keep --deadline-ms as given instead of capping it at the edge-only time (as `ecc train` "
                        "and `ecc eval` do by default)")
    return p


def _profiles(extra: argparse.Namespace, family: str, preset: str, wire: str = "default") -> tuple[Any, Any]:
    from executor.profile import Profile

    if extra.edge_profile is not None or extra.cloud_profile is not None:
        if extra.edge_profile is None or extra.cloud_profile is None:
            raise ValueError("--edge-profile and --cloud-profile go together")
        return (Profile.load(extra.edge_profile, expect_model=family, expect_preset=preset),
                Profile.load(extra.cloud_profile, expect_model=family, expect_preset=preset))
    if extra.hardware is None or "+" not in extra.hardware:
        raise ValueError("--policy needs the Profiles it was trained on: --edge-profile/--cloud-profile, "
                         f"or --hardware EDGE+CLOUD (got {extra.hardware!r})")
    from executor.wire_config import roofline_pair

    edge, cloud = extra.hardware.split("+", 1)
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


def wire_policy(policy_path: Path, edge: Any, cloud: Any, *, period_ms: float, deadline_ms: float,
                budget_ms: float = 2.0, hedge: bool = False) -> tuple[Any, Any]:
    """(GuardedPolicy, observation adapter) for the edge runtime, both built from the Profile pair; ``deadline_ms``
    is the deadline in force (see :func:`resolved_deadline_ms`), ``hedge`` whether the runtime hedges; a policy
    trained under another rule is loaded with a warning that names the difference."""
    from agents.artifact import PolicyExpectation, hedge_mismatch, profile_id
    from agents.guard import GuardedPolicy
    from agents.heuristics import HeuristicPlanner
    from agents.planner import PlannerContext
    from ecc_env.observation import ObservationBuilder, ObservationConfig
    from ecc_env.runtime_adapter import RuntimeObservationAdapter

    ctx = PlannerContext.from_profiles(edge, cloud, period_ms=period_ms, deadline_ms=deadline_ms)
    builder = ObservationBuilder(ObservationConfig(num_cuts=edge.num_cuts, chunk_size=ctx.chunk_size))
    expect = PolicyExpectation(observation=builder.spec(), model_id=f"{edge.model_id}/{edge.preset}",
                               edge_profile_id=profile_id(edge), cloud_profile_id=profile_id(cloud),
                               num_cuts=edge.num_cuts)
    guarded = GuardedPolicy(policy_path, HeuristicPlanner(ctx), expect=expect, budget_ms=budget_ms)
    trained = (guarded.policy.metadata.get("env") or {}).get("deadline_ms") if guarded.policy is not None else None
    if trained is not None and abs(float(trained) - deadline_ms) > 1e-6:
        log.warning("the policy was trained with a %.4g ms deadline, the runtime abandons network steps at %.4g ms "
                    "(see --deadline-ms and --no-break-even-deadline)", float(trained), deadline_ms)
    mismatch = hedge_mismatch(guarded.policy.metadata, hedge) if guarded.policy is not None else None
    if mismatch:
        log.warning("%s", mismatch)
    return guarded, RuntimeObservationAdapter(builder, dt_s=period_ms / 1e3)


def main(argv: Sequence[str] = ()) -> int:
    from executor import edge_cli

    extra, rest = _extra_parser().parse_known_args(list(argv))
    if extra.policy is None:
        if any(v is not None for v in (extra.edge_profile, extra.cloud_profile, extra.hardware)):
            print("ecc edge: --edge-profile/--cloud-profile/--hardware only apply with --policy", file=sys.stderr)
            return 2
        return edge_cli.main(rest)
    parser = edge_cli.build_parser()
    parser.epilog = "policy options:\n" + _extra_parser().format_help()
    args = parser.parse_args(rest)
    if args.planner is not None or args.cut is not None or args.builder is not None:
        print("ecc edge: --policy replaces --planner, --builder and --cut", file=sys.stderr)
        return 2
    try:
        edge, cloud = _profiles(extra, args.model, args.preset, args.wire)
        args.deadline_ms = resolved_deadline_ms(edge, cloud, args.deadline_ms, break_even=extra.break_even_deadline)
        planner, builder = wire_policy(extra.policy, edge, cloud, period_ms=args.period_ms,
                                       deadline_ms=args.deadline_ms, budget_ms=extra.budget_ms, hedge=args.hedge)
    except ValueError as e:  # ProfileError is a ValueError
        print(f"ecc edge: {e}", file=sys.stderr)
        return 2
    from ecc_env.streams import procedural_stream

    stream = procedural_stream(extra.stream_seed, max(args.steps, 2))

    def frame(model: Any, i: int) -> dict[str, Any]:
        obs = dict(model.make_observation(seed=i))
        obs["joint_vel"] = stream.joint_vel[i]
        obs["joint_torque"] = stream.joint_torque[i]
        return obs

    if planner.load_error:
        print(f"ecc edge: policy not loaded, the heuristic decides every step: {planner.load_error}", file=sys.stderr)
    return edge_cli.run(args, planner=planner, builder=builder, frames=frame, banner="guarded policy")
