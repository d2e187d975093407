"""ecc perf deployment modes: hand-computed numbers for one small configuration in every mode, memory fit,
and the published pi0 workload's structure."""

from __future__ import annotations

import math

import pytest

from executor import roofline
from executor.catalog import Hardware
from executor.perf import Payloads, PerfInputError, custom_link, evaluate, evaluate_mode, get_config
from executor.perf.configs import LMConfig, VisionConfig, VLAConfig
from executor.perf.modes import dual_system_hz, paper_hardware, resolve_mode

# A toy accelerator: 1 GB/s memory, a huge peak, so every operator is memory-bound and time = bytes / 1e9.
TOY = Hardware("toy", peak_tflops_bf16=1e3, memory_bytes=10**9, mem_bandwidth_gbps=1.0)
TOY_SERVER = Hardware("toy server", peak_tflops_bf16=1e3, memory_bytes=10**9, mem_bandwidth_gbps=2.0)
LINK = custom_link(8.0, 16.0, 5.0, "lan")  # 8 Mbit/s up, 16 down, 5 ms one way
WAN = custom_link(100.0, 100.0, 20.0, "wan")


def tiny() -> VLAConfig:
    """1 camera of 28 px (4 patches of 14 px), 2 prompt tokens -> VLM context 6; expert: 2 actions + 1 state token."""
    vision = VisionConfig(layers=1, hidden=8, mlp=16, heads=1, patch_px=14, image_px=28)
    llm = LMConfig(layers=1, hidden=8, mlp=16, heads=1, kv_heads=1, head_dim=8)
    expert = LMConfig(layers=1, hidden=8, mlp=16, heads=1, kv_heads=1, head_dim=8)
    return VLAConfig(
        name="tiny",
        vision=(vision,),
        llm=llm,
        expert=expert,
        cameras=1,
        prompt_tokens=2,
        state_tokens=1,
        chunk=2,
        denoising_steps=2,
        dof=2,
    )


# Expert, one pass of t = 3 tokens over c = 9 keys, bf16 (2 B), attention scores on chip (the default):
#   qkv 2*(8*24 + 3*8 + 3*24) = 576, scores 2*(24 + 9*8) = 192, values 192, o_proj 2*(64 + 24 + 24) = 224,
#   mlp_up (gated, 32) 2*(256 + 24 + 96) = 752, mlp_down 2*(128 + 48 + 24) = 400  -> 2336 B; x 2 steps = 4672 B.
#   (materialised scores add 2 x 2*27 = 108 B per pass: 4888 B.)
EXPERT_MS_TOY = 4672 / 1e9 * 1e3
IMAGE_BYTES = int(28 * 28 * 3 * 0.1)  # 235 B of JPEG
ACTION_BYTES = 2 * 2 * 4  # dof x chunk x float32
UP_MS = 5.0 + IMAGE_BYTES * 1.05 * 8 / 8e6 * 1e3
DOWN_MS = 5.0 + ACTION_BYTES * 1.05 * 8 / 16e6 * 1e3
KV_BYTES = 6 * 2 * 1 * 1 * 8 * 2  # context x (K,V) x layers x kv_heads x head_dim x bf16


def test_on_device_hand_computed_expert_and_sum() -> None:
    r = evaluate(tiny(), "on-device", device=TOY)
    assert r.component_ms("action") == pytest.approx(EXPERT_MS_TOY, rel=1e-9)
    assert r.bound_of("action") == "memory"
    assert r.latency_ms == pytest.approx(sum(p.time_ms for p in r.parts))
    assert {p.name for p in r.parts} == {"vision", "llm_prefill", "action"}
    assert r.network_ms == 0 and math.isinf(r.link_hz)
    assert r.control_hz == pytest.approx(1e3 / r.latency_ms)


def test_edge_server_hand_computed_transfers() -> None:
    r = evaluate(tiny(), "edge-server", server=TOY_SERVER, network=LINK)
    up = next(p for p in r.parts if p.name == "up:image")
    down = next(p for p in r.parts if p.name == "down:actions")
    assert (up.nbytes, down.nbytes) == (IMAGE_BYTES, ACTION_BYTES)
    assert up.time_ms == pytest.approx(UP_MS) and down.time_ms == pytest.approx(DOWN_MS)
    # the server is twice as fast as TOY: the expert takes half the hand-computed time
    assert r.component_ms("action") == pytest.approx(EXPERT_MS_TOY / 2)
    assert r.latency_ms == pytest.approx(r.compute_ms + UP_MS + DOWN_MS)
    assert r.link_hz == pytest.approx(1e3 / (UP_MS - 5 + DOWN_MS - 5))
    assert r.device == "" and r.server == "toy server"


