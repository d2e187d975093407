"""Roofline cost model (VLA-Perf's method): per-block time on a catalogue device from the block's shapes alone.

Each ``BlockSpec`` pass is broken into operators (patch embedding, QKV projection, attention scores, attention
output, output projection, MLP up/gate and down, linear layers, embedding look-up, norm). Per operator::

    FLOPs  = 2 x multiply-accumulates
    bytes  = weights (read once per pass) + input activations read + output activations written
             (+ K/V of the attended context read)
    time   = max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency))

Attention accounting (``attention=``), ``ATTENTIONS``:

* ``"onchip"`` (default, what GenZ -- VLA-Perf's engine -- does): two operators, ``attn_scores`` (QK^T: reads Q and
  K) and ``attn_values`` (PV: reads V, writes the output); the score matrix stays on chip (flash attention) and
  costs no memory traffic. Each operator takes its own max(compute, memory).
* ``"materialised"``: the same two operators, but the score matrix (heads x tokens x context) is written by the
  first and read back by the second (an unfused kernel).
* ``"fused"``: one operator for QK^T and PV together (one max over both), scores on chip.
  ``fused_attention=True`` (older keyword) selects it.

``genz_parallel_decode=True`` prices a ``parallel_decode`` pass (the flow-matching expert) as GenZ's
``mha_flash_attention_parallel_decode`` does, for reproducing VLA-Perf's tables: the projections read only their
weights (activations on chip), the chunk attends to the context (``context_tokens - tokens``) and then to itself
through a *second* QKV projection (its weights read again), and the MLP reads and writes its activations. The
second QKV projection is an artifact of GenZ (pi0's expert has one); the default keeps one projection.

and a block's time is the sum over its operators and passes (x ``repeat``: decode steps, denoising steps).
``granularity="pass"`` applies the max once per pass instead (coarser, never slower). ``efficiency=1.0`` is
VLA-Perf's ideal hardware. Norms, softmax, activations and residual adds are not charged FLOPs (negligible).

Memory fit: weights (``param_count`` x dtype bytes) + KV cache (every transformer layer keeps K and V for its
largest context) must fit device memory; :class:`InfeasibleError` otherwise (or the ``fits_memory`` flag).
Network: :func:`transfer_ms` = one-way latency + bytes x (1 + protocol overhead) / rate (VLA-Perf: 5% overhead).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from executor.blocks import BlockSpec, ComputePass
from executor.catalog import Hardware, NetworkLink, hardware as lookup_hardware, network as lookup_network
from executor.profile import CutSpec, Profile
from traces.units import transfer_ms as _serialisation_ms

log = logging.getLogger(__name__)

Bound = Literal["compute", "memory"]
Granularity = Literal["operator", "pass"]
Attention = Literal["onchip", "materialised", "fused"]
ATTENTIONS: tuple[str, ...] = ("onchip", "materialised", "fused")
DEFAULT_ATTENTION: Attention = "onchip"  # GenZ's accounting (VLA-Perf): flash attention, scores never leave the chip

#: dtype -> (bytes per element, multiplier on the catalogue's bf16 peak). float32 assumes TF32 tensor cores
#: (half the bf16 rate on Ampere/Hopper); int8 assumes twice the bf16 rate.
DTYPES: dict[str, tuple[int, float]] = {
    "bfloat16": (2, 1.0),
    "float16": (2, 1.0),
    "float32": (4, 0.5),
    "int8": (1, 2.0),
}
PROTOCOL_OVERHEAD = 0.05  # VLA-Perf: 5% protocol overhead on every transfer


class InfeasibleError(ValueError):
    """The model (weights + KV cache) does not fit the device memory."""


@dataclass(frozen=True)
class OpCost:
    """One operator of one pass (per single execution, not multiplied by ``repeat``)."""

    name: str
    flops: float
    bytes: float


@dataclass(frozen=True)
class PassCost:
    """Cost of one ComputePass of a block; ``time_s`` etc. include ``repeat``."""

    phase: str
    tokens: int
    context_tokens: int
    repeat: int
    flops: float
    bytes: float
    time_s: float
    compute_s: float  # time of the operators that are compute-bound
    memory_s: float  # time of the operators that are memory-bound
    ops: tuple[OpCost, ...] = ()

    @property
    def bound(self) -> Bound:
        return "compute" if self.compute_s > self.memory_s else "memory"


class _BoundMixin:
    """Roofline verdict shared by a block's and a group's cost (fields flops, bytes, compute_ms, memory_ms)."""

    flops: float
    bytes: float
    compute_ms: float
    memory_ms: float

    @property
    def bound(self) -> Bound:
        """ "compute" when compute-bound operators take most of the time, else "memory"."""
        return "compute" if self.compute_ms > self.memory_ms else "memory"

    @property
    def intensity_flops_per_byte(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass(frozen=True)
class BlockCost(_BoundMixin):
    """Roofline cost of one block on one device (all passes)."""

    name: str
    kind: str
    flops: float
    bytes: float
    time_ms: float
    compute_ms: float  # share of time_ms spent in compute-bound operators
    memory_ms: float  # share spent in memory-bound operators
    weight_bytes: int  # param_count x dtype bytes (memory footprint)
    kv_cache_bytes: int
    passes: tuple[PassCost, ...]


@dataclass(frozen=True)
class RooflineResult:
    """All blocks of a model on one device."""

    hardware: Hardware
    dtype: str
    efficiency: float
    blocks: tuple[BlockCost, ...]
    weight_bytes: int
    kv_cache_bytes: int
    fits_memory: bool

    @property
    def total_ms(self) -> float:
        return float(sum(b.time_ms for b in self.blocks))

    @property
    def memory_required_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes

    def group(self, key: Callable[[BlockCost], str]) -> dict[str, GroupCost]:
        """Sum blocks into components (e.g. vision / VLM / action expert) by ``key(block)``, in chain order."""
        groups: dict[str, list[BlockCost]] = {}
        for b in self.blocks:
            groups.setdefault(key(b), []).append(b)
        return {k: GroupCost.of(k, v) for k, v in groups.items()}


@dataclass(frozen=True)
class GroupCost(_BoundMixin):
    """Sum of several blocks (a model component)."""

    name: str
    flops: float
    bytes: float
    time_ms: float
    compute_ms: float
    memory_ms: float
    num_blocks: int

    @classmethod
    def of(cls, name: str, blocks: Sequence[BlockCost]) -> GroupCost:
        return cls(
            name=name,
            flops=sum(b.flops for b in blocks),
            bytes=sum(b.bytes for b in blocks),
            time_ms=sum(b.time_ms for b in blocks),
            compute_ms=sum(b.compute_ms for b in blocks),
            memory_ms=sum(b.memory_ms for b in blocks),
            num_blocks=len(blocks),
        )


def breakdown(result: RooflineResult, component: Callable[[str, str], str]) -> dict[str, GroupCost]:
    """Sum pass costs into components by ``component(block_name, phase)`` (e.g. vision / VLM prefill / decode /
    action expert): a block with prefill and decode passes contributes to both. Components in chain order."""
    acc: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for b in result.blocks:
        for p in b.passes:
            acc.setdefault(component(b.name, p.phase), []).append(
                (p.flops, p.bytes, p.time_s * 1e3, p.compute_s * 1e3, p.memory_s * 1e3)
            )
    return {
        k: GroupCost(k, *(sum(r[i] for r in rows) for i in range(5)), num_blocks=len(rows)) for k, rows in acc.items()
    }


# ------------------------------------------------------------------------------------------------ operators


def _dtype_info(dtype: str) -> tuple[int, float]:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _linear(name: str, tokens: int, d_in: int, d_out: int, b: int) -> OpCost:
    """tokens x d_in @ d_in x d_out: weights + input + output."""
    return OpCost(name, 2.0 * tokens * d_in * d_out, float(b * (d_in * d_out + tokens * d_in + tokens * d_out)))


def _require(spec: BlockSpec, *names: str) -> None:
    missing = [n for n in names if getattr(spec, n) <= 0]
    if missing:
        raise ValueError(f"block {spec.name!r} ({spec.kind}) needs positive {', '.join(missing)}")


def resolve_attention(attention: str | None = None, fused_attention: bool = False) -> Attention:
    """The attention accounting to use: ``attention`` if given, "fused" for ``fused_attention=True``, else the
    default ("onchip"). ValueError names an unknown accounting."""
    if attention is None:
        return "fused" if fused_attention else DEFAULT_ATTENTION
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention accounting {attention!r}; expected one of {ATTENTIONS}")
    if fused_attention and attention != "fused":
        raise ValueError(f"fused_attention=True contradicts attention={attention!r}")
    return attention  # type: ignore[return-value]


def _weights_only(name: str, tokens: int, d_in: int, d_out: int, b: int) -> OpCost:
    """A projection whose activations stay on chip (GenZ's AC_onchip residency): only the weights are read."""
    return OpCost(name, 2.0 * tokens * d_in * d_out, float(b * d_in * d_out))


def genz_parallel_decode_ops(spec: BlockSpec, p: ComputePass, b: int) -> list[OpCost]:
    """One transformer layer of a parallel-decode pass as GenZ prices it (see the module docstring)."""
    h, m, hd = spec.hidden, spec.mlp, spec.head_dim
    q_dim = spec.heads * hd
    kv_dim = (spec.kv_heads or spec.heads) * hd
    t = p.tokens
    prefix = max(p.context_tokens - t, 0)
    qkv = q_dim + 2 * kv_dim
    ops = [_weights_only("qkv_proj", t, h, qkv, b)]
    if prefix:
        f = 2.0 * t * prefix * q_dim
        ops += [
            OpCost("attn_scores_prefix", f, float(b * prefix * kv_dim)),
            OpCost("attn_values_prefix", f, float(b * prefix * kv_dim)),
        ]
    if t > 1:
        f = 2.0 * t * t * q_dim
        ops += [
            _weights_only("qkv_proj_self", t, h, qkv, b),
            OpCost("attn_scores_self", f, float(b * t * kv_dim)),
            OpCost("attn_values_self", f, float(b * t * kv_dim)),
        ]
    ops.append(_weights_only("o_proj", t, q_dim, h, b))
    up = 2 * m if spec.gated_mlp else m
    ops += [_linear("mlp_up", t, h, up, b), _linear("mlp_down", t, m, h, b)]
    return ops


def transformer_layer_ops(
    spec: BlockSpec,
    p: ComputePass,
    b: int,
    fused_attention: bool = False,
    *,
    attention: str | None = None,
    genz_parallel_decode: bool = False,
) -> list[OpCost]:
    """Operators of one transformer layer for one pass (``p.tokens`` queries over ``p.context_tokens`` keys)."""
    _require(spec, "hidden", "mlp", "heads", "head_dim")
    mode = resolve_attention(attention, fused_attention)
    if genz_parallel_decode and p.phase == "parallel_decode":
        return genz_parallel_decode_ops(spec, p, b)
    h, m, hd = spec.hidden, spec.mlp, spec.head_dim
    q_dim = spec.heads * hd
    kv_heads = spec.kv_heads or spec.heads
    kv_dim = kv_heads * hd
    t, c = p.tokens, p.context_tokens
    kv_read = max(t, c)  # keys/values in memory: the context, at least the new tokens' own (batched images)
    ops = [
        _linear("qkv_proj", t, h, q_dim + 2 * kv_dim, b),
    ]
    score_flops = 2.0 * t * c * q_dim  # QK^T, per head t x c x head_dim
    if mode == "fused":
        ops.append(OpCost("attention", 2 * score_flops, float(b * (t * q_dim + 2 * kv_read * kv_dim + t * q_dim))))
    else:
        scores = spec.heads * t * c if mode == "materialised" else 0  # "onchip": the scores never reach DRAM
        ops.append(OpCost("attn_scores", score_flops, float(b * (t * q_dim + kv_read * kv_dim + scores))))
        ops.append(OpCost("attn_values", score_flops, float(b * (scores + kv_read * kv_dim + t * q_dim))))
    ops.append(_linear("o_proj", t, q_dim, h, b))
    up = 2 * m if spec.gated_mlp else m
    ops.append(_linear("mlp_up", t, h, up, b))
    ops.append(_linear("mlp_down", t, m, h, b))
    return ops


def pass_ops(
    spec: BlockSpec,
    p: ComputePass,
    dtype_bytes: int,
    fused_attention: bool = False,
    *,
    attention: str | None = None,
    genz_parallel_decode: bool = False,
) -> list[OpCost]:
    """Operators of one pass of any block kind."""
    b = dtype_bytes
    attention = resolve_attention(attention, fused_attention)
    t = p.tokens
    if t < 0 or p.context_tokens < 0 or p.repeat < 0:
        raise ValueError(f"block {spec.name!r}: negative tokens/context/repeat in {p}")
    if spec.kind == "transformer_layer":
        return transformer_layer_ops(spec, p, b, attention=attention, genz_parallel_decode=genz_parallel_decode)
    if spec.kind == "expert":
        if spec.layers < 1:
            raise ValueError(f"block {spec.name!r}: expert needs layers >= 1, got {spec.layers}")
        return [
            OpCost(f"layer{i}.{op.name}", op.flops, op.bytes)
            for i in range(spec.layers)
            for op in transformer_layer_ops(spec, p, b, attention=attention, genz_parallel_decode=genz_parallel_decode)
        ]
    if spec.kind == "patch_embed":
        _require(spec, "in_dim")
        out = spec.hidden or spec.out_dim
        if out <= 0:
            raise ValueError(f"block {spec.name!r} (patch_embed) needs hidden or out_dim > 0")
        return [_linear("patch_embed", t, spec.in_dim, out, b)]
    if spec.kind == "linear":
        _require(spec, "in_dim", "out_dim")
        if spec.mlp > 0:  # two-layer MLP in -> mlp -> out
            return [_linear("fc1", t, spec.in_dim, spec.mlp, b), _linear("fc2", t, spec.mlp, spec.out_dim, b)]
        return [_linear("linear", t, spec.in_dim, spec.out_dim, b)]
    if spec.kind == "embedding":
        width = spec.hidden or spec.out_dim
        return [OpCost("embedding", 0.0, float(b * 2 * t * width))]  # rows read + written
    if spec.kind == "norm":
        width = spec.hidden or spec.in_dim
        return [OpCost("norm", 5.0 * t * width, float(b * (2 * t * width + width)))]
    raise ValueError(f"block {spec.name!r}: unknown kind {spec.kind!r}")


def _weight_elements(spec: BlockSpec) -> int:
    """Parameter count derived from shapes (used when ``param_count`` is 0)."""
    if spec.kind in ("transformer_layer", "expert"):
        q_dim = spec.heads * spec.head_dim
        kv_dim = (spec.kv_heads or spec.heads) * spec.head_dim
        up = 2 * spec.mlp if spec.gated_mlp else spec.mlp
        per_layer = spec.hidden * (q_dim + 2 * kv_dim) + q_dim * spec.hidden + spec.hidden * up + spec.mlp * spec.hidden
        return per_layer * (spec.layers if spec.kind == "expert" else 1)
    if spec.kind == "patch_embed":
        return spec.in_dim * (spec.hidden or spec.out_dim)
    if spec.kind == "linear":
        return spec.in_dim * spec.mlp + spec.mlp * spec.out_dim if spec.mlp else spec.in_dim * spec.out_dim
    return 0


def kv_cache_bytes(spec: BlockSpec, dtype_bytes: int) -> int:
    """K and V kept by a transformer block for its largest context (all layers)."""
    if spec.kind not in ("transformer_layer", "expert"):
        return 0
    context = max(max(p.context_tokens, p.tokens) for p in spec.passes)
    layers = spec.layers if spec.kind == "expert" else 1
    return int(2 * (spec.kv_heads or spec.heads) * spec.head_dim * context * layers * dtype_bytes)


# ---------------------------------------------------------------------------------------------------- costing


def _check_efficiency(efficiency: float) -> float:
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    return float(efficiency)


def block_cost(
    spec: BlockSpec,
    hardware: Hardware | str,
    dtype: str = "bfloat16",
    *,
    efficiency: float = 1.0,
    granularity: Granularity = "operator",
    fused_attention: bool = False,
    attention: str | None = None,
    genz_parallel_decode: bool = False,
) -> BlockCost:
    """Roofline time of one block on ``hardware`` (all passes, repeats included)."""
    hw = lookup_hardware(hardware)
    attention = resolve_attention(attention, fused_attention)
    eff = _check_efficiency(efficiency)
    nbytes, peak_mult = _dtype_info(dtype)
    if granularity not in ("operator", "pass"):
        raise ValueError(f"granularity must be 'operator' or 'pass', got {granularity!r}")
    peak = hw.peak_flops * peak_mult * eff
    bw = hw.mem_bandwidth_bytes_per_s * eff
    passes = []
    for p in spec.passes:
        ops = pass_ops(spec, p, nbytes, attention=attention, genz_parallel_decode=genz_parallel_decode)
        flops = sum(o.flops for o in ops)
        byts = sum(o.bytes for o in ops)
        units = ops if granularity == "operator" else [OpCost("pass", flops, byts)]
        comp = mem = 0.0
        for o in units:
            tc, tm = o.flops / peak, o.bytes / bw
            if tc > tm:
                comp += tc
            else:
                mem += tm
        r = p.repeat
        passes.append(
            PassCost(
                p.phase,
                p.tokens,
                p.context_tokens,
                r,
                flops * r,
                byts * r,
                (comp + mem) * r,
                comp * r,
                mem * r,
                tuple(ops),
            )
        )
    params = spec.param_count or _weight_elements(spec)
    return BlockCost(
        name=spec.name,
        kind=spec.kind,
        flops=sum(p.flops for p in passes),
        bytes=sum(p.bytes for p in passes),
        time_ms=sum(p.time_s for p in passes) * 1e3,
        compute_ms=sum(p.compute_s for p in passes) * 1e3,
        memory_ms=sum(p.memory_s for p in passes) * 1e3,
        weight_bytes=int(params * nbytes),
        kv_cache_bytes=kv_cache_bytes(spec, nbytes),
        passes=tuple(passes),
    )


def estimate(
    specs: Sequence[BlockSpec],
    hardware: Hardware | str,
    dtype: str = "bfloat16",
    *,
    efficiency: float = 1.0,
    granularity: Granularity = "operator",
    fused_attention: bool = False,
    attention: str | None = None,
    genz_parallel_decode: bool = False,
) -> RooflineResult:
    """Roofline cost of every block of a chain on one device, with the memory-fit check."""
    if not specs:
        raise ValueError("no block specs given")
    hw = lookup_hardware(hardware)
    attention = resolve_attention(attention, fused_attention)
    blocks = tuple(
        block_cost(
            s,
            hw,
            dtype,
            efficiency=efficiency,
            granularity=granularity,
            attention=attention,
            genz_parallel_decode=genz_parallel_decode,
        )
        for s in specs
    )
    weights = sum(b.weight_bytes for b in blocks)
    kv = sum(b.kv_cache_bytes for b in blocks)
    return RooflineResult(hw, dtype, efficiency, blocks, weights, kv, weights + kv <= hw.memory_bytes)


def transfer_ms(
    nbytes: float,
    link: NetworkLink | str,
    direction: Literal["up", "down"] = "up",
    *,
    protocol_overhead: float = PROTOCOL_OVERHEAD,
) -> float:
    """One transfer over a catalogue link: one-way latency + bytes x (1 + overhead) / rate (ms)."""
    net = lookup_network(link)
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if nbytes < 0 or protocol_overhead < 0:
        raise ValueError(f"bytes and protocol overhead must be >= 0, got {nbytes}, {protocol_overhead}")
    rate = net.up_mbps if direction == "up" else net.down_mbps
    return net.one_way_ms + _serialisation_ms(nbytes * (1.0 + protocol_overhead), rate)


# ---------------------------------------------------------------------------------------------------- Profiles


def roofline_profile(
    specs: Sequence[BlockSpec],
    cuts: Sequence[CutSpec],
    hardware: Hardware | str,
    dtype: str = "bfloat16",
    *,
    model_id: str = "model",
    preset: str = "custom",
    wire_dtype: str = "float32",
    efficiency: float = 1.0,
    granularity: Granularity = "operator",
    fused_attention: bool = False,
    check_memory: bool = True,
    notes: Mapping[str, Any] | None = None,
    attention: str | None = None,
) -> Profile:
    """A predicted ``Profile`` (source="roofline") of a block chain on a catalogue device.

    Raises InfeasibleError when weights + KV cache exceed the device memory, unless ``check_memory=False``
    (the Profile's notes then carry ``fits_memory: false``).
    """
    attention = resolve_attention(attention, fused_attention)
    result = estimate(specs, hardware, dtype, efficiency=efficiency, granularity=granularity, attention=attention)
    hw = result.hardware
    if check_memory and not result.fits_memory:
        raise InfeasibleError(
            f"{model_id}/{preset} needs {result.memory_required_bytes / 1e9:.2f} GB (weights "
            f"{result.weight_bytes / 1e9:.2f} GB + KV cache {result.kv_cache_bytes / 1e9:.2f} GB) in {dtype}, "
            f"{hw.name} has {hw.memory_bytes / 1e9:.0f} GB"
        )
    all_notes: dict[str, Any] = {
        "hardware": hw.name,
        "efficiency": efficiency,
        "granularity": granularity,
        "fused_attention": attention == "fused",
        "attention": attention,
        "fits_memory": result.fits_memory,
        "memory_required_bytes": result.memory_required_bytes,
        "kv_cache_bytes": result.kv_cache_bytes,
        "block_bound": [b.bound for b in result.blocks],
        "block_flops": [b.flops for b in result.blocks],
        "block_bytes": [b.bytes for b in result.blocks],
    }
    all_notes.update(notes or {})
    return Profile(
        model_id=model_id,
        preset=preset,
        device=hw.name,
        dtype=dtype,
        source="roofline",
        block_names=tuple(s.name for s in specs),
        block_ms=tuple(b.time_ms for b in result.blocks),
        cuts=tuple(cuts),
        block_param_bytes=tuple(b.weight_bytes for b in result.blocks),
        peak_memory_bytes=result.memory_required_bytes,
        device_memory_bytes=hw.memory_bytes,
        wire_dtype=wire_dtype,
        notes=all_notes,
    )


def roofline_profile_for(
    family: str,
    preset: str,
    hardware: Hardware | str,
    *,
    dtype: str = "bfloat16",
    wire_dtype: str = "bfloat16",
    efficiency: float = 1.0,
    granularity: Granularity = "operator",
    fused_attention: bool = False,
    check_memory: bool = True,
    attention: str | None = None,
) -> Profile:
    """Roofline Profile of a model preset, built on the meta device via ``executor.models.build_model``."""
    from executor.models import build_model  # lazy: needs torch/transformers

    model = build_model(family, preset, device="meta")
    return roofline_profile(
        model.block_specs(),
        model.cut_specs(wire_dtype=wire_dtype),
        hardware,
        dtype,
        model_id=family,
        preset=preset,
        wire_dtype=wire_dtype,
        efficiency=efficiency,
        granularity=granularity,
        fused_attention=fused_attention,
        check_memory=check_memory,
        attention=attention,
    )


# -- batched cloud execution (a fleet's requests at one cut run as one batch) ------------------------------------------
_PER_REQUEST_OPS = ("attn_scores", "attn_values", "attention")  # each request attends over its own context/KV


def batched_block_ms(
    spec: BlockSpec,
    hardware: Hardware | str,
    batch: int,
    dtype: str = "bfloat16",
    *,
    efficiency: float = 1.0,
    fused_attention: bool = False,
) -> float:
    """Roofline time of one block running ``batch`` independent requests at once (operator granularity).

    Weight-bearing operators see ``batch`` times the tokens with the weights read once (exactly ``pass_ops`` at
    ``batch * tokens``); attention is per request (its own context and KV cache), so ``batch`` times one request's.
    This is why a batch of 8 costs little more than one on memory-bound (decode, small-token) blocks and about 8x on
    compute-bound ones. ``batch=1`` equals ``block_cost(...).time_ms``.
    """
    from dataclasses import replace

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    hw = lookup_hardware(hardware)
    nbytes, peak_mult = _dtype_info(dtype)
    eff = _check_efficiency(efficiency)
    peak, bw = hw.peak_flops * peak_mult * eff, hw.mem_bandwidth_bytes_per_s * eff
    total = 0.0
    for p in spec.passes:
        single = pass_ops(spec, p, nbytes, fused_attention)
        wide = pass_ops(spec, replace(p, tokens=p.tokens * batch), nbytes, fused_attention)
        t = 0.0
        for one, many in zip(single, wide):
            if one.name.rsplit(".", 1)[-1] in _PER_REQUEST_OPS:
                flops, byts = one.flops * batch, one.bytes * batch
            else:
                flops, byts = many.flops, many.bytes
            t += max(flops / peak, byts / bw)
        total += t * p.repeat
    return total * 1e3


def batched_cloud_ms(
    specs: Sequence[BlockSpec],
    hardware: Hardware | str,
    batch: int,
    cut: int = 0,
    dtype: str = "bfloat16",
    *,
    efficiency: float = 1.0,
    fused_attention: bool = False,
) -> float:
    """Roofline time of the cloud half (blocks ``cut`` .. end) for a batch of ``batch`` requests at that cut; the
    per-request share is this divided by ``batch``."""
    if not 0 <= cut <= len(specs):
        raise ValueError(f"cut must be in 0..{len(specs)}, got {cut}")
    return sum(
        batched_block_ms(s, hardware, batch, dtype, efficiency=efficiency, fused_attention=fused_attention)
        for s in specs[cut:]
    )


@functools.lru_cache(maxsize=32)
def batch_cost_ratios(
    family: str, preset: str, hardware: str, max_batch: int, cut: int = 0, dtype: str = "bfloat16"
) -> tuple[float, ...]:
    """``batched_cloud_ms`` of a batch of b = 1 .. ``max_batch`` requests at ``cut`` over that of one request (the
    first ratio is 1.0): how much longer a batching server needs for b robots than for one. Builds the model on the
    meta device (imports torch/transformers; cached)."""
    from executor.models import build_model  # lazy: needs torch/transformers

    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    specs = build_model(family, preset, device="meta").block_specs()
    one = batched_cloud_ms(specs, hardware, 1, cut, dtype)
    if not one > 0:
        raise ValueError(f"cut {cut} of {family}/{preset} runs nothing in the cloud; no batch to price")
    return tuple(batched_cloud_ms(specs, hardware, b, cut, dtype) / one for b in range(1, max_batch + 1))


__all__ = [
    "ATTENTIONS",
    "DEFAULT_ATTENTION",
    "resolve_attention",
    "DTYPES",
    "genz_parallel_decode_ops",
    "PROTOCOL_OVERHEAD",
    "BlockCost",
    "GroupCost",
    "InfeasibleError",
    "OpCost",
    "PassCost",
    "RooflineResult",
    "block_cost",
    "breakdown",
    "estimate",
    "kv_cache_bytes",
    "pass_ops",
    "roofline_profile",
    "roofline_profile_for",
    "transfer_ms",
    "transformer_layer_ops",
]
