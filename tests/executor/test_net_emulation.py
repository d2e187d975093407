"""Hardware emulation pads every block call to the target Profile's time and says so; off means untouched."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from executor.emulation import HardwareEmulator, count_block_calls  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profile import Profile, ProfileError  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_model("openvla", "tiny", seed=0)


def _profile(model, block_ms) -> Profile:
    return Profile(
        model_id=model.family,
        preset=model.preset,
        device="orin-emulated",
        dtype="float32",
        source="roofline",
        block_names=model.block_names,
        block_ms=tuple(block_ms),
        cuts=tuple(model.cut_specs()),
    )


def test_counts_block_calls_including_decode_steps(model):
    counts = count_block_calls(model, model.make_observation(0))
    assert len(counts) == model.num_blocks and min(counts) >= 1
    llm = [i for i, name in enumerate(model.block_names) if name.startswith("llm.layer")]
    vision = [i for i, name in enumerate(model.block_names) if name.startswith(("dino", "siglip"))]
    # the LLM runs once for the prefill and once per generated action token after the first; vision runs once
    assert all(counts[i] == 7 for i in llm) and all(counts[i] == 1 for i in vision)


def test_padding_brings_each_inference_up_to_the_profile_total(model):
    obs = model.make_observation(0)
    expected = model.forward(obs)
    block_ms = np.linspace(2.0, 12.0, model.num_blocks)
    with HardwareEmulator(model, _profile(model, block_ms)) as emulator:
        t0 = time.perf_counter()
        actions = model.forward(obs)
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        stats = emulator.stats()
        described = emulator.describe()
    np.testing.assert_array_equal(actions, expected)  # padding never changes results
    assert elapsed_ms >= block_ms.sum() - 0.5  # every block waited for its target (a lower bound, noise-proof)
    assert stats.calls == sum(emulator.calls_per_inference)
    assert stats.padded_ms + stats.overrun_ms > 0
    assert described["emulated"] is True and described["device"] == "orin-emulated"
    assert described["target_total_ms"] == pytest.approx(block_ms.sum())


def test_detached_emulator_adds_nothing(model):
    obs = model.make_observation(0)
    emulator = HardwareEmulator(model, _profile(model, [50.0] * model.num_blocks))
    emulator.attach()
    emulator.detach()
    model.forward(obs)
    assert emulator.stats().calls == 0 and not emulator.attached


def test_profile_of_another_model_is_refused(model):
    other = build_model("pi0", "tiny", seed=0)
    with pytest.raises(ProfileError, match="blocks"):
        HardwareEmulator(model, _profile(other, [1.0] * other.num_blocks))
    with pytest.raises(ValueError, match="calls_per_inference"):
        HardwareEmulator(model, _profile(model, [1.0] * model.num_blocks), calls_per_inference=(1,))
