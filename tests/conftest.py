"""Shared fixtures. Tests that read ../shared/traces skip when it is absent, except under ECC_REQUIRE_SHARED=1."""

from __future__ import annotations

import os
from pathlib import Path

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
