"""The openvla chain's cached greedy decode matches transformers' own Llama forward without a cache."""

from __future__ import annotations

import numpy as np
import torch

from executor.models import build_model


def test_cached_decode_matches_uncached_llama_forward():
    m = build_model("openvla", "tiny", seed=1)
    llm = m.root["llm"]
    c = m.config
    base = c.tokenizer_vocab - c.action_bins
    for seed in (0, 1):
        obs = m.make_observation(seed)
        prefix = m.edge_session(m.block_names.index("llm.embed") + 1).start(obs).tensors["hidden"]
        assert prefix.shape == (1, c.prefix_tokens, c.llm_hidden)
        tokens: list[int] = []
        with torch.inference_mode():
            for _ in range(7):
                extra = llm.model.embed_tokens(torch.tensor([tokens], dtype=torch.long))
                logits = llm(inputs_embeds=torch.cat([prefix, extra], dim=1)).logits[0, -1]
                tokens.append(base + int(logits[base : base + c.action_bins].argmax()))
        expected = m._detokenize([torch.tensor([[t]]) for t in tokens])
        assert len(set(tokens)) > 1  # a non-degenerate sequence
        assert np.array_equal(m.forward(obs), expected)
