"""Roofline on the real `full` model specs (built on the meta device): VLA-Perf's pi0 findings, computed by our model."""

from __future__ import annotations

import pytest

from executor import catalog, roofline

models = pytest.importorskip("executor.models")

# VLA-Perf (arXiv 2602.18397) Table "Inference performance of pi0 on various GPUs", end-to-end ms, bf16, ideal
# hardware, no network; and its compute/memory-bound table (vision, VLM, action).
PUBLISHED_E2E_MS = {"Jetson AGX Thor": 52.57, "RTX 4090": 31.06, "A100-80GB": 16.20, "H100 SXM": 6.15, "B100": 3.18}
PUBLISHED_BOUNDS = {
    "Jetson AGX Thor": ("memory", "memory", "memory"),
    "RTX 4090": ("compute", "compute", "memory"),
    "A100-80GB": ("compute", "compute", "memory"),
    "H100 SXM": ("compute", "compute", "memory"),
    "B100": ("compute", "compute", "memory"),
}


def _component(name: str, phase: str) -> str:
    if phase == "parallel_decode":
        return "action"
    return "vlm" if name.startswith("vlm") else "vision"


@pytest.fixture(scope="module")
def pi0_full():
    return models.build_model("pi0", "full")


@pytest.mark.parametrize("hw", catalog.HARDWARE, ids=lambda h: h.name)
def test_pi0_action_expert_memory_bound_everywhere(pi0_full, hw) -> None:
    parts = roofline.breakdown(roofline.estimate(pi0_full.block_specs(), hw), _component)
    assert set(parts) == {"vision", "vlm", "action"}
    assert parts["action"].bound == "memory"
    assert parts["action"].intensity_flops_per_byte < 100 < hw.balance_flops_per_byte


@pytest.mark.parametrize("device", sorted(PUBLISHED_E2E_MS))
def test_pi0_reproduces_vla_perf(pi0_full, device: str) -> None:
    result = roofline.estimate(pi0_full.block_specs(), device)
    parts = roofline.breakdown(result, _component)
    assert tuple(parts[c].bound for c in ("vision", "vlm", "action")) == PUBLISHED_BOUNDS[device]
    assert result.fits_memory
    assert result.total_ms == pytest.approx(PUBLISHED_E2E_MS[device], rel=0.10)


def test_roofline_profile_for_full_models() -> None:
    prof = roofline.roofline_profile_for("pi0", "full", "a100")
    model = models.build_model("pi0", "full")
    assert prof.source == "roofline" and prof.model_id == "pi0" and prof.preset == "full"
    assert prof.num_blocks == model.num_blocks and prof.cuts == tuple(model.cut_specs(wire_dtype="bfloat16"))
    assert prof.device_memory_bytes == 80 * 10**9
    assert sum(prof.block_param_bytes) == 2 * sum(s.param_count for s in model.block_specs())
    # OpenVLA decodes 7 tokens autoregressively: its LLM decode passes are memory-bound on the edge module
    ovla = roofline.estimate(models.build_model("openvla", "full").block_specs(), "orin")
    decode = roofline.breakdown(ovla, lambda n, ph: ph)["decode"]
    assert decode.bound == "memory" and decode.compute_ms == 0.0
    with pytest.raises(ValueError, match="unknown hardware"):
        roofline.roofline_profile_for("pi0", "full", "tpu-v9")
