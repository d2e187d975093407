"""OpenVLA with OpenVLA-OFT's parallel-decoding head (preset ``tiny-oft8``): names, K actions from one pass, the
same hidden states at every cut, no decode round trips, the roofline's one prefill of prefix + K x 7 tokens, and an
edge runtime that skips while the chunk lasts.

With random weights the argmax bins of the zero-input action positions barely depend on the observation, so the
split checks compare the hidden states the head reads (bit-exact), not only the actions.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from executor import roofline
from executor.control import ControlSpec, chunk_shortfall, model_chunk_length
from executor.models import Payload, PayloadError, build_model, run_split
from executor.models.openvla import parallel_decoding_mask
from executor.models.presets import OPENVLA_PRESETS, full_preset, preset_config

K = 8
OFT = f"tiny-oft{K}"


@pytest.fixture(scope="module")
def oft():
    torch.set_num_threads(1)
    return build_model("openvla", OFT, seed=0)


@pytest.fixture(scope="module")
def obs(oft):
    return oft.make_observation(seed=3)


class HeadInputs:
    """Records the hidden states every call of ``llm.head`` reads (a forward pre-hook on the block module)."""

    def __init__(self, model) -> None:
        self.seen: list[torch.Tensor] = []
        self._handle = model.block_modules[model.num_blocks - 1].register_forward_pre_hook(self._hook)

    def _hook(self, _module, args) -> None:
        self.seen.append(args[0].detach().clone())

    def close(self) -> None:
        self._handle.remove()


def test_preset_names_and_chunk_length():
    c = preset_config("openvla", "full-oft8")
    assert c.action_chunk == c.chunk == 8 and c.action_tokens == 56 and c.parallel_decoding
    assert c == replace(OPENVLA_PRESETS["full"], action_chunk=8)
    assert preset_config("openvla", "tiny").action_chunk == 1 and not preset_config("openvla", "tiny").parallel_decoding
    assert model_chunk_length("openvla", OFT) == K and model_chunk_length("openvla", "small-oft25") == 25
    assert chunk_shortfall(ControlSpec(8), "openvla", OFT) is None
    assert "preset tiny-oft8" in chunk_shortfall(ControlSpec(8), "openvla", "tiny")
    assert "preset small-oft8" in chunk_shortfall(ControlSpec(8), "openvla", "small-oft4")
    for bad, match in (
        ("tiny-oft1", "2..64"),
        ("tiny-oft65", "2..64"),
        ("huge-oft8", "tiny, small, full.*oft"),
        ("tiny-oft", "tiny, small, full"),
    ):
        with pytest.raises(ValueError, match=match):
            build_model("openvla", bad)
    with pytest.raises(ValueError, match="unknown preset 'tiny-oft8' for pi0"):
        build_model("pi0", OFT)
    with pytest.raises(ValueError, match="unknown model"):
        model_chunk_length("openvla", "tiny-oft0")
    with pytest.raises(ValueError, match="action_chunk"):
        replace(OPENVLA_PRESETS["tiny"], action_chunk=0)
    assert build_model("openvla", "full-oft8").is_meta  # a variant of `full` is built on the meta device, as `full`
    assert full_preset("tiny-oft8") == "full-oft8" and full_preset("small") == full_preset("full") == "full"


def test_one_pass_returns_k_actions_in_the_bins(oft, obs):
    calls = [0] * oft.num_blocks
    handles = [
        m.register_forward_pre_hook(lambda _m, _a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, m in enumerate(oft.block_modules)
    ]
    try:
        actions = oft.forward(obs)
    finally:
        for h in handles:
            h.remove()
    assert calls == [1] * oft.num_blocks  # every block once: no autoregressive decode steps
    assert actions.shape == (K, 7) and actions.dtype == np.float32
    bins = np.linspace(-1, 1, oft.config.action_bins)
    assert np.all(np.isin(actions, ((bins[:-1] + bins[1:]) / 2).astype(np.float32)))


def test_weights_are_the_autoregressive_models(oft):
    ar = build_model("openvla", "tiny", seed=0)
    assert oft.num_parameters() == ar.num_parameters()
    for a, b in zip(oft.block_modules, ar.block_modules, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_every_cut_reads_the_same_hidden_states_and_actions(oft, obs):
    rec = HeadInputs(oft)
    try:
        reference = oft.forward(obs)
        oft.forward(oft.make_observation(seed=4))  # the head input of another observation
        for cut in range(oft.num_cuts):
            actions, _trace = run_split(oft, obs, cut)
            assert np.array_equal(actions, reference), f"cut {cut}"
    finally:
        rec.close()
    c = oft.config
    ref, alt, *per_cut = rec.seen
    assert ref.shape == (1, c.action_tokens, c.llm_hidden)
    assert len(per_cut) == oft.num_cuts  # one head call per inference, wherever the head runs
    for cut, h in enumerate(per_cut):
        assert torch.equal(h, ref), f"cut {cut}: the head read other hidden states"
    assert not torch.equal(alt, ref)  # the head's input reads the observation
    assert not torch.equal(ref[0, 0], ref[0, -1])  # positions differ (RoPE), though every input embedding is zero


def test_no_decode_round_trips_and_payload_shapes(oft, obs):
    c = oft.config
    i_embed = oft.block_names.index("llm.embed")
    specs = oft.cut_specs("float32")
    seq = c.prefix_tokens + c.action_tokens
    for cut in range(oft.num_blocks):
        _a, trace = run_split(oft, obs, cut)
        assert [(m.direction, m.kind) for m in trace.messages][1:] == [("down", "actions")], f"cut {cut}"
        assert specs[cut].round_trips == trace.round_trips == 0
        assert specs[cut].down_bytes == K * 7 * 4
        payload = oft.edge_session(cut).start(obs)
        if cut > i_embed:  # a cut inside the LLM: one hidden state of prefix + K x 7 (the head: K x 7) positions
            width = c.action_tokens if cut == oft.num_blocks - 1 else seq
            assert payload.tensors["hidden"].shape == (1, width, c.llm_hidden)
            assert specs[cut].up_bytes == width * c.llm_hidden * 4
    edge = oft.edge_session(i_embed + 2)
    edge.start(obs)
    token = Payload(kind="token", cut=i_embed + 2, tensors={"token_id": torch.zeros((1, 1), dtype=torch.int64)}, step=1)
    with pytest.raises(PayloadError, match="no decode round trips"):
        edge.on_reply(token)


def test_prefix_is_causal_and_the_action_positions_see_everything(oft, obs):
    mask = parallel_decoding_mask(5, 2, "cpu")[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    # the prefix's hidden states are the autoregressive model's: the action positions never leak into them
    ar = build_model("openvla", "tiny", seed=0)
    cut = oft.block_names.index("llm.layer1") + 1
    h_oft = oft.edge_session(cut).start(obs).tensors["hidden"]
    h_ar = ar.edge_session(cut).start(obs).tensors["hidden"]
    p = oft.config.prefix_tokens
    torch.testing.assert_close(h_oft[:, :p], h_ar, rtol=0, atol=1e-6)


def test_head_hidden_states_match_transformers_llama_with_the_oft_mask(oft, obs):
    """The chain's layers, rotary positions and mask are Llama's: LlamaModel over the same embeddings and mask gives
    the normalised hidden states the head reads."""
    llm = oft.root["llm"]
    c = oft.config
    embeds = oft.edge_session(oft.block_names.index("llm.embed") + 1).start(obs).tensors["hidden"]
    total = c.prefix_tokens + c.action_tokens
    assert embeds.shape == (1, total, c.llm_hidden) and not embeds[0, -c.action_tokens :].any()  # empty actions
    rec = HeadInputs(oft)
    try:
        oft.forward(obs)
    finally:
        rec.close()
    with torch.inference_mode():
        out = llm.model(inputs_embeds=embeds, attention_mask=parallel_decoding_mask(total, c.action_tokens, "cpu"))
        head = oft.block_modules[-1]
        torch.testing.assert_close(
            head.norm(rec.seen[0]), out.last_hidden_state[:, -c.action_tokens :], rtol=1e-5, atol=1e-5
        )


def test_a_batch_gives_each_request_its_own_hidden_states(oft):
    cut = oft.block_names.index("llm.layer0") + 1
    seeds = (0, 1, 2)
    edges = [oft.edge_session(cut) for _ in seeds]
    payloads = [e.start(oft.make_observation(s)) for e, s in zip(edges, seeds)]
    rec = HeadInputs(oft)
    try:
        results = oft.cloud_batch(cut, payloads)
        alone = [oft.forward(oft.make_observation(s)) for s in seeds]
    finally:
        rec.close()
    batched, *singles = rec.seen
    assert batched.shape[0] == len(seeds)  # one batched forward
    for i, (edge, (sess, reply)) in enumerate(zip(edges, results, strict=True)):
        assert np.array_equal(edge.on_reply(reply), alone[i])
        torch.testing.assert_close(batched[i : i + 1], singles[i], rtol=0, atol=1e-6)
        with pytest.raises(PayloadError, match="already returned"):
            sess.on_request(payloads[i])
    assert not torch.equal(singles[0], singles[1])


def test_roofline_prices_one_prefill_of_prefix_plus_the_action_tokens():
    oft, ar = build_model("openvla", OFT, device="meta"), build_model("openvla", "tiny", device="meta")
    c = oft.config
    h, q, kv, m, vocab = c.llm_hidden, c.llm_hidden, c.llm_hidden, c.llm_mlp, c.vocab_size
    t = c.prefix_tokens + K * 7
    assert t == 8 + 16 + 56
    # one pass of t tokens over t keys: QKV, scores + values (t x t per head dim), o_proj, gated MLP up, down
    layer_flops = 2 * t * h * (q + 2 * kv) + 2 * (2 * t * t * q) + 2 * t * q * h + 2 * t * h * 2 * m + 2 * t * m * h
    head_flops = 2 * (K * 7) * h * vocab  # lm_head at every action position, once
    cost = {b.name: b for b in roofline.estimate(oft.block_specs(), "orin", "float32").blocks}
    for j in range(c.llm_layers):
        assert cost[f"llm.layer{j}"].flops == layer_flops
        assert len(cost[f"llm.layer{j}"].passes) == 1
    assert cost["llm.head"].flops == head_flops and len(cost["llm.head"].passes) == 1
    ar_cost = {b.name: b for b in roofline.estimate(ar.block_specs(), "orin", "float32").blocks}
    assert len(ar_cost["llm.layer0"].passes) == 7  # prefill + 6 decode passes
    for name, b in cost.items():  # the vision blocks are untouched
        if not name.startswith("llm."):
            assert b.flops == ar_cost[name].flops
    # every LLM pass reads the weights once: one pass instead of seven reads them once instead of seven times
    w = cost["llm.layer0"].weight_bytes
    assert ar_cost["llm.layer0"].bytes - cost["llm.layer0"].bytes > 5 * w


def test_full_oft8_is_faster_edge_only_and_cuts_have_no_round_trips():
    e1 = roofline.roofline_profile_for("openvla", "full", "orin", check_memory=False)
    e8 = roofline.roofline_profile_for("openvla", "full-oft8", "orin", check_memory=False)
    assert e8.total_ms < e1.total_ms / 4  # one weight read of the 7B LLM instead of seven
    assert all(cut.round_trips == 0 for cut in e8.cuts)
    assert max(cut.round_trips for cut in e1.cuts) == 6


class FixedPlanner:
    """Test double with SB3's predict signature: always the same (cut, skip)."""

    def __init__(self, cut: int, skip: int) -> None:
        self.cut, self.skip = cut, skip

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.array([self.cut, self.skip]), state


