"""Shared fixtures. Tests that read ../shared/traces skip when it is absent, except under ECC_REQUIRE_SHARED=1."""

from __future__ import annotations

import os
from pathlib import Path

from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_traces_dir() -> Path:
    env = os.environ.get("ECC_SHARED_TRACES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "traces"


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The recorded traces folder; skip (or fail in CI) when it is missing."""
    path = _shared_traces_dir()
    if not path.is_dir():
        if os.environ.get("ECC_REQUIRE_SHARED") == "1":
            pytest.fail(f"ECC_REQUIRE_SHARED=1 but the shared traces folder is missing: {path}")
        pytest.skip(f"shared traces folder not found: {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Two cores: keep torch from oversubscribing when tests start servers in other processes."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)


# ObservationBuilder.build's inputs of a typical step: two uplink samples, queues, a chunk in flight
_STEP_INPUTS: dict[str, Any] = dict(
    uplink_mbps=[42.0, 0.0],
    uplink_age_s=[0.25, 4.0],
    downlink_mbps=80.0,
    rtt_ms=55.0,
    edge_queue=2,
    server_queue=5,
    action_age_s=0.6,
    actions_left=5,
    visual=(0.03, 0.1, 0.2),
    visual_since_action=0.3,
    kinematic=(1.5, 0.25, 0.5),
    prev_cut=7,
    prev_skip=True,
    prev_deadline_miss=False,
    prev_latency_ms=321.0,
)


@pytest.fixture(scope="session")
def build_obs() -> Any:
    """``build_obs(builder, **changes)``: ``builder.build`` with every input given, those of a typical step with
    ``changes`` applied."""

    def build(builder: Any, **changes: Any) -> Any:
        return builder.build(**{**_STEP_INPUTS, **changes})

    return build
