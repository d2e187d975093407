"""CogACT-style split model (``microsoft/CogACT``) from transformers classes with random weights (configs only).

Chain (N blocks): ``dino.embed, dino.layer0.., siglip.embed, siglip.layer0.., projector, vlm.embed, vlm.layer0..,
vlm.cognition, dit``. The vision front end, projector and Llama decoder are OpenVLA's (Prismatic); the VLM runs one
prefill over ``[BOS, image tokens, prompt tokens]`` whose last position is the cognition token; ``vlm.cognition`` is
the final RMSNorm on that position (the 1 x hidden cognition feature). ``dit`` is CogACT's action module: the
cognition feature (through a linear ``z_embedder``) plus the timestep embedding form one condition token placed
before the ``chunk`` noisy action tokens, with a learned positional embedding, through ``dit_layers`` pre-LN
transformer blocks (transformers' ``SiglipEncoderLayer``: LayerNorm, biased attention, GELU-tanh MLP, the shape of
DiT's timm block), a final LayerNorm + linear predicting the noise; DDIM (eta 0) over ``ddim_steps`` of a
``diffusion_steps`` squaredcos_cap_v2 schedule, with classifier-free guidance (a learned null cognition feature, the
conditional and unconditional inputs run as one batch of 2; B requests as one batch of 2B).

Cuts: every forward cut (edge runs [0, k), the cloud the rest and returns the (chunk, 7) actions), and one reverse cut
at ``dit`` (the cloud runs the VLM, returns the 1 x hidden cognition feature, the edge runs the DiT). The DDIM start
noise is part of the observation (as pi0's), so every cut reproduces the unsplit actions bit for bit.

Batching across requests (``SplitModel.cloud_batch``): ``_run`` works on a batch whose tensors carry a leading request
axis (``stack_states``); the sessions, ``accept`` and ``_cloud_first_steps`` are ``FlowSplitModel``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from executor.blocks import BlockSpec, ComputePass
from executor.models.base import TensorSpec, as_tensor, build_modules, module_params
from executor.models.flow_expert import FlowSplitModel
from executor.models.openvla import (
    PromptEmbed,
    _build_root,
    index_vision_chain,
    run_vision_block,
    vision_block_spec,
    vision_chain,
    vision_payload_specs,
)
from executor.models.presets import CogACTPreset

TIME_FREQ_DIM = 256  # DiT's sinusoidal timestep embedding width (frequency_embedding_size)


def ddim_schedule(diffusion_steps: int, ddim_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, alpha_bar at each) of DDIM's evenly strided subsequence of a squaredcos_cap_v2 schedule (improved
    DDPM's ``betas_for_alpha_bar``, beta <= 0.999), latest first; CogACT samples 10 of 100 steps."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array(
        [
            min(1 - alpha_bar((i + 1) / diffusion_steps) / alpha_bar(i / diffusion_steps), 0.999)
            for i in range(diffusion_steps)
        ]
    )
    cumprod = np.cumprod(1.0 - betas)
    ts = np.arange(0, diffusion_steps, diffusion_steps // ddim_steps)[:ddim_steps][::-1]
    return ts.astype(np.int64), cumprod[ts]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """DiT's sinusoidal embedding of (B,) timesteps -> (B, dim) float32: [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class CognitionHead(nn.Module):
    """The VLM's final RMSNorm on the last position: the cognition feature (B, 1, hidden) of B requests."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden[:, -1:])


class ActionDiT(nn.Module):
    """CogACT's DiT action module with its DDIM + classifier-free-guidance sampler (see the module docstring)."""

    def __init__(self, c: CogACTPreset) -> None:
        super().__init__()
        from transformers import SiglipVisionConfig
        from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

        d = c.dit_hidden
        cfg = SiglipVisionConfig(
            hidden_size=d,
            intermediate_size=c.dit_mlp_ratio * d,
            num_attention_heads=c.dit_heads,
            num_hidden_layers=c.dit_layers,
        )
        cfg._attn_implementation = "sdpa"
        self.c = c
        self.x_embedder = nn.Linear(c.action_dim, d)
        self.t_embedder = nn.Sequential(nn.Linear(TIME_FREQ_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.z_embedder = nn.Linear(c.cognition_dim, d)
        self.null_cognition = nn.Parameter(torch.randn(1, 1, c.cognition_dim))  # CFG's unconditional input
        self.positional_embedding = nn.Parameter(d**-0.5 * torch.randn(c.chunk + 1, d))
        self.blocks = nn.ModuleList(SiglipEncoderLayer(cfg) for _ in range(c.dit_layers))
        self.norm_final = nn.LayerNorm(d, eps=1e-6, elementwise_affine=False)
        self.final = nn.Linear(d, c.action_dim)
        ts, ab = ddim_schedule(c.diffusion_steps, c.ddim_steps)
        self._timesteps = ts.tolist()
        self._alpha_bar = ab.tolist()

    def predict_noise(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Noise predicted for (B, chunk, dof) actions ``x`` at timesteps ``t`` (B,) given cognition ``z`` (B, 1, C)."""
        dtype = self.x_embedder.weight.dtype
        cond = self.t_embedder(timestep_embedding(t, TIME_FREQ_DIM).to(dtype))[:, None] + self.z_embedder(z)
        h = torch.cat([cond, self.x_embedder(x)], dim=1) + self.positional_embedding
        for block in self.blocks:
            h = block(h, None)
        return self.final(self.norm_final(h))[:, 1:]

    def forward(self, cognition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """DDIM sampling from ``noise`` (B, chunk, dof) conditioned on ``cognition`` (B, 1, C), B requests: actions
        (B, chunk, dof). With CFG the conditional inputs of the B requests and their unconditional copies run as one
        batch of 2B (conditional first)."""
        c = self.c
        dtype = self.x_embedder.weight.dtype
        x = noise.to(dtype)
        z = cognition.to(dtype)
        b = x.shape[0]
        if c.cfg_batch == 2:
            z = torch.cat([z, self.null_cognition.to(dtype).expand(b, -1, -1)], dim=0)
        n = len(self._timesteps)
        for i, (t, ab) in enumerate(zip(self._timesteps, self._alpha_bar)):
            xb = x.repeat(c.cfg_batch, 1, 1)
            eps = self.predict_noise(xb, torch.full((c.cfg_batch * b,), t, device=x.device), z)
            if c.cfg_batch == 2:
                eps = eps[b:] + c.cfg_scale * (eps[:b] - eps[b:])
            ab_prev = self._alpha_bar[i + 1] if i + 1 < n else 1.0
            x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
            x = math.sqrt(ab_prev) * x0 + math.sqrt(1.0 - ab_prev) * eps
        return x.float()


def _build_cogact(c: CogACTPreset) -> nn.ModuleDict:
    root = _build_root(c.vlm)
    root["dit"] = ActionDiT(c)
    return root


class CogACTSplitModel(FlowSplitModel):
    """CogACT as a chain of blocks; see the module docstring."""

    family = "cogact"
    _expert_inputs = ("noise",)
    _stacked = ("prompt_ids", "noise", "actions")  # images, vision/VLM activations, cognition: a leading request axis

    def __init__(
        self, preset: str, config: CogACTPreset, *, device: Any, dtype: torch.dtype, seed: int, on_meta: bool
    ) -> None:
        super().__init__(preset, config, torch.device("meta") if on_meta else torch.device(device), dtype)
        c = config
        root = build_modules(lambda: _build_cogact(c), seed=seed, on_meta=on_meta)
        self.root = root.to(device=self.device, dtype=dtype).eval() if not on_meta else root.to(dtype=dtype).eval()
        llm = self.root["llm"]
        chain = vision_chain(self.root) + [("vlm.embed", PromptEmbed(llm.model.embed_tokens), "embed", 0)]
        chain += [(f"vlm.layer{j}", layer, "layer", j) for j, layer in enumerate(llm.model.layers)]
        chain += [("vlm.cognition", CognitionHead(llm.model.norm), "cognition", 0), ("dit", self.root["dit"], "dit", 0)]
        for _name, mod, _kind, _j in chain:
            mod.to(self.device)
        names = tuple(x[0] for x in chain)  # tuples, as every family's (Profiles compare block names)
        kinds = tuple((x[2], x[3]) for x in chain)
        self._install_chain(
            (names, tuple(x[1] for x in chain), kinds),
            llm.model.rotary_emb,  # type: ignore[arg-type]
            "projector",
        )
        idx = index_vision_chain(self, list(names), list(kinds))
        self._i_embed = idx["embed"]
        self._i_cognition = idx["cognition"]

    def unused_parameters(self) -> int:
        """Parameters of ``self.root`` that never run in the chain (the LLM's lm_head: CogACT reads hidden states)."""
        return module_params(self.root["llm"].lm_head)

    # ---- shapes ----------------------------------------------------------------------------------------------
    def _vlm_layout(self) -> tuple[int, int, int, int]:
        v = self.config.vlm
        return v.llm_layers, v.llm_hidden, v.llm_kv_heads, v.llm_hidden // v.llm_heads

    def _observation_specs(self) -> list[TensorSpec]:
        c = self.config
        v = c.vlm
        return [
            TensorSpec("images", (1, v.image_px, v.image_px, 3), "uint8"),
            TensorSpec("prompt_ids", (v.prompt_tokens,), "int64"),
            TensorSpec("state", (v.state_dim,), "float32"),  # uniform interface; CogACT does not read it
            TensorSpec("noise", (c.chunk, c.action_dim), "float32"),
        ]

    def _cognition_spec(self) -> TensorSpec:
        return TensorSpec("cognition", (1, 1, self.config.cognition_dim), self._act_dtype, True)

    def _payload_specs(self, k: int) -> list[TensorSpec]:
        c = self.config
        specs = vision_payload_specs(self, c.vlm, k)
        if self._i_embed < k <= self._i_cognition:
            seq = 1 if k == self._i_cognition else c.vlm.prefix_tokens  # the cognition head reads the last position
            specs.append(TensorSpec("hidden", (1, seq, c.vlm.llm_hidden), self._act_dtype, True))
        if k == self._i_expert:
            specs.append(self._cognition_spec())
        if k <= self._i_expert:
            specs.append(TensorSpec("noise", (c.chunk, c.action_dim), "float32"))
        return specs

    def _reverse_specs(self, k: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
        obs = {s.name: s for s in self._observation_specs()}
        return [obs["images"], obs["prompt_ids"]], [self._cognition_spec()]

    def block_specs(self) -> list[BlockSpec]:
        c = self.config
        v = c.vlm
        seq = v.prefix_tokens
        specs = []
        for name, mod, (kind, _j) in zip(self.block_names, self.block_modules, self._kinds):
            n = module_params(mod)
            vision = vision_block_spec(v, name, kind, n)
            if vision is not None:
                specs.append(vision)
            elif kind == "embed":
                specs.append(
                    BlockSpec(
                        name,
                        "embedding",
                        (ComputePass(v.prompt_tokens, v.prompt_tokens),),
                        hidden=v.llm_hidden,
                        in_dim=v.vocab_size,
                        out_dim=v.llm_hidden,
                        param_count=n,
                    )
                )
            elif kind == "layer":
                specs.append(
                    BlockSpec(
                        name,
                        "transformer_layer",
                        (ComputePass(seq, seq),),
                        hidden=v.llm_hidden,
                        mlp=v.llm_mlp,
                        heads=v.llm_heads,
                        kv_heads=v.llm_kv_heads,
                        head_dim=v.llm_hidden // v.llm_heads,
                        gated_mlp=True,
                        param_count=n,
                    )
                )
            elif kind == "cognition":
                specs.append(BlockSpec(name, "norm", (ComputePass(1, 1),), hidden=v.llm_hidden, param_count=n))
            else:  # dit: ddim_steps passes of cfg_batch x (1 + chunk) tokens, each sample attending to its own
                tok = c.chunk + 1
                d = c.dit_hidden
                specs.append(
                    BlockSpec(
                        name,
                        "expert",
                        (ComputePass(c.cfg_batch * tok, tok, repeat=c.ddim_steps),),
                        hidden=d,
                        mlp=c.dit_mlp_ratio * d,
                        heads=c.dit_heads,
                        kv_heads=c.dit_heads,
                        head_dim=d // c.dit_heads,
                        in_dim=c.action_dim,
                        out_dim=c.action_dim,
                        layers=c.dit_layers,
                        param_count=n,
                        extra={"action_tokens": float(c.chunk), "cfg_batch": float(c.cfg_batch)},
                    )
                )
        return specs

    # ---- observation / execution ----------------------------------------------------------------------------
    def make_observation(self, seed: int) -> dict[str, np.ndarray]:
        c = self.config
        v = c.vlm
        rng = np.random.default_rng(seed)
        prompt = np.concatenate([[1], rng.integers(2, v.tokenizer_vocab, size=v.prompt_tokens - 1)])
        return {
            "images": rng.integers(0, 256, size=(1, v.image_px, v.image_px, 3), dtype=np.uint8),
            "prompt_ids": prompt.astype(np.int64),
            "state": rng.standard_normal(v.state_dim).astype(np.float32),
            "noise": rng.standard_normal((c.chunk, c.action_dim)).astype(np.float32),
        }

    def _obs_to_state(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The observation's tensors CogACT reads (checked against every observation field; ``state`` is unused)."""
        self._check_observation(obs, self._observation_specs())
        return {n: as_tensor(obs[n], self.device) for n in ("images", "prompt_ids", "noise")}

    def _run(self, state: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
        """Run blocks [a, b) on a batch ``state`` (``stack_states`` of the tensors crossing cut a: a leading request
        axis on every tensor); returns the batch of tensors crossing cut b. CogACT's own dispatch loop (its chain is
        OpenVLA's, not the prefix-KV chain of ``FlowSplitModel._run``); the batching, sessions and
        ``_cloud_first_steps`` are ``FlowSplitModel``'s."""
        c = self.config
        pos = pe = None
        for i in range(a, b):
            kind, _j = self._kinds[i]
            mod = self.block_modules[i]
            if run_vision_block(self, c.vlm, i, kind, mod, state):
                continue
            if kind == "embed":
                state["hidden"] = mod(state.pop("prompt_ids"), state.pop("image_embeds"))
            elif kind == "layer":
                h = state["hidden"]
                if pe is None:
                    pos = torch.arange(h.shape[1], device=h.device)[None]
                    pe = self._rotary(h, pos)
                h = mod(h, attention_mask=None, position_ids=pos, position_embeddings=pe)
                state["hidden"] = h[:, -1:].contiguous() if i == self._i_cognition - 1 else h
            elif kind == "cognition":
                state["cognition"] = mod(state.pop("hidden"))
            else:
                state["actions"] = mod(state.pop("cognition"), state.pop("noise"))
        return state
