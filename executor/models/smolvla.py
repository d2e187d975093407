"""SmolVLA split model: transformers' ``SmolVLMModel`` (random weights, from a SmolVLMConfig) + a flow-matching expert.

Chain (N blocks): ``vision.embed, vision.layer0.., connector, vlm.embed, vlm.layer0.., expert``.

- ``vision.embed``: uint8 images of every camera (a batch) scaled to [-1, 1] (SmolVLA's normalisation), SmolVLM's
  NaViT-style patch + position embedding (all patches valid).
- ``vision.layer{j}``: the SigLIP encoder layers of ``SmolVLMVisionTransformer``.
- ``connector``: the tower's post-layernorm and ``SmolVLMConnector`` (pixel shuffle: ``scale_factor**2`` patches ->
  one token, then the modality projection to the text width): ``tokens_per_image`` visual tokens per camera.
- ``vlm.embed``: SmolVLA's ``embed_prefix``: [image tokens x sqrt(width), language embeddings x sqrt(width),
  ``state_proj(state)``]; images and language attend bidirectionally, the state token attends to all of them.
- ``vlm.layer{j}``: the first ``lm_layers_used`` layers of the SmolLM2 (Llama) text model (SmolVLA drops the rest:
  only those are built); each leaves its keys/values for the expert.
- ``expert``: one call per denoising step: action/time embedding (SmolVLA's sinusoidal time embedding, in/out MLP),
  ``expert_layers`` Llama layers of width ``expert_hidden`` whose chunk tokens attend to [VLM layer i's keys/values,
  the chunk], final norm, ``action_out_proj``; then the Euler update (t from 1 to 0). The noise comes from the
  observation, so every forward is deterministic.

Simplification, stated: every expert layer attends to its VLM layer's cache jointly with the chunk (pi0-style);
published SmolVLA interleaves such layers with cross-attention layers whose keys/values are the VLM's re-projected
by the expert (320 -> 320 at ``full``). The bytes that cross every cut are the same; the expert has 2 x 8 x 400 x 320
= 2.0M more k/v projection weights here (0.5% of the model).

Payloads: inside the vision tower the patch activations plus prompt ids and state; after the connector the visual
tokens; inside the VLM the prefix hidden states and the KV cache of the layers already run; between VLM and expert
the whole KV cache. The noise (raw float32) travels with every forward cut below N. Reverse cut (appended after N,
``cloud_then_edge``): the cloud runs the vision tower and the VLM (images, prompt ids and state up: the state is a
prefix token), the edge runs the expert (KV cache down).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from executor.blocks import BlockSpec, ComputePass
from executor.models.base import build_modules, module_params
from executor.models.flow_expert import FlowSplitModel, chain_layout, euler_denoise
from executor.models.flow_expert import PostNormProjector, vision_block_spec
from executor.models.presets import SmolVLAPreset

_TIME_MIN_PERIOD = 4e-3  # SmolVLA's sinusoidal time embedding
_TIME_MAX_PERIOD = 4.0


def smolvlm_config(c: SmolVLAPreset) -> Any:
    """The transformers ``SmolVLMConfig`` of the backbone, with only the used text layers."""
    from transformers import SmolVLMConfig

    cfg = SmolVLMConfig(
        vision_config={
            "hidden_size": c.vision_hidden,
            "intermediate_size": c.vision_mlp,
            "num_hidden_layers": c.vision_layers,
            "num_attention_heads": c.vision_heads,
            "image_size": c.image_px,
            "patch_size": c.patch_px,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": c.lm_hidden,
            "intermediate_size": c.lm_mlp,
            "num_hidden_layers": c.lm_layers_used,
            "num_attention_heads": c.lm_heads,
            "num_key_value_heads": c.lm_kv_heads,
            "head_dim": c.lm_head_dim,
            "vocab_size": c.vocab_size,
            "rms_norm_eps": 1e-5,
            "rope_theta": c.rope_theta,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
        },
        scale_factor=c.scale_factor,
        image_token_id=c.vocab_size - 1,
    )
    cfg._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    return cfg


def expert_config(c: SmolVLAPreset) -> Any:
    """Llama config of the action expert: the VLM's head layout (shared KV cache), width ``expert_hidden``."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        vocab_size=2,
        hidden_size=c.expert_hidden,
        intermediate_size=c.expert_mlp,
        num_hidden_layers=c.expert_layers,
        num_attention_heads=c.lm_heads,
        num_key_value_heads=c.lm_kv_heads,
        head_dim=c.lm_head_dim,
        rms_norm_eps=1e-5,
        rope_theta=c.rope_theta,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


