"""Model configurations for ``ecc perf``: analytic VLA descriptions (vision tower, VLM/LLM, action head) and their
block specs, the scaled pi0 family of VLA-Perf, and Hugging Face ``config.json`` files.

A :class:`VLAConfig` is turned into a chain of :class:`~executor.blocks.BlockSpec` by :func:`block_specs` (nothing is
hard-coded per model; the roofline in ``executor.roofline`` prices them). Workload conventions follow VLA-Perf:

* vision: ``cameras`` images of ``image_px`` px, (image_px / patch_px)^2 tokens each, per-image attention;
* VLM prefill over [image tokens of every camera + ``prompt_tokens`` language tokens]; with ``timesteps`` > 1 the
  previous timesteps' image tokens are already in the KV cache and only the newest timestep is prefilled;
* flow-matching action expert: ``chunk`` action tokens (+ ``state_tokens``) attend to the VLM KV cache and to each
  other, ``denoising_steps`` times ("parallel decode");
* autoregressive actions: the VLM/LLM decodes ``dof x chunk`` tokens one at a time over a growing context;
* parallel-decoding autoregressive actions (``action_head="ar-parallel"``, VLA-Perf's "Autoregressive-Parallel",
  as in OpenVLA-OFT): the VLM emits all ``dof x chunk`` action tokens in one pass that attends to the context and
  to the action tokens themselves (one parallel-decode pass of the VLM, no denoising steps).

Scaled pi0 family (VLA-Perf Table "scaled-up VLA models"): pi0-L / XL / XXL use a SigLIP-giant vision tower
(40 layers, hidden 1536, MLP 6144, 16 heads, 256 tokens per camera as in pi0), a Llama-2 7B / 13B / 70B VLM and an
action expert derived from the VLM by VLA-Perf's rule: same layers, heads, KV heads and head dim, hidden / 2 and
MLP / 4.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from executor.blocks import BlockSpec, ComputePass

log = logging.getLogger(__name__)

ActionHead = Literal["flow", "autoregressive", "ar-parallel"]
ACTION_HEADS: tuple[str, ...] = ("flow", "autoregressive", "ar-parallel")
_TOKEN_HEADS: tuple[str, ...] = ("autoregressive", "ar-parallel")  # the VLM emits the action tokens
COMPONENTS: tuple[str, ...] = ("vision", "llm", "action")  # placement units of a model
_DECODE_BUCKETS = 8  # autoregressive decode passes are grouped into this many buckets (mean context, exact FLOPs)


class ConfigError(ValueError):
    """A model configuration (name, file or field values) that ``ecc perf`` cannot use."""


def _positive(owner: str, **values: int) -> None:
    bad = {k: v for k, v in values.items() if not isinstance(v, int) or isinstance(v, bool) or v <= 0}
    if bad:
        raise ConfigError(
            f"{owner}: these fields must be positive integers: " + ", ".join(f"{k}={v!r}" for k, v in bad.items())
        )


@dataclass(frozen=True)
class VisionConfig:
    """One ViT tower (SigLIP-style, non-gated GELU MLP). ``extra_tokens``: CLS/register tokens per image."""

    layers: int
    hidden: int
    mlp: int
    heads: int
    patch_px: int = 14
    image_px: int = 224
    extra_tokens: int = 0
    name: str = "vision"

    def __post_init__(self) -> None:
        _positive(
            f"vision tower {self.name!r}",
            layers=self.layers,
            hidden=self.hidden,
            mlp=self.mlp,
            heads=self.heads,
            patch_px=self.patch_px,
            image_px=self.image_px,
        )
        if self.image_px % self.patch_px:
            raise ConfigError(
                f"vision tower {self.name!r}: image_px={self.image_px} is not a multiple of patch_px={self.patch_px}"
            )
        if self.hidden % self.heads:
            raise ConfigError(f"vision tower {self.name!r}: hidden={self.hidden} not divisible by heads={self.heads}")

    @property
    def patches(self) -> int:
        return (self.image_px // self.patch_px) ** 2

    @property
    def params(self) -> int:
        h = self.hidden
        return self.layers * (4 * h * h + 2 * h * self.mlp) + 3 * self.patch_px**2 * h


@dataclass(frozen=True)
class LMConfig:
    """A decoder transformer (Llama/Gemma style: gated MLP). ``vocab_size`` 0 leaves the embedding table out."""

    layers: int
    hidden: int
    mlp: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int = 0
    name: str = "llm"

    def __post_init__(self) -> None:
        _positive(
            f"language model {self.name!r}",
            layers=self.layers,
            hidden=self.hidden,
            mlp=self.mlp,
            heads=self.heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
        )
        if self.vocab_size < 0:
            raise ConfigError(f"language model {self.name!r}: vocab_size must be >= 0, got {self.vocab_size}")
        if self.heads % self.kv_heads:
            raise ConfigError(
                f"language model {self.name!r}: heads={self.heads} not a multiple of kv_heads={self.kv_heads}"
            )

    @property
    def layer_params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.mlp

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.vocab_size * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V of one token over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def derived_expert(llm: LMConfig) -> LMConfig:
    """VLA-Perf's action expert for a VLM: same depth and attention shape, hidden / 2, MLP / 4 (no vocabulary)."""
    return LMConfig(
        layers=llm.layers,
        hidden=llm.hidden // 2,
        mlp=llm.mlp // 4,
        heads=llm.heads,
        kv_heads=llm.kv_heads,
        head_dim=llm.head_dim,
        vocab_size=0,
        name=f"{llm.name}-expert",
    )


