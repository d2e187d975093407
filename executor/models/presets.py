"""Model presets: the shapes of each family at `tiny` (tests), `small` (demo) and `full` (the published model).

Pure dataclasses, no torch import: ``executor.models.presets_for`` and the CLI can list them cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


def _check_patch_grid(image_px: int, patch_px: int) -> None:
    if image_px % patch_px:
        raise ValueError(f"image_px {image_px} is not a multiple of patch_px {patch_px}")


def _check_padded_dims(state_dim: int, action_dim: int, max_state_dim: int, max_action_dim: int) -> None:
    if state_dim > max_state_dim or action_dim > max_action_dim:
        raise ValueError(f"state_dim/action_dim {state_dim}/{action_dim} exceed max {max_state_dim}/{max_action_dim}")


def _num_patches(image_px: int, patch_px: int) -> int:
    """Patches of one square image."""
    return (image_px // patch_px) ** 2


@dataclass(frozen=True)
class OpenVLAPreset:
    """Shapes of a Prismatic/OpenVLA stack: DINOv2 (with registers) + SigLIP towers fused per patch, a 3-layer GELU
    MLP projector, a Llama decoder, 7 autoregressive action tokens over 256 bins.

    ``action_chunk`` K > 1 swaps the autoregressive decode for OpenVLA-OFT's parallel decoding (Kim et al. 2025):
    K x ``action_dim`` empty (zero) action embeddings follow the prefix, one pass of the LLM over prefix + K x 7
    tokens (causal over the prefix, bidirectional among the action positions) gives their final hidden states, and
    the discrete head (argmax over the 256 bins, as the autoregressive head) reads them: K actions, no decode steps.
    ``action_chunk = 1`` is the published autoregressive OpenVLA. Named ``<preset>-oft<K>`` (see :func:`preset_config`).

    Prismatic reads the *penultimate* layer of each vision tower, so ``dino_layers`` / ``siglip_layers`` are the
    layers that run (the published towers have one more, never executed). ``dino_layers = 0`` drops the DINOv2 tower.
    Action tokens are the last ``action_bins`` ids of the tokenizer vocabulary (``tokenizer_vocab``); the embedding
    table has ``vocab_size`` rows (OpenVLA pads 32000 -> 32064).
    """

    image_px: int
    patch_px: int
    dino_hidden: int
    dino_layers: int
    dino_heads: int
    dino_mlp_ratio: int
    dino_registers: int
    siglip_hidden: int
    siglip_layers: int
    siglip_heads: int
    siglip_mlp: int
    llm_hidden: int
    llm_layers: int
    llm_heads: int
    llm_kv_heads: int
    llm_mlp: int
    vocab_size: int
    tokenizer_vocab: int
    prompt_tokens: int  # language tokens incl. BOS; the image tokens are spliced in after BOS
    action_dim: int = 7
    action_bins: int = 256
    state_dim: int = 7  # in the observation for a uniform interface; OpenVLA does not read proprioception
    action_chunk: int = 1  # actions per inference; > 1: OpenVLA-OFT parallel decoding of action_chunk x 7 tokens

    def __post_init__(self) -> None:
        _check_patch_grid(self.image_px, self.patch_px)
        if isinstance(self.action_chunk, bool) or int(self.action_chunk) != self.action_chunk or self.action_chunk < 1:
            raise ValueError(f"action_chunk must be an integer >= 1, got {self.action_chunk!r}")
        if self.tokenizer_vocab > self.vocab_size or self.tokenizer_vocab < self.action_bins + 2:
            raise ValueError(
                f"tokenizer_vocab {self.tokenizer_vocab} must be in [{self.action_bins + 2}, "
                f"vocab_size={self.vocab_size}]"
            )
        if self.prompt_tokens < 1:
            raise ValueError(f"prompt_tokens must be >= 1 (BOS), got {self.prompt_tokens}")

    @property
    def num_patches(self) -> int:
        return _num_patches(self.image_px, self.patch_px)

    @property
    def prefix_tokens(self) -> int:
        """Sequence length of the LLM prefill: prompt tokens + fused image tokens."""
        return self.prompt_tokens + self.num_patches

    @property
    def vision_dim(self) -> int:
        """Channels of the fused per-patch feature (DINOv2 + SigLIP concatenated)."""
        return (self.dino_hidden if self.dino_layers else 0) + self.siglip_hidden

    @property
    def chunk(self) -> int:
        """Actions one inference returns (``action_chunk``)."""
        return self.action_chunk

    @property
    def parallel_decoding(self) -> bool:
        """True for the OpenVLA-OFT head (``action_chunk`` > 1): one pass, no autoregressive decode."""
        return self.action_chunk > 1

    @property
    def action_tokens(self) -> int:
        """Action positions of the parallel-decoding pass (``action_chunk`` x ``action_dim``; 0 when autoregressive)."""
        return self.action_chunk * self.action_dim if self.parallel_decoding else 0


@dataclass(frozen=True)
class Pi0Preset:
    """Shapes of pi0 (transformers ``PI0Config``): SigLIP tower, linear projector, Gemma VLM over the prefix
    [image tokens of every camera + language tokens], Gemma action expert over [state token + chunk action tokens]
    attending to every VLM layer's KV cache, ``num_steps`` flow-matching denoising steps.

    ``state_dim`` / ``action_dim`` are the robot's DoF (the model pads to ``max_state_dim`` / ``max_action_dim``).
    """

    image_px: int
    patch_px: int
    cameras: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    vlm_hidden: int
    vlm_layers: int
    vlm_heads: int
    vlm_kv_heads: int
    vlm_head_dim: int
    vlm_mlp: int
    vocab_size: int
    expert_hidden: int
    expert_heads: int
    expert_mlp: int
    prompt_tokens: int
    chunk: int
    num_steps: int
    state_dim: int
    action_dim: int
    max_state_dim: int = 32
    max_action_dim: int = 32

    def __post_init__(self) -> None:
        _check_patch_grid(self.image_px, self.patch_px)
        _check_padded_dims(self.state_dim, self.action_dim, self.max_state_dim, self.max_action_dim)
        if self.expert_hidden % 2:
            raise ValueError(f"expert_hidden must be even, got {self.expert_hidden}")

    @property
    def num_patches(self) -> int:
        return _num_patches(self.image_px, self.patch_px)

    @property
    def image_tokens(self) -> int:
        return self.cameras * self.num_patches

    @property
    def prefix_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens

    @property
    def expert_layers(self) -> int:
        """The expert has one layer per VLM layer: expert layer i attends to VLM layer i's keys/values."""
        return self.vlm_layers


