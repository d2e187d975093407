"""Batched cloud execution priced by the roofline (a fleet's requests at one cut run as one batch), and the env's
server-load model that uses it."""

from __future__ import annotations

import pytest

from ecc_env.backends import ServerLoadConfig
from executor.blocks import BlockSpec, ComputePass
from executor.roofline import batched_block_ms, batched_cloud_ms, block_cost

LAYER = {"kind": "transformer_layer", "hidden": 4096, "mlp": 11008, "heads": 32, "head_dim": 128}


def _layer(tokens: int, context: int, repeat: int = 1) -> BlockSpec:
    return BlockSpec(
        name="layer", passes=(ComputePass(tokens, context, "decode" if tokens == 1 else "prefill", repeat),), **LAYER
    )


def test_batch_of_one_is_the_unbatched_roofline():
    spec = _layer(300, 300)
    assert batched_block_ms(spec, "a100", 1) == pytest.approx(block_cost(spec, "a100").time_ms, rel=1e-12)


def test_memory_bound_decode_batches_almost_for_free_and_compute_bound_prefill_does_not():
    decode = _layer(1, 300, repeat=7)  # one token over a 300-token context: weight reads dominate
    prefill = _layer(600, 600)  # hundreds of tokens: compute-bound
    d1, d8 = batched_block_ms(decode, "a100", 1), batched_block_ms(decode, "a100", 8)
    p1, p8 = batched_block_ms(prefill, "a100", 1), batched_block_ms(prefill, "a100", 8)
    assert d8 < 1.5 * d1  # a batch of 8 decodes costs little more than one
    assert p8 == pytest.approx(8 * p1, rel=0.05)  # prefill: ~8x (attention and matmuls scale with the batch)
    assert batched_block_ms(decode, "a100", 16) >= d8  # never cheaper with more requests


def test_cloud_half_sums_the_blocks_from_the_cut_and_rejects_bad_arguments():
    specs = [_layer(600, 600), _layer(1, 300, repeat=7)]
    assert batched_cloud_ms(specs, "a100", 4, cut=1) == pytest.approx(batched_block_ms(specs[1], "a100", 4))
    assert batched_cloud_ms(specs, "a100", 4, cut=2) == 0.0
    with pytest.raises(ValueError, match="batch"):
        batched_block_ms(specs[0], "a100", 0)
    with pytest.raises(ValueError, match="cut"):
        batched_cloud_ms(specs, "a100", 2, cut=3)


def test_server_load_model_waits_in_batches():
    one_at_a_time = ServerLoadConfig(mean_queue_len=3.0)
    assert one_at_a_time.queue_wait_ms(5, 10.0) == 50.0
    batched = ServerLoadConfig(mean_queue_len=3.0, batch_ms=(10.0, 11.0, 12.0, 13.0))  # batches of up to 4
    assert batched.queue_wait_ms(0, 10.0) == 0.0
    assert batched.queue_wait_ms(5, 10.0) == 13.0 + 10.0  # one full batch of 4, then a batch of 1
    assert batched.queue_wait_ms(8, 10.0) == 26.0
    with pytest.raises(ValueError, match="batch_ms"):
        ServerLoadConfig(batch_ms=(1.0, float("nan")))


def test_env_prices_a_batching_server_with_the_roofline():
    from ecc_env.split_env import EdgeCloudSplitEnv, EnvConfig
    from executor.roofline import batch_cost_ratios

    from executor.roofline import roofline_profile_for

    pair = tuple(roofline_profile_for("openvla", "small", hw) for hw in ("orin", "a100"))  # as the default pair
    env = EdgeCloudSplitEnv(*pair, config=EnvConfig(server_load=ServerLoadConfig(mean_queue_len=6.0, max_batch=8)))
    backend = env.backend
    per = backend.per_request_ms
    batch_ms = backend.server_load.batch_ms
    ratios = batch_cost_ratios("openvla", "small", "A100-80GB", 8)
    assert batch_ms == pytest.approx(tuple(per * r for r in ratios))
    assert len(batch_ms) == 8 and batch_ms[0] == pytest.approx(per)
    assert all(b2 >= b1 for b1, b2 in zip(batch_ms, batch_ms[1:]))
    assert batch_ms[-1] < 0.5 * 8 * per  # 8 robots ahead cost far less than 8 one-at-a-time services
    assert backend.server_load.queue_wait_ms(8, per) == pytest.approx(batch_ms[-1])
    one_at_a_time = EdgeCloudSplitEnv(*pair, config=EnvConfig(server_load=ServerLoadConfig(mean_queue_len=6.0)))
    assert one_at_a_time.backend.server_load.queue_wait_ms(8, per) == pytest.approx(8 * per)
    # the queue each episode sees is drawn as before; only its price changes
    for e in (env, one_at_a_time):
        e.reset(seed=3)
    assert env.backend.queue_len == one_at_a_time.backend.queue_len


def test_batching_server_load_is_validated():
    with pytest.raises(ValueError, match="max_batch"):
        ServerLoadConfig(max_batch=0)
    with pytest.raises(ValueError, match="disagrees"):
        ServerLoadConfig(max_batch=4, batch_ms=(1.0, 2.0))
    assert ServerLoadConfig(max_batch=2, batch_ms=(1.0, 1.5)).batch_ms == (1.0, 1.5)  # given prices are kept
