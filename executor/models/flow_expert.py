"""What pi0 and SmolVLA share: a VLM prefix whose per-layer KV cache feeds a flow-matching action expert.

`FlowSplitModel` holds the chain layout (``vision.embed, vision.layer0.., <mid>, vlm.embed, vlm.layer0.., expert``),
the payload specs of every cut (observation tensors, vision/prefix activations, the KV cache of the VLM layers
already run), the reverse cut (cloud runs the VLM, edge runs the expert), the edge/cloud sessions and the Euler
loop, and the one block-dispatch loop (``_run``, batched). A family supplies its modules, its prefix embedding, its
prefix attention, its denoising loop and the few names that differ (see the class attributes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from executor.blocks import BlockSpec, ComputePass
from executor.models.base import Actions, Payload, PayloadError, SplitModel, TensorSpec, as_tensor

log = logging.getLogger(__name__)

_RAW = ("images", "prompt_ids", "state", "noise", "actions")


class PostNormProjector(nn.Module):
    """SigLIP post-layernorm + the VLM's projector (pi0's multi-modal projector, SmolVLM's pixel-shuffle connector);
    a request's ``cameras`` images are laid out one after the other: (B * cameras, ...) -> (B, cameras * tokens, h)."""

    def __init__(self, post_layernorm: nn.Module, projector: nn.Module, cameras: int) -> None:
        super().__init__()
        self.post_layernorm = post_layernorm
        self.projector = projector
        self.cameras = cameras

    def forward(self, vision_hidden: torch.Tensor) -> torch.Tensor:
        feats = self.projector(self.post_layernorm(vision_hidden))
        return feats.reshape(feats.shape[0] // self.cameras, self.cameras * feats.shape[1], feats.shape[2])


def chain_layout(
    vision_embed: nn.Module,
    vision_layers: Any,
    mid_name: str,
    mid: nn.Module,
    prefix_embed: nn.Module,
    vlm_layers: Any,
    expert: nn.Module,
) -> tuple[tuple[str, ...], tuple[nn.Module, ...], tuple[tuple[str, int], ...]]:
    """(block names, block modules, (kind, layer index) per block) of a flow-expert chain."""
    names: list[str] = ["vision.embed"]
    mods: list[nn.Module] = [vision_embed]
    kinds: list[tuple[str, int]] = [("vision_embed", 0)]
    for j, layer in enumerate(vision_layers):
        names.append(f"vision.layer{j}")
        mods.append(layer)
        kinds.append(("vision_layer", j))
    names += [mid_name, "vlm.embed"]
    mods += [mid, prefix_embed]
    kinds += [(mid_name, 0), ("prefix_embed", 0)]
    for j, layer in enumerate(vlm_layers):
        names.append(f"vlm.layer{j}")
        mods.append(layer)
        kinds.append(("vlm_layer", j))
    names.append("expert")
    mods.append(expert)
    kinds.append(("expert", 0))
    return tuple(names), tuple(mods), tuple(kinds)


def vision_block_spec(c: Any, name: str, kind: str, param_count: int) -> BlockSpec:
    """BlockSpec of ``vision.embed`` or a ``vision.layer{j}`` (every camera in one batch)."""
    np_ = c.num_patches
    vis = ComputePass(tokens=c.cameras * np_, context_tokens=np_)
    if kind == "vision_embed":
        in_dim = 3 * c.patch_px * c.patch_px
        return BlockSpec(
            name,
            "patch_embed",
            (vis,),
            hidden=c.vision_hidden,
            in_dim=in_dim,
            out_dim=c.vision_hidden,
            param_count=param_count,
            extra={"flops_per_token": 2.0 * in_dim * c.vision_hidden},
        )
    if kind == "vision_layer":
        return BlockSpec(
            name,
            "transformer_layer",
            (vis,),
            hidden=c.vision_hidden,
            mlp=c.vision_mlp,
            heads=c.vision_heads,
            kv_heads=c.vision_heads,
            head_dim=c.vision_hidden // c.vision_heads,
            param_count=param_count,
        )
    raise ValueError(f"not a vision block kind: {kind!r}")


def keep_layer_kv(state: dict[str, torch.Tensor], cache: Any, j: int) -> None:
    """Store VLM layer ``j``'s keys/values (from its own ``DynamicCache``) as payload tensors ``kv.{j}.*``."""
    state[f"kv.{j}.key"] = cache.layers[j].keys.contiguous()
    state[f"kv.{j}.value"] = cache.layers[j].values.contiguous()


def pop_kv(state: dict[str, torch.Tensor], layers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (key, value) pairs of VLM layers 0..layers-1, removed from ``state``."""
    return [(state.pop(f"kv.{j}.key"), state.pop(f"kv.{j}.value")) for j in range(layers)]


def euler_denoise(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    cache: Any,
    num_steps: int,
    device: Any,
) -> torch.Tensor:
    """Euler loop from t=1 to t=0 in ``num_steps`` steps over a batch ``x`` (B, chunk, dim); the cache is cropped back
    to the prefix after each step."""
    prefix_len = cache.get_seq_length()
    dt = -1.0 / num_steps
    for step in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 + step * dt, dtype=torch.float32, device=device)
        v = velocity(x, t)
        cache.crop(prefix_len - cache.get_seq_length())
        x = x + dt * v
    return x


class FlowSplitModel(SplitModel):
    """Shared shapes, sessions and execution entry points of the prefix-KV + flow-expert families.

    Subclasses install their chain with ``_install_chain`` and define ``_vlm_layout``, ``_embed_prefix``,
    ``_prefix_attention``, ``_denoise`` and ``block_specs`` (the VLM and expert blocks' from ``_prefix_embed_spec``,
    ``_vlm_layer_spec`` and ``_expert_spec``).
    """

    _prefix_inputs: tuple[str, ...] = ("prompt_ids",)  # raw tensors read by vlm.embed (besides image features)
    _expert_inputs: tuple[str, ...] = ("state", "noise")  # raw tensors read by the expert
    _prompt_id_high_offset = 0  # prompt ids drawn from [1, vocab_size - offset)
    _stacked = ("prompt_ids", "state", "noise", "actions")  # the rest carry a leading (request or camera) axis

    def _install_chain(
        self, layout: tuple[list[str], list[nn.Module], list[str]], rotary: nn.Module, mid_name: str
    ) -> None:
        """Adopt a ``chain_layout`` result: the blocks, the VLM's rotary embedding and the chain indices (``_i_mid``
        the projector/connector ``mid_name``, ``_i_prefix`` vlm.embed, ``_i_vlm0`` its first layer, ``_i_expert``)."""
        names, mods, kinds = layout
        self.block_names = names
        self.block_modules = mods
        self._kinds = kinds
        self._rotary = rotary
        self._i_mid = names.index(mid_name)
        self._i_prefix = names.index("vlm.embed")
        self._i_vlm0 = self._i_prefix + 1
        self._i_expert = len(names) - 1
        log.info(
            "built %s/%s on %s: %d blocks, %.3fM params",
            self.family,
            self.preset,
            self.device,
            self.num_blocks,
            self.num_parameters() / 1e6,
        )

    def _vlm_layout(self) -> tuple[int, int, int, int]:
        """(VLM layers run, VLM hidden width, KV heads, head dim)."""
        raise NotImplementedError

    # ---- shapes ----------------------------------------------------------------------------------------------
    def _observation_specs(self) -> list[TensorSpec]:
        c = self.config
        return [
            TensorSpec("images", (c.cameras, c.image_px, c.image_px, 3), "uint8"),
            TensorSpec("prompt_ids", (c.prompt_tokens,), "int64"),
            TensorSpec("state", (c.state_dim,), "float32"),
            TensorSpec("noise", (c.chunk, c.max_action_dim), "float32"),
        ]

    def _kv_specs(self, layers: range) -> list[TensorSpec]:
        _n, _h, kv_heads, head_dim = self._vlm_layout()
        shape = (1, kv_heads, self.config.prefix_tokens, head_dim)
        return [TensorSpec(f"kv.{j}.{part}", shape, self._act_dtype, True) for j in layers for part in ("key", "value")]

    def _payload_specs(self, k: int) -> list[TensorSpec]:
        c, a = self.config, self._act_dtype
        hidden = self._vlm_layout()[1]
        obs = {s.name: s for s in self._observation_specs()}
        specs = []
        if k == 0:
            specs.append(obs["images"])
        if k <= self._i_prefix:
            specs += [obs[n] for n in self._prefix_inputs]
        if k <= self._i_expert:
            specs += [obs[n] for n in self._expert_inputs]
        if 0 < k <= self._i_mid:
            specs.append(TensorSpec("vision_hidden", (c.cameras, c.num_patches, c.vision_hidden), a, True))
        if self._i_mid < k <= self._i_prefix:
            specs.append(TensorSpec("image_features", (1, c.image_tokens, hidden), a, True))
        if self._i_prefix < k < self._i_expert:
            specs.append(TensorSpec("prefix_hidden", (1, c.prefix_tokens, hidden), a, True))
        if self._i_vlm0 < k <= self._i_expert:
            specs += self._kv_specs(range(k - self._i_vlm0))
        return specs

    def _prefix_embed_spec(self, name: str, param_count: int) -> BlockSpec:
        """BlockSpec of ``vlm.embed``: a token look-up of the prompt (and of the state token where the state is a
        prefix input, as in SmolVLA; its projection is ~max_state_dim x hidden FLOPs, left out)."""
        c = self.config
        hidden = self._vlm_layout()[1]
        tokens = c.prompt_tokens + ("state" in self._prefix_inputs)
        return BlockSpec(
            name,
            "embedding",
            (ComputePass(tokens, tokens),),
            hidden=hidden,
            in_dim=c.vocab_size,
            out_dim=hidden,
            param_count=param_count,
        )

    def _vlm_layer_spec(self, name: str, param_count: int, *, mlp: int, heads: int) -> BlockSpec:
        """BlockSpec of a ``vlm.layer{j}``: a gated-MLP decoder layer over the whole prefix."""
        seq = self.config.prefix_tokens
        _n, hidden, kv_heads, head_dim = self._vlm_layout()
        return BlockSpec(
            name,
            "transformer_layer",
            (ComputePass(seq, seq),),
            hidden=hidden,
            mlp=mlp,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            gated_mlp=True,
            param_count=param_count,
        )

    def _expert_spec(self, name: str, param_count: int, *, heads: int) -> BlockSpec:
        """BlockSpec of ``expert``: ``num_steps`` passes of the suffix ([state token where the state is an expert
        input, as in pi0] + ``chunk`` action tokens) over [prefix KV, suffix], through ``expert_layers`` gated-MLP
        layers of width ``expert_hidden`` with ``heads`` query heads and the VLM's KV heads and head dim.
        ``io_flops_per_step``: the action in/out projections and the action-time MLP (and the state projection)."""
        c = self.config
        seq = c.prefix_tokens
        _n, _hidden, kv_heads, head_dim = self._vlm_layout()
        state_token = "state" in self._expert_inputs
        suffix = c.chunk + state_token
        h = c.expert_hidden
        io_flops = 2.0 * (c.max_action_dim * h + 2 * h * h + h * h + h * c.max_action_dim) * c.chunk
        if state_token:
            io_flops += 2.0 * c.max_state_dim * h
        extra = {"io_flops_per_step": io_flops, "prefix_tokens": float(seq), "action_tokens": float(c.chunk)}
        if state_token:
            extra["state_tokens"] = 1.0
        return BlockSpec(
            name,
            "expert",
            (ComputePass(suffix, seq + suffix, "parallel_decode", repeat=c.num_steps),),
            hidden=h,
            mlp=c.expert_mlp,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            gated_mlp=True,
            in_dim=c.max_action_dim,
            out_dim=c.max_action_dim,
            layers=c.expert_layers,
            param_count=param_count,
            extra=extra,
        )

    def _action_specs(self) -> list[TensorSpec]:
        return [TensorSpec("actions", (self.config.chunk, self.config.action_dim), "float32")]

    def _reverse_cuts(self) -> tuple[int, ...]:
        return (self._i_expert,)

    def _reverse_specs(self, k: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
        obs = {s.name: s for s in self._observation_specs()}
        up = [obs["images"]] + [obs[n] for n in self._prefix_inputs]
        return up, self._kv_specs(range(self._vlm_layout()[0]))

    # ---- observation / execution ----------------------------------------------------------------------------
    def make_observation(self, seed: int) -> dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(seed)
        return {
            "images": rng.integers(0, 256, size=(c.cameras, c.image_px, c.image_px, 3), dtype=np.uint8),
            "prompt_ids": rng.integers(1, c.vocab_size - self._prompt_id_high_offset, size=c.prompt_tokens).astype(
                np.int64
            ),
            "state": rng.standard_normal(c.state_dim).astype(np.float32),
            "noise": rng.standard_normal((c.chunk, c.max_action_dim)).astype(np.float32),
        }

    def _obs_to_state(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        specs = self._observation_specs()
        self._check_observation(obs, specs)
        return {s.name: as_tensor(obs[s.name], self.device) for s in specs}

    def _run(self, state: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
        """Run blocks [a, b) on a batch ``state`` (``stack_states`` of the tensors crossing cut a); returns the batch
        of tensors crossing cut b. The one block-dispatch loop of both families; what differs is in
        ``_embed_prefix``, ``_prefix_attention`` and ``_denoise``."""
        from transformers import DynamicCache

        vlm_layers = self._vlm_layout()[0]
        attention: dict[str, Any] | None = None
        for i in range(a, b):
            kind, j = self._kinds[i]
            mod = self.block_modules[i]
            if kind == "vision_embed":
                state["vision_hidden"] = mod(state.pop("images"))
            elif kind == "vision_layer":
                state["vision_hidden"] = mod(state["vision_hidden"], None)
            elif i == self._i_mid:  # projector / connector
                state["image_features"] = mod(state.pop("vision_hidden"))
            elif kind == "prefix_embed":
                state["prefix_hidden"] = self._embed_prefix(mod, state)
            elif kind == "vlm_layer":
                h = state.pop("prefix_hidden")
                if attention is None:
                    attention = self._prefix_attention(h)
                cache = DynamicCache()
                h = mod(h, cache=cache, use_cache=True, **attention)
                keep_layer_kv(state, cache, j)
                if j < vlm_layers - 1:  # the last layer's output only feeds the (unused) final norm
                    state["prefix_hidden"] = h
            else:
                state["actions"] = self._denoise(mod, pop_kv(state, vlm_layers), state)
        return state

    def _embed_prefix(self, embed: nn.Module, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run ``vlm.embed`` on the batch, popping its inputs (image features and ``_prefix_inputs``) from ``state``."""
        raise NotImplementedError

    def _prefix_attention(self, h: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments of every VLM layer over the prefix ``h`` (mask, rotary embeddings, positions)."""
        raise NotImplementedError

    def _denoise(self, expert: nn.Module, kv: list, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The expert's Euler loop on the VLM's (key, value) pairs; pops ``_expert_inputs`` from ``inputs``."""
        raise NotImplementedError

    def _run_one(self, state: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
        """``_run`` for one request (a batch of one)."""
        return self.split_state(self._run(self.stack_states([state]), a, b), 1)[0]

    def forward(self, obs: Mapping[str, np.ndarray]) -> Actions:
        self._require_runnable()
        with torch.inference_mode():
            return self._run_one(self._obs_to_state(obs), 0, self.num_blocks)["actions"].cpu().numpy()

    def _cloud_first_steps(self, sessions: list[Any], states: list[dict[str, torch.Tensor]]) -> list[Payload]:
        s0 = sessions[0]
        a, b = (0, s0.k) if s0.placement == "cloud_then_edge" else (s0.k, self.num_blocks)
        with torch.inference_mode():
            outs = self.split_state(self._run(self.stack_states(states), a, b), len(states))
        return [sess.reply(out) for sess, out in zip(sessions, outs)]

    def edge_session(self, cut_index: int) -> FlowEdgeSession:
        self._require_runnable()
        placement, k = self.placement(cut_index)
        return FlowEdgeSession(self, int(cut_index), placement, k)

    def cloud_session(self, cut_index: int) -> FlowCloudSession:
        self._require_runnable()
        placement, k = self.placement(cut_index)
        if placement == "edge_then_cloud" and k == self.num_blocks:
            raise ValueError(f"cut {cut_index} is edge-only: there is no cloud session")
        return FlowCloudSession(self, int(cut_index), placement, k)


def _as_payload(kind: str, cut: int, tensors: dict[str, torch.Tensor]) -> Payload:
    acts = tuple(n for n in tensors if n not in _RAW)
    return Payload(kind=kind, cut=cut, tensors=tensors, activations=acts)


class FlowEdgeSession:
    """Edge half: blocks [0, k) (edge_then_cloud) or [k, N) after the cloud's KV cache (cloud_then_edge)."""

    def __init__(self, model: FlowSplitModel, cut_index: int, placement: str, k: int) -> None:
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
                self.kept = {n: state.pop(n) for n in m._expert_inputs}
                return _as_payload("observation", self.cut, state)
            self.kept = {}
            state = m._run_one(state, 0, self.k)
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
            return m._run_one(state, self.k, m.num_blocks)["actions"].cpu().numpy()


class FlowCloudSession:
    """Cloud half: blocks [k, N) -> actions (edge_then_cloud), or [0, k) -> KV cache (cloud_then_edge)."""

    def __init__(self, model: FlowSplitModel, cut_index: int, placement: str, k: int) -> None:
        self.m, self.cut, self.placement, self.k = model, cut_index, placement, k
        self.done = False

    def accept(self, payload: Payload) -> dict[str, torch.Tensor]:
        """The checked tensors of this session's request (what ``FlowSplitModel._run`` starts from)."""
        m, k = self.m, self.k
        if self.done:
            raise PayloadError("cloud session already replied; create one session per inference")
        if self.placement == "cloud_then_edge":
            return m._receive(payload, self.cut, ("observation",), m._reverse_specs(k)[0])
        kind = "observation" if k == 0 else "activations"
        return m._receive(payload, self.cut, (kind,), m._payload_specs(k))

    def reply(self, out: dict[str, torch.Tensor]) -> Payload:
        """This session's reply from its share of the run's output."""
        self.done = True
        if self.placement == "cloud_then_edge":
            return _as_payload("kv_cache", self.cut, out)
        return Payload(kind="actions", cut=self.cut, tensors={"actions": out["actions"]})

    def on_request(self, payload: Payload) -> Payload:
        return self.m._cloud_first_steps([self], [self.accept(payload)])[0]