@dataclass(frozen=True)
class SmolVLAPreset:
    """Shapes of SmolVLA: a SmolVLM backbone (SigLIP tower, pixel-shuffle connector, SmolLM2/Llama text model) of
    which only the first ``lm_layers_used`` of ``lm_layers_total`` text layers run, and a flow-matching action expert
    (Llama layers of width ``expert_hidden``, one per used VLM layer, whose chunk tokens attend to that VLM layer's
    keys/values, as pi0). Prefix = [``tokens_per_image`` per camera, ``prompt_tokens`` language tokens, 1 state
    token]; the expert runs ``num_steps`` Euler steps over ``chunk`` action tokens.

    ``state_dim`` / ``action_dim`` are the robot's DoF (padded to ``max_state_dim`` / ``max_action_dim``).
    """

    image_px: int
    patch_px: int
    scale_factor: int  # pixel shuffle: scale_factor**2 patches -> one visual token
    cameras: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    lm_hidden: int
    lm_layers_total: int  # layers of the published language model (only lm_layers_used are built)
    lm_layers_used: int
    lm_heads: int
    lm_kv_heads: int
    lm_head_dim: int
    lm_mlp: int
    vocab_size: int
    expert_hidden: int
    expert_mlp: int
    prompt_tokens: int
    chunk: int
    num_steps: int
    state_dim: int
    action_dim: int
    max_state_dim: int = 32
    max_action_dim: int = 32
    rope_theta: float = 100000.0

    def __post_init__(self) -> None:
        _check_patch_grid(self.image_px, self.patch_px)
        side = self.image_px // self.patch_px
        if self.scale_factor < 1 or side % self.scale_factor:
            raise ValueError(f"patches per side {side} is not a multiple of scale_factor {self.scale_factor}")
        if not 1 <= self.lm_layers_used <= self.lm_layers_total:
            raise ValueError(f"lm_layers_used {self.lm_layers_used} must be in 1..{self.lm_layers_total}")
        if self.lm_heads % self.lm_kv_heads:
            raise ValueError(f"lm_heads {self.lm_heads} is not a multiple of lm_kv_heads {self.lm_kv_heads}")
        _check_padded_dims(self.state_dim, self.action_dim, self.max_state_dim, self.max_action_dim)
        if self.expert_hidden % 2:
            raise ValueError(f"expert_hidden must be even (sinusoidal time embedding), got {self.expert_hidden}")

    @property
    def num_patches(self) -> int:
        return _num_patches(self.image_px, self.patch_px)

    @property
    def tokens_per_image(self) -> int:
        return self.num_patches // self.scale_factor**2

    @property
    def image_tokens(self) -> int:
        return self.cameras * self.tokens_per_image

    @property
    def prefix_tokens(self) -> int:
        """Image tokens of every camera + language tokens + the state token."""
        return self.image_tokens + self.prompt_tokens + 1

    @property
    def expert_layers(self) -> int:
        """One expert layer per used VLM layer: expert layer i attends to VLM layer i's keys/values."""
        return self.lm_layers_used


