"""OpenVLA / Prismatic-style split model from transformers classes with random weights (built from configs only).

Chain (N blocks): ``dino.embed, dino.layer0.., siglip.embed, siglip.layer0.., projector, llm.embed, llm.layer0..,
llm.head``. The image goes through a DINOv2-with-registers tower and a SigLIP tower (Prismatic reads the penultimate
layer of each, so only those layers are built); their patch features are concatenated per patch and projected by a
3-layer GELU MLP into the Llama embedding space; the prefix is ``[BOS, image tokens, prompt tokens]``. Seven action
tokens are decoded greedily with a KV cache, the argmax restricted to the 256 action-bin tokens (the last 256 ids
of the tokenizer vocabulary, OpenVLA's convention), and de-tokenised to 7 continuous actions in [-1, 1].

When the cut lies inside the LLM (``llm.embed`` < k < N), every decode step after the first crosses the link: the
edge keeps the KV cache of layers below k, the cloud of the rest; the edge sends the new token's hidden state up and
the cloud replies with the next token id (6 round trips), then with the actions.

With ``action_chunk`` K > 1 (preset ``<name>-oft<K>``) the head is OpenVLA-OFT's parallel decoding (Kim et al. 2025):
``llm.embed`` appends K x 7 empty (zero) action embeddings to the prefix, every LLM layer runs once over
prefix + K x 7 positions (causal over the prefix, bidirectional among the action positions, which see the whole
prefix), and ``llm.head`` takes the argmax over the 256 action bins at each of the K x 7 action positions: K actions
from one pass, so no cut has decode round trips (a cut inside the LLM sends one hidden state of prefix + K x 7
positions, a cut just before the head the K x 7 action positions). OFT's released checkpoints pair parallel decoding
with an L1-regression MLP head instead of the bins; the discrete head keeps OpenVLA's lm_head and de-tokeniser (the
OFT paper's parallel-decoding ablation) and its weights are about as large (lm_head 131M vs the MLP's 151M at 7B).
OFT also appends one stop token after the action positions; it is left out (one position of ~330).
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
from executor.models.presets import OpenVLAPreset

log = logging.getLogger(__name__)

NUM_ACTION_TOKENS = 7
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_SIGLIP_MEAN = (0.5, 0.5, 0.5)
_SIGLIP_STD = (0.5, 0.5, 0.5)


class FusedProjector(nn.Module):
    """Prismatic ``fused-gelu-mlp``: concat per-patch features of both towers, Linear-GELU-Linear-GELU-Linear."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(vision_dim, 4 * vision_dim),
            nn.GELU(),
            nn.Linear(4 * vision_dim, llm_dim),
            nn.GELU(),
            nn.Linear(llm_dim, llm_dim),
        )

    def forward(self, dino_features: torch.Tensor | None, siglip_features: torch.Tensor) -> torch.Tensor:
        x = siglip_features if dino_features is None else torch.cat([dino_features, siglip_features], dim=-1)
        return self.mlp(x)


