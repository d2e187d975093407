"""pi0 split model built from transformers' own ``PI0ForConditionalGeneration`` (random weights, from a PI0Config).

Chain (N blocks): ``vision.embed, vision.layer0.., projector, vlm.embed, vlm.layer0.., expert``.
The SigLIP tower embeds every camera (a batch of images), the PaliGemma projector maps the patch features to the
Gemma width, ``vlm.embed`` builds the prefix [image tokens of all cameras + language tokens] exactly as
``PI0Model.embed_prefix`` does, each Gemma VLM layer runs over the prefix (bidirectional, PaliGemma's 1-based
positions) and leaves its keys/values for the expert; ``expert`` is the whole flow-matching loop: for each of
``num_steps`` denoising steps the library's own ``PI0ForConditionalGeneration.forward`` (state/action/time embedding,
Gemma action expert over [state + chunk] attending to every VLM layer's KV cache, action_out_proj), then the Euler
update, as in ``sample_actions``. The noise comes from the observation, so every forward is deterministic.

Payloads: inside the vision tower / projector the activations plus the prompt ids; inside the VLM the prefix hidden
states and the KV cache of the VLM layers already run; between VLM and expert the whole KV cache. State and noise
(raw float32) travel with every forward cut below N. Reverse cut (appended after N, ``cloud_then_edge``): the cloud
runs the vision tower and the VLM (images + prompt ids up), the edge runs the expert (KV cache down).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from executor.blocks import BlockSpec, ComputePass
from executor.models.base import build_modules, module_params
from executor.models.flow_expert import FlowSplitModel, chain_layout, euler_denoise
from executor.models.flow_expert import PostNormProjector, vision_block_spec
from executor.models.modules import ImageEmbed
from executor.models.presets import Pi0Preset


def pi0_config(c: Pi0Preset) -> Any:
    """The transformers ``PI0Config`` of a preset."""
    from transformers import PI0Config

    return PI0Config(
        vlm_config={
            "text_config": {
                "model_type": "gemma",
                "hidden_size": c.vlm_hidden,
                "num_hidden_layers": c.vlm_layers,
                "intermediate_size": c.vlm_mlp,
                "num_attention_heads": c.vlm_heads,
                "num_key_value_heads": c.vlm_kv_heads,
                "head_dim": c.vlm_head_dim,
                "vocab_size": c.vocab_size,
            },
            "vision_config": {
                "model_type": "siglip_vision_model",
                "hidden_size": c.vision_hidden,
                "intermediate_size": c.vision_mlp,
                "num_hidden_layers": c.vision_layers,
                "num_attention_heads": c.vision_heads,
                "patch_size": c.patch_px,
                "image_size": c.image_px,
                "vision_use_head": False,
            },
            "projection_dim": c.vlm_hidden,
            "image_token_id": c.vocab_size,
        },
        dit_config={
            "model_type": "gemma",
            "hidden_size": c.expert_hidden,
            "num_hidden_layers": c.expert_layers,
            "intermediate_size": c.expert_mlp,
            "num_attention_heads": c.expert_heads,
            "num_key_value_heads": c.vlm_kv_heads,
            "head_dim": c.vlm_head_dim,
        },
        chunk_size=c.chunk,
        max_state_dim=c.max_state_dim,
        max_action_dim=c.max_action_dim,
        num_inference_steps=c.num_steps,
    )


def _build_pi0(c: Pi0Preset) -> nn.Module:
    from transformers import PI0ForConditionalGeneration

    model = PI0ForConditionalGeneration(pi0_config(c))
    # The expert reads embeddings, never token ids: its (vocab x expert_hidden) table is dead weight (263M at full).
    model.model.dit.embed_tokens = None
    return model


class Pi0PrefixEmbed(nn.Module):
    """``PI0Model.embed_prefix`` after the vision tower: input ids [image placeholders..., prompt], scaled Gemma
    token embeddings, image features substituted at the placeholders."""

    def __init__(self, embed_tokens: nn.Module, image_token_id: int) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.image_token_id = image_token_id

    def forward(self, prompt_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """prompt_ids (B, T), image_features (B, n_img, h) -> prefix embeddings (B, n_img + T, h)."""
        batch, n_img = image_features.shape[:2]
        placeholders = torch.full((batch, n_img), self.image_token_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
        input_ids = torch.cat([placeholders, prompt_ids], dim=1)
        special = input_ids == self.image_token_id
        embeds = self.embed_tokens(input_ids.masked_fill(special, 0))
        pad = embeds.new_zeros(batch, input_ids.shape[1] - n_img, embeds.shape[2])
        image_embeds = torch.cat([image_features.to(embeds.dtype), pad], dim=1)
        return torch.where(special[..., None], image_embeds, embeds)


class Pi0ExpertStep(nn.Module):
    """One denoising step: the library's ``PI0ForConditionalGeneration.forward`` on a prefix KV cache.

    Registers the expert's own submodules (state/action/time embedding, Gemma expert, action_out_proj) for
    parameter counts and timing hooks; the full model is held unregistered to call its forward.
    """

    def __init__(self, pi0: nn.Module) -> None:
        super().__init__()
        self.embed_action_time = pi0.embed_action_time
        self.dit = pi0.model.dit
        self.action_out_proj = pi0.action_out_proj
        object.__setattr__(self, "_pi0", pi0)

    def forward(self, state: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor, past_key_values: Any):
        return self._pi0(state=state, noise=noise, timestep=timestep, cache=past_key_values).logits


class Pi0SplitModel(FlowSplitModel):
    """pi0 as a chain of blocks; see the module docstring."""

    family = "pi0"

    def __init__(
        self, preset: str, config: Pi0Preset, *, device: Any, dtype: torch.dtype, seed: int, on_meta: bool
    ) -> None:
        super().__init__(preset, config, torch.device("meta") if on_meta else torch.device(device), dtype)
        c = config
        pi0 = build_modules(lambda: _build_pi0(c), seed=seed, on_meta=on_meta)
        self.pi0 = pi0.to(device=self.device, dtype=dtype).eval() if not on_meta else pi0.to(dtype=dtype).eval()
        vlm = self.pi0.model.vlm
        vision = vlm.vision_tower
        lm = vlm.language_model
        self.text_config = lm.config
        layout = chain_layout(
            ImageEmbed(vision.embeddings, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            vision.encoder.layers,
            "projector",
            PostNormProjector(vision.post_layernorm, vlm.multi_modal_projector, c.cameras),
            Pi0PrefixEmbed(lm.embed_tokens, c.vocab_size),
            lm.layers,
            Pi0ExpertStep(self.pi0),
        )
        for m in layout[1]:
            m.to(self.device)
        self._install_chain(layout, lm.rotary_emb, "projector")

    def unused_parameters(self) -> int:
        """Parameters of ``self.pi0`` that never run in the chain (the VLM's final norm: pi0 reads only its KV)."""
        return module_params(self.pi0.model.vlm.language_model.norm)

    # ---- shapes ----------------------------------------------------------------------------------------------
    def _vlm_layout(self) -> tuple[int, int, int, int]:
        c = self.config
        return c.vlm_layers, c.vlm_hidden, c.vlm_kv_heads, c.vlm_head_dim

    def block_specs(self) -> list[BlockSpec]:
        c = self.config
        vis = ComputePass(tokens=c.cameras * c.num_patches, context_tokens=c.num_patches)
        specs = []
        for name, mod, (kind, _j) in zip(self.block_names, self.block_modules, self._kinds):
            n = module_params(mod)
            if kind in ("vision_embed", "vision_layer"):
                specs.append(vision_block_spec(c, name, kind, n))
            elif kind == "projector":
                specs.append(
                    BlockSpec(
                        name,
                        "linear",
                        (vis,),
                        hidden=c.vlm_hidden,
                        in_dim=c.vision_hidden,
                        out_dim=c.vlm_hidden,
                        param_count=n,
                        extra={"flops_per_token": 2.0 * c.vision_hidden * c.vlm_hidden},
                    )
                )
            elif kind == "prefix_embed":
                specs.append(self._prefix_embed_spec(name, n))
            elif kind == "vlm_layer":
                specs.append(self._vlm_layer_spec(name, n, mlp=c.vlm_mlp, heads=c.vlm_heads))
            else:
                specs.append(self._expert_spec(name, n, heads=c.expert_heads))
        return specs

    # ---- execution --------------------------------------------------------------------------------------------
    def _embed_prefix(self, embed: nn.Module, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed(state.pop("prompt_ids"), state.pop("image_features"))

    def _prefix_attention(self, h: torch.Tensor) -> dict[str, Any]:
        """As PaliGemmaModel.forward: 1-based positions, the prefix one bidirectional block."""
        from transformers.masking_utils import create_causal_mask

        seq = h.shape[1]
        pos = torch.arange(seq, device=h.device)[None] + 1
        mask = create_causal_mask(
            config=self.text_config,
            inputs_embeds=h,
            attention_mask=None,
            cache=None,
            position_ids=pos,
            block_sequence_ids=torch.zeros(h.shape[0], seq, dtype=torch.long, device=h.device),
        )
        return {"attention_mask": mask, "position_ids": pos, "position_embeddings": self._rotary(h, pos)}

    def _denoise(self, expert: nn.Module, kv: list, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The Euler loop of ``PI0ForConditionalGeneration.sample_actions`` on a prefix KV cache."""
        from transformers import DynamicCache

        c = self.config
        state, noise = inputs.pop("state"), inputs.pop("noise")
        st = torch.zeros(state.shape[0], c.max_state_dim, dtype=self.dtype, device=self.device)
        st[:, : c.state_dim] = state.to(self.dtype)
        x = noise.to(self.dtype)
        cache = DynamicCache(ddp_cache_data=kv)
        x = euler_denoise(lambda x_t, t: expert(st, x_t, t, cache), x, cache, c.num_steps, self.device)
        return x[:, :, : c.action_dim].float()
