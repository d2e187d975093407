"""``agents.emulated_pair`` with OpenVLA-OFT's parallel-decoding head (preset ``tiny-oft8``)."""

from __future__ import annotations

import pytest

from executor import roofline
from executor.models import build_model

OFT = "tiny-oft8"


def test_the_emulated_pair_scales_by_the_oft_models_roofline():
    """``agents.emulated_pair`` scales an OFT preset's blocks by ``full-oft<K>``'s Orin/A100 ratios, not the
    autoregressive model's (whose LLM, seven weight reads per inference, has another ratio)."""
    from agents.emulated_pair import component_ratios, emulated_pair
    from executor.profiler import ProfilerConfig, profile_model

    measured = profile_model(build_model("openvla", OFT, seed=0), ProfilerConfig(warmup_runs=0, measured_runs=1))
    edge, cloud = emulated_pair("openvla", OFT, measured=measured, calibrate=False, wire="exact")
    llm = [i for i, b in enumerate(edge.block_names) if b.startswith("llm.")]
    ratio = sum(edge.block_ms[i] for i in llm) / sum(cloud.block_ms[i] for i in llm)

    def llm_ratio(preset: str) -> float:
        e, c = (roofline.roofline_profile_for("openvla", preset, hw, check_memory=False) for hw in ("orin", "a100"))
        return component_ratios(e, c)["llm"]

    assert ratio == pytest.approx(llm_ratio("full-oft8"), rel=1e-9)
    assert abs(llm_ratio("full") - llm_ratio("full-oft8")) > 1.0