def test_cloud_crosses_both_hops_each_way() -> None:
    r = evaluate(tiny(), "cloud", server=TOY_SERVER, network=LINK, wan=WAN)
    wan_up = 20.0 + IMAGE_BYTES * 1.05 * 8 / 100e6 * 1e3
    wan_down = 20.0 + ACTION_BYTES * 1.05 * 8 / 100e6 * 1e3
    assert [p.where for p in r.parts if p.is_network] == ["lan", "wan", "wan", "lan"]
    assert r.network_ms == pytest.approx(UP_MS + DOWN_MS + wan_up + wan_down)
    assert r.link_hz == pytest.approx(1e3 / (UP_MS - 5 + DOWN_MS - 5))  # the LAN is the bottleneck hop


def test_split_sends_the_kv_cache_and_runs_the_expert_on_the_device() -> None:
    cfg = tiny()
    assert cfg.kv_cache_bytes() == KV_BYTES
    r = evaluate(cfg, "split", device=TOY, server=TOY_SERVER, network=LINK)
    down = next(p for p in r.parts if p.name == "down:kv_cache")
    assert down.nbytes == KV_BYTES
    assert down.time_ms == pytest.approx(5.0 + KV_BYTES * 1.05 * 8 / 16e6 * 1e3)
    action = next(p for p in r.parts if p.name == "action")
    assert action.where == "toy" and action.time_ms == pytest.approx(EXPERT_MS_TOY)
    assert {p.where for p in r.parts if p.name in ("vision", "llm_prefill")} == {"toy server"}
    assert [p.name for p in r.parts][-1] == "action"  # the expert runs after the KV cache arrives
    # the device must hold the received VLM KV cache
    dev_mem = next(m for m in r.memory if m.hardware == "toy")
    assert dev_mem.kv_cache_bytes >= KV_BYTES
    # async: the slowest of server, device and link
    assert r.async_hz == pytest.approx(min(r.compute_hz, r.link_hz))


def test_async_hides_base_latency_but_keeps_latency() -> None:
    sync = evaluate(tiny(), "edge-server", server=TOY_SERVER, network=LINK)
    asy = evaluate(tiny(), "edge-server", execution="async", server=TOY_SERVER, network=LINK)
    assert asy.latency_ms == pytest.approx(sync.latency_ms)
    ser_ms = (UP_MS - 5.0) + (DOWN_MS - 5.0)
    server_ms = sync.compute_ms
    assert asy.control_hz == pytest.approx(min(1e3 / ser_ms, 1e3 / server_ms))
    assert asy.control_hz > sync.control_hz


def test_dual_system_formula() -> None:
    r = evaluate(tiny(), "on-device", execution="dual-system", device=TOY, s2_cap_hz=5.0)
    s2 = r.component_ms("llm_prefill")
    s1 = r.component_ms("vision") + r.component_ms("action")
    assert r.s2_ms == pytest.approx(s2) and r.latency_ms == pytest.approx(s1)
    assert r.control_hz == pytest.approx((1 - 5.0 * s2 / 1e3) / (s1 / 1e3))


def test_materialised_attention_adds_the_score_matrix() -> None:
    r = evaluate(tiny(), "on-device", device=TOY, attention="materialised")
    assert r.component_ms("action") == pytest.approx(4888 / 1e9 * 1e3, rel=1e-9)
    with pytest.raises(PerfInputError, match="attention"):
        evaluate(tiny(), "on-device", device=TOY, attention="flash")
    with pytest.raises(PerfInputError, match="accounting"):
        evaluate(tiny(), "on-device", device=TOY, accounting="genz")


def test_dual_system_floor_at_the_synchronous_rate() -> None:
    # S1 = 40 ms, S2 = 90 ms: at a 10 Hz cap the formula gives (1 - 0.9) / 0.04 = 2.5 Hz < 1/0.13 = 7.69 Hz sync
    assert dual_system_hz(40.0, 90.0, 10.0) == pytest.approx(1e3 / 130.0)
    # at 5 Hz: (1 - 0.45) / 0.04 = 13.75 Hz > sync
    assert dual_system_hz(40.0, 90.0, 5.0) == pytest.approx(13.75)
    # a cap System 2 cannot meet (20 Hz x 90 ms > 1) leaves the synchronous rate, still feasible
    assert dual_system_hz(40.0, 90.0, 20.0) == pytest.approx(1e3 / 130.0)
    with pytest.raises(PerfInputError):
        dual_system_hz(0.0, 90.0, 5.0)


def test_dual_system_cap_too_high_falls_back_to_sync() -> None:
    pi0 = get_config("pi0")
    r = evaluate(pi0, "on-device", execution="dual-system", device="orin nx", s2_cap_hz=20.0)
    sync = evaluate(pi0, "on-device", device="orin nx")
    assert r.feasible and r.control_hz == pytest.approx(sync.control_hz)


