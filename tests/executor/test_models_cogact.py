"""CogACT: the DDIM schedule and sampler, classifier-free guidance, the published DiT-B size, the reverse cut's
cognition feature and the roofline price of the DiT, each pinned on a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from executor.models import Payload, build_model, run_split
from executor.models.cogact import ddim_schedule
from executor.models.presets import COGACT_PRESETS
from executor.roofline import block_cost, roofline_profile, roofline_profile_for


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return build_model("cogact", "tiny", seed=0)


def _alpha_bar(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def test_ddim_schedule_is_the_strided_squaredcos_schedule():
    ts, ab = ddim_schedule(100, 10)
    assert ts.tolist() == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert ab[-1] == pytest.approx(_alpha_bar(0.01) / _alpha_bar(0.0), rel=1e-12)  # 1 - beta_0
    prod = np.prod([1 - min(1 - _alpha_bar((i + 1) / 100) / _alpha_bar(i / 100), 0.999) for i in range(91)])
    assert ab[0] == pytest.approx(prod, rel=1e-12)
    assert np.all(np.diff(ab) > 0)  # noisiest first


def test_ddim_with_zero_noise_prediction_rescales_the_start_noise(tiny, monkeypatch):
    """eps = 0: x0 = x_t / sqrt(ab_t) and x_prev = sqrt(ab_prev) x0, so the chain telescopes to noise / sqrt(ab_T)."""
    dit = tiny.root["dit"]
    monkeypatch.setattr(dit, "predict_noise", lambda x, t, z: torch.zeros_like(x))
    noise = torch.randn(tiny.config.chunk, tiny.config.action_dim)
    out = dit(torch.zeros(1, 1, tiny.config.cognition_dim), noise[None])[0]
    _ts, ab = ddim_schedule(tiny.config.diffusion_steps, tiny.config.ddim_steps)
    torch.testing.assert_close(out, noise / math.sqrt(ab[0]), rtol=1e-5, atol=1e-6)


def _one_ddim_step(dit, monkeypatch, rows: list[float]) -> list:
    """Make ``dit`` take one DDIM step (the last: ab = 0.81, ab_prev = 1) with a noise prediction of ``rows[r]``
    for input row r; returns the list its (batch, timesteps, cognition) are recorded in."""
    monkeypatch.setattr(dit, "_timesteps", [0])
    monkeypatch.setattr(dit, "_alpha_bar", [0.81])
    seen: list = []

    def predict(x, t, z):
        seen.append((x.shape[0], t.tolist(), z.clone()))
        return torch.tensor(rows)[:, None, None].expand_as(x).clone()

    monkeypatch.setattr(dit, "predict_noise", predict)
    return seen


def _guided_step(cond: float, uncond: float) -> float:
    """x0 = (x - sqrt(1 - ab) eps) / sqrt(ab) from x = 1, eps = u + 1.5 (c - u) (the tiny preset's cfg_scale)."""
    eps = uncond + 1.5 * (cond - uncond)
    return (1 - math.sqrt(0.19) * eps) / 0.9


def test_classifier_free_guidance_mixes_conditional_and_unconditional_noise(tiny, monkeypatch):
    c = tiny.config
    dit = tiny.root["dit"]
    seen = _one_ddim_step(dit, monkeypatch, [0.5, 0.1])  # conditional, unconditional
    noise = torch.ones(c.chunk, c.action_dim)
    out = dit(torch.zeros(1, 1, c.cognition_dim), noise[None])[0]
    torch.testing.assert_close(out, torch.full_like(noise, _guided_step(0.5, 0.1)))
    [(batch, ts, z)] = seen
    assert (batch, ts, z.shape) == (2, [0, 0], (2, 1, c.cognition_dim))  # both inputs as one batch of 2


def test_classifier_free_guidance_pairs_each_request_of_a_batch_with_its_own_unconditional_input(tiny, monkeypatch):
    """A batch of B requests runs as one batch of 2B, the B conditional inputs first, then B copies of the null
    cognition feature; request i is guided by rows i and B + i."""
    c = tiny.config
    dit = tiny.root["dit"]
    seen = _one_ddim_step(dit, monkeypatch, [0.5, 0.7, 0.1, 0.2])  # conditional 1, 2, unconditional 1, 2
    cognition = torch.stack([torch.full((1, c.cognition_dim), 3.0), torch.full((1, c.cognition_dim), 4.0)])
    out = dit(cognition, torch.ones(2, c.chunk, c.action_dim))
    for i, (cond, uncond) in enumerate(((0.5, 0.1), (0.7, 0.2))):
        torch.testing.assert_close(out[i], torch.full((c.chunk, c.action_dim), _guided_step(cond, uncond)))
    [(batch, _ts, z)] = seen
    assert batch == 4
    torch.testing.assert_close(z[:2], cognition)
    torch.testing.assert_close(z[2:], dit.null_cognition.detach().expand(2, -1, -1))


def test_full_preset_has_the_published_dit_base_and_prismatic_vlm():
    c = COGACT_PRESETS["full"]
    assert (c.dit_layers, c.dit_hidden, c.dit_heads, c.chunk, c.action_dim, c.ddim_steps) == (12, 768, 12, 16, 7, 10)
    m = build_model("cogact", "full")  # meta device: shapes only
    d = c.dit_hidden
    layer = 12 * d * d + 13 * d  # qkv + out (4 d^2 + 4 d), MLP d -> 4d -> d (8 d^2 + 5 d), two LayerNorms (4 d)
    dit = c.dit_layers * layer + (7 * d + d) + (256 * d + d + d * d + d) + (4096 * d + d) + 4096 + 17 * d + (d * 7 + 7)
    assert dit == 89_017_607  # CogACT's "DiT-Base, 89M"
    specs = m.block_specs()
    assert specs[-1].name == "dit" and specs[-1].param_count == dit
    total = sum(s.param_count for s in specs)
    assert total == m.num_parameters() == sum(p.numel() for p in m.root.parameters()) - m.unused_parameters()
    ov = build_model("openvla", "full")
    # the VLM is OpenVLA-7B without its lm_head: OpenVLA's llm.head is the final norm (CogACT's vlm.cognition) +
    # the 32064-row lm_head (CogACT reads hidden states, not tokens)
    assert total - dit == ov.num_parameters() - 4096 * 32064


def test_cognition_feature_is_all_that_crosses_the_reverse_cut(tiny):
    obs = tiny.make_observation(0)
    cut = tiny.num_blocks + 1
    spec = tiny.cut_specs("float32")[cut]
    assert spec.placement == "cloud_then_edge" and spec.k == tiny.num_blocks - 1
    seen: list[Payload] = []

    def spy(p: Payload) -> Payload:
        seen.append(p)
        return p

    actions, _ = run_split(tiny, obs, cut, transport=spy)
    assert np.array_equal(actions, tiny.forward(obs))
    up, down = seen
    assert set(up.tensors) == {"images", "prompt_ids"}  # the DDIM noise stays on the edge
    assert set(down.tensors) == {"cognition"} and down.nbytes() == spec.down_bytes == tiny.config.cognition_dim * 4
    full = build_model("cogact", "full").cut_specs("bfloat16")
    rev, before_dit = full[-1], full[-3]
    assert rev.down_bytes == 4096 * 2  # 8 KiB of cognition feature in bf16
    assert before_dit.name == "after:vlm.cognition" and before_dit.up_bytes == 4096 * 2 + 16 * 7 * 4  # + noise


def test_roofline_prices_the_dit_as_cfg_batch_ddim_passes():
    m = build_model("cogact", "full")
    spec = m.block_specs()[-1]
    d, t, ctx = 768, 2 * 17, 17  # CFG batch 2 x [condition token + 16 actions], each sample attends to its 17
    per_pass_layer = 2 * t * (3 * d * d + d * d + 2 * d * 4 * d) + 2 * (2 * t * ctx * d)
    cost = block_cost(spec, "a100")
    assert cost.flops == pytest.approx(12 * 10 * per_pass_layer, rel=1e-12)
    specs, cuts = m.block_specs(), m.cut_specs("bfloat16")
    orin, a100 = roofline_profile(specs, cuts, "orin"), roofline_profile(specs, cuts, "a100")
    assert orin.notes["fits_memory"] and orin.block_names[-2:] == ("vlm.cognition", "dit")
    assert orin.block_names == m.block_names  # a tuple, as the Profiles' (wire pricing compares them)
    assert sum(orin.block_ms) > 5 * sum(a100.block_ms)
    # one VLM prefill and no autoregressive decode: far below OpenVLA's 7 token passes on the same device
    assert sum(orin.block_ms) < 0.5 * sum(roofline_profile_for("openvla", "full", "orin").block_ms)


@pytest.mark.network
def test_served_over_loopback_equals_in_process_at_every_cut(tiny):
    """A real websocket server and client: every cut, the reverse one included, returns the unsplit actions."""
    from executor.client import EdgeClient
    from executor.server import CloudServer, ServerConfig

    server = CloudServer(build_model("cogact", "tiny", seed=0), ServerConfig(port=0)).start()
    try:
        obs = tiny.make_observation(1)
        reference = tiny.forward(obs)
        with EdgeClient(tiny, server.url) as client:
            info = client.connect()
            assert (info.model_id, info.num_cuts) == ("cogact", tiny.num_cuts)
            for k in range(tiny.num_cuts):
                result = client.infer(obs, k)
                np.testing.assert_array_equal(result.actions, reference, err_msg=f"cut {k}")
    finally:
        server.stop()
