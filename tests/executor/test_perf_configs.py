"""ecc perf model configurations: analytic specs agree with the executor's models, the scaled pi0 family,
Hugging Face config files, and the sweeps' tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from executor import catalog, roofline
from executor.perf import ConfigError, evaluate, get_config, load_hf_config, resolve_model
from executor.perf.configs import SCALED_FAMILY, block_specs, config_from_hf


@pytest.mark.parametrize("family", ["pi0", "openvla"])
def test_analytic_specs_match_the_executor_models(family: str) -> None:
    from executor.models import build_model

    ours = block_specs(get_config(family))
    theirs = build_model(family, "full", device="meta").block_specs()
    for hw in ("orin", "thor", "a100", "b100"):
        a, b = roofline.estimate(ours, hw).total_ms, roofline.estimate(theirs, hw).total_ms
        assert a == pytest.approx(b, rel=0.005)


def test_scaled_family_sizes_and_memory_fit() -> None:
    params = {m: get_config(m).params for m in SCALED_FAMILY}
    # Llama-2 backbones without their vocabulary: 6.5B, 12.7B, 68.5B; SigLIP-giant 1.1B
    assert (params["pi0-L"]["llm"] - 32000 * 4096) / 1e9 == pytest.approx(6.48, abs=0.01)
    assert (params["pi0-XL"]["llm"] - 32000 * 5120) / 1e9 == pytest.approx(12.69, abs=0.01)
    assert (params["pi0-XXL"]["llm"] - 32000 * 8192) / 1e9 == pytest.approx(68.45, abs=0.01)
    assert params["pi0-L"]["vision"] / 1e9 == pytest.approx(1.14, abs=0.02)
    totals = [sum(p.values()) for p in params.values()]
    assert totals == sorted(totals)
    fits = {
        (m, d): evaluate(get_config(m), "on-device", device=d).feasible
        for m in SCALED_FAMILY
        for d in ("Jetson AGX Thor", "RTX 4090", "B100")
    }
    assert [m for m in SCALED_FAMILY if not fits[(m, "RTX 4090")]] == ["pi0-XL", "pi0-XXL"]
    assert [m for m in SCALED_FAMILY if not fits[(m, "Jetson AGX Thor")]] == ["pi0-XXL"]
    assert all(fits[(m, "B100")] for m in SCALED_FAMILY)
    hz = [evaluate(get_config(m), "on-device", device="B100").control_hz for m in SCALED_FAMILY]
    assert hz == sorted(hz, reverse=True)


def test_long_context_grows_kv_cache_and_becomes_infeasible() -> None:
    pi0 = get_config("pi0")
    kv = [pi0.with_(timesteps=t).kv_cache_bytes() for t in (1, 10, 100)]
    assert kv[0] == 800 * 18 * 2 * 1 * 256 * 2  # 14.7 MB
    assert kv[1] == (10 * 768 + 32) * 18 * 2 * 256 * 2
    long = evaluate(pi0.with_(timesteps=10_000), "on-device", device="Jetson AGX Thor")
    assert not long.feasible and "KV cache" in long.reason
    assert evaluate(pi0.with_(timesteps=10_000), "on-device", device="B100").feasible
    lat = [evaluate(pi0.with_(timesteps=t), "on-device", device="B100").latency_ms for t in (1, 10, 100, 1000)]
    assert lat == sorted(lat)


def _write(tmp_path: Path, cfg: object, name: str = "config.json") -> Path:
    p = tmp_path / name
    p.write_text(cfg.to_json_string() if hasattr(cfg, "to_json_string") else json.dumps(cfg))
    return p


def test_hf_configs_from_transformers(tmp_path: Path) -> None:
    from transformers import GemmaConfig, LlamaConfig, PaliGemmaConfig, SiglipVisionConfig

    from executor.models.pi0 import pi0_config
    from executor.models.presets import PI0_PRESETS

    llama = load_hf_config(
        _write(
            tmp_path,
            LlamaConfig(
                hidden_size=512,
                intermediate_size=1024,
                num_hidden_layers=3,
                num_attention_heads=8,
                num_key_value_heads=2,
            ),
            "llama.json",
        )
    )
    assert (llama.llm.layers, llama.llm.hidden, llama.llm.kv_heads, llama.llm.head_dim) == (3, 512, 2, 64)
    assert (llama.expert.hidden, llama.expert.mlp) == (256, 256)  # VLA-Perf's derived expert
    gemma = config_from_hf(GemmaConfig().to_dict(), "gemma")
    assert gemma.llm.head_dim == 256 and gemma.llm.kv_heads == GemmaConfig().num_key_value_heads
    sig = config_from_hf(SiglipVisionConfig(image_size=384, patch_size=16).to_dict(), "siglip")
    assert sig.vision[0].patches == 576 and sig.image_tokens == 3 * 576
    pg = config_from_hf(PaliGemmaConfig().to_dict(), "paligemma")
    assert pg.llm.hidden == PaliGemmaConfig().text_config.hidden_size
    full = load_hf_config(_write(tmp_path, pi0_config(PI0_PRESETS["full"]), "pi0.json"))
    ours = get_config("pi0")
    from dataclasses import replace

    assert (
        replace(full.llm, name=ours.llm.name),
        full.vision[0].hidden,
        full.expert.hidden,
        full.chunk,
        full.denoising_steps,
    ) == (ours.llm, ours.vision[0].hidden, ours.expert.hidden, ours.chunk, ours.denoising_steps)
    assert roofline.estimate(block_specs(full), "a100").total_ms == pytest.approx(
        roofline.estimate(block_specs(ours), "a100").total_ms
    )


def test_unsupported_or_incomplete_configs_name_the_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lacks the fields num_hidden_layers, intermediate_size, num_attention_heads"):
        config_from_hf({"model_type": "llama", "hidden_size": 64}, "half")
    with pytest.raises(ConfigError, match=r"model_type 't5' is not a supported architecture .*lacks hidden_size"):
        config_from_hf({"model_type": "t5", "d_model": 512}, "t5")
    with pytest.raises(ConfigError, match="vision_config"):
        config_from_hf({"model_type": "paligemma", "text_config": {}}, "pg")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_hf_config(bad)
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        load_hf_config(_write(tmp_path, [1, 2], "list.json"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_hf_config(tmp_path / "missing" / "config.json")
    with pytest.raises(ConfigError, match="valid models: pi0, pi0-L"):
        resolve_model("gpt-7")
    with pytest.raises(ConfigError, match="must be positive integers: heads=0"):
        config_from_hf(
            {
                "model_type": "llama",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "intermediate_size": 128,
                "num_attention_heads": 0,
            },
            "zero",
        )


def test_sweeps_write_tables(tmp_path: Path) -> None:
    import csv

    from executor.perf.sweeps import run_sweep, write_table

    rows = run_sweep("steps", steps=(1, 10), devices=("RTX 4090", "Jetson Orin NX 16GB"))
    assert [(r["device"], r["x"]) for r in rows] == [
        ("RTX 4090", 1),
        ("RTX 4090", 10),
        ("Jetson Orin NX 16GB", 1),
        ("Jetson Orin NX 16GB", 10),
    ]
    assert rows[1]["action_ms"] > rows[0]["action_ms"] and rows[1]["denoising_steps"] == 10
    c, j = write_table(rows, tmp_path / "perf_steps")
    back = list(csv.DictReader(c.open()))
    assert len(back) == 4 and float(back[1]["latency_ms"]) == pytest.approx(rows[1]["latency_ms"])
    assert json.loads(j.read_text())[3]["device"] == "Jetson Orin NX 16GB"
    ctx = run_sweep("context", timesteps=(1, 10_000), devices=("RTX 4090",))
    assert ctx[1]["feasible"] is False and ctx[1]["latency_ms"] is None
    with pytest.raises(ValueError, match="denoising_steps must be an integer >= 1, got 0"):
        run_sweep("steps", steps=(0,))
    with pytest.raises(ValueError, match="valid sweeps: devices"):
        run_sweep("weather")
    assert all(math.isfinite(r["latency_ms"]) for r in run_sweep("devices"))
    assert {h.name for h in catalog.HARDWARE} == {r["device"] for r in run_sweep("devices")}


def test_ar_parallel_head_is_one_vlm_pass_over_all_action_tokens() -> None:
    from executor.blocks import ComputePass

    pi0 = get_config("pi0")
    cfg = pi0.with_(action_head="ar-parallel", chunk=10)
    specs = block_specs(cfg)
    layer = next(s for s in specs if s.name == "llm.layer0")
    n, ctx = 14 * 10, cfg.context_tokens
    assert layer.passes[1] == ComputePass(n, ctx + n, "parallel_decode", 1)
    head = next(s for s in specs if s.name == "llm.action_head")
    assert head.passes == (ComputePass(n, n, "parallel_decode"),)
    assert not any(s.kind == "expert" for s in specs)
    # VLA-Perf takeaway: parallel decoding is far faster than token-by-token decoding, and close to the flow expert
    lat = {
        h: evaluate(pi0.with_(action_head=h, chunk=10), "on-device", device="B100").latency_ms
        for h in ("flow", "autoregressive", "ar-parallel")
    }
    assert lat["ar-parallel"] < lat["autoregressive"] / 10
    assert 0.5 < lat["ar-parallel"] / lat["flow"] < 1.5