@dataclass(frozen=True)
class VLAConfig:
    """An analytic VLA: vision tower(s) -> projector -> VLM/LLM -> action head (flow expert or autoregressive)."""

    name: str
    vision: tuple[VisionConfig, ...]
    llm: LMConfig
    expert: LMConfig | None = None  # the flow-matching action expert; None for autoregressive models
    action_head: ActionHead = "flow"
    cameras: int = 3
    prompt_tokens: int = 32
    state_tokens: int = 1
    chunk: int = 50
    denoising_steps: int = 10
    dof: int = 14
    timesteps: int = 1  # observation history kept in the VLM KV cache (1 = current frame only)
    projector_mlp: int = 0  # 0: one linear vision -> llm; else a 2-layer MLP with this width
    action_bins: int = 256  # autoregressive output head width (action bins; OpenVLA: its full vocabulary)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.action_head not in ACTION_HEADS:
            raise ConfigError(f"action_head must be one of {ACTION_HEADS}, got {self.action_head!r}")
        _positive(
            f"model {self.name!r}",
            cameras=self.cameras,
            prompt_tokens=self.prompt_tokens,
            chunk=self.chunk,
            denoising_steps=self.denoising_steps,
            dof=self.dof,
            timesteps=self.timesteps,
            action_bins=self.action_bins,
        )
        if self.state_tokens < 0 or self.projector_mlp < 0:
            raise ConfigError(
                f"model {self.name!r}: state_tokens and projector_mlp must be >= 0, got "
                f"{self.state_tokens}, {self.projector_mlp}"
            )
        if not self.vision:
            raise ConfigError(f"model {self.name!r} has no vision tower")
        if self.action_head == "flow" and self.expert is None:
            raise ConfigError(f"model {self.name!r}: action_head='flow' needs an expert (or use 'autoregressive')")

    # ---- token counts ------------------------------------------------------------------------------------------
    @property
    def image_tokens_per_camera(self) -> int:
        return self.vision[0].patches

    @property
    def image_tokens(self) -> int:
        """Image tokens of one timestep (all cameras)."""
        return self.cameras * self.image_tokens_per_camera

    @property
    def context_tokens(self) -> int:
        """VLM KV-cache length: every kept timestep's image tokens + the prompt."""
        return self.timesteps * self.image_tokens + self.prompt_tokens

    @property
    def prefill_tokens(self) -> int:
        """Tokens the VLM processes per inference (all of the context at timesteps = 1, else the newest frame)."""
        return self.context_tokens if self.timesteps == 1 else self.image_tokens

    @property
    def action_tokens(self) -> int:
        """Autoregressive tokens per inference (dof x chunk); the expert's parallel tokens for flow."""
        return self.dof * self.chunk if self.action_head in _TOKEN_HEADS else self.chunk + self.state_tokens

    # ---- sizes -------------------------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, int]:
        """Parameter count per component (vision incl. projector, llm incl. embedding table, action)."""
        v_out = sum(t.hidden for t in self.vision)
        proj = (
            v_out * self.projector_mlp + self.projector_mlp * self.llm.hidden
            if self.projector_mlp
            else v_out * self.llm.hidden
        )
        action = (
            self.expert.layers * self.expert.layer_params
            if self.action_head == "flow" and self.expert
            else self.llm.hidden * self.action_bins
        )
        return {"vision": sum(t.params for t in self.vision) + proj, "llm": self.llm.params, "action": action}

    def kv_cache_bytes(self, dtype_bytes: int = 2) -> int:
        """VLM KV cache at ``context_tokens`` (what a device-server split sends down)."""
        return self.context_tokens * self.llm.kv_bytes_per_token(dtype_bytes)

    def observation_bytes(self) -> int:
        """Raw camera bytes per inference (uint8 RGB)."""
        return self.cameras * self.vision[0].image_px ** 2 * 3

    def action_bytes(self, bytes_per_value: int = 4) -> int:
        return self.dof * self.chunk * bytes_per_value

    def with_(self, **changes: Any) -> VLAConfig:
        """A copy with fields replaced (``steps``/``chunk``/``timesteps``/``action_head`` ...), validated again.

        Switching to ``action_head='flow'`` on a model without expert derives one (VLA-Perf's rule)."""
        if changes.get("action_head") == "flow" and self.expert is None and "expert" not in changes:
            changes["expert"] = derived_expert(self.llm)
        try:
            return replace(self, **changes)
        except TypeError as e:
            raise ConfigError(f"unknown model field in {sorted(changes)}: {e}") from e


