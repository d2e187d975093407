"""The env charges a Profile's calibrated executor overheads (issue 21 item 6): by exactly their amount."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ecc_env.latency import DeadlineConfig
from ecc_env.split_env import EdgeCloudSplitEnv

EDGE_OVERHEAD_MS = (1.25, 2.5, 3.75, 5.0)  # per cut k = 0..3 (k = 3 is edge-only)
CLOUD_OVERHEAD_MS = (0.5, 1.0, 1.5, 7.0)  # the edge-only value must not be charged: the cloud takes no part
PER_MB = (0.2, 0.3)  # edge, cloud


def first_step_info(toy, profiles, cut: int) -> dict:
    env = EdgeCloudSplitEnv(
        *profiles,
        trace_set=toy.constant_set(),
        streams=[toy.known_stream()],
        trace_split="all",
        episode_s=1.0,
        chunk_size=1,
        deadline=DeadlineConfig(10_000.0, break_even=False),
    )
    env.reset(seed=0)
    return env.step(np.array([cut, 0]))[4]


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_a_known_overhead_changes_the_step_latency_by_exactly_that(toy, cut):
    edge, cloud = toy.make_profiles()
    calibrated = (
        replace(edge, overhead_ms=EDGE_OVERHEAD_MS, overhead_ms_per_mb=PER_MB[0]),
        replace(cloud, overhead_ms=CLOUD_OVERHEAD_MS, overhead_ms_per_mb=PER_MB[1]),
    )
    before = first_step_info(toy, (edge, cloud), cut)
    after = first_step_info(toy, calibrated, cut)
    u, d, r, ru, rd = toy.CUTS[cut]
    mb = (u + d + r * (ru + rd)) / 1e6
    if cut == 3:  # edge-only: the edge's per-call overhead, nothing for the cloud or the bytes
        expected_edge, expected_cloud = EDGE_OVERHEAD_MS[3], 0.0
    else:
        expected_edge = EDGE_OVERHEAD_MS[cut] + PER_MB[0] * mb
        expected_cloud = CLOUD_OVERHEAD_MS[cut] + PER_MB[1] * mb
    assert not before["deadline_miss"] and not after["deadline_miss"]
    assert after["edge_ms"] - before["edge_ms"] == pytest.approx(expected_edge, abs=1e-9)
    assert after["cloud_ms"] - before["cloud_ms"] == pytest.approx(expected_cloud, abs=1e-9)
    # a constant trace: the transfers take as long whenever they start, so the step is longer by the overheads alone
    assert after["service_ms"] - before["service_ms"] == pytest.approx(expected_edge + expected_cloud, abs=1e-9)


def test_the_runtime_decision_path_prices_the_same_overheads(toy):
    """The edge runtime's planners price cuts with ``PlannerContext.from_profiles`` (one ``cut_table``): the same
    edge-only time (its break-even deadline included) and the same per-cut costs as the env's rows."""
    from agents.planner import PlannerContext
    from ecc_env.latency import cut_rows

    edge, cloud = toy.make_profiles()
    e = replace(edge, overhead_ms=EDGE_OVERHEAD_MS, overhead_ms_per_mb=PER_MB[0])
    c = replace(cloud, overhead_ms=CLOUD_OVERHEAD_MS, overhead_ms_per_mb=PER_MB[1])
    ctx, bare = PlannerContext.from_profiles(e, c), PlannerContext.from_profiles(edge, cloud)
    assert ctx.edge_only_ms == pytest.approx(bare.edge_only_ms + EDGE_OVERHEAD_MS[3])
    rows = cut_rows(e, c)
    np.testing.assert_allclose(ctx.table.edge_ms, [r.edge_ms for r in rows])
    np.testing.assert_allclose(ctx.table.cloud_ms, [r.cloud_ms for r in rows])
    assert ctx.table.cloud_ms[0] == pytest.approx(
        bare.table.cloud_ms[0] + CLOUD_OVERHEAD_MS[0] + PER_MB[1] * (100_000 + 56) / 1e6
    )