class SmolVLAImageEmbed(nn.Module):
    """uint8 images (cameras, H, W, 3) -> [-1, 1] pixels -> SmolVLM patch + position embeddings (no padding)."""

    def __init__(self, embeddings: nn.Module, patch_px: int) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.patch_px = patch_px

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
        dtype = self.embeddings.patch_embedding.weight.dtype
        n, _, h, w = x.shape
        mask = torch.ones(n, h // self.patch_px, w // self.patch_px, dtype=torch.bool, device=x.device)
        return self.embeddings(x.to(dtype), patch_attention_mask=mask)


class SmolVLAPrefixEmbed(nn.Module):
    """SmolVLA ``embed_prefix``: [image tokens, language tokens] x sqrt(width), then the projected state token."""

    def __init__(self, embed_tokens: nn.Module, max_state_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.state_proj = nn.Linear(max_state_dim, hidden)
        self.max_state_dim = max_state_dim

    def forward(self, image_features: torch.Tensor, prompt_ids: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """image_features (B, n_img, h), prompt_ids (B, T), state (B, D) -> prefix embeddings (B, n_img + T + 1, h)."""
        lang = self.embed_tokens(prompt_ids)
        scale = math.sqrt(lang.shape[-1])
        padded = lang.new_zeros(state.shape[0], self.max_state_dim)
        padded[:, : state.shape[1]] = state.to(lang.dtype)
        st = self.state_proj(padded)[:, None]
        return torch.cat([image_features.to(lang.dtype) * scale, lang * scale, st], dim=1)


def sinusoidal_time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """SmolVLA/pi0 ``create_sinusoidal_pos_embedding``: (B,) times -> (B, dim) [sin, cos] over log-spaced periods."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = _TIME_MIN_PERIOD * (_TIME_MAX_PERIOD / _TIME_MIN_PERIOD) ** fraction
    arg = (2 * math.pi / period)[None, :] * t.to(torch.float64)[:, None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class SmolVLAExpertStep(nn.Module):
    """One denoising step of the action expert: noisy chunk + time -> velocity, attending to the VLM KV cache."""

    def __init__(self, c: SmolVLAPreset) -> None:
        super().__init__()
        from transformers import LlamaModel

        h = c.expert_hidden
        self.action_in_proj = nn.Linear(c.max_action_dim, h)
        self.action_time_mlp_in = nn.Linear(2 * h, h)
        self.action_time_mlp_out = nn.Linear(h, h)
        lm = LlamaModel(expert_config(c))
        self.layers = lm.layers
        self.norm = lm.norm
        self.action_out_proj = nn.Linear(h, c.max_action_dim)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cache: Any, position_embeddings: Any, mask: torch.Tensor
    ) -> torch.Tensor:
        a = self.action_in_proj(x_t)
        te = sinusoidal_time_embedding(t, a.shape[-1]).to(a.dtype)[:, None].expand_as(a)
        h = self.action_time_mlp_out(nn.functional.silu(self.action_time_mlp_in(torch.cat([a, te], dim=-1))))
        for layer in self.layers:
            h = layer(h, attention_mask=mask, cache=cache, use_cache=True, position_embeddings=position_embeddings)
        return self.action_out_proj(self.norm(h))


def _build(c: SmolVLAPreset) -> nn.ModuleDict:
    from transformers import SmolVLMModel

    root = nn.ModuleDict()
    root["vlm"] = SmolVLMModel(smolvlm_config(c))
    root["state_prefix"] = SmolVLAPrefixEmbed(root["vlm"].text_model.embed_tokens, c.max_state_dim, c.lm_hidden)
    root["expert"] = SmolVLAExpertStep(c)
    return root


class SmolVLASplitModel(FlowSplitModel):
    """SmolVLA as a chain of blocks; see the module docstring."""

    family = "smolvla"
    _prefix_inputs = ("prompt_ids", "state")  # the state is a prefix token
    _expert_inputs = ("noise",)
    _prompt_id_high_offset = 1  # the last id is the image token

    def __init__(
        self, preset: str, config: SmolVLAPreset, *, device: Any, dtype: torch.dtype, seed: int, on_meta: bool
    ) -> None:
        super().__init__(preset, config, torch.device("meta") if on_meta else torch.device(device), dtype)
        c = config
        root = build_modules(lambda: _build(c), seed=seed, on_meta=on_meta)
        self.root = (root.to(dtype=dtype) if on_meta else root.to(device=self.device, dtype=dtype)).eval()
        vlm = self.root["vlm"]
        vision = vlm.vision_model
        text = vlm.text_model
        self.text_config = text.config
        layout = chain_layout(
            SmolVLAImageEmbed(vision.embeddings, c.patch_px),
            vision.encoder.layers,
            "connector",
            PostNormProjector(vision.post_layernorm, vlm.connector, c.cameras),
            self.root["state_prefix"],
            text.layers,
            self.root["expert"],
        )
        self._install_chain(layout, text.rotary_emb, "connector")

    def unused_parameters(self) -> int:
        """Parameters built but never run: the text model's final norm (SmolVLA reads only the VLM's KV cache)."""
        return module_params(self.root["vlm"].text_model.norm)

    # ---- shapes ----------------------------------------------------------------------------------------------
    def _vlm_layout(self) -> tuple[int, int, int, int]:
        c = self.config
        return c.lm_layers_used, c.lm_hidden, c.lm_kv_heads, c.lm_head_dim

    def block_specs(self) -> list[BlockSpec]:
        c = self.config
        specs = []
        for name, mod, (kind, _j) in zip(self.block_names, self.block_modules, self._kinds):
            n = module_params(mod)
            if kind in ("vision_embed", "vision_layer"):
                specs.append(vision_block_spec(c, name, kind, n))
            elif kind == "connector":  # pixel shuffle (a reshape) + one linear over the shuffled tokens
                in_dim = c.vision_hidden * c.scale_factor**2
                specs.append(
                    BlockSpec(
                        name,
                        "linear",
                        (ComputePass(c.image_tokens, c.tokens_per_image),),
                        hidden=c.lm_hidden,
                        in_dim=in_dim,
                        out_dim=c.lm_hidden,
                        param_count=n,
                        extra={"flops_per_token": 2.0 * in_dim * c.lm_hidden},
                    )
                )
            elif kind == "prefix_embed":
                specs.append(self._prefix_embed_spec(name, n))
            elif kind == "vlm_layer":
                specs.append(self._vlm_layer_spec(name, n, mlp=c.lm_mlp, heads=c.lm_heads))
            else:  # the expert's layers have the VLM's query heads
                specs.append(self._expert_spec(name, n, heads=c.lm_heads))
        return specs

    # ---- execution --------------------------------------------------------------------------------------------
    def _embed_prefix(self, embed: nn.Module, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed(state.pop("image_features"), state.pop("prompt_ids"), state.pop("state"))

    def _prefix_attention(self, h: torch.Tensor) -> dict[str, Any]:
        """SmolVLA: positions 0..P-1 over the prefix (no padding); block mask: images + language attend to each
        other, the last (state) token attends to all."""
        seq = h.shape[1]
        pos = torch.arange(seq, device=h.device)[None]
        block = torch.zeros(seq, dtype=torch.long, device=self.device)
        block[-1] = 1
        mask = (block[None, :] <= block[:, None])[None, None]
        return {"attention_mask": mask, "position_embeddings": self._rotary(h, pos)}

    def _denoise(self, expert: nn.Module, kv: list, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Euler loop of SmolVLA's ``sample_actions`` on a prefix KV cache (t from 1 to 0, ``num_steps`` steps)."""
        from transformers import DynamicCache

        c = self.config
        x = inputs.pop("noise").to(self.dtype)
        cache = DynamicCache(ddp_cache_data=kv)
        prefix_len = cache.get_seq_length()
        pos = (prefix_len + torch.arange(c.chunk, device=self.device))[None]
        pe = self._rotary(x.new_zeros(1, c.chunk, c.expert_hidden), pos)
        mask = torch.ones(1, 1, c.chunk, prefix_len + c.chunk, dtype=torch.bool, device=self.device)
        x = euler_denoise(lambda x_t, t: expert(x_t, t, cache, pe, mask), x, cache, c.num_steps, self.device)
        return x[:, :, : c.action_dim].float()