# ------------------------------------------------------------------------------------------------ block specs


def block_specs(cfg: VLAConfig) -> list[BlockSpec]:
    """The block chain of an analytic VLA, in execution order: vision.* -> llm.* -> expert / llm decode."""
    p = ComputePass
    cams = cfg.cameras
    specs: list[BlockSpec] = []
    for t in cfg.vision:
        tok = t.patches + t.extra_tokens
        vis = p(cams * tok, tok)
        pre = t.name
        specs.append(
            BlockSpec(
                f"vision.{pre}.embed",
                "patch_embed",
                (p(cams * t.patches, t.patches),),
                hidden=t.hidden,
                in_dim=3 * t.patch_px**2,
                out_dim=t.hidden,
                param_count=3 * t.patch_px**2 * t.hidden,
            )
        )
        specs += [
            BlockSpec(
                f"vision.{pre}.layer{i}",
                "transformer_layer",
                (vis,),
                hidden=t.hidden,
                mlp=t.mlp,
                heads=t.heads,
                kv_heads=t.heads,
                head_dim=t.hidden // t.heads,
            )
            for i in range(t.layers)
        ]
    v_out = sum(t.hidden for t in cfg.vision)
    img = cfg.image_tokens
    specs.append(
        BlockSpec("vision.proj", "linear", (p(img, img),), in_dim=v_out, out_dim=cfg.llm.hidden, mlp=cfg.projector_mlp)
    )
    lm = cfg.llm
    specs.append(
        BlockSpec(
            "llm.embed",
            "embedding",
            (p(cfg.prompt_tokens, cfg.prompt_tokens),),
            hidden=lm.hidden,
            param_count=lm.vocab_size * lm.hidden,
        )
    )
    ctx = cfg.context_tokens
    passes: tuple[ComputePass, ...] = (p(cfg.prefill_tokens, ctx),)
    head_passes: tuple[ComputePass, ...] = ()
    if cfg.action_head == "autoregressive":
        # the prefill's last position emits the first action token; the other dof x chunk - 1 are decoded
        buckets = _decode_buckets(cfg.action_tokens - 1, ctx)
        passes = passes + buckets
        head_passes = (p(1, 1),) + tuple(p(1, 1, "decode", b.repeat) for b in buckets)
    elif cfg.action_head == "ar-parallel":
        # all dof x chunk action tokens in one pass over [context + themselves]; the head reads every position
        n = cfg.action_tokens
        passes = passes + (p(n, ctx + n, "parallel_decode"),)
        head_passes = (p(n, n, "parallel_decode"),)
    specs += [
        BlockSpec(
            f"llm.layer{i}",
            "transformer_layer",
            passes,
            hidden=lm.hidden,
            mlp=lm.mlp,
            heads=lm.heads,
            kv_heads=lm.kv_heads,
            head_dim=lm.head_dim,
            gated_mlp=True,
            param_count=lm.layer_params,
        )
        for i in range(lm.layers)
    ]
    if cfg.action_head in _TOKEN_HEADS:
        specs.append(BlockSpec("llm.action_head", "linear", head_passes, in_dim=lm.hidden, out_dim=cfg.action_bins))
    else:
        e = cfg.expert
        assert e is not None  # guaranteed by VLAConfig.__post_init__
        tok = cfg.action_tokens
        specs.append(
            BlockSpec(
                "expert",
                "expert",
                (p(tok, ctx + tok, "parallel_decode", cfg.denoising_steps),),
                hidden=e.hidden,
                mlp=e.mlp,
                heads=e.heads,
                kv_heads=e.kv_heads,
                head_dim=e.head_dim,
                gated_mlp=True,
                layers=e.layers,
                param_count=e.layers * e.layer_params,
            )
        )
    return specs


