"""Wire compression on real split models (tiny presets): fp16 tolerance of pi0 actions, openvla token agreement."""

from __future__ import annotations

import numpy as np
import pytest

from executor import wire

models = pytest.importorskip("executor.models")
pytest.importorskip("torch")


def _transport(compression: str):
    return lambda p: wire.decode_payload(wire.encode_payload(p, compression=compression), device="cpu")


@pytest.fixture(scope="module")
def pi0():
    return models.build_model("pi0", "tiny")


@pytest.fixture(scope="module")
def openvla():
    return models.build_model("openvla", "tiny")


def test_uncompressed_wire_keeps_every_cut_exact(pi0, openvla) -> None:
    for m in (pi0, openvla):
        obs = m.make_observation(0)
        ref = m.forward(obs)
        for k in range(m.num_blocks + 1):
            actions, _ = models.run_split(m, obs, k, _transport("none"))
            assert np.array_equal(actions, ref), (m.family, k)


@pytest.mark.parametrize(
    ("compression", "rel_tol"), [("fp16", 1e-3), ("bf16", 1e-2), ("int8", 2e-2), ("int8_token", 2e-2)]
)
def test_pi0_actions_within_tolerance(pi0, compression: str, rel_tol: float) -> None:
    """Stated tolerance: max |actions - fp32 actions| <= rel_tol x max |fp32 actions| at every middle cut."""
    worst = 0.0
    for seed in range(3):
        obs = pi0.make_observation(seed)
        ref = pi0.forward(obs)
        for k in range(1, pi0.num_blocks):
            actions, _ = models.run_split(pi0, obs, k, _transport(compression))
            worst = max(worst, float(np.max(np.abs(actions - ref)) / np.max(np.abs(ref))))
    assert 0 < worst <= rel_tol  # lossy, but within the stated bound


@pytest.mark.parametrize("compression", ["fp16", "int8_token"])
def test_openvla_tokens_match_99_percent(openvla, compression: str) -> None:
    same = total = 0
    for seed in range(5):
        obs = openvla.make_observation(seed)
        ref = openvla.forward(obs)
        for k in range(1, openvla.num_blocks):
            actions, _ = models.run_split(openvla, obs, k, _transport(compression))
            same += int(np.sum(actions == ref))
            total += actions.size
    assert same / total >= 0.99
