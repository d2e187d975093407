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

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from executor.blocks import BlockSpec, ComputePass
from executor.models.base import (
    Actions,
    Payload,
    PayloadError,
    SplitModel,
    TensorSpec,
    as_tensor,
    build_modules,
    module_params,
)
from executor.models.modules import ImageEmbed
from executor.models.presets import Pi0Preset

log = logging.getLogger(__name__)

_RAW = ("images", "prompt_ids", "state", "noise", "actions")


def pi0_config(c: Pi0Preset) -> Any:
    """The transformers ``PI0Config`` of a preset."""
    from transformers import PI0Config

    return PI0Config(
        vlm_config={
            "text_config": {
                "model_type": "gemma", "hidden_size": c.vlm_hidden, "num_hidden_layers": c.vlm_layers,
                "intermediate_size": c.vlm_mlp, "num_attention_heads": c.vlm_heads,
                "num_key_value_heads": c.vlm_kv_heads, "head_dim": c.vlm_head_dim, "vocab_size": c.vocab_size,
            },
            "vision_config": {
                "model_type": "siglip_vision_model", "hidden_size": c.vision_hidden,
                "intermediate_size": c.vision_mlp, "num_hidden_layers": c.vision_layers,
                "num_attention_heads": c.vision_heads, "patch_size": c.patch_px, "image_size": c.image_px,
                "vision_use_head": False,
            },
            "projection_dim": c.vlm_hidden,
            "image_token_id": c.vocab_size,
        },
        dit_config={
            "model_type": "gemma", "hidden_size": c.expert_hidden, "num_hidden_layers": c.expert_layers,
            "intermediate_size": c.expert_mlp, "num_attention_heads": c.expert_heads,
            "num_key_value_heads": c.vlm_kv_heads, "head_dim": c.vlm_head_dim,
        },
        chunk_size=c.chunk, max_state_dim=c.max_state_dim, max_action_dim=c.max_action_dim,
        num_inference_steps=c.num_steps,
    )


def _build_pi0(c: Pi0Preset) -> nn.Module:
    from transformers import PI0ForConditionalGeneration

    model = PI0ForConditionalGeneration(pi0_config(c))
    # The expert reads embeddings, never token ids: its (vocab x expert_hidden) table is dead weight (263M at full).
    model.model.dit.embed_tokens = None
    return model