def _decode_buckets(n: int, ctx: int) -> tuple[ComputePass, ...]:
    """``n`` one-token decode passes over contexts ctx+1 .. ctx+n, grouped into buckets at their mean context
    (attention FLOPs and bytes are linear in the context, so the totals are exact up to rounding)."""
    out = []
    edges = [round(i * n / _DECODE_BUCKETS) for i in range(_DECODE_BUCKETS + 1)]
    for a, b in zip(edges, edges[1:]):
        if b > a:
            mean_ctx = ctx + (a + 1 + b) / 2
            out.append(ComputePass(1, int(round(mean_ctx)), "decode", b - a))
    return tuple(out)


def component_of(block_name: str) -> str:
    """Placement component of a block name: "vision", "llm" or "action" (analytic and executor names)."""
    head = block_name.split(".", 1)[0].lower()
    if head in ("expert", "action", "dit", "action_expert", "suffix"):
        return "action"
    if head in ("llm", "vlm", "lm", "language", "text", "gemma", "prefix_embed", "embed", "head") or head.startswith(
        ("llm", "vlm", "prefix")
    ):
        return "llm"
    return "vision"


def phase_label(component: str, phase: str) -> str:
    """Breakdown label of a pass: vision / llm_prefill / decode / action."""
    if component == "action" or phase == "parallel_decode":
        return "action"
    if phase == "decode":
        return "decode"
    return "llm_prefill" if component == "llm" else "vision"


# ------------------------------------------------------------------------------------------------ catalogue

