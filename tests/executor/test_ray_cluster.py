"""Which Ray a command uses (``executor.ray_cluster``): $RAY_ADDRESS attaches, "local" starts, resources only for a
local instance (attaching with them is what made ``ecc train`` exit with "object_store_memory must not be
provided")."""

from __future__ import annotations

import pytest

from executor.ray_cluster import LOCAL, init_kwargs, resolve_address


def test_address_resolution_follows_the_documented_table(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == LOCAL
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_address(None) == "10.0.0.5:6379"  # Ray's convention: the environment names the cluster
    assert resolve_address("local") == LOCAL  # explicit: a local instance even with RAY_ADDRESS set
    assert resolve_address(" auto ") == "auto"
    with pytest.raises(ValueError, match="empty"):
        resolve_address("  ")


def test_resources_go_only_to_a_local_instance():
    local = init_kwargs(LOCAL, num_cpus=2, object_store_memory_bytes=100_000_000, env_vars={"OMP_NUM_THREADS": "1"})
    assert local["address"] == LOCAL and local["num_cpus"] == 2 and local["object_store_memory"] == 100_000_000
    attach = init_kwargs("10.0.0.5:6379", num_cpus=2, object_store_memory_bytes=100_000_000)
    assert attach["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in attach and "object_store_memory" not in attach
    assert attach["include_dashboard"] is False