class Pi0Projector(nn.Module):
    """SigLIP post-layernorm + PaliGemma multi-modal projector; cameras are laid out one after the other."""

    def __init__(self, post_layernorm: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.post_layernorm = post_layernorm
        self.projector = projector

    def forward(self, vision_hidden: torch.Tensor) -> torch.Tensor:
        feats = self.projector(self.post_layernorm(vision_hidden))
        return feats.reshape(1, feats.shape[0] * feats.shape[1], feats.shape[2])


class Pi0PrefixEmbed(nn.Module):
    """``PI0Model.embed_prefix`` after the vision tower: input ids [image placeholders..., prompt], scaled Gemma
    token embeddings, image features substituted at the placeholders."""

    def __init__(self, embed_tokens: nn.Module, image_token_id: int) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.image_token_id = image_token_id

    def forward(self, prompt_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        n_img = image_features.shape[1]
        placeholders = torch.full((n_img,), self.image_token_id, dtype=prompt_ids.dtype, device=prompt_ids.device)
        input_ids = torch.cat([placeholders, prompt_ids])[None]
        special = input_ids == self.image_token_id
        embeds = self.embed_tokens(input_ids.masked_fill(special, 0))
        pad = embeds.new_zeros(1, input_ids.shape[1] - n_img, embeds.shape[2])
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
        return self._pi0(state=state, noise=noise, timestep=timestep, past_key_values=past_key_values).logits


class Pi0SplitModel(SplitModel):
    """pi0 as a chain of blocks; see the module docstring."""

    family = "pi0"

    def __init__(self, preset: str, config: Pi0Preset, *, device: Any, dtype: torch.dtype, seed: int,
                 on_meta: bool) -> None:
        super().__init__(preset, config, torch.device("meta") if on_meta else torch.device(device), dtype)
        c = config
        pi0 = build_modules(lambda: _build_pi0(c), seed=seed, on_meta=on_meta)
        self.pi0 = pi0.to(device=self.device, dtype=dtype).eval() if not on_meta else pi0.to(dtype=dtype).eval()
        vlm = self.pi0.model.vlm
        vision = vlm.vision_tower
        lm = vlm.language_model
        self.text_config = lm.config
        names: list[str] = ["vision.embed"]
        mods: list[nn.Module] = [ImageEmbed(vision.embeddings, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
        kinds: list[tuple[str, int]] = [("vision_embed", 0)]
        for j, layer in enumerate(vision.encoder.layers):
            names.append(f"vision.layer{j}")
            mods.append(layer)
            kinds.append(("vision_layer", j))
        names += ["projector", "vlm.embed"]
        mods += [Pi0Projector(vision.post_layernorm, vlm.multi_modal_projector),
                 Pi0PrefixEmbed(lm.embed_tokens, c.vocab_size)]
        kinds += [("projector", 0), ("prefix_embed", 0)]
        for j, layer in enumerate(lm.layers):
            names.append(f"vlm.layer{j}")
            mods.append(layer)
            kinds.append(("vlm_layer", j))
        names.append("expert")
        mods.append(Pi0ExpertStep(self.pi0))
        kinds.append(("expert", 0))
        for m in mods:
            m.to(self.device)
        self.block_names = tuple(names)
        self.block_modules = tuple(mods)
        self._kinds = tuple(kinds)
        self._rotary = lm.rotary_emb
        self._i_projector = names.index("projector")
        self._i_prefix = names.index("vlm.embed")
        self._i_vlm0 = self._i_prefix + 1
        self._i_expert = len(names) - 1
        log.info("built pi0/%s on %s: %d blocks, %.3fM params", preset, self.device, self.num_blocks,
                 self.num_parameters() / 1e6)

    def unused_parameters(self) -> int:
        """Parameters of ``self.pi0`` that never run in the chain (the VLM's final norm: pi0 reads only its KV)."""
        return module_params(self.pi0.model.vlm.language_model.norm)

    # ---- shapes ----------------------------------------------------------------------------------------------
    @property
    def _act_dtype(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def _observation_specs(self) -> list[TensorSpec]:
        c = self.config
        return [TensorSpec("images", (c.cameras, c.image_px, c.image_px, 3), "uint8"),
                TensorSpec("prompt_ids", (c.prompt_tokens,), "int64"),
                TensorSpec("state", (c.state_dim,), "float32"),
                TensorSpec("noise", (c.chunk, c.max_action_dim), "float32")]

    def _kv_specs(self, layers: range) -> list[TensorSpec]:
        c = self.config
        shape = (1, c.vlm_kv_heads, c.prefix_tokens, c.vlm_head_dim)
        return [TensorSpec(f"kv.{j}.{part}", shape, self._act_dtype, True) for j in layers for part in ("key", "value")]

    def _payload_specs(self, k: int) -> list[TensorSpec]:
        c, a = self.config, self._act_dtype
        obs = {s.name: s for s in self._observation_specs()}
        specs = []
        if k == 0:
            specs.append(obs["images"])
        if k <= self._i_prefix:
            specs.append(obs["prompt_ids"])
        if k <= self._i_expert:
            specs += [obs["state"], obs["noise"]]
        if 0 < k <= self._i_projector:
            specs.append(TensorSpec("vision_hidden", (c.cameras, c.num_patches, c.vision_hidden), a, True))
        if self._i_projector < k <= self._i_prefix:
            specs.append(TensorSpec("image_features", (1, c.image_tokens, c.vlm_hidden), a, True))
        if self._i_prefix < k < self._i_expert:
            specs.append(TensorSpec("prefix_hidden", (1, c.prefix_tokens, c.vlm_hidden), a, True))
        if self._i_vlm0 < k <= self._i_expert:
            specs += self._kv_specs(range(k - self._i_vlm0))
        return specs

    def _action_specs(self) -> list[TensorSpec]:
        return [TensorSpec("actions", (self.config.chunk, self.config.action_dim), "float32")]

    def _reverse_cuts(self) -> tuple[int, ...]:
        return (self._i_expert,)

    def _reverse_specs(self, k: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
        obs = {s.name: s for s in self._observation_specs()}
        return [obs["images"], obs["prompt_ids"]], self._kv_specs(range(self.config.vlm_layers))

    def block_specs(self) -> list[BlockSpec]:
        c = self.config
        np_, cams, seq = c.num_patches, c.cameras, c.prefix_tokens
        vis = ComputePass(tokens=cams * np_, context_tokens=np_)
        specs = []
        for name, mod, (kind, _j) in zip(self.block_names, self.block_modules, self._kinds):
            n = module_params(mod)
            if kind == "vision_embed":
                in_dim = 3 * c.patch_px * c.patch_px
                specs.append(BlockSpec(name, "patch_embed", (vis,), hidden=c.vision_hidden, in_dim=in_dim,
                                       out_dim=c.vision_hidden, param_count=n,
                                       extra={"flops_per_token": 2.0 * in_dim * c.vision_hidden}))
            elif kind == "vision_layer":
                specs.append(BlockSpec(name, "transformer_layer", (vis,), hidden=c.vision_hidden, mlp=c.vision_mlp,
                                       heads=c.vision_heads, kv_heads=c.vision_heads,
                                       head_dim=c.vision_hidden // c.vision_heads, param_count=n))
            elif kind == "projector":
                specs.append(BlockSpec(name, "linear", (vis,), hidden=c.vlm_hidden, in_dim=c.vision_hidden,
                                       out_dim=c.vlm_hidden, param_count=n,
                                       extra={"flops_per_token": 2.0 * c.vision_hidden * c.vlm_hidden}))
            elif kind == "prefix_embed":
                specs.append(BlockSpec(name, "embedding", (ComputePass(c.prompt_tokens, c.prompt_tokens),),
                                       hidden=c.vlm_hidden, in_dim=c.vocab_size, out_dim=c.vlm_hidden,
                                       param_count=n))
            elif kind == "vlm_layer":
                specs.append(BlockSpec(name, "transformer_layer", (ComputePass(seq, seq),), hidden=c.vlm_hidden,
                                       mlp=c.vlm_mlp, heads=c.vlm_heads, kv_heads=c.vlm_kv_heads,
                                       head_dim=c.vlm_head_dim, gated_mlp=True, param_count=n))
            else:
                suffix = c.chunk + 1  # state token + chunk action tokens
                h = c.expert_hidden
                io_flops = 2.0 * (c.max_action_dim * h + 2 * h * h + h * h + h * c.max_action_dim) * c.chunk \
                    + 2.0 * c.max_state_dim * h
                specs.append(BlockSpec(
                    name, "expert",
                    (ComputePass(suffix, seq + suffix, "parallel_decode", repeat=c.num_steps),),
                    hidden=h, mlp=c.expert_mlp, heads=c.expert_heads, kv_heads=c.vlm_kv_heads,
                    head_dim=c.vlm_head_dim, gated_mlp=True, in_dim=c.max_action_dim, out_dim=c.max_action_dim,
                    layers=c.expert_layers, param_count=n,
                    extra={"io_flops_per_step": io_flops, "prefix_tokens": float(seq),
                           "action_tokens": float(c.chunk), "state_tokens": 1.0},
                ))
        return specs

    # ---- observation / execution ----------------------------------------------------------------------------
    def make_observation(self, seed: int) -> dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(seed)
        return {
            "images": rng.integers(0, 256, size=(c.cameras, c.image_px, c.image_px, 3), dtype=np.uint8),
            "prompt_ids": rng.integers(1, c.vocab_size, size=c.prompt_tokens).astype(np.int64),
            "state": rng.standard_normal(c.state_dim).astype(np.float32),
            "noise": rng.standard_normal((c.chunk, c.max_action_dim)).astype(np.float32),
        }

    def _obs_to_state(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        specs = self._observation_specs()
        self._check_observation(obs, specs)
        return {s.name: as_tensor(obs[s.name], self.device) for s in specs}

    def _run(self, state: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
        """Run blocks [a, b) on ``state`` (the tensors crossing cut a); returns the tensors crossing cut b."""
        from transformers import DynamicCache
        from transformers.masking_utils import create_causal_mask

        c = self.config
        pos = pe = mask = None
        for i in range(a, b):
            kind, j = self._kinds[i]
            mod = self.block_modules[i]
            if kind == "vision_embed":
                state["vision_hidden"] = mod(state.pop("images"))
            elif kind == "vision_layer":
                state["vision_hidden"] = mod(state["vision_hidden"], None)
            elif kind == "projector":
                state["image_features"] = mod(state.pop("vision_hidden"))
            elif kind == "prefix_embed":
                state["prefix_hidden"] = mod(state.pop("prompt_ids"), state.pop("image_features"))
            elif kind == "vlm_layer":
                h = state.pop("prefix_hidden")
                if pe is None:  # as PaliGemmaModel.forward: 1-based positions, one bidirectional block
                    seq = h.shape[1]
                    pos = torch.arange(seq, device=h.device)[None] + 1
                    mask = create_causal_mask(config=self.text_config, inputs_embeds=h, attention_mask=None,
                                              past_key_values=None, position_ids=pos,
                                              block_sequence_ids=torch.zeros(1, seq, dtype=torch.long,
                                                                             device=h.device))
                    pe = self._rotary(h, pos)
                cache = DynamicCache()
                h = mod(h, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                        position_embeddings=pe)
                state[f"kv.{j}.key"] = cache.layers[j].keys.contiguous()
                state[f"kv.{j}.value"] = cache.layers[j].values.contiguous()
                if j < c.vlm_layers - 1:  # the last layer's output only feeds the (unused) final norm
                    state["prefix_hidden"] = h
            else:
                kv = [(state.pop(f"kv.{j}.key"), state.pop(f"kv.{j}.value")) for j in range(c.vlm_layers)]
                state["actions"] = self._denoise(mod, kv, state.pop("state"), state.pop("noise"))
        return state

    def _denoise(self, expert: nn.Module, kv: list, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The Euler loop of ``PI0ForConditionalGeneration.sample_actions`` on a prefix KV cache."""
        from transformers import DynamicCache

        c = self.config
        st = torch.zeros(1, c.max_state_dim, dtype=self.dtype, device=self.device)
        st[0, : c.state_dim] = state.to(self.dtype)
        x = noise[None].to(self.dtype)
        cache = DynamicCache(ddp_cache_data=kv)
        prefix_len = cache.get_seq_length()
        dt = -1.0 / c.num_steps
        for step in range(c.num_steps):
            t = torch.full((1,), 1.0 + step * dt, dtype=torch.float32, device=self.device)
            v = expert(st, x, t, cache)
            cache.crop(prefix_len - cache.get_seq_length())
            x = x + dt * v
        return x[0, :, : c.action_dim].float()

    def forward(self, obs: Mapping[str, np.ndarray]) -> Actions:
        self._require_runnable()
        with torch.inference_mode():
            return self._run(self._obs_to_state(obs), 0, self.num_blocks)["actions"].cpu().numpy()

    def edge_session(self, cut_index: int) -> _EdgeSession:
        self._require_runnable()
        placement, k = self.placement(cut_index)
        return _EdgeSession(self, int(cut_index), placement, k)

    def cloud_session(self, cut_index: int) -> _CloudSession:
        self._require_runnable()
        placement, k = self.placement(cut_index)
        if placement == "edge_then_cloud" and k == self.num_blocks:
            raise ValueError(f"cut {cut_index} is edge-only: there is no cloud session")
        return _CloudSession(self, int(cut_index), placement, k)


def _as_payload(kind: str, cut: int, tensors: dict[str, torch.Tensor]) -> Payload:
    acts = tuple(n for n in tensors if n not in _RAW)
    return Payload(kind=kind, cut=cut, tensors=tensors, activations=acts)


class _EdgeSession:
    """Edge half: blocks [0, k) (edge_then_cloud) or [k, N) after the cloud's KV cache (cloud_then_edge)."""

    def __init__(self, model: Pi0SplitModel, cut_index: int, placement: str, k: int) -> None:
        self.m, self.cut, self.placement, self.k = model, cut_index, placement, k
        self.kept: dict[str, torch.Tensor] | None = None
        self.done = False

    def start(self, obs: Mapping[str, np.ndarray]) -> Payload | Actions:
        if self.kept is not None:
            raise PayloadError("edge session already started; create one session per inference")
        m = self.m
        with torch.inference_mode():
            state = m._obs_to_state(obs)
            if self.placement == "cloud_then_edge":
                self.kept = {"state": state.pop("state"), "noise": state.pop("noise")}
                return _as_payload("observation", self.cut, state)
            self.kept = {}
            state = m._run(state, 0, self.k)
        if self.k == m.num_blocks:
            self.done = True
            return state["actions"].cpu().numpy()
        return _as_payload("observation" if self.k == 0 else "activations", self.cut, state)

    def on_reply(self, payload: Payload) -> Payload | Actions:
        m = self.m
        if self.kept is None or self.done:
            raise PayloadError("reply received outside an exchange (start() not called, or already finished)")
        self.done = True
        if self.placement == "edge_then_cloud":
            return m._receive(payload, self.cut, ("actions",), m._action_specs())["actions"].cpu().numpy()
        _up, down = m._reverse_specs(self.k)
        state = m._receive(payload, self.cut, ("kv_cache",), down)
        state.update(self.kept)
        with torch.inference_mode():
            return m._run(state, self.k, m.num_blocks)["actions"].cpu().numpy()


class _CloudSession:
    """Cloud half: blocks [k, N) -> actions (edge_then_cloud), or [0, k) -> KV cache (cloud_then_edge)."""

    def __init__(self, model: Pi0SplitModel, cut_index: int, placement: str, k: int) -> None:
        self.m, self.cut, self.placement, self.k = model, cut_index, placement, k
        self.done = False

    def on_request(self, payload: Payload) -> Payload:
        m, k = self.m, self.k
        if self.done:
            raise PayloadError("cloud session already replied; create one session per inference")
        if self.placement == "cloud_then_edge":
            up, _down = m._reverse_specs(k)
            state = m._receive(payload, self.cut, ("observation",), up)
            with torch.inference_mode():
                state = m._run(state, 0, k)
            self.done = True
            return _as_payload("kv_cache", self.cut, state)
        kind = "observation" if k == 0 else "activations"
        state = m._receive(payload, self.cut, (kind,), m._payload_specs(k))
        with torch.inference_mode():
            actions = m._run(state, k, m.num_blocks)["actions"]
        self.done = True
        return Payload(kind="actions", cut=self.cut, tensors={"actions": actions})