SIGLIP_SO400M = VisionConfig(layers=27, hidden=1152, mlp=4304, heads=16, patch_px=14, image_px=224, name="siglip")
# SigLIP2 giant (opt), run at 256 tokens per camera like pi0 (VLA-Perf's model-scaling setup)
SIGLIP_GIANT = VisionConfig(layers=40, hidden=1536, mlp=6144, heads=16, patch_px=16, image_px=256, name="siglip_g")
GEMMA_2B = LMConfig(
    layers=18, hidden=2048, mlp=16384, heads=8, kv_heads=1, head_dim=256, vocab_size=257152, name="gemma_2b"
)
GEMMA_300M = LMConfig(layers=18, hidden=1024, mlp=4096, heads=8, kv_heads=1, head_dim=256, name="gemma_300m")
LLAMA2_7B = LMConfig(
    layers=32, hidden=4096, mlp=11008, heads=32, kv_heads=32, head_dim=128, vocab_size=32000, name="llama2_7b"
)
LLAMA2_13B = LMConfig(
    layers=40, hidden=5120, mlp=13824, heads=40, kv_heads=40, head_dim=128, vocab_size=32000, name="llama2_13b"
)
LLAMA2_70B = LMConfig(
    layers=80, hidden=8192, mlp=28672, heads=64, kv_heads=8, head_dim=128, vocab_size=32000, name="llama2_70b"
)


def pi0_config() -> VLAConfig:
    """pi0 (the executor's ``full`` preset shapes; VLA-Perf's default workload)."""
    try:
        from executor.models.presets import PI0_PRESETS

        c = PI0_PRESETS["full"]
    except (ImportError, KeyError):  # pragma: no cover - presets are part of the package
        return _pi0_literal()
    vision = VisionConfig(
        layers=c.vision_layers,
        hidden=c.vision_hidden,
        mlp=c.vision_mlp,
        heads=c.vision_heads,
        patch_px=c.patch_px,
        image_px=c.image_px,
        name="siglip",
    )
    vlm = LMConfig(
        layers=c.vlm_layers,
        hidden=c.vlm_hidden,
        mlp=c.vlm_mlp,
        heads=c.vlm_heads,
        kv_heads=c.vlm_kv_heads,
        head_dim=c.vlm_head_dim,
        vocab_size=c.vocab_size,
        name="gemma_2b",
    )
    expert = LMConfig(
        layers=c.expert_layers,
        hidden=c.expert_hidden,
        mlp=c.expert_mlp,
        heads=c.expert_heads,
        kv_heads=c.vlm_kv_heads,
        head_dim=c.vlm_head_dim,
        name="gemma_300m",
    )
    return VLAConfig(
        name="pi0",
        vision=(vision,),
        llm=vlm,
        expert=expert,
        cameras=c.cameras,
        prompt_tokens=c.prompt_tokens,
        chunk=c.chunk,
        denoising_steps=c.num_steps,
        dof=c.action_dim,
        note="pi0: SigLIP-So400m + Gemma-2B + 300M action expert (executor full preset)",
    )


def _pi0_literal() -> VLAConfig:
    return VLAConfig(name="pi0", vision=(SIGLIP_SO400M,), llm=GEMMA_2B, expert=GEMMA_300M)


def _scaled(name: str, llm: LMConfig, note: str) -> VLAConfig:
    return VLAConfig(name=name, vision=(SIGLIP_GIANT,), llm=llm, expert=derived_expert(llm), note=note)


def openvla_config() -> VLAConfig:
    """OpenVLA-7B as an analytic config: DINOv2-L + SigLIP towers fused per patch, 3-layer MLP projector (modelled
    as 2 layers), Llama-2-7B decoding 7 action tokens (one 7-DoF action)."""
    dino = VisionConfig(
        layers=23, hidden=1024, mlp=4096, heads=16, patch_px=14, image_px=224, extra_tokens=5, name="dino"
    )
    siglip = VisionConfig(layers=26, hidden=1152, mlp=4304, heads=16, patch_px=14, image_px=224, name="siglip")
    return VLAConfig(
        name="openvla",
        vision=(dino, siglip),
        llm=replace(LLAMA2_7B, vocab_size=32064),
        expert=None,
        action_head="autoregressive",
        cameras=1,
        prompt_tokens=20,
        state_tokens=0,
        chunk=1,
        dof=7,
        projector_mlp=4 * 2176,
        action_bins=32064,
        note="OpenVLA-7B: DINOv2-L + SigLIP, Llama-2-7B, 7 action tokens",
    )


