"""Structural description of one block of a split model, the input of the roofline cost model.

A block is what the chain cuts between (a vision layer, the projector, an LLM layer, the action expert ...).
Its work is a list of passes: a prefill is one pass over many tokens, autoregressive decode is one pass per
generated token (one token each, growing context), a flow-matching expert is one pass per denoising step.
FLOPs and bytes are derived from these shapes by ``executor.roofline``; nothing is hard-coded per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal[
    "patch_embed",  # conv/linear patch embedding: in_dim -> hidden over `tokens`
    "transformer_layer",  # attention + MLP layer
    "linear",  # dense projection(s): in_dim -> out_dim (MLP projector, lm_head, action in/out proj)
    "embedding",  # table lookup: no FLOPs worth counting, reads tokens*hidden
    "norm",  # final norm / pooling
    "expert",  # a whole action expert (transformer stack) repeated per denoising step
]
Phase = Literal["prefill", "decode", "parallel_decode"]


@dataclass(frozen=True)
class ComputePass:
    """One pass of a block: ``tokens`` new tokens attending to ``context_tokens`` tokens (incl. themselves)."""

    tokens: int
    context_tokens: int
    phase: Phase = "prefill"
    repeat: int = 1  # identical passes (e.g. denoising steps)


@dataclass(frozen=True)
class BlockSpec:
    """Shapes of one block, enough to count FLOPs and memory traffic analytically.

    For ``transformer_layer``: hidden, mlp (intermediate), heads, kv_heads, head_dim, gated_mlp.
    For ``linear``: in_dim, out_dim (a 2-layer MLP projector gives two BlockSpecs or uses mlp as the middle).
    For ``expert``: layers is the number of transformer layers inside, the other fields describe one layer.
    ``param_count`` is the exact count from the built module (meta device for ``full``).
    """

    name: str
    kind: BlockKind
    passes: tuple[ComputePass, ...]
    hidden: int = 0
    mlp: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    gated_mlp: bool = False
    in_dim: int = 0
    out_dim: int = 0
    layers: int = 1
    param_count: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.passes:
            raise ValueError(f"block {self.name!r} has no compute passes")
        if self.param_count < 0:
            raise ValueError(f"block {self.name!r}: param_count must be >= 0, got {self.param_count}")
