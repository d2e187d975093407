"""Building split models: names, presets, parameter counts, block specs, the meta-device `full` presets, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from executor.models import FAMILIES, ModelNotRunnableError, build_model, presets_for


def test_families_and_presets():
    assert set(FAMILIES) >= {"openvla", "pi0"}
    for family in FAMILIES:
        assert set(presets_for(family)) == {"tiny", "small", "full"}


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="openvla.*pi0"):
        build_model("rt2", "tiny")
    with pytest.raises(ValueError, match="tiny.*small.*full"):
        build_model("pi0", "huge")
    with pytest.raises(ValueError, match="openvla"):
        presets_for("nope")
    with pytest.raises(ValueError, match="float32"):
        build_model("pi0", "tiny", dtype="float8")
    with pytest.raises(TypeError):
        build_model("pi0", "tiny", dtype=3)


@pytest.mark.parametrize("family", ["openvla", "pi0"])
def test_cut_index_out_of_range(family):
    m = build_model(family, "tiny")
    last = m.num_cuts - 1
    for bad in (-1, last + 1):
        for fn in (m.edge_session, m.cloud_session):
            with pytest.raises(ValueError, match=rf"0\.\.{m.num_blocks}"):
                fn(bad)
    with pytest.raises(TypeError):
        m.edge_session(1.5)
    with pytest.raises(TypeError):
        m.edge_session(True)


@pytest.mark.parametrize("family", ["openvla", "pi0"])
def test_block_specs_parameter_counts_sum_to_the_model(family):
    m = build_model(family, "tiny")
    specs = m.block_specs()
    assert [s.name for s in specs] == list(m.block_names)
    assert len(m.block_modules) == m.num_blocks == len(specs)
    total = sum(s.param_count for s in specs)
    root = m.root if family == "openvla" else m.pi0
    unused = 0 if family == "openvla" else m.unused_parameters()
    assert total == m.num_parameters() == sum(p.numel() for p in root.parameters()) - unused
    assert all(s.param_count > 0 for s in specs)


def test_block_specs_describe_the_work():
    ov = build_model("openvla", "tiny")
    c = ov.config
    layer = ov.block_specs()[ov.block_names.index("llm.layer0")]
    assert layer.kind == "transformer_layer" and layer.gated_mlp
    assert [p.phase for p in layer.passes] == ["prefill"] + ["decode"] * 6
    assert layer.passes[0].tokens == c.prompt_tokens + c.num_patches
    assert [p.context_tokens for p in layer.passes[1:]] == [layer.passes[0].tokens + s for s in range(1, 7)]
    pi = build_model("pi0", "tiny")
    expert = pi.block_specs()[-1]
    pc = pi.config
    assert expert.kind == "expert" and expert.layers == pc.vlm_layers
    assert expert.passes[0].repeat == pc.num_steps and expert.passes[0].phase == "parallel_decode"
    assert expert.passes[0].tokens == pc.chunk + 1
    assert expert.passes[0].context_tokens == pc.prefix_tokens + pc.chunk + 1


def test_flow_families_share_the_vlm_and_expert_specs_but_place_the_state_token_apart():
    """pi0 embeds the state as an expert (suffix) token, SmolVLA as a prefix token: the one set of FlowSplitModel
    spec builders follows each family's inputs, with each family's own widths and heads."""
    for family, state_in_prefix in (("pi0", False), ("smolvla", True)):
        m = build_model(family, "tiny", on_meta=True)
        c = m.config
        layers, hidden, kv_heads, head_dim = m._vlm_layout()
        mlp, heads = (c.vlm_mlp, c.vlm_heads) if family == "pi0" else (c.lm_mlp, c.lm_heads)
        expert_heads = c.expert_heads if family == "pi0" else c.lm_heads
        specs = {s.name: s for s in m.block_specs()}
        embed, layer, expert = specs["vlm.embed"], specs["vlm.layer0"], specs["expert"]
        tokens = c.prompt_tokens + state_in_prefix
        assert (embed.kind, embed.passes[0].tokens, embed.passes[0].context_tokens) == ("embedding", tokens, tokens)
        assert (embed.hidden, embed.in_dim, embed.out_dim) == (hidden, c.vocab_size, hidden)
        assert (layer.hidden, layer.mlp, layer.heads, layer.kv_heads, layer.head_dim) == (
            hidden,
            mlp,
            heads,
            kv_heads,
            head_dim,
        )
        assert layer.gated_mlp and layer.passes[0].tokens == layer.passes[0].context_tokens == c.prefix_tokens
        suffix = c.chunk + (not state_in_prefix)
        assert (expert.passes[0].tokens, expert.passes[0].context_tokens) == (suffix, c.prefix_tokens + suffix)
        assert (expert.heads, expert.kv_heads, expert.head_dim) == (expert_heads, kv_heads, head_dim)
        assert expert.layers == c.expert_layers == layers and expert.hidden == c.expert_hidden
        h, a = c.expert_hidden, c.max_action_dim
        io = 2.0 * (a * h + 3 * h * h + h * a) * c.chunk + (0.0 if state_in_prefix else 2.0 * c.max_state_dim * h)
        assert expert.extra["io_flops_per_step"] == pytest.approx(io, rel=1e-12)
        assert expert.extra.get("state_tokens") == (None if state_in_prefix else 1.0)


def test_full_presets_build_on_meta_at_published_scale():
    pi = build_model("pi0", "full")
    ov = build_model("openvla", "full")
    for m in (pi, ov):
        assert m.is_meta
        assert all(p.is_meta for mod in m.block_modules for p in mod.parameters())
        assert sum(s.param_count for s in m.block_specs()) == m.num_parameters()
        with pytest.raises(ModelNotRunnableError, match="meta"):
            m.forward(m.make_observation(0))
        with pytest.raises(ModelNotRunnableError):
            m.edge_session(1)
    assert 3.1e9 < pi.num_parameters() < 3.4e9  # pi0 ~3.3B
    assert 7.3e9 < ov.num_parameters() < 7.7e9  # OpenVLA 7.5B
    pc = pi.config
    assert pi.num_blocks == pc.vision_layers + pc.vlm_layers + 4 == 49
    assert pc.prefix_tokens == 800
    expert = pi.block_specs()[-1]
    assert 2.5e8 < expert.param_count < 3.5e8  # action expert ~300M
    kv_bf16 = pc.vlm_layers * 2 * pc.prefix_tokens * pc.vlm_kv_heads * pc.vlm_head_dim * 2
    cuts = pi.cut_specs("bfloat16")
    assert cuts[pi.num_blocks - 1].up_bytes == kv_bf16 + 4 * (pc.state_dim + pc.chunk * pc.max_action_dim)
    assert cuts[-1].placement == "cloud_then_edge" and cuts[-1].down_bytes == kv_bf16
    assert (
        cuts[0].up_bytes
        == pc.cameras * 224 * 224 * 3 + 8 * pc.prompt_tokens + 4 * pc.state_dim + 4 * pc.chunk * pc.max_action_dim
    )
    oc = ov.config
    assert oc.llm_layers == 32 and oc.llm_hidden == 4096 and oc.prefix_tokens == 256 + oc.prompt_tokens
    in_llm = ov.cut_specs("float16")[ov.block_names.index("llm.layer10")]
    assert in_llm.round_trips == 6 and in_llm.round_trip_up_bytes == 4096 * 2
    assert in_llm.up_bytes == oc.prefix_tokens * 4096 * 2


def test_seed_controls_weights_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a = build_model("pi0", "tiny", seed=0)
    assert torch.equal(state, torch.random.get_rng_state())
    b = build_model("pi0", "tiny", seed=0)
    c = build_model("pi0", "tiny", seed=1)
    obs = a.make_observation(0)
    assert np.array_equal(a.forward(obs), b.forward(obs))
    assert not np.array_equal(a.forward(obs), c.forward(obs))


def test_device_argument():
    m = build_model("openvla", "tiny", device="cpu")
    assert m.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for mod in m.block_modules for p in mod.parameters())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            build_model("openvla", "tiny", device="cuda")
    with pytest.raises(ValueError, match="device"):
        build_model("openvla", "tiny", device="tpu9")


def test_bfloat16_builds_and_runs():
    m = build_model("pi0", "tiny", dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in m.block_modules[1].parameters())
    ref = build_model("pi0", "tiny").forward(m.make_observation(0))
    out = m.forward(m.make_observation(0))
    assert out.dtype == np.float32 and np.abs(out - ref).max() < 0.25 * (np.abs(ref).max() + 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", ["openvla", "pi0"])
def test_cuda_split_is_exact_and_close_to_cpu(family):
    from executor.models import run_split

    gpu = build_model(family, "tiny", device="cuda")
    cpu = build_model(family, "tiny")
    obs = gpu.make_observation(0)
    ref = gpu.forward(obs)
    for cut in range(gpu.num_cuts):
        assert np.array_equal(run_split(gpu, obs, cut)[0], ref)
    if family == "pi0":  # continuous output: close to the CPU run (openvla's argmax tokens may flip on ties)
        assert np.allclose(ref, cpu.forward(obs), atol=1e-3)
