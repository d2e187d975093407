"""One default wire configuration: everything that prices a deployment (the commands, the run configs, the env's
default Profiles) defaults to ``DEFAULT_WIRE``; the bare transport (``ClientConfig``) defaults to ``EXACT_WIRE`` on
purpose (bit-exact unless the caller prices otherwise); a transport inside a priced setting (the env's executor
backend, the closed loop through the runtime) sends under the wire its Profiles were priced under
(``wire_config.priced_wire``)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from executor.wire_config import DEFAULT_WIRE, EXACT_WIRE, WireConfig, priced_wire


def test_commands_and_run_configs_default_to_the_default_wire() -> None:
    from agents.closed_loop_eval import ClosedLoopEvalConfig
    from agents.evaluation import EvalConfig
    from agents.training import TrainConfig
    from ecc_env.split_env import default_profiles
    from executor import cutmap_cli, edge_cli, profile_cli

    for cfg in (EvalConfig(), TrainConfig(), ClosedLoopEvalConfig()):
        assert WireConfig.parse(cfg.wire) == DEFAULT_WIRE, type(cfg).__name__
    assert WireConfig.parse(edge_cli.EdgeArgs.wire) == DEFAULT_WIRE
    assert WireConfig.parse(profile_cli.ProfileArgs.wire) == DEFAULT_WIRE
    assert WireConfig(cutmap_cli.CutmapArgs.image, cutmap_cli.CutmapArgs.wire_dtype) == DEFAULT_WIRE
    edge, cloud = default_profiles()
    assert priced_wire(edge) == priced_wire(cloud) == DEFAULT_WIRE


def test_bare_client_is_exact_on_purpose() -> None:
    from executor.client import ClientConfig

    assert ClientConfig().wire == EXACT_WIRE  # a library caller gets the unsplit forward's actions bit for bit
    assert ClientConfig(wire="default").wire == DEFAULT_WIRE


def test_executor_backend_sends_what_its_profiles_charge(caplog: pytest.LogCaptureFixture) -> None:
    from ecc_env.backends import ExecutorConfig
    from ecc_env.split_env import default_profiles

    edge, _ = default_profiles()
    assert ExecutorConfig().wire is None
    assert WireConfig.parse(ExecutorConfig().for_profile(edge).wire) == DEFAULT_WIRE
    unpriced = replace(edge, notes={k: v for k, v in edge.notes.items() if k != "wire"})  # e.g. profile_model's
    assert priced_wire(unpriced) == EXACT_WIRE
    assert WireConfig.parse(ExecutorConfig().for_profile(unpriced).wire) == EXACT_WIRE
    with caplog.at_level(logging.WARNING, logger="ecc_env.backends"):
        kept = ExecutorConfig(wire="exact").for_profile(edge)
    assert kept.wire == "exact" and "raw,fp32" in caplog.text and "jpeg:90,fp16" in caplog.text
    with pytest.raises(ValueError, match="bad wire configuration"):
        ExecutorConfig(wire="jpeg:90")


def test_closed_loop_runtime_client_sends_what_the_env_charges() -> None:
    from types import SimpleNamespace

    from agents.closed_loop_runtime import RuntimeClosedLoop, RuntimeLoopConfig
    from ecc_env.latency import ProbeConfig
    from ecc_env.split_env import default_profiles

    edge, _ = default_profiles()
    loop = object.__new__(RuntimeClosedLoop)  # only the client settings are under test: no server, no simulator
    loop.config = RuntimeLoopConfig()
    for profile, expected in ((edge, DEFAULT_WIRE), (replace(edge, notes={}), EXACT_WIRE)):
        loop.env = SimpleNamespace(edge_profile=profile, config=SimpleNamespace(probe=ProbeConfig()))
        assert loop._client_config().wire == expected