MODEL_BUILDERS = {
    "pi0": pi0_config,
    "pi0-L": lambda: _scaled("pi0-L", LLAMA2_7B, "SigLIP-giant + Llama-2-7B + Act-L (VLA-Perf scaling)"),
    "pi0-XL": lambda: _scaled("pi0-XL", LLAMA2_13B, "SigLIP-giant + Llama-2-13B + Act-XL (VLA-Perf scaling)"),
    "pi0-XXL": lambda: _scaled("pi0-XXL", LLAMA2_70B, "SigLIP-giant + Llama-2-70B + Act-XXL (VLA-Perf scaling)"),
    "openvla": openvla_config,
}
SCALED_FAMILY: tuple[str, ...] = ("pi0", "pi0-L", "pi0-XL", "pi0-XXL")


def model_names() -> list[str]:
    return list(MODEL_BUILDERS)


def get_config(name: str) -> VLAConfig:
    """A named model configuration (case-insensitive); ConfigError lists the valid names."""
    for key, build in MODEL_BUILDERS.items():
        if key.lower() == str(name).lower():
            return build()
    raise ConfigError(
        f"unknown model {name!r}; valid models: {', '.join(model_names())} (or a path to a Hugging Face config.json)"
    )


# ------------------------------------------------------------------------------------------------ HF config.json

SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "gemma", "siglip_vision_model", "siglip", "paligemma", "pi0")
_LM_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads")
_VISION_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "patch_size",
    "image_size",
)


def _missing(d: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if d.get(f) is None]


def _need(d: Any, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
    miss = _missing(d, fields)
    if miss:
        raise ConfigError(f"{where} lacks the fields {', '.join(miss)}")
    return d


def _int(d: dict[str, Any], key: str, where: str) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}: field {key} must be an integer, got {v!r}")
    return v