def test_paper_accounting_reads_bandwidth_in_gib_and_drops_the_state_token() -> None:
    hw = paper_hardware(TOY)
    assert hw.mem_bandwidth_gbps == pytest.approx(2**30 / 1e9) and hw.memory_bytes == int(10**9 * 2**30 / 1e9)
    # paper: 2 action tokens (no state token) over a 6-token context, GenZ's parallel-decode ops, 1.0737 GB/s.
    # qkv weights 2*8*24 = 384, prefix K 2*6*8 = 96, V 96, qkv_self 384, self K 2*2*8 = 32, V 32, o_proj 2*64 = 128,
    # mlp_up 2*(256 + 16 + 64) = 672, mlp_down 2*(128 + 32 + 16) = 352 -> 2176 B per step, x 2 steps.
    r = evaluate(tiny(), "on-device", device=TOY, accounting="paper")
    assert r.component_ms("action") == pytest.approx(2 * 2176 / (2**30) * 1e3, rel=1e-9)


def test_cut_mode_matches_cut_table_and_roofline() -> None:
    from executor.models import build_model
    from executor.perf.cuts import cut_rows

    model = build_model("pi0", "full", device="meta")
    rows, _, _ = cut_rows("pi0", roofline_hw("orin"), roofline_hw("a100"), LINK)
    n = model.num_blocks
    edge_only = rows[n]
    assert edge_only.name == "edge_only" and edge_only.network_ms == 0
    assert edge_only.edge_ms == pytest.approx(roofline.estimate(model.block_specs(), "orin").total_ms)
    cloud_only = rows[0]
    assert cloud_only.edge_ms == 0
    assert cloud_only.network_ms == pytest.approx(
        2 * 5.0 + cloud_only.up_bytes * 1.05 * 8 / 8e6 * 1e3 + cloud_only.down_bytes * 1.05 * 8 / 16e6 * 1e3
    )
    best = evaluate(get_config("pi0"), "cut", device="orin", server="a100", network=LINK)
    fastest = min((r for r in rows if r.feasible), key=lambda r: r.latency_ms)
    assert best.cut.startswith(f"{fastest.index}:") and best.latency_ms == pytest.approx(fastest.latency_ms)
    chosen = evaluate(get_config("pi0"), "cut", device="orin", server="a100", network=LINK, cut=n)
    assert chosen.latency_ms == pytest.approx(edge_only.latency_ms) and chosen.server == ""
    with pytest.raises(PerfInputError, match="cut index"):
        evaluate(get_config("pi0"), "cut", device="orin", server="a100", network=LINK, cut=10_000)


def roofline_hw(name: str) -> Hardware:
    from executor import catalog

    return catalog.hardware(name)


def test_memory_fit_marks_infeasible_without_numbers() -> None:
    r = evaluate(get_config("pi0-XL"), "on-device", device="RTX 4090")
    assert not r.feasible and "RTX 4090 needs" in r.reason
    assert math.isnan(r.latency_ms) and math.isnan(r.control_hz)
    row = r.row()
    assert row["latency_ms"] is None and row["control_hz"] is None and row["feasible"] is False


def test_mode_names_and_bad_input() -> None:
    assert resolve_mode("async") == ("edge-server", "async")
    assert resolve_mode("dual-system") == ("on-device", "dual-system")
    assert resolve_mode("async", base="cloud") == ("cloud", "async")
    assert resolve_mode("device-server") == ("split", "sync")
    with pytest.raises(PerfInputError, match="valid modes: on-device, edge-server"):
        resolve_mode("teleport")
    with pytest.raises(PerfInputError, match="valid: Jetson AGX Orin"):
        evaluate(tiny(), "on-device", device="tpu-v9")
    with pytest.raises(PerfInputError, match="valid: Ethernet 1G"):
        evaluate(tiny(), "edge-server", network="carrier pigeon")
    with pytest.raises(PerfInputError, match="up_mbps must be a positive finite bandwidth, got 0"):
        custom_link(0, 10, 1)
    with pytest.raises(PerfInputError, match="one_way_ms must be >= 0, got -1"):
        custom_link(10, 10, -1)
    with pytest.raises(PerfInputError, match="jpeg_ratio"):
        Payloads(jpeg_ratio=0)
    with pytest.raises(ValueError, match="denoising_steps=-3"):
        tiny().with_(denoising_steps=-3)
    with pytest.raises(PerfInputError, match="autoregressive"):
        evaluate(get_config("openvla"), "split", network="wifi7")
    with pytest.raises(PerfInputError, match="s2_cap_hz must be a positive"):
        evaluate_mode(tiny(), "dual-system", device=TOY, s2_cap_hz=0.0)