def _zeros(_ctx) -> np.ndarray:
    return np.zeros(4, dtype=np.float32)


def test_edge_runtime_executes_the_chunk_and_skips(oft, obs):
    from executor.runtime import EdgeRuntime, RuntimeConfig

    expected = oft.forward(obs)
    config = RuntimeConfig(control_period_s=0.1, deadline_s=5.0, realtime=False, chunk_size=K)
    runtime = EdgeRuntime(oft, FixedPlanner(cut=oft.num_blocks, skip=1), _zeros, config=config)
    records = runtime.run([obs] * (K + 1))
    assert [r.mode for r in records] == ["local"] + ["skipped"] * (K - 1) + ["local"]
    for i, r in enumerate(records[:K]):
        np.testing.assert_array_equal(r.action, expected[i])
    assert records[-1].new_chunk


@pytest.mark.network
def test_split_step_at_an_llm_cut_is_one_exchange_then_skips(oft, obs):
    from executor.client import ClientConfig
    from executor.runtime import EdgeRuntime, RuntimeConfig
    from executor.server import CloudServer, ServerConfig

    expected = oft.forward(obs)
    cut = oft.block_names.index("llm.layer1") + 1
    config = RuntimeConfig(control_period_s=0.1, deadline_s=5.0, realtime=False, connect_timeout_s=10.0, chunk_size=K)
    client = ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, connect_timeout_s=5.0)
    with CloudServer(build_model("openvla", OFT, seed=0), ServerConfig(port=0)) as server:
        with EdgeRuntime(
            oft, FixedPlanner(cut=cut, skip=1), _zeros, server_url=server.url, client_config=client, config=config
        ) as runtime:
            records = runtime.run([obs] * K)
    assert [r.mode for r in records] == ["split"] + ["skipped"] * (K - 1)
    first = records[0]
    assert first.cut_used == cut and first.timing is not None and first.timing.round_trips == 0
    c = oft.config
    assert first.timing.bytes_up >= (c.prefix_tokens + c.action_tokens) * c.llm_hidden * 4  # one hidden state up
    for i, r in enumerate(records):
        np.testing.assert_array_equal(r.action, expected[i])