@dataclass(frozen=True)
class CogACTPreset:
    """Shapes of CogACT (Li et al. 2024, ``microsoft/CogACT``): OpenVLA's Prismatic VLM (``vlm``: DINOv2 + SigLIP,
    fused projector, Llama-2) whose output at the last prompt position (the cognition token, after the final norm)
    conditions a DiT action module: ``[cognition + timestep token, chunk noisy action tokens]`` through
    ``dit_layers`` pre-LN transformer blocks, ``ddim_steps`` DDIM steps, classifier-free guidance (the conditional
    and the unconditional input run as one batch of ``cfg_batch``). ``chunk`` = 1 + future_action_window_size.
    """

    vlm: OpenVLAPreset
    dit_hidden: int
    dit_layers: int
    dit_heads: int
    dit_mlp_ratio: int = 4
    chunk: int = 16
    ddim_steps: int = 10
    cfg_batch: int = 2  # 2: classifier-free guidance (cfg_scale > 1), 1: none
    cfg_scale: float = 1.5
    diffusion_steps: int = 100  # training timesteps of the squaredcos_cap_v2 schedule DDIM subsamples
    action_dim: int = 7

    def __post_init__(self) -> None:
        if self.dit_hidden % self.dit_heads or self.dit_hidden % 2:
            raise ValueError(f"dit_hidden {self.dit_hidden} must be even and a multiple of dit_heads {self.dit_heads}")
        if self.cfg_batch not in (1, 2):
            raise ValueError(f"cfg_batch must be 1 (no guidance) or 2 (classifier-free guidance), got {self.cfg_batch}")
        if not 1 <= self.ddim_steps <= self.diffusion_steps:
            raise ValueError(f"ddim_steps {self.ddim_steps} must be in 1..diffusion_steps={self.diffusion_steps}")

    @property
    def cognition_dim(self) -> int:
        """Width of the cognition feature (the VLM's hidden size)."""
        return self.vlm.llm_hidden


OPENVLA_PRESETS: dict[str, OpenVLAPreset] = {
    "tiny": OpenVLAPreset(
        image_px=32,
        patch_px=8,
        dino_hidden=32,
        dino_layers=1,
        dino_heads=2,
        dino_mlp_ratio=2,
        dino_registers=2,
        siglip_hidden=32,
        siglip_layers=2,
        siglip_heads=2,
        siglip_mlp=64,
        llm_hidden=64,
        llm_layers=3,
        llm_heads=4,
        llm_kv_heads=4,
        llm_mlp=128,
        vocab_size=384,
        tokenizer_vocab=384,
        prompt_tokens=8,
    ),
    "small": OpenVLAPreset(
        image_px=112,
        patch_px=14,
        dino_hidden=192,
        dino_layers=4,
        dino_heads=3,
        dino_mlp_ratio=4,
        dino_registers=4,
        siglip_hidden=192,
        siglip_layers=4,
        siglip_heads=3,
        siglip_mlp=768,
        llm_hidden=512,
        llm_layers=8,
        llm_heads=8,
        llm_kv_heads=8,
        llm_mlp=1376,
        vocab_size=32064,
        tokenizer_vocab=32000,
        prompt_tokens=20,
    ),
    # OpenVLA-7B: DINOv2 ViT-L/14 (reg4) + SigLIP So400m/14 at 224 px (256 patches each, fused per patch),
    # fused-GELU MLP projector, Llama-2-7B (32 layers, hidden 4096, MLP 11008, 32 heads MHA), vocab padded to 32064.
    "full": OpenVLAPreset(
        image_px=224,
        patch_px=14,
        dino_hidden=1024,
        dino_layers=23,
        dino_heads=16,
        dino_mlp_ratio=4,
        dino_registers=4,
        siglip_hidden=1152,
        siglip_layers=26,
        siglip_heads=16,
        siglip_mlp=4304,
        llm_hidden=4096,
        llm_layers=32,
        llm_heads=32,
        llm_kv_heads=32,
        llm_mlp=11008,
        vocab_size=32064,
        tokenizer_vocab=32000,
        prompt_tokens=20,
    ),
}