class PromptEmbed(nn.Module):
    """Token embedding; at prefill the image tokens are spliced in after BOS: [BOS, image, prompt[1:]], followed by
    ``action_tokens`` empty (zero) action embeddings for OpenVLA-OFT's parallel decoding (none when autoregressive)."""

    def __init__(self, embed_tokens: nn.Embedding, action_tokens: int = 0) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.action_tokens = action_tokens

    def forward(self, token_ids: torch.Tensor, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed_tokens(token_ids)
        if image_embeds is None:
            return e
        parts = [e[:, :1], image_embeds.to(e.dtype), e[:, 1:]]
        if self.action_tokens:
            parts.append(e.new_zeros(e.shape[0], self.action_tokens, e.shape[2]))
        return torch.cat(parts, dim=1)


def parallel_decoding_mask(total_tokens: int, action_tokens: int, device: Any) -> torch.Tensor:
    """(1, 1, T, T) boolean attention mask (True: may attend) of an OpenVLA-OFT pass over ``total_tokens`` positions
    whose last ``action_tokens`` are action placeholders: causal over the prefix, and every action position sees
    the whole prefix and every other action position (bidirectional)."""
    i = torch.arange(total_tokens, device=device)
    allowed = i[None, :] <= i[:, None]
    allowed[total_tokens - action_tokens :] = True
    return allowed[None, None]


class LMHead(nn.Module):
    """Final RMSNorm + lm_head over the last position."""

    def __init__(self, norm: nn.Module, lm_head: nn.Linear) -> None:
        super().__init__()
        self.norm = norm
        self.lm_head = lm_head

    def forward(self, hidden_last: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(hidden_last))


def _build_root(c: OpenVLAPreset) -> nn.ModuleDict:
    from transformers import (
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        LlamaConfig,
        LlamaForCausalLM,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    root = nn.ModuleDict()
    if c.dino_layers:
        dcfg = Dinov2WithRegistersConfig(
            hidden_size=c.dino_hidden,
            num_hidden_layers=c.dino_layers,
            num_attention_heads=c.dino_heads,
            mlp_ratio=c.dino_mlp_ratio,
            image_size=c.image_px,
            patch_size=c.patch_px,
            num_register_tokens=c.dino_registers,
        )
        dcfg._attn_implementation = "sdpa"
        dino = Dinov2WithRegistersModel(dcfg)
        dino.layernorm = nn.Identity()  # Prismatic reads the un-normalised penultimate layer
        root["dino"] = dino
    scfg = SiglipVisionConfig(
        hidden_size=c.siglip_hidden,
        intermediate_size=c.siglip_mlp,
        num_hidden_layers=c.siglip_layers,
        num_attention_heads=c.siglip_heads,
        image_size=c.image_px,
        patch_size=c.patch_px,
        vision_use_head=False,
    )
    scfg._attn_implementation = "sdpa"
    siglip = SiglipVisionModel(scfg)
    siglip.post_layernorm = nn.Identity()
    root["siglip"] = siglip
    root["projector"] = FusedProjector(c.vision_dim, c.llm_hidden)
    lcfg = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.llm_hidden,
        intermediate_size=c.llm_mlp,
        num_hidden_layers=c.llm_layers,
        num_attention_heads=c.llm_heads,
        num_key_value_heads=c.llm_kv_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    lcfg._attn_implementation = "sdpa"
    root["llm"] = LlamaForCausalLM(lcfg)
    return root


class OpenVLASplitModel(SplitModel):
    """OpenVLA-style VLA as a chain of blocks; see the module docstring."""

    family = "openvla"
    _stacked = ("prompt_ids", "state")  # the rest carry a leading request axis

    def __init__(
        self, preset: str, config: OpenVLAPreset, *, device: Any, dtype: torch.dtype, seed: int, on_meta: bool
    ) -> None:
        super().__init__(preset, config, torch.device("meta") if on_meta else torch.device(device), dtype)
        c = config
        root = build_modules(lambda: _build_root(c), seed=seed, on_meta=on_meta)
        self.root = root.to(device=self.device, dtype=dtype).eval() if not on_meta else root.to(dtype=dtype).eval()
        llm = self.root["llm"]
        names: list[str] = []
        mods: list[nn.Module] = []
        kinds: list[tuple[str, int]] = []

        def add(name: str, mod: nn.Module, kind: str, j: int = 0) -> None:
            names.append(name)
            mods.append(mod)
            kinds.append((kind, j))

        for name, mod, kind, j in vision_chain(self.root):
            add(name, mod, kind, j)
        add("llm.embed", PromptEmbed(llm.model.embed_tokens, c.action_tokens), "embed")
        for j, layer in enumerate(llm.model.layers):
            add(f"llm.layer{j}", layer, "layer", j)
        add("llm.head", LMHead(llm.model.norm, llm.lm_head), "head")
        for m in mods:  # the wrappers' buffers follow the model's device
            m.to(self.device)
        self.block_names = tuple(names)
        self.block_modules = tuple(mods)
        self._kinds = tuple(kinds)
        self._rotary = llm.model.rotary_emb
        idx = index_vision_chain(self, names, kinds)
        self._i_embed = idx["embed"]
        self._i_head = idx["head"]
        bins = np.linspace(-1.0, 1.0, c.action_bins)
        self._bin_centers = ((bins[:-1] + bins[1:]) / 2.0).astype(np.float32)
        self._action_base = c.tokenizer_vocab - c.action_bins
        log.info(
            "built openvla/%s on %s: %d blocks, %.3fM params",
            preset,
            self.device,
            self.num_blocks,
            self.num_parameters() / 1e6,
        )

    # ---- shapes ----------------------------------------------------------------------------------------------
    def _observation_specs(self) -> list[TensorSpec]:
        c = self.config
        return [
            TensorSpec("images", (1, c.image_px, c.image_px, 3), "uint8"),
            TensorSpec("prompt_ids", (c.prompt_tokens,), "int64"),
            TensorSpec("state", (c.state_dim,), "float32"),
        ]

    def _payload_specs(self, k: int) -> list[TensorSpec]:
        c, a = self.config, self._act_dtype
        specs = vision_payload_specs(self, c, k)
        if self._i_embed < k <= self._i_head:
            if c.parallel_decoding:  # the head reads the action positions only
                seq = c.action_tokens if k == self._i_head else c.prefix_tokens + c.action_tokens
            else:  # the head reads the last position only
                seq = 1 if k == self._i_head else c.prefix_tokens
            specs.append(TensorSpec("hidden", (1, seq, c.llm_hidden), a, True))
        return specs

    def _action_specs(self) -> list[TensorSpec]:
        return [TensorSpec("actions", (self.config.chunk, self.config.action_dim), "float32")]

    def _token_specs(self) -> list[TensorSpec]:
        return [TensorSpec("token_id", (1, 1), "int64")]

    def _decode_specs(self) -> list[TensorSpec]:
        return [TensorSpec("hidden", (1, 1, self.config.llm_hidden), self._act_dtype, True)]

    def _round_trip_specs(self, k: int) -> tuple[int, list[TensorSpec], list[TensorSpec]]:
        if self._i_embed < k < self.num_blocks and not self.config.parallel_decoding:
            return NUM_ACTION_TOKENS - 1, self._decode_specs(), self._token_specs()
        return 0, [], []

    def block_specs(self) -> list[BlockSpec]:
        """Autoregressive: a prefill over the prefix, then 6 decode passes of one token. OFT (``action_chunk`` > 1):
        one prefill over prefix + K x 7 tokens, and the head over the K x 7 action positions."""
        c = self.config
        seq = c.prefix_tokens + c.action_tokens
        steps = 1 if c.parallel_decoding else NUM_ACTION_TOKENS  # passes of llm.embed / layers / head
        head_tokens = c.action_tokens or 1  # positions the head reads per pass
        decode = tuple(ComputePass(tokens=1, context_tokens=seq + s, phase="decode") for s in range(1, steps))
        one_token = tuple(ComputePass(1, 1, "decode") for _ in range(steps - 1))  # embed / head per decode step
        specs = []
        for name, mod, (kind, _j) in zip(self.block_names, self.block_modules, self._kinds):
            n = module_params(mod)
            vision = vision_block_spec(c, name, kind, n)
            if vision is not None:
                specs.append(vision)
            elif kind == "embed":
                t = c.prompt_tokens
                specs.append(
                    BlockSpec(
                        name,
                        "embedding",
                        (ComputePass(t, t),) + one_token,
                        hidden=c.llm_hidden,
                        in_dim=c.vocab_size,
                        out_dim=c.llm_hidden,
                        param_count=n,
                    )
                )
            elif kind == "layer":
                specs.append(
                    BlockSpec(
                        name,
                        "transformer_layer",
                        (ComputePass(seq, seq),) + decode,
                        hidden=c.llm_hidden,
                        mlp=c.llm_mlp,
                        heads=c.llm_heads,
                        kv_heads=c.llm_kv_heads,
                        head_dim=c.llm_hidden // c.llm_heads,
                        gated_mlp=True,
                        param_count=n,
                    )
                )
            else:  # head: norm + lm_head on the last position of the prefill and of each decode step (OFT: the
                # action positions of the one pass)
                specs.append(
                    BlockSpec(
                        name,
                        "linear",
                        (ComputePass(head_tokens, head_tokens),) + one_token,
                        hidden=c.llm_hidden,
                        in_dim=c.llm_hidden,
                        out_dim=c.vocab_size,
                        param_count=n,
                        extra={"flops_per_token": 2.0 * c.llm_hidden * c.vocab_size},
                    )
                )
        return specs

    # ---- observation / actions ------------------------------------------------------------------------------
    def make_observation(self, seed: int) -> dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(seed)
        prompt = np.concatenate([[1], rng.integers(2, self._action_base, size=c.prompt_tokens - 1)])
        return {
            "images": rng.integers(0, 256, size=(1, c.image_px, c.image_px, 3), dtype=np.uint8),
            "prompt_ids": prompt.astype(np.int64),
            "state": rng.standard_normal(c.state_dim).astype(np.float32),
        }

    def _obs_to_state(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The observation as a batch of one (what ``_Runner`` reads)."""
        self._check_observation(obs, self._observation_specs())
        return self.stack_states([{name: as_tensor(obs[name], self.device) for name in ("images", "prompt_ids")}])

    def _detokenize(self, tokens: list[torch.Tensor]) -> np.ndarray:
        """Action token ids, one (B, 1) tensor per token -> actions (B, NUM_ACTION_TOKENS); OFT: one (B, K x 7)
        tensor of the whole chunk -> actions (B, K, 7)."""
        ids = torch.cat([t.reshape(t.shape[0], -1) for t in tokens], dim=1).cpu().numpy()
        idx = np.clip(self.config.tokenizer_vocab - ids - 1, 0, self._bin_centers.shape[0] - 1)
        actions = self._bin_centers[idx].astype(np.float32)
        if self.config.parallel_decoding:
            return actions.reshape(actions.shape[0], self.config.chunk, -1)
        return actions

    def _actions_of(self, runner: _Runner, state: dict[str, torch.Tensor]) -> np.ndarray:
        """Actions of a runner that owns llm.embed .. llm.head, from its prefill's output ``state``."""
        if self.config.parallel_decoding:
            return self._detokenize([state["token_id"]])[0]
        return self._detokenize(runner.generate(state["token_id"]))

    def forward(self, obs: Mapping[str, np.ndarray]) -> Actions:
        self._require_runnable()
        with torch.inference_mode():
            runner = _Runner(self, 0, self.num_blocks)
            return self._actions_of(runner, runner.prefill(self._obs_to_state(obs)))

    def _cloud_first_steps(self, sessions: list[Any], states: list[dict[str, torch.Tensor]]) -> list[Payload]:
        """Prefill (and, when the cloud owns llm.embed, the whole decode) of a batch; at a cut inside the LLM each
        session keeps its own slice of the batch's KV cache for its decode round trips."""
        k = sessions[0].k
        with torch.inference_mode():
            runner = _Runner(self, k, self.num_blocks)
            first = runner.prefill(self.stack_states(states))["token_id"]
            if self.config.parallel_decoding:  # the whole chunk in one pass, at every cut
                for i, sess in enumerate(sessions):
                    sess.tokens = [first[i : i + 1]]
                return [sess.reply() for sess in sessions]
            tokens = runner.generate(first) if k <= self._i_embed else [first]
            runners = runner.split(len(sessions)) if k > self._i_embed else [runner] * len(sessions)
        for i, (sess, r) in enumerate(zip(sessions, runners)):
            sess.runner = r
            sess.tokens = [t[i : i + 1] for t in tokens]
        return [sess.reply() for sess in sessions]

    def edge_session(self, cut_index: int) -> _EdgeSession:
        self._require_runnable()
        self._check_cut(cut_index)
        return _EdgeSession(self, int(cut_index))

    def cloud_session(self, cut_index: int) -> _CloudSession:
        self._require_runnable()
        self._check_cut(cut_index)
        if cut_index == self.num_blocks:
            raise ValueError(f"cut {cut_index} is edge-only: there is no cloud session")
        return _CloudSession(self, int(cut_index))


# ---- the Prismatic vision front end (DINOv2 + SigLIP -> fused projector), shared with CogACT --------------------------
def vision_chain(root: nn.ModuleDict) -> list[tuple[str, nn.Module, str, int]]:
    """(name, module, kind, layer index) of the vision blocks of a ``_build_root`` tree, up to the projector."""
    out: list[tuple[str, nn.Module, str, int]] = []
    if "dino" in root:
        dino = root["dino"]
        out.append(("dino.embed", ImageEmbed(dino.embeddings, _IMAGENET_MEAN, _IMAGENET_STD), "dino_embed", 0))
        out += [(f"dino.layer{j}", layer, "dino_layer", j) for j, layer in enumerate(dino.encoder.layer)]
    siglip = root["siglip"]
    out.append(("siglip.embed", ImageEmbed(siglip.embeddings, _SIGLIP_MEAN, _SIGLIP_STD), "siglip_embed", 0))
    out += [(f"siglip.layer{j}", layer, "siglip_layer", j) for j, layer in enumerate(siglip.encoder.layers)]
    out.append(("projector", root["projector"], "projector", 0))
    return out


def index_vision_chain(model: Any, names: list[str], kinds: list[tuple[str, int]]) -> dict[str, int]:
    """Set the vision chain indices on ``model`` (``_i_dino_embed``, ``_i_dino_last``, ``_i_siglip_embed``,
    ``_i_projector``); returns the last index of every kind."""
    idx = {kind: i for i, (kind, _) in enumerate(kinds)}
    model._i_dino_embed = idx.get("dino_embed", -1)
    model._i_dino_last = idx.get("dino_layer", -1)
    model._i_siglip_embed = names.index("siglip.embed")
    model._i_projector = idx["projector"]
    return idx


def vision_payload_specs(model: Any, c: OpenVLAPreset, k: int) -> list[TensorSpec]:
    """Raw inputs and vision activations crossing cut ``k`` (``model._i_embed`` is the LLM's embedding block)."""
    a = model._act_dtype
    specs = []
    if k <= model._i_siglip_embed:
        specs.append(TensorSpec("images", (1, c.image_px, c.image_px, 3), "uint8"))
    if k <= model._i_embed:
        specs.append(TensorSpec("prompt_ids", (c.prompt_tokens,), "int64"))
    if model._i_dino_embed < k <= model._i_dino_last:
        specs.append(TensorSpec("dino_hidden", (1, 1 + c.dino_registers + c.num_patches, c.dino_hidden), a, True))
    if c.dino_layers and model._i_dino_last < k <= model._i_projector:
        specs.append(TensorSpec("dino_features", (1, c.num_patches, c.dino_hidden), a, True))
    if model._i_siglip_embed < k <= model._i_projector:
        specs.append(TensorSpec("siglip_hidden", (1, c.num_patches, c.siglip_hidden), a, True))
    if model._i_projector < k <= model._i_embed:
        specs.append(TensorSpec("image_embeds", (1, c.num_patches, c.llm_hidden), a, True))
    return specs


def vision_block_spec(c: OpenVLAPreset, name: str, kind: str, n: int) -> BlockSpec | None:
    """The BlockSpec of a vision block (None for the other kinds); ``n`` its parameter count."""
    p = c.num_patches
    if kind in ("dino_embed", "siglip_embed"):
        hidden = c.dino_hidden if kind == "dino_embed" else c.siglip_hidden
        in_dim = 3 * c.patch_px * c.patch_px
        return BlockSpec(
            name,
            "patch_embed",
            (ComputePass(p, p),),
            hidden=hidden,
            in_dim=in_dim,
            out_dim=hidden,
            param_count=n,
            extra={"flops_per_token": 2.0 * in_dim * hidden},
        )
    if kind == "dino_layer":
        t = 1 + c.dino_registers + p
        return BlockSpec(
            name,
            "transformer_layer",
            (ComputePass(t, t),),
            hidden=c.dino_hidden,
            mlp=c.dino_mlp_ratio * c.dino_hidden,
            heads=c.dino_heads,
            kv_heads=c.dino_heads,
            head_dim=c.dino_hidden // c.dino_heads,
            param_count=n,
        )
    if kind == "siglip_layer":
        return BlockSpec(
            name,
            "transformer_layer",
            (ComputePass(p, p),),
            hidden=c.siglip_hidden,
            mlp=c.siglip_mlp,
            heads=c.siglip_heads,
            kv_heads=c.siglip_heads,
            head_dim=c.siglip_hidden // c.siglip_heads,
            param_count=n,
        )
    if kind == "projector":
        v, h = c.vision_dim, c.llm_hidden
        return BlockSpec(
            name,
            "linear",
            (ComputePass(p, p),),
            hidden=h,
            in_dim=v,
            mlp=4 * v,
            out_dim=h,
            param_count=n,
            extra={"flops_per_token": 2.0 * (v * 4 * v + 4 * v * h + h * h), "linears": 3.0},
        )
    return None


def run_vision_block(
    m: Any, c: OpenVLAPreset, i: int, kind: str, mod: nn.Module, state: dict[str, torch.Tensor]
) -> bool:
    """Run block ``i`` on ``state`` if it is a vision block (True), else leave ``state`` alone (False)."""
    if kind == "dino_embed":
        state["dino_hidden"] = mod(state["images"])
    elif kind == "dino_layer":
        h = mod(state.pop("dino_hidden"))
        if i == m._i_dino_last:  # keep the patch tokens (drop CLS and registers), as Prismatic does
            state["dino_features"] = h[:, 1 + c.dino_registers :].contiguous()
        else:
            state["dino_hidden"] = h
    elif kind == "siglip_embed":
        state["siglip_hidden"] = mod(state.pop("images"))
    elif kind == "siglip_layer":
        state["siglip_hidden"] = mod(state["siglip_hidden"], None)
    elif kind == "projector":
        state["image_embeds"] = mod(state.pop("dino_features", None), state.pop("siglip_hidden"))
    else:
        return False
    return True


class _Runner:
    """Runs blocks [start, end) for one inference and holds the KV cache of the LLM layers among them."""

    def __init__(self, model: OpenVLASplitModel, start: int, end: int) -> None:
        from transformers import DynamicCache

        self.m = model
        self.start = start
        self.end = end
        self.cache = DynamicCache()
        self.prefix_len: int | None = None

    def prefill(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The prefill of blocks [start, end) (with OFT's parallel decoding, the whole inference)."""
        return self._run(state, self.start, self.end, step=0)

    def split(self, n: int) -> list[_Runner]:
        """One runner per request of a batch of ``n``, each with its own slice of the KV cache."""
        if n == 1:
            return [self]
        out = []
        for i in range(n):
            r = _Runner(self.m, self.start, self.end)
            r.prefix_len = self.prefix_len
            for j, layer in enumerate(self.cache.layers):
                if getattr(layer, "keys", None) is not None and layer.keys.numel():
                    r.cache.update(layer.keys[i : i + 1].clone(), layer.values[i : i + 1].clone(), j)
            out.append(r)
        return out

    def decode(self, token_id: torch.Tensor | None, hidden: torch.Tensor | None, step: int) -> dict:
        """Decode step ``step`` (1..6): the input is token ``step``'s id (runner owns llm.embed) or hidden state."""
        state = {"token_id": token_id} if token_id is not None else {"hidden": hidden}
        return self._run(state, max(self.start, self.m._i_embed), self.end, step=step)

    def generate(self, first_token: torch.Tensor) -> list[torch.Tensor]:
        """All action tokens when this runner owns llm.embed .. llm.head."""
        tokens = [first_token]
        while len(tokens) < NUM_ACTION_TOKENS:
            tokens.append(self.decode(tokens[-1], None, len(tokens))["token_id"])
        return tokens

    def _run(self, state: dict[str, torch.Tensor], a: int, b: int, step: int) -> dict[str, torch.Tensor]:
        m = self.m
        c = m.config
        pos = pe = mask = None
        cache = None if c.parallel_decoding else self.cache  # one pass: nothing to keep for later steps
        for i in range(a, b):
            kind, j = m._kinds[i]
            mod = m.block_modules[i]
            if run_vision_block(m, c, i, kind, mod, state):
                continue
            if kind == "embed":
                if step == 0:
                    state["hidden"] = mod(state.pop("prompt_ids"), state.pop("image_embeds"))
                else:
                    state["hidden"] = mod(state.pop("token_id"))
            elif kind == "layer":
                h = state["hidden"]
                if pe is None:
                    if c.parallel_decoding:
                        pos = torch.arange(h.shape[1], device=h.device)[None]
                        mask = parallel_decoding_mask(int(h.shape[1]), c.action_tokens, h.device)
                    elif step == 0:
                        self.prefix_len = int(h.shape[1])
                        pos = torch.arange(self.prefix_len, device=h.device)[None]
                    else:
                        if self.prefix_len is None:
                            raise PayloadError("decode step before the prefill on this side")
                        pos = torch.tensor([[self.prefix_len + step - 1]], device=h.device)
                    pe = m._rotary(h, pos)
                h = mod(
                    h,
                    attention_mask=mask,
                    position_ids=pos,
                    cache=cache,
                    use_cache=cache is not None,
                    position_embeddings=pe,
                )
                # llm.head reads the last position only (OFT: the action positions): nothing more crosses a cut
                # just before it
                state["hidden"] = h[:, -(c.action_tokens or 1) :].contiguous() if i == m._i_head - 1 else h
            else:  # head: greedy argmax over the action-bin tokens
                logits = mod(state.pop("hidden")[:, -(c.action_tokens or 1) :])
                base = m._action_base
                idx = logits[..., base : base + c.action_bins].argmax(dim=-1)
                state["token_id"] = (idx + base).to(torch.int64)
        return state


def _as_payload(kind: str, cut: int, tensors: dict[str, torch.Tensor], step: int = 0) -> Payload:
    acts = tuple(n for n, t in tensors.items() if t.is_floating_point() and n not in ("actions",))
    return Payload(kind=kind, cut=cut, tensors=tensors, step=step, activations=acts)


class _EdgeSession:
    """Edge half of cut k: blocks [0, k); in-LLM cuts answer each token id with the next hidden state."""

    def __init__(self, model: OpenVLASplitModel, k: int) -> None:
        self.m = model
        self.k = k
        self.runner = _Runner(model, 0, k)
        self.started = False
        self.done = False

    def start(self, obs: Mapping[str, np.ndarray]) -> Payload | Actions:
        if self.started:
            raise PayloadError("edge session already started; create one session per inference")
        self.started = True
        with torch.inference_mode():
            state = self.runner.prefill(self.m._obs_to_state(obs))
            if self.k == self.m.num_blocks:
                self.done = True
                return self.m._actions_of(self.runner, state)
        state = self.m.split_state(state, 1)[0]
        return _as_payload("observation" if self.k == 0 else "activations", self.k, state)

    def on_reply(self, payload: Payload) -> Payload | Actions:
        m = self.m
        if not self.started or self.done:
            raise PayloadError("reply received outside an exchange (start() not called, or already finished)")
        if getattr(payload, "kind", None) == "actions":
            t = m._receive(payload, self.k, ("actions",), m._action_specs())
            self.done = True
            return t["actions"].cpu().numpy()
        t = m._receive(payload, self.k, ("token",), m._token_specs())
        if not (m._i_embed < self.k < m.num_blocks) or m.config.parallel_decoding:
            raise PayloadError(f"cut {self.k} has no decode round trips, got a token reply")
        if not 1 <= payload.step < NUM_ACTION_TOKENS:
            raise PayloadError(f"token reply step {payload.step} outside 1..{NUM_ACTION_TOKENS - 1}")
        with torch.inference_mode():
            out = self.runner.decode(t["token_id"], None, payload.step)
        return _as_payload("decode", self.k, {"hidden": out["hidden"]}, step=payload.step)


class _CloudSession:
    """Cloud half of cut k: blocks [k, N); decodes locally when it owns llm.embed, else one token per request."""

    def __init__(self, model: OpenVLASplitModel, k: int) -> None:
        self.m = model
        self.k = k
        self.runner = _Runner(model, k, model.num_blocks)
        self.tokens: list[torch.Tensor] = []

    def accept(self, payload: Payload) -> dict[str, torch.Tensor]:
        """The checked tensors of this session's first request."""
        if self.tokens:
            raise PayloadError("cloud session already started; create one session per inference")
        kind = "observation" if self.k == 0 else "activations"
        return self.m._receive(payload, self.k, (kind,), self.m._payload_specs(self.k))

    def on_request(self, payload: Payload) -> Payload:
        m, k = self.m, self.k
        if len(self.tokens) >= self._tokens_needed():
            raise PayloadError("cloud session already returned its actions; create one session per inference")
        if not self.tokens:
            return m._cloud_first_steps([self], [self.accept(payload)])[0]
        if payload.kind != "decode" or payload.step != len(self.tokens):
            raise PayloadError(
                f"expected a decode payload for step {len(self.tokens)}, got {payload.kind!r} step {payload.step}"
            )
        hidden = m._receive(payload, k, ("decode",), m._decode_specs())["hidden"]
        with torch.inference_mode():
            self.tokens.append(self.runner.decode(None, hidden, payload.step)["token_id"])
        return self.reply()

    def _tokens_needed(self) -> int:
        """Token tensors before the actions: 7 of one id each, or OFT's one of the whole chunk."""
        return 1 if self.m.config.parallel_decoding else NUM_ACTION_TOKENS

    def reply(self) -> Payload:
        """The actions once all tokens are known, else the latest token id."""
        m, k = self.m, self.k
        if len(self.tokens) == self._tokens_needed():
            actions = torch.from_numpy(m._detokenize(self.tokens).reshape(m._action_specs()[0].shape))
            return Payload(kind="actions", cut=k, tensors={"actions": actions}, step=len(self.tokens))
        return Payload(kind="token", cut=k, tensors={"token_id": self.tokens[-1]}, step=len(self.tokens))
