"""candidate_cuts: the cuts a controller ever needs; every brute-force optimum over bandwidth and RTT is among them."""

from __future__ import annotations

import numpy as np
import pytest

from executor.costs import cut_table
from executor.cutmap import candidate_cuts
from executor.roofline import roofline_profile_for

RTTS = (0.0, 10.0, 40.0, 100.0, 300.0)


@pytest.mark.parametrize("family,edge_dev", [("pi0", "orin"), ("openvla", "thor")])
def test_candidates_hold_every_brute_force_optimum(family: str, edge_dev: str) -> None:
    edge = roofline_profile_for(family, "full", edge_dev)
    cloud = roofline_profile_for(family, "full", "a100")
    cands = candidate_cuts(edge, cloud, rtt_ms_values=RTTS)
    assert 0 in cands and edge.num_blocks in cands
    assert len(cands) < edge.num_cuts  # the point: most cuts are never optimal for these models
    table = cut_table(edge, cloud)
    for rtt in RTTS:
        for bw in np.geomspace(0.1, 100_000.0, 400):
            assert int(np.argmin(table.latency_ms(bw, bw, rtt / 2))) in cands, (rtt, bw)


def test_candidates_reject_empty_rtts() -> None:
    p = roofline_profile_for("pi0", "full", "a100")
    with pytest.raises(ValueError, match="rtt_ms_values is empty"):
        candidate_cuts(p, p, rtt_ms_values=())
