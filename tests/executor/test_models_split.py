"""Split execution at `tiny` (openvla, openvla with OpenVLA-OFT's parallel-decoding head of 8 actions, pi0, smolvla,
cogact): every cut is bit-exact, payload bytes match cut_specs, sessions reject bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from executor.control import model_chunk_length
from executor.models import Payload, PayloadError, build_model, run_split

FAMILIES = ("openvla", "pi0", "smolvla", "cogact")
FLOW = ("pi0", "smolvla", "cogact")  # a VLM prefix + an action expert (flow or DiT): one reverse cut
OFT = "tiny-oft8"  # openvla with OpenVLA-OFT's parallel decoding of 8 actions


@pytest.fixture(scope="module", params=FAMILIES + (f"openvla/{OFT}",))
def model(request):
    torch.set_num_threads(1)
    family, _, preset = request.param.partition("/")
    return build_model(family, preset or "tiny", seed=0)


@pytest.fixture(scope="module")
def obs(model):
    return model.make_observation(seed=3)


@pytest.fixture(scope="module")
def reference(model, obs):
    return model.forward(obs)


def _wire_copy(counter: list[int]):
    """A transport that replaces every tensor by a read-only numpy array over a copy of its bytes (a wire decode)."""

    def transport(p: Payload) -> Payload:
        counter[0] += 1
        tensors = {}
        for name, t in p.tensors.items():
            arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
            tensors[name] = np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)
        return Payload(
            kind=p.kind, cut=p.cut, tensors=tensors, step=p.step, activations=p.activations, meta=dict(p.meta)
        )

    return transport


def test_reference_shape_and_dtype(model, reference):
    c = model.config
    expected = (1, c.action_dim) if model.preset == "tiny" and model.family == "openvla" else (c.chunk, c.action_dim)
    assert reference.shape == expected == (model_chunk_length(model.family, model.preset), c.action_dim)
    assert reference.dtype == np.float32
    assert np.all(np.isfinite(reference))


def test_every_cut_is_bit_exact(model, obs, reference):
    assert model.num_cuts == model.num_blocks + 1 + (1 if model.family in FLOW else 0)
    for cut in range(model.num_cuts):
        actions, _trace = run_split(model, obs, cut)
        assert actions.dtype == np.float32 and actions.shape == reference.shape
        assert np.abs(actions - reference).max() == 0.0, f"cut {cut} differs from the unsplit forward"


def test_every_cut_is_bit_exact_through_a_copying_transport(model, obs, reference):
    for cut in range(model.num_cuts):
        counter = [0]
        actions, trace = run_split(model, obs, cut, transport=_wire_copy(counter))
        assert np.array_equal(actions, reference), f"cut {cut} differs after a copy of every tensor"
        assert counter[0] == len(trace.messages)  # every message went through the transport


def test_cut_spec_bytes_equal_payload_bytes(model, obs, reference):
    specs = model.cut_specs("float32")
    assert len(specs) == model.num_cuts
    for cut, spec in enumerate(specs):
        _actions, trace = run_split(model, obs, cut)
        ups = [m.nbytes for m in trace.messages if m.direction == "up"]
        downs = [m.nbytes for m in trace.messages if m.direction == "down"]
        if not spec.uses_network:
            assert cut == model.num_blocks and trace.messages == []
            continue
        assert len(ups) == len(downs) == 1 + spec.round_trips == 1 + trace.round_trips
        assert model.family not in FLOW or spec.round_trips == 0  # one exchange: no decode round trips
        assert ups[0] == spec.up_bytes, f"cut {cut}: first upload"
        assert downs[-1] == spec.down_bytes, f"cut {cut}: final reply"
        if spec.placement == "edge_then_cloud":
            assert spec.down_bytes == reference.nbytes, f"cut {cut}: the reply is the float32 actions"
        assert all(b == spec.round_trip_up_bytes for b in ups[1:])
        assert all(b == spec.round_trip_down_bytes for b in downs[:-1])


def test_lower_wire_dtype_shrinks_only_the_activations(model, obs):
    fp32 = model.cut_specs("float32")
    for wire, size in (("float16", 2), ("bfloat16", 2), ("int8", 1)):
        specs = model.cut_specs(wire)
        for cut in (c for c in range(model.num_cuts) if c != model.num_blocks):  # every cut that uses the link
            edge = model.edge_session(cut)
            payload = edge.start(obs)
            act = sum(payload.tensors[n].numel() for n in payload.activations)
            raw = payload.nbytes() - act * 4
            assert specs[cut].up_bytes == raw + act * size, f"cut {cut} {wire}"
            if specs[cut].placement == "edge_then_cloud":
                assert specs[cut].down_bytes == fp32[cut].down_bytes  # actions stay float32
            else:  # the KV cache coming down is all activations
                assert specs[cut].down_bytes == fp32[cut].down_bytes // 4 * size, f"cut {cut} {wire} down"
    assert model.cut_specs("float16")[0].up_bytes == fp32[0].up_bytes  # the raw observation is never compressed
    with pytest.raises(ValueError, match="float16"):
        model.cut_specs("float64")


def test_raw_observation_upload_is_the_model_inputs(model, obs):
    payload = model.edge_session(0).start(obs)
    assert payload.kind == "observation" and payload.activations == ()
    expected = {"images", "prompt_ids"} | ({"state", "noise"} if model.family in FLOW else set())
    expected -= {"state"} if model.family == "cogact" else set()  # CogACT does not read proprioception
    assert set(payload.tensors) == expected
    for name in expected:
        assert np.array_equal(payload.tensors[name].cpu().numpy(), obs[name])


def test_forward_is_deterministic_and_reads_the_observation(model, obs, reference):
    assert np.array_equal(model.forward(obs), reference)
    other = model.make_observation(seed=4)
    if model.preset == OFT:  # random weights: the bins of the zero-input action positions stay put, their states move
        head_input = [model.edge_session(model.num_blocks - 1).start(o).tensors["hidden"] for o in (obs, other)]
        assert not torch.equal(*head_input)
    else:
        assert not np.array_equal(model.forward(other), reference)
    assert all(np.array_equal(model.make_observation(3)[k], v) for k, v in obs.items())


def test_block_modules_see_every_execution(model, obs):
    calls = [0] * model.num_blocks
    handles = [
        m.register_forward_pre_hook(lambda _m, _a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, m in enumerate(model.block_modules)
    ]
    try:
        model.forward(obs)
    finally:
        for h in handles:
            h.remove()
    for name, n in zip(model.block_names, calls):
        if model.family == "openvla" and name.startswith("llm.") and model.preset != OFT:
            assert n == 7, name  # prefill + 6 decode steps
        elif model.family in FLOW and name == "expert":
            assert n == model.config.num_steps, name  # one call per denoising step
        else:
            assert n == 1, name


def test_payload_checks_on_receive(model, obs):
    cut = 2
    good = model.edge_session(cut).start(obs)
    name = next(iter(good.activations))
    t = good.tensors[name]
    wrong_cut = Payload(kind=good.kind, cut=cut + 1, tensors=dict(good.tensors), activations=good.activations)
    with pytest.raises(PayloadError, match="cut 3"):
        model.cloud_session(cut).on_request(wrong_cut)
    bad_shape = dict(good.tensors)
    bad_shape[name] = t[..., :-1]
    with pytest.raises(PayloadError, match=name):
        model.cloud_session(cut).on_request(Payload(good.kind, cut, bad_shape, activations=good.activations))
    missing = {k: v for k, v in good.tensors.items() if k != name}
    with pytest.raises(PayloadError, match="expected"):
        model.cloud_session(cut).on_request(Payload(good.kind, cut, missing))
    bad_dtype = dict(good.tensors)
    bad_dtype["prompt_ids"] = good.tensors["prompt_ids"].to(torch.int32)
    with pytest.raises(PayloadError, match="prompt_ids"):
        model.cloud_session(cut).on_request(Payload(good.kind, cut, bad_dtype, activations=good.activations))
    with pytest.raises(PayloadError, match="kind"):
        Payload("bogus", cut, {})


def test_sessions_are_single_use(model, obs):
    edge = model.edge_session(model.num_blocks - 1)
    edge.start(obs)
    with pytest.raises(PayloadError):
        edge.start(obs)
    with pytest.raises(ValueError, match="edge-only"):
        model.cloud_session(model.num_blocks)


def test_bad_observation_is_rejected(model, obs):
    missing = {k: v for k, v in obs.items() if k != "prompt_ids"}
    with pytest.raises(ValueError, match="prompt_ids"):
        model.forward(missing)
    wrong = dict(obs)
    wrong["images"] = obs["images"].astype(np.float32)
    with pytest.raises(ValueError, match="images"):
        model.forward(wrong)
    with pytest.raises(TypeError):
        model.forward([1, 2, 3])


def test_openvla_decode_round_trips_cross_the_link():
    m = build_model("openvla", "tiny")
    obs = m.make_observation(0)
    i_embed = m.block_names.index("llm.embed")
    specs = m.cut_specs()
    for cut in range(m.num_blocks):
        _a, trace = run_split(m, obs, cut)
        ups = [x.kind for x in trace.messages if x.direction == "up"]
        downs = [x.kind for x in trace.messages if x.direction == "down"]
        if cut > i_embed:  # the edge holds llm.embed and the KV cache of layers below the cut
            assert specs[cut].round_trips == 6
            assert ups == ["activations"] + ["decode"] * 6 and downs == ["token"] * 6 + ["actions"]
            assert specs[cut].round_trip_up_bytes == m.config.llm_hidden * 4
            assert specs[cut].round_trip_down_bytes == 8
        else:
            assert specs[cut].round_trips == 0 and downs == ["actions"]


def test_openvla_actions_are_bin_centres():
    m = build_model("openvla", "tiny")
    actions = m.forward(m.make_observation(0))
    bins = np.linspace(-1, 1, m.config.action_bins)
    centres = ((bins[:-1] + bins[1:]) / 2).astype(np.float32)
    assert actions.shape == (1, 7)
    assert np.all(np.isin(actions, centres)) and np.all(np.abs(actions) < 1)


@pytest.mark.parametrize(
    ("family", "up_names", "layout"),
    [
        ("pi0", {"images", "prompt_ids"}, ("vlm_layers", "vlm_kv_heads", "vlm_head_dim")),
        # smolvla: the state is a prefix token, so it goes up with the images; the noise stays on the edge
        ("smolvla", {"images", "prompt_ids", "state"}, ("lm_layers_used", "lm_kv_heads", "lm_head_dim")),
    ],
)
def test_reverse_cut_sends_kv_cache_down_and_keeps_the_expert_inputs_on_the_edge(family, up_names, layout):
    m = build_model(family, "tiny")
    obs = m.make_observation(0)
    cut = m.num_blocks + 1
    spec = m.cut_specs()[cut]
    assert spec.placement == "cloud_then_edge" and spec.k == m.num_blocks - 1
    seen = []

    def spy(p: Payload) -> Payload:
        seen.append(p)
        return p

    actions, _ = run_split(m, obs, cut, transport=spy)
    assert np.array_equal(actions, m.forward(obs))
    up, down = seen
    assert up.kind == "observation" and set(up.tensors) == up_names
    c = m.config
    layers, kv_heads, head_dim = (getattr(c, f) for f in layout)
    assert down.kind == "kv_cache" and len(down.tensors) == 2 * layers
    kv_bytes = 2 * layers * kv_heads * c.prefix_tokens * head_dim * 4
    assert down.nbytes() == spec.down_bytes == kv_bytes
    assert up.nbytes() == spec.up_bytes == sum(obs[n].nbytes for n in up_names)


def test_pi0_noise_drives_the_actions():
    m = build_model("pi0", "tiny")
    obs = m.make_observation(0)
    other = dict(obs)
    other["noise"] = obs["noise"] + 1.0
    assert not np.allclose(m.forward(other), m.forward(obs))


def test_read_only_observation_arrays_are_accepted(model, obs, reference):
    frozen = {}
    for k, v in obs.items():
        a = v.copy()
        a.flags.writeable = False
        frozen[k] = a
    assert np.array_equal(model.forward(frozen), reference)
