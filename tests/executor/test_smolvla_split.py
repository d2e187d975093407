"""smolvla specifics: chain layout, inputs, connector, profiler and roofline coverage; `full` has the published
shapes (64 visual tokens per image, 16 of 32 LM layers, ~450M parameters). The checks shared with openvla and pi0
(every cut bit-exact, payload bytes equal cut_specs, the reverse cut) are parametrised in test_models_split.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from executor import roofline
from executor.models import Payload, PayloadError, build_model, presets_for, run_split
from executor.profiler import ProfilerConfig, profile_model


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_model("smolvla", "tiny", seed=0)


@pytest.fixture(scope="module")
def obs(model):
    return model.make_observation(seed=3)


@pytest.fixture(scope="module")
def reference(model, obs):
    return model.forward(obs)


@pytest.fixture(scope="module")
def full():
    return build_model("smolvla", "full")


def test_family_is_registered():
    assert presets_for("smolvla") == ("tiny", "small", "full")


def test_chain_layout(model):
    c = model.config
    names = model.block_names
    assert names[0] == "vision.embed" and names[-1] == "expert"
    assert sum(n.startswith("vision.layer") for n in names) == c.vision_layers
    assert sum(n.startswith("vlm.layer") for n in names) == c.lm_layers_used
    assert model.num_cuts == model.num_blocks + 2  # forward cuts 0..N + "VLM on the cloud, expert on the edge"


def test_reference_is_a_deterministic_action_chunk(model, obs, reference):
    c = model.config
    assert reference.shape == (c.chunk, c.action_dim) and reference.dtype == np.float32
    assert np.all(np.isfinite(reference))
    assert np.array_equal(model.forward(obs), reference)
    assert not np.array_equal(model.forward(model.make_observation(seed=4)), reference)


@pytest.mark.parametrize("name", ["images", "prompt_ids", "state", "noise"])
def test_every_input_drives_the_actions(model, obs, reference, name):
    other = dict(obs)
    other[name] = (obs[name] + 1) if name != "images" else (obs[name] ^ np.uint8(0x55))
    if name == "prompt_ids":
        other[name] = (obs[name] % (model.config.vocab_size - 2)) + 1
        assert not np.array_equal(other[name], obs[name])
    assert not np.allclose(model.forward(other), reference)


def test_connector_compresses_patches_by_the_pixel_shuffle(model, obs):
    c = model.config
    i = model.block_names.index("connector")
    before = model.edge_session(i).start(obs).tensors["vision_hidden"]
    after = model.edge_session(i + 1).start(obs).tensors["image_features"]
    assert tuple(before.shape) == (c.cameras, c.num_patches, c.vision_hidden)
    assert tuple(after.shape) == (1, c.cameras * c.num_patches // c.scale_factor**2, c.lm_hidden)


def test_payload_checks_on_receive(model, obs):
    cut = model.block_names.index("vlm.layer0") + 1
    good = model.edge_session(cut).start(obs)
    bad = dict(good.tensors)
    bad["kv.0.key"] = good.tensors["kv.0.key"][..., :-1]
    with pytest.raises(PayloadError, match="kv.0.key"):
        model.cloud_session(cut).on_request(Payload(good.kind, cut, bad, activations=good.activations))
    with pytest.raises(PayloadError, match="cut"):
        model.cloud_session(cut).on_request(
            Payload(good.kind, cut - 1, dict(good.tensors), activations=good.activations)
        )
    with pytest.raises(ValueError, match="out of range"):
        model.edge_session(model.num_cuts)
    with pytest.raises(ValueError, match="state"):
        model.forward({k: v for k, v in obs.items() if k != "state"})


def test_the_profiler_covers_every_block(model):
    # that every block module runs once (the expert once per denoising step) is test_models_split.py's
    prof = profile_model(model, ProfilerConfig(warmup_runs=0, measured_runs=1))
    assert prof.model_id == "smolvla" and prof.block_names == model.block_names
    assert all(ms > 0 for ms in prof.block_ms)
    assert prof.cuts == tuple(model.cut_specs("float32"))


def test_block_specs_count_every_parameter(model, full):
    for m in (model, full):
        specs = m.block_specs()
        assert [s.name for s in specs] == list(m.block_names)
        assert sum(s.param_count for s in specs) == m.num_parameters()
        assert m.num_parameters() + m.unused_parameters() == sum(p.numel() for p in m.root.parameters())


def test_full_has_the_published_shapes(full):
    c = full.config
    assert c.tokens_per_image == 64 and c.lm_layers_used * 2 == c.lm_layers_total == 32
    assert c.chunk == 50 and c.num_steps == 10 and c.expert_hidden == int(0.75 * c.lm_hidden)
    n = full.num_parameters()
    lm_head = c.vocab_size * c.lm_hidden  # in the published checkpoint, never run by SmolVLA
    assert 380e6 < n < 420e6 and 430e6 < n + lm_head < 470e6
    spec = full.cut_specs("int8")[full.block_names.index("connector") + 1]
    assert (
        spec.up_bytes
        == c.cameras * 64 * c.lm_hidden + c.prompt_tokens * 8 + c.state_dim * 4 + c.chunk * c.max_action_dim * 4
    )


def test_roofline_prices_full_on_the_catalogue(full):
    specs = full.block_specs()
    orin, a100 = roofline.estimate(specs, "orin"), roofline.estimate(specs, "a100")
    assert orin.fits_memory and a100.fits_memory
    assert a100.total_ms < orin.total_ms
    expert = {r.name: r for r in orin.blocks}["expert"]
    assert expert.bound == "memory"  # flow-matching expert re-reads its weights every step
    # the expert reads its weights num_steps times: at least that much traffic
    assert expert.bytes >= full.config.num_steps * expert.weight_bytes
    prof = roofline.roofline_profile_for("smolvla", "full", "thor", wire_dtype="float16")
    assert prof.num_blocks == full.num_blocks and prof.cuts == tuple(full.cut_specs("float16"))


def test_small_runs_and_is_exact_at_a_middle_cut():
    m = build_model("smolvla", "small", seed=1)
    obs = m.make_observation(0)
    ref = m.forward(obs)
    cut = m.block_names.index("connector") + 1
    actions, trace = run_split(m, obs, cut)
    assert np.array_equal(actions, ref)
    assert trace.up_bytes == m.cut_specs()[cut].up_bytes
