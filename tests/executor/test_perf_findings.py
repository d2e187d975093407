"""VLA-Perf's findings, recomputed by our model (no published number is asserted)."""

from __future__ import annotations

import pytest

from executor import catalog
from executor.perf import evaluate, get_config
from executor.perf.sweeps import LOCAL_NETWORKS

PI0 = get_config("pi0")
EDGE_DEVICES = [h.name for h in catalog.HARDWARE if h.kind == "edge"]
SERVERS = [h.name for h in catalog.HARDWARE if h.kind != "edge"]


@pytest.mark.parametrize("hw", [h.name for h in catalog.HARDWARE])
def test_action_expert_is_memory_bound_on_every_catalogue_gpu(hw: str) -> None:
    r = evaluate(PI0, "on-device", device=hw)
    assert r.bound_of("action") == "memory"
    # ... while the VLM prefill of 800 tokens is compute-bound on every GPU whose ridge point it exceeds
    prefill = next(p for p in r.parts if p.name == "llm_prefill")
    if prefill.flops / prefill.nbytes > catalog.hardware(hw).balance_flops_per_byte:
        assert r.bound_of("llm_prefill") == "compute"


@pytest.mark.parametrize("hw", ["Jetson AGX Thor", "RTX 4090", "B100"])
def test_flow_matching_is_one_to_two_orders_faster_than_autoregressive_with_chunking(hw: str) -> None:
    ratios = {}
    for chunk in (1, 50):
        flow = evaluate(PI0.with_(chunk=chunk), "on-device", device=hw)
        ar = evaluate(PI0.with_(chunk=chunk, action_head="autoregressive"), "on-device", device=hw)
        ratios[chunk] = ar.latency_ms / flow.latency_ms
    assert 10 <= ratios[50] < 1000  # end to end, chunk 50 x 14 DoF
    assert ratios[1] < 10 < ratios[50]  # without chunking the gap is small


@pytest.mark.parametrize("hw", [h.name for h in catalog.HARDWARE])
def test_more_denoising_steps_cost_far_more_than_a_longer_chunk(hw: str) -> None:
    base = evaluate(PI0, "on-device", device=hw).component_ms("action")
    steps = evaluate(PI0.with_(denoising_steps=2 * PI0.denoising_steps), "on-device", device=hw).component_ms("action")
    chunk = evaluate(PI0.with_(chunk=2 * PI0.chunk), "on-device", device=hw).component_ms("action")
    assert steps / base == pytest.approx(2.0, rel=0.01)  # every step re-reads the expert's weights
    assert (steps - base) > 5 * (chunk - base) > 0  # a memory-bound step barely notices more tokens


def test_device_server_split_rarely_beats_on_device_and_never_beats_the_server() -> None:
    wins = total = 0
    for dev in EDGE_DEVICES:
        local = evaluate(PI0, "on-device", device=dev).latency_ms
        for srv in SERVERS:
            for net in LOCAL_NETWORKS:
                split = evaluate(PI0, "split", device=dev, server=srv, network=net).latency_ms
                server_only = evaluate(PI0, "edge-server", server=srv, network=net).latency_ms
                assert split > server_only  # the 14.7 MB KV cache costs more than the expert saves
                total += 1
                if split < local:
                    wins += 1
                    assert catalog.network(net).down_mbps >= 1000  # only over gigabit-class links
    assert 0 < wins <= total / 3


@pytest.mark.parametrize("net", LOCAL_NETWORKS)
def test_async_raises_frequency_without_lowering_latency(net: str) -> None:
    sync = evaluate(PI0, "edge-server", network=net)
    asy = evaluate(PI0, "edge-server", execution="async", network=net)
    assert asy.latency_ms == pytest.approx(sync.latency_ms)
    assert asy.control_hz > sync.control_hz


def test_server_beats_on_device_except_on_poor_networks() -> None:
    thor = evaluate(PI0, "on-device", device="Jetson AGX Thor").latency_ms
    assert evaluate(PI0, "edge-server", server="B100", network="Ethernet 10G").latency_ms < thor
    assert evaluate(PI0, "edge-server", server="B100", network="4G LTE").latency_ms > thor
