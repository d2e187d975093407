"""The pi0 chain reproduces transformers' own `PI0ForConditionalGeneration.sample_actions`."""

from __future__ import annotations

import numpy as np
import torch

from executor.models import build_model


def _library_actions(m, obs) -> np.ndarray:
    c = m.config
    ids = torch.cat([torch.full((c.image_tokens,), c.vocab_size), torch.from_numpy(obs["prompt_ids"])])[None]
    pixels = (torch.from_numpy(obs["images"]).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    state = torch.zeros(1, c.max_state_dim)
    state[0, : c.state_dim] = torch.from_numpy(obs["state"])
    with torch.inference_mode():
        out = m.pi0.sample_actions(
            state=state,
            input_ids=ids,
            pixel_values=pixels[None],
            noise=torch.from_numpy(obs["noise"])[None],
            pixel_attention_mask=torch.ones(1, c.cameras, dtype=torch.bool),
        )
    return out[0, :, : c.action_dim].float().numpy()


def test_chain_matches_library_sample_actions():
    m = build_model("pi0", "tiny", seed=2)
    for seed in (0, 1):
        obs = m.make_observation(seed)
        ours = m.forward(obs)
        lib = _library_actions(m, obs)
        assert np.abs(lib).max() > 0.1  # a non-trivial output
        # Observed: bit-identical (max abs diff 0.0) on CPU fp32; allow float noise for other BLAS builds.
        assert np.abs(ours - lib).max() <= 1e-5
