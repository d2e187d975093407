"""Roofline cost model: hand-computed FLOPs/bytes/time, bound switching, efficiency, memory fit, catalogues."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from executor import catalog, roofline
from executor.blocks import BlockSpec, ComputePass
from executor.catalog import Hardware
from executor.profile import CutSpec, Profile

# toy device: 1000 FLOP/s and 1000 B/s, so time in ms == max(FLOPs, bytes) per operator
TOY = Hardware("toy", peak_tflops_bf16=1e-9, memory_bytes=10_000, mem_bandwidth_gbps=1e-6)


def _mha(tokens: int = 2, context: int = 2, **kw) -> BlockSpec:
    fields = dict(hidden=4, mlp=8, heads=2, kv_heads=2, head_dim=2)
    fields.update(kw)
    return BlockSpec("layer", "transformer_layer", (ComputePass(tokens, context),), **fields)


def test_hand_computed_mha_layer() -> None:
    # hidden h=4, mlp m=8, 2 heads x head_dim 2 (q/kv dim 4), 2 tokens attending to 2, bf16 (2 B), plain MLP,
    # score matrix materialised (written by QK^T, read back by PV)
    t, c, h, m, q, kv, b = 2, 2, 4, 8, 4, 4, 2
    ops = {
        "qkv_proj": (2 * t * h * (q + 2 * kv), b * (h * (q + 2 * kv) + t * h + t * (q + 2 * kv))),  # 192, 160
        "attn_scores": (2 * t * c * q, b * (t * q + c * kv + 2 * t * c)),  # 32, 48 (2 heads x 2x2 scores)
        "attn_values": (2 * t * c * q, b * (2 * t * c + c * kv + t * q)),  # 32, 48
        "o_proj": (2 * t * q * h, b * (q * h + t * q + t * h)),  # 64, 64
        "mlp_up": (2 * t * h * m, b * (h * m + t * h + t * m)),  # 128, 112
        "mlp_down": (2 * t * m * h, b * (m * h + t * m + t * h)),  # 128, 112
    }
    got = {
        o.name: (o.flops, o.bytes) for o in roofline.pass_ops(_mha(), ComputePass(t, c), b, attention="materialised")
    }
    assert got == ops
    cost = roofline.block_cost(_mha(), TOY, attention="materialised")
    assert cost.flops == 576 and cost.bytes == 544
    # per operator max(FLOPs, bytes) at 1000/s: 192 + 48 + 48 + 64 + 128 + 128 = 608 ms
    assert cost.time_ms == pytest.approx(608.0)
    # compute-bound: qkv, mlp_up, mlp_down (448); memory-bound: scores, values, o_proj (a tie counts as memory)
    assert cost.compute_ms == pytest.approx(448.0) and cost.memory_ms == pytest.approx(160.0)
    assert cost.bound == "compute"
    # pass granularity: one max over the whole pass
    assert roofline.block_cost(_mha(), TOY, granularity="pass", attention="materialised").time_ms == pytest.approx(
        576.0
    )
    # weights 4*12 + 4*4 + 4*8 + 8*4 = 128 params (param_count 0 -> derived), KV cache 2 x 4 x 2 tokens
    assert cost.weight_bytes == 128 * b and cost.kv_cache_bytes == 2 * kv * 2 * b


def test_default_attention_keeps_the_scores_on_chip() -> None:
    # GenZ's accounting: QK^T reads Q and K, 2*(t*q + c*kv) = 2*(8 + 8) = 32 B; PV reads V and writes the output,
    # 32 B; no score traffic. Same FLOPs as materialised.
    got = {o.name: (o.flops, o.bytes) for o in roofline.pass_ops(_mha(), ComputePass(2, 2), 2)}
    assert got["attn_scores"] == (32.0, 32.0) and got["attn_values"] == (32.0, 32.0)
    assert roofline.DEFAULT_ATTENTION == "onchip"
    # per operator at 1000/s: 192 + max(32, 32) + 32 + 64 + 128 + 128 = 576 ms
    assert roofline.block_cost(_mha(), TOY).time_ms == pytest.approx(576.0)
    # fused: one operator of 64 FLOPs and 2*(8 + 16 + 8) = 64 B -> 64 ms, as the two on-chip operators
    fused = roofline.block_cost(_mha(), TOY, attention="fused")
    assert fused.time_ms == pytest.approx(576.0)
    assert roofline.block_cost(_mha(), TOY, fused_attention=True).bytes == fused.bytes
    with pytest.raises(ValueError, match="attention"):
        roofline.block_cost(_mha(), TOY, attention="flash")
    with pytest.raises(ValueError, match="contradicts"):
        roofline.block_cost(_mha(), TOY, attention="materialised", fused_attention=True)


def test_genz_parallel_decode_hand_computed() -> None:
    # 3 chunk tokens over 7 prefix keys (context 10 = 7 + 3); h=4, 2 heads x 2 (q 4, kv 4), plain MLP m=8, bf16
    spec = _mha(tokens=3, context=10)
    p = ComputePass(3, 10, "parallel_decode")
    got = {o.name: (o.flops, o.bytes) for o in roofline.pass_ops(spec, p, 2, genz_parallel_decode=True)}
    assert got == {
        "qkv_proj": (2 * 3 * 4 * 12, 2 * 4 * 12),  # weights only (activations on chip)
        "attn_scores_prefix": (2 * 3 * 7 * 4, 2 * 7 * 4),  # K of the 7 prefix tokens
        "attn_values_prefix": (2 * 3 * 7 * 4, 2 * 7 * 4),
        "qkv_proj_self": (2 * 3 * 4 * 12, 2 * 4 * 12),  # GenZ's second QKV projection
        "attn_scores_self": (2 * 3 * 3 * 4, 2 * 3 * 4),
        "attn_values_self": (2 * 3 * 3 * 4, 2 * 3 * 4),
        "o_proj": (2 * 3 * 4 * 4, 2 * 4 * 4),
        "mlp_up": (2 * 3 * 4 * 8, 2 * (32 + 12 + 24)),  # the MLP reads and writes its activations
        "mlp_down": (2 * 3 * 8 * 4, 2 * (32 + 24 + 12)),
    }
    # prefill passes are unchanged by the flag
    pre = ComputePass(3, 3)
    assert roofline.pass_ops(spec, pre, 2, genz_parallel_decode=True) == roofline.pass_ops(spec, pre, 2)


def test_gqa_and_gated_mlp_counts() -> None:
    mha = roofline.block_cost(_mha(hidden=8, heads=4, kv_heads=4, head_dim=2), TOY)
    gqa = roofline.block_cost(_mha(hidden=8, heads=4, kv_heads=1, head_dim=2), TOY)
    qkv = lambda c: next(o for o in c.passes[0].ops if o.name == "qkv_proj")  # noqa: E731
    assert qkv(mha).flops - qkv(gqa).flops == 2 * 2 * 8 * (2 * 3 * 2)  # 3 fewer K and 3 fewer V heads
    plain = roofline.block_cost(_mha(), TOY)
    gated = roofline.block_cost(_mha(gated_mlp=True), TOY)
    assert gated.flops - plain.flops == 2 * 2 * 4 * 8  # one extra h x m gate projection over 2 tokens


def test_linear_patch_embed_expert_and_repeat() -> None:
    lin = BlockSpec("proj", "linear", (ComputePass(3, 3),), in_dim=5, out_dim=7)
    assert roofline.block_cost(lin, TOY).flops == 2 * 3 * 5 * 7
    mlp2 = BlockSpec("proj", "linear", (ComputePass(3, 3),), in_dim=5, mlp=6, out_dim=7)
    assert roofline.block_cost(mlp2, TOY).flops == 2 * 3 * (5 * 6 + 6 * 7)
    patch = BlockSpec("patch", "patch_embed", (ComputePass(4, 4),), in_dim=588, hidden=16)
    assert roofline.block_cost(patch, TOY).bytes == 2 * (588 * 16 + 4 * 588 + 4 * 16)
    layer = _mha(tokens=3, context=10)
    expert = BlockSpec(
        "expert",
        "expert",
        (ComputePass(3, 10, "parallel_decode", repeat=5),),
        hidden=4,
        mlp=8,
        heads=2,
        kv_heads=2,
        head_dim=2,
        layers=4,
    )
    one, many = roofline.block_cost(layer, TOY), roofline.block_cost(expert, TOY)
    assert many.flops == 4 * 5 * one.flops and many.time_ms == pytest.approx(4 * 5 * one.time_ms)


def _llama_layer(tokens: int, context: int, phase: str = "prefill") -> BlockSpec:
    return BlockSpec(
        "llm",
        "transformer_layer",
        (ComputePass(tokens, context, phase),),
        hidden=4096,
        mlp=11008,
        heads=32,
        kv_heads=32,
        head_dim=128,
        gated_mlp=True,
    )


def test_bound_switches_with_token_count() -> None:
    a100 = catalog.hardware("a100")
    assert roofline.block_cost(_llama_layer(1, 1), a100).bound == "memory"
    assert roofline.block_cost(_llama_layer(4096, 4096), a100).bound == "compute"
    # where it switches: intensity of the projections ~ tokens, so the switch sits near the ridge point (~153)
    bounds = [roofline.block_cost(_llama_layer(t, t), a100).bound for t in (16, 64, 512, 2048)]
    assert bounds[0] == "memory" and bounds[-1] == "compute" and bounds == sorted(bounds, key=lambda b: b != "memory")


@pytest.mark.parametrize("hw", catalog.HARDWARE, ids=lambda h: h.name)
def test_decode_passes_are_memory_bound_everywhere(hw: Hardware) -> None:
    cost = roofline.block_cost(_llama_layer(1, 300, "decode"), hw)
    assert cost.bound == "memory" and cost.compute_ms == 0.0
    # and the time is the bytes over the bandwidth
    assert cost.time_ms == pytest.approx(cost.bytes / hw.mem_bandwidth_bytes_per_s * 1e3)


def test_efficiency_scales_time() -> None:
    spec = _llama_layer(128, 128)
    full = roofline.block_cost(spec, "h100").time_ms
    assert roofline.block_cost(spec, "h100", efficiency=0.5).time_ms == pytest.approx(2 * full)
    assert roofline.block_cost(spec, "h100", efficiency=0.25).time_ms == pytest.approx(4 * full)
    for bad in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="efficiency"):
            roofline.block_cost(spec, "h100", efficiency=bad)


def test_fused_attention_moves_fewer_bytes_same_flops() -> None:
    spec = _llama_layer(512, 512)
    a = roofline.block_cost(spec, "a100")
    a = roofline.block_cost(spec, "a100", attention="materialised")
    f = roofline.block_cost(spec, "a100", fused_attention=True)
    o = roofline.block_cost(spec, "a100")
    assert f.flops == a.flops == o.flops
    assert a.bytes - f.bytes == 2 * 2 * 32 * 512 * 512  # the bf16 score matrix, written once and read once
    assert o.bytes == f.bytes and o.time_ms >= f.time_ms  # on chip: same bytes, two maxes instead of one


def test_memory_fit_and_infeasible_profile() -> None:
    small = _llama_layer(8, 8)
    big = BlockSpec("big", "linear", (ComputePass(1, 1),), in_dim=4, out_dim=4, param_count=20 * 10**9)
    cuts = [CutSpec(k=k, up_bytes=100 * (2 - k), down_bytes=56) for k in range(3)]
    fits = roofline.estimate([small, big], "orin nx")  # 40 GB of bf16 weights on a 16 GB module
    assert not fits.fits_memory and fits.weight_bytes > 40e9
    with pytest.raises(roofline.InfeasibleError, match="Jetson Orin NX 16GB"):
        roofline.roofline_profile([small, big], cuts, "orin nx", model_id="m", preset="p")
    prof = roofline.roofline_profile([small, big], cuts, "orin nx", model_id="m", preset="p", check_memory=False)
    assert prof.notes["fits_memory"] is False
    assert roofline.estimate([small, big], "b100").fits_memory  # 192 GB


def test_roofline_profile_round_trip(tmp_path: Path) -> None:
    specs = [_llama_layer(16, 16), _llama_layer(16, 16)]
    cuts = [CutSpec(k=k, up_bytes=10 * (k + 1), down_bytes=56) for k in range(3)]
    prof = roofline.roofline_profile(specs, cuts, "thor", model_id="toy", preset="p", wire_dtype="bfloat16")
    cost = roofline.block_cost(specs[0], "thor")
    assert prof.source == "roofline" and prof.device == "Jetson AGX Thor"
    assert prof.block_ms == (cost.time_ms, cost.time_ms)
    assert prof.block_param_bytes == (cost.weight_bytes, cost.weight_bytes) and cost.weight_bytes > 0
    assert prof.device_memory_bytes == 128 * 10**9
    loaded = Profile.load(prof.save(tmp_path / "p.json"), expect_model="toy")
    assert loaded.block_ms == prof.block_ms and loaded.cuts == prof.cuts


def test_transfer_ms_with_protocol_overhead() -> None:
    # WiFi 6 up: 560 Mbit/s, 3.5 ms one way; 1 MB x 1.05 = 8.4 Mbit -> 15 ms
    assert roofline.transfer_ms(1_000_000, "wifi6", "up") == pytest.approx(3.5 + 15.0)
    assert roofline.transfer_ms(1_000_000, "wifi6", "down", protocol_overhead=0.0) == pytest.approx(3.5 + 10.0)
    assert roofline.transfer_ms(0, "4g") == pytest.approx(25.0)
    with pytest.raises(ValueError, match="direction"):
        roofline.transfer_ms(1, "5g", "sideways")  # type: ignore[arg-type]


def test_bad_specs_and_dtypes() -> None:
    with pytest.raises(ValueError, match="needs positive mlp"):
        roofline.block_cost(_mha(mlp=0), TOY)
    with pytest.raises(ValueError, match="unknown dtype"):
        roofline.block_cost(_mha(), TOY, dtype="float8")
    with pytest.raises(ValueError, match="unknown hardware 'tpu'.*Jetson AGX Orin"):
        roofline.block_cost(_mha(), "tpu")
    with pytest.raises(ValueError, match="no block specs"):
        roofline.estimate([], "a100")


# ------------------------------------------------------------------------------------------------ catalogue


def test_catalogue_aliases() -> None:
    assert catalog.hardware("orin").name == "Jetson AGX Orin 64GB"
    assert catalog.hardware("Orin NX").name == "Jetson Orin NX 16GB"
    assert catalog.hardware("THOR").name == "Jetson AGX Thor"
    assert catalog.hardware("a100").mem_bandwidth_gbps == 2039.0
    assert catalog.hardware("h100-sxm").peak_tflops_bf16 == 989.0
    assert catalog.network("wifi6").up_mbps == 560.0
    assert catalog.network("5g").down_mbps == 500.0
    assert catalog.network("wan slow").one_way_ms == 100.0
    with pytest.raises(ValueError, match="unknown network 'carrier pigeon'.*WiFi 7"):
        catalog.network("carrier pigeon")
    assert catalog.hardware("a100").balance_flops_per_byte == pytest.approx(312e12 / 2039e9)


def _reference_doc() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "vla_systems.md"


@pytest.mark.shared
def test_catalogue_matches_reference_tables() -> None:
    doc = _reference_doc()
    if not doc.is_file():
        if os.environ.get("ECC_REQUIRE_SHARED") == "1":
            pytest.fail(f"missing {doc}")
        pytest.skip(f"reference document not found: {doc}")
    text = doc.read_text()
    unit = {"GB": 1e9, "Gbps": 1000.0, "Mbps": 1.0}
    hw_rows = re.findall(r"^\| (.+?) \| ([\d.]+)(?: \(fp16\))? \| (\d+) GB \| ([\d.]+) GB/s \|$", text, re.M)
    assert len(hw_rows) == 7
    for name, tflops, mem, bw in hw_rows:
        h = catalog.hardware(name)
        assert (h.peak_tflops_bf16, h.memory_bytes, h.mem_bandwidth_gbps) == (
            float(tflops),
            int(mem) * 10**9,
            float(bw),
        )
    net_rows = re.findall(r"^\| (.+?) \| ([\d.]+) (Gbps|Mbps) \| ([\d.]+) (Gbps|Mbps) \| ([\d.]+) ms \|$", text, re.M)
    assert len(net_rows) == 8
    for name, up, uu, down, du, ms in net_rows:
        n = catalog.network(name)
        assert n.up_mbps == pytest.approx(float(up) * unit[uu]) and n.down_mbps == pytest.approx(float(down) * unit[du])
        assert n.one_way_ms == float(ms)