def lm_from_hf(d: dict[str, Any], where: str = "config") -> LMConfig:
    """LMConfig from a llama/gemma ``config.json`` dict."""
    _need(d, _LM_FIELDS, where)
    h, heads = _int(d, "hidden_size", where), _int(d, "num_attention_heads", where)
    kv = d.get("num_key_value_heads") or heads
    head_dim = d.get("head_dim") or (h // heads if heads else 0)
    return LMConfig(
        layers=_int(d, "num_hidden_layers", where),
        hidden=h,
        mlp=_int(d, "intermediate_size", where),
        heads=heads,
        kv_heads=int(kv),
        head_dim=int(head_dim),
        vocab_size=int(d.get("vocab_size") or 0),
        name=str(d.get("model_type", "llm")),
    )


def vision_from_hf(d: dict[str, Any], where: str = "vision_config") -> VisionConfig:
    """VisionConfig from a SigLIP vision ``config.json`` dict."""
    _need(d, _VISION_FIELDS, where)
    return VisionConfig(
        layers=_int(d, "num_hidden_layers", where),
        hidden=_int(d, "hidden_size", where),
        mlp=_int(d, "intermediate_size", where),
        heads=_int(d, "num_attention_heads", where),
        patch_px=_int(d, "patch_size", where),
        image_px=_int(d, "image_size", where),
        name="siglip",
    )


def config_from_hf(d: dict[str, Any], name: str = "hf") -> VLAConfig:
    """A VLAConfig from a Hugging Face config dict.

    llama / gemma: the language model becomes the VLM of a pi0-style VLA (SigLIP-So400m vision, derived expert);
    siglip vision: the tower replaces pi0's; paligemma: vision + text of a pi0-style VLA (derived expert, which for
    PaliGemma-3B is pi0's 300M expert); pi0: every part from the file (``chunk_size``, ``num_inference_steps``).
    Other architectures raise ConfigError naming the supported types and the fields a language model would need.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{name}: a config must be a JSON object, got {type(d).__name__}")
    mt = d.get("model_type")
    base = pi0_config()
    if mt in ("llama", "gemma"):
        lm = lm_from_hf(d, f"{name} ({mt})")
        return replace(base, name=name, llm=lm, expert=derived_expert(lm), note=f"{mt} VLM from {name}")
    if mt == "siglip_vision_model":
        return replace(
            base,
            name=name,
            vision=(vision_from_hf(d, f"{name} (siglip_vision_model)"),),
            note=f"pi0 with the SigLIP tower of {name}",
        )
    if mt == "siglip":
        return replace(
            base,
            name=name,
            vision=(vision_from_hf(_need(d, ("vision_config",), name)["vision_config"], f"{name}.vision_config"),),
            note=f"pi0 with the SigLIP tower of {name}",
        )
    if mt == "paligemma":
        _need(d, ("vision_config", "text_config"), f"{name} (paligemma)")
        lm = lm_from_hf(d["text_config"], f"{name}.text_config")
        return replace(
            base,
            name=name,
            vision=(vision_from_hf(d["vision_config"], f"{name}.vision_config"),),
            llm=lm,
            expert=derived_expert(lm),
            note=f"PaliGemma VLM from {name}",
        )
    if mt == "pi0":
        _need(d, ("vlm_config", "dit_config"), f"{name} (pi0)")
        vlm = _need(d["vlm_config"], ("vision_config", "text_config"), f"{name}.vlm_config")
        lm = lm_from_hf(vlm["text_config"], f"{name}.vlm_config.text_config")
        ex = lm_from_hf(d["dit_config"], f"{name}.dit_config")
        changes: dict[str, Any] = {}
        if d.get("chunk_size") is not None:
            changes["chunk"] = int(d["chunk_size"])
        if d.get("num_inference_steps") is not None:
            changes["denoising_steps"] = int(d["num_inference_steps"])
        return replace(
            base,
            name=name,
            vision=(vision_from_hf(vlm["vision_config"], f"{name}.vlm_config.vision_config"),),
            llm=lm,
            expert=replace(ex, vocab_size=0),
            note=f"pi0 from {name}",
            **changes,
        )
    miss = _missing(d, _LM_FIELDS)
    lacks = f"; as a language model it lacks {', '.join(miss)}" if miss else ""
    raise ConfigError(
        f"{name}: model_type {mt!r} is not a supported architecture (supported: "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}){lacks}"
    )


def load_hf_config(path: str | Path) -> VLAConfig:
    """Read a Hugging Face ``config.json`` (see :func:`config_from_hf`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    return config_from_hf(d, name=path.parent.name if path.name == "config.json" else path.stem)


def resolve_model(name_or_path: str) -> VLAConfig:
    """A catalogue name or a path to a config.json."""
    if str(name_or_path).endswith(".json") or Path(str(name_or_path)).is_file():
        return load_hf_config(name_or_path)
    return get_config(name_or_path)


__all__ = [
    "ACTION_HEADS",
    "COMPONENTS",
    "ConfigError",
    "LMConfig",
    "MODEL_BUILDERS",
    "SCALED_FAMILY",
    "SUPPORTED_MODEL_TYPES",
    "VLAConfig",
    "VisionConfig",
    "block_specs",
    "component_of",
    "config_from_hf",
    "derived_expert",
    "get_config",
    "load_hf_config",
    "lm_from_hf",
    "model_names",
    "openvla_config",
    "phase_label",
    "pi0_config",
    "resolve_model",
    "vision_from_hf",
]