PI0_PRESETS: dict[str, Pi0Preset] = {
    "tiny": Pi0Preset(
        image_px=32,
        patch_px=8,
        cameras=2,
        vision_hidden=32,
        vision_layers=2,
        vision_heads=2,
        vision_mlp=64,
        vlm_hidden=64,
        vlm_layers=2,
        vlm_heads=2,
        vlm_kv_heads=1,
        vlm_head_dim=32,
        vlm_mlp=128,
        vocab_size=256,
        expert_hidden=32,
        expert_heads=2,
        expert_mlp=64,
        prompt_tokens=8,
        chunk=4,
        num_steps=3,
        state_dim=6,
        action_dim=6,
        max_state_dim=8,
        max_action_dim=8,
    ),
    "small": Pi0Preset(
        image_px=112,
        patch_px=14,
        cameras=2,
        vision_hidden=192,
        vision_layers=4,
        vision_heads=3,
        vision_mlp=768,
        vlm_hidden=384,
        vlm_layers=6,
        vlm_heads=3,
        vlm_kv_heads=1,
        vlm_head_dim=128,
        vlm_mlp=1536,
        vocab_size=4096,
        expert_hidden=256,
        expert_heads=2,
        expert_mlp=1024,
        prompt_tokens=16,
        chunk=16,
        num_steps=5,
        state_dim=14,
        action_dim=14,
    ),
    # Published pi0 (VLA-Perf workload): SigLIP So400m/14 (27 layers, 1152, MLP 4304, 16 heads), Gemma-2B
    # (18 layers, 2048, MLP 16384, 8 heads, 1 KV head, head dim 256), expert Gemma-300M-like (18 layers, 1024,
    # MLP 4096, 8 heads, 1 KV head, head dim 256); 3 cameras x 256 tokens + 32 language tokens = 800-token prefix;
    # chunk 50, 10 denoising steps, 14 robot DoF padded to 32.
    "full": Pi0Preset(
        image_px=224,
        patch_px=14,
        cameras=3,
        vision_hidden=1152,
        vision_layers=27,
        vision_heads=16,
        vision_mlp=4304,
        vlm_hidden=2048,
        vlm_layers=18,
        vlm_heads=8,
        vlm_kv_heads=1,
        vlm_head_dim=256,
        vlm_mlp=16384,
        vocab_size=257152,
        expert_hidden=1024,
        expert_heads=8,
        expert_mlp=4096,
        prompt_tokens=32,
        chunk=50,
        num_steps=10,
        state_dim=14,
        action_dim=14,
    ),
}

SMOLVLA_PRESETS: dict[str, SmolVLAPreset] = {
    "tiny": SmolVLAPreset(
        image_px=32,
        patch_px=8,
        scale_factor=2,
        cameras=2,
        vision_hidden=32,
        vision_layers=2,
        vision_heads=2,
        vision_mlp=64,
        lm_hidden=64,
        lm_layers_total=4,
        lm_layers_used=2,
        lm_heads=4,
        lm_kv_heads=2,
        lm_head_dim=16,
        lm_mlp=128,
        vocab_size=256,
        expert_hidden=48,
        expert_mlp=128,
        prompt_tokens=8,
        chunk=4,
        num_steps=3,
        state_dim=6,
        action_dim=6,
        max_state_dim=8,
        max_action_dim=8,
    ),
    "small": SmolVLAPreset(
        image_px=128,
        patch_px=16,
        scale_factor=2,
        cameras=2,
        vision_hidden=192,
        vision_layers=4,
        vision_heads=3,
        vision_mlp=768,
        lm_hidden=384,
        lm_layers_total=8,
        lm_layers_used=4,
        lm_heads=6,
        lm_kv_heads=2,
        lm_head_dim=64,
        lm_mlp=1024,
        vocab_size=4096,
        expert_hidden=288,
        expert_mlp=768,
        prompt_tokens=16,
        chunk=50,
        num_steps=10,
        state_dim=6,
        action_dim=6,
    ),
    # Published SmolVLA (lerobot/smolvla_base) on SmolVLM2-500M: SigLIP-B/16 at 512 px (12 layers, 768, MLP 3072,
    # 12 heads; 32x32 = 1024 patches), pixel shuffle x4 -> 64 tokens per image, connector 12288 -> 960; SmolLM2-360M
    # text model (32 layers of hidden 960, MLP 2560, 15 heads, 5 KV heads, head dim 64, vocab 49280) of which the
    # first 16 run; expert width 0.75 x 960 = 720, MLP 2048 (lerobot: 8/3 x 720 rounded up to a multiple of 256),
    # 16 layers; 3 cameras, 48 language tokens, 1 state token (241-token prefix); chunk 50, 10 steps, SO-100 6 DoF.
    "full": SmolVLAPreset(
        image_px=512,
        patch_px=16,
        scale_factor=4,
        cameras=3,
        vision_hidden=768,
        vision_layers=12,
        vision_heads=12,
        vision_mlp=3072,
        lm_hidden=960,
        lm_layers_total=32,
        lm_layers_used=16,
        lm_heads=15,
        lm_kv_heads=5,
        lm_head_dim=64,
        lm_mlp=2560,
        vocab_size=49280,
        expert_hidden=720,
        expert_mlp=2048,
        prompt_tokens=48,
        chunk=50,
        num_steps=10,
        state_dim=6,
        action_dim=6,
    ),
}

COGACT_PRESETS: dict[str, CogACTPreset] = {
    "tiny": CogACTPreset(vlm=OPENVLA_PRESETS["tiny"], dit_hidden=32, dit_layers=2, dit_heads=2, chunk=4, ddim_steps=3),
    "small": CogACTPreset(vlm=OPENVLA_PRESETS["small"], dit_hidden=192, dit_layers=4, dit_heads=3),
    # Published CogACT-Base (microsoft/CogACT, DiT_B): OpenVLA-7B's Prismatic VLM (the shapes of openvla/full) +
    # DiT-B (12 blocks, hidden 768, 12 heads, MLP ratio 4) over [cognition + timestep token, 16 actions]
    # (future_action_window_size=15), 7 DoF, DDIM 10 steps of a 100-step squaredcos_cap_v2 schedule, CFG 1.5.
    "full": CogACTPreset(vlm=OPENVLA_PRESETS["full"], dit_hidden=768, dit_layers=12, dit_heads=12),
}

PRESETS: dict[str, dict[str, OpenVLAPreset | Pi0Preset | SmolVLAPreset | CogACTPreset]] = {
    "openvla": OPENVLA_PRESETS,
    "pi0": PI0_PRESETS,
    "smolvla": SMOLVLA_PRESETS,
    "cogact": COGACT_PRESETS,
}


OFT_SUFFIX = "-oft"
"""``openvla`` preset ``<name>-oft<K>``: preset ``<name>`` with OpenVLA-OFT's parallel-decoding head of K actions."""
MAX_ACTION_CHUNK = 64
_OFT_NAME = re.compile(rf"^(?P<base>.+){re.escape(OFT_SUFFIX)}(?P<k>[0-9]+)$")


def base_preset(preset: str) -> str:
    """The named preset a preset name derives from (``full-oft8`` -> ``full``; a named preset is its own base)."""
    m = _OFT_NAME.match(preset)
    return m.group("base") if m else preset


def full_preset(preset: str) -> str:
    """The published-size preset with the same action head as ``preset``: ``full``, or ``full-oft<K>`` for an
    OpenVLA-OFT variant (the roofline reference of a scaled-down model, e.g. ``agents.emulated_pair``)."""
    m = _OFT_NAME.match(preset)
    return f"full{OFT_SUFFIX}{m.group('k')}" if m else "full"


def preset_config(family: str, preset: str) -> OpenVLAPreset | Pi0Preset | SmolVLAPreset | CogACTPreset:
    """The config of ``family/preset``: a named preset of ``PRESETS``, or for ``openvla`` ``<named>-oft<K>``
    (2 <= K <= ``MAX_ACTION_CHUNK``), the named preset with ``action_chunk=K``. ValueError names the valid ones."""
    if family not in PRESETS:
        raise ValueError(f"unknown model family {family!r}; valid families: {', '.join(PRESETS)}")
    named = PRESETS[family]
    if preset in named:
        return named[preset]
    m = _OFT_NAME.match(preset) if isinstance(preset, str) else None
    if family == "openvla" and m and m.group("base") in OPENVLA_PRESETS:
        k = int(m.group("k"))
        if not 2 <= k <= MAX_ACTION_CHUNK:
            raise ValueError(f"preset {preset!r}: the OFT action chunk must be in 2..{MAX_ACTION_CHUNK}, got {k}")
        return replace(OPENVLA_PRESETS[m.group("base")], action_chunk=k)
    oft = f" (and <preset>{OFT_SUFFIX}<K>, e.g. tiny{OFT_SUFFIX}8: OpenVLA-OFT's parallel-decoding head)"
    raise ValueError(
        f"unknown preset {preset!r} for {family}; valid presets: {', '.join(named)}"
        + (oft if family == "openvla" else "")
    )
