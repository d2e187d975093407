"""Deployment modes of ``ecc perf``: where each part of a VLA runs, what crosses the network, and the resulting
latency breakdown, control frequency and memory fit (VLA-Perf's system model on our roofline).

Placements (``PLACEMENTS``):

* ``on-device``: the robot's computer runs everything; no network.
* ``edge-server``: the observation goes up (JPEG, ``jpeg_ratio`` of the raw bytes), a server runs the whole model,
  the actions come down.
* ``cloud``: like edge-server over two hops, the local link then a WAN hop, each crossed both ways.
* ``split`` (device-server): the server runs vision + VLM, the VLM's KV cache comes down, the device runs the
  action expert (flow-matching models only). With ``wan`` given the server sits behind a WAN hop too.
* ``cut``: every block cut of the executor's split model (``executor.costs.cut_table`` on roofline Profiles).

Executions (``EXECUTIONS``), on top of a placement:

* ``sync``: one inference at a time; control frequency = 1 / latency.
* ``async``: inference, upload and download are pipelined: frequency = min(busiest processor, bottleneck hop),
  where a hop's limit is 1 / (upload + download serialisation time) and one-way latencies are hidden. The latency
  of one inference does not change.
* ``dual-system``: System 2 (the VLM prefill) runs at most ``s2_cap_hz`` and takes that share of its processor;
  System 1 (vision + action expert + network round trip) reuses the last VLM context:
  frequency = max(sync, (1 - cap x S2) / S1) (VLA-Perf's "System 1+2" model, floored at the synchronous rate:
  when System 2 at its cap leaves System 1 less than the synchronous loop would get, the robot runs the
  synchronous loop instead). A cap that System 2 cannot meet (cap x S2 >= 1) leaves the synchronous rate.

Accounting (``ACCOUNTINGS``): ``"complete"`` (default) prices the expert with one QKV projection per layer;
``"paper"`` reproduces VLA-Perf's GenZ pricing: the parallel-decode pass as ``executor.roofline``'s
``genz_parallel_decode`` (a second QKV projection for the chunk's self-attention, projection activations on chip),
GenZ's binary units, which read a datasheet's "GB/s" and "GB" as GiB (2**30 B): every memory bandwidth and
capacity is 7.4% larger than the datasheet's decimal figure (:func:`paper_hardware`), and an expert that denoises
the ``chunk`` action tokens only (no state token).
Attention is priced with the scores on chip in both (GenZ's accounting); ``attention=`` selects another.

Every transfer costs one-way latency + bytes x (1 + protocol overhead) / rate (``executor.roofline.transfer_ms``).
A processor that cannot hold its blocks' weights + KV cache makes the combination infeasible: the result then
carries the reason and no latency.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from executor import catalog, roofline
from executor.blocks import BlockSpec
from executor.catalog import Hardware, NetworkLink
from executor.perf.configs import ConfigError, VLAConfig, block_specs, component_of, phase_label

log = logging.getLogger(__name__)

PLACEMENTS: tuple[str, ...] = ("on-device", "edge-server", "cloud", "split", "cut")
ACCOUNTINGS: tuple[str, ...] = ("complete", "paper")
EXECUTIONS: tuple[str, ...] = ("sync", "async", "dual-system")
#: CLI mode names -> (placement, execution); "async" and "dual-system" take their placement from ``base``.
MODES: tuple[str, ...] = ("on-device", "edge-server", "cloud", "split", "cut", "async", "dual-system")
_MODE_ALIASES = {
    "device": "on-device",
    "local": "on-device",
    "ondevice": "on-device",
    "server": "edge-server",
    "edge": "edge-server",
    "edgeserver": "edge-server",
    "device-server": "split",
    "deviceserver": "split",
    "dual": "dual-system",
    "s1s2": "dual-system",
    "cuts": "cut",
}
LABELS: tuple[str, ...] = ("vision", "llm_prefill", "decode", "action")


class PerfInputError(ValueError):
    """An impossible parameter for the what-if model (zero bandwidth, negative steps, unknown names ...)."""


def mode_names() -> list[str]:
    return list(MODES)


def resolve_mode(mode: str, base: str | None = None) -> tuple[str, str]:
    """(placement, execution) of a CLI mode name; PerfInputError lists the valid modes."""
    key = str(mode).strip().lower().replace("_", "-")
    key = _MODE_ALIASES.get(key.replace("-", ""), _MODE_ALIASES.get(key, key))
    if key not in MODES:
        raise PerfInputError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if key == "async":
        return resolve_mode(base or "edge-server")[0], "async"
    if key == "dual-system":
        return resolve_mode(base or "on-device")[0], "dual-system"
    return key, "sync"


def custom_link(up_mbps: float, down_mbps: float, one_way_ms: float, name: str = "custom") -> NetworkLink:
    """A link with explicit rates; PerfInputError names any impossible value (zero/negative rate, negative delay)."""
    for label, v in (("up_mbps", up_mbps), ("down_mbps", down_mbps)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise PerfInputError(f"{label} must be a positive finite bandwidth, got {v!r}")
    if not isinstance(one_way_ms, (int, float)) or not math.isfinite(one_way_ms) or one_way_ms < 0:
        raise PerfInputError(f"one_way_ms must be >= 0, got {one_way_ms!r}")
    return NetworkLink(name, float(up_mbps), float(down_mbps), float(one_way_ms))


def _hw(x: Hardware | str) -> Hardware:
    try:
        return catalog.hardware(x)
    except ValueError as e:
        raise PerfInputError(str(e)) from e


def _net(x: NetworkLink | str) -> NetworkLink:
    try:
        return catalog.network(x)
    except ValueError as e:
        raise PerfInputError(str(e)) from e


@dataclass(frozen=True)
class Payloads:
    """What crosses the network per inference. ``image_bytes`` / ``action_bytes`` override the model's own
    (cameras x px x px x 3 x ``jpeg_ratio``; dof x chunk x ``action_value_bytes``)."""

    jpeg_ratio: float = 0.1
    image_bytes: int | None = None
    action_bytes: int | None = None
    action_value_bytes: int = 4
    protocol_overhead: float = roofline.PROTOCOL_OVERHEAD

    def __post_init__(self) -> None:
        if not 0 < self.jpeg_ratio <= 1:
            raise PerfInputError(f"jpeg_ratio must be in (0, 1], got {self.jpeg_ratio}")
        for k in ("image_bytes", "action_bytes"):
            v = getattr(self, k)
            if v is not None and v < 0:
                raise PerfInputError(f"{k} must be >= 0, got {v}")
        if self.action_value_bytes <= 0 or self.protocol_overhead < 0:
            raise PerfInputError(
                f"action_value_bytes must be > 0 and protocol_overhead >= 0, got "
                f"{self.action_value_bytes}, {self.protocol_overhead}"
            )

    def image(self, cfg: VLAConfig) -> int:
        return self.image_bytes if self.image_bytes is not None else int(cfg.observation_bytes() * self.jpeg_ratio)

    def actions(self, cfg: VLAConfig) -> int:
        return self.action_bytes if self.action_bytes is not None else cfg.action_bytes(self.action_value_bytes)


#: VLA-Perf's network experiments: one 384 x 384 JPEG (10%) up, one 8-DoF action (float32) down.
VLA_PERF_NETWORK_PAYLOADS = Payloads(image_bytes=int(384 * 384 * 3 * 0.1), action_bytes=8 * 4)


@dataclass(frozen=True)
class Part:
    """One line of a latency breakdown: a compute component on a processor, or one transfer over one hop."""

    name: str  # vision / llm_prefill / decode / action / up:image / down:actions / down:kv_cache ...
    where: str  # hardware or link name
    time_ms: float
    bound: str  # "compute", "memory" or "network"
    flops: float = 0.0
    nbytes: float = 0.0

    @property
    def is_network(self) -> bool:
        return self.bound == "network"


@dataclass(frozen=True)
class MemoryFit:
    """Weights + KV cache a processor must hold versus its memory."""

    hardware: str
    weight_bytes: int
    kv_cache_bytes: int
    capacity_bytes: int

    @property
    def required_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.capacity_bytes

    def describe(self) -> str:
        return (
            f"{self.hardware} needs {self.required_bytes / 1e9:.2f} GB (weights {self.weight_bytes / 1e9:.2f} + "
            f"KV cache {self.kv_cache_bytes / 1e9:.2f}), has {self.capacity_bytes / 1e9:.0f} GB"
        )


@dataclass(frozen=True)
class PerfResult:
    """Latency breakdown, frequencies and memory fit of one (model, placement, execution, hardware, network)."""

    model: str
    placement: str
    execution: str
    device: str
    server: str
    network: str
    wan: str
    parts: tuple[Part, ...]
    memory: tuple[MemoryFit, ...]
    feasible: bool
    reason: str = ""
    compute_hz: float = math.nan  # throughput of the busiest processor
    link_hz: float = math.inf  # throughput of the bottleneck hop (serialisation only)
    s2_cap_hz: float = math.nan
    s2_ms: float = math.nan
    cut: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        """Time of one inference (for dual-system: one System-1 step). NaN when infeasible."""
        if not self.feasible:
            return math.nan
        total = sum(p.time_ms for p in self.parts)
        return total - (self.s2_ms if self.execution == "dual-system" else 0.0)

    @property
    def compute_ms(self) -> float:
        return sum(p.time_ms for p in self.parts if not p.is_network) if self.feasible else math.nan

    @property
    def network_ms(self) -> float:
        return sum(p.time_ms for p in self.parts if p.is_network) if self.feasible else math.nan

    @property
    def sync_hz(self) -> float:
        return 1e3 / self.latency_ms if self.feasible else math.nan

    @property
    def async_hz(self) -> float:
        return min(self.compute_hz, self.link_hz) if self.feasible else math.nan

    @property
    def control_hz(self) -> float:
        """The robot's control frequency under this execution."""
        if not self.feasible:
            return math.nan
        if self.execution == "async":
            return self.async_hz
        if self.execution == "dual-system":
            return dual_system_hz(self.latency_ms, self.s2_ms, self.s2_cap_hz)
        return self.sync_hz

    def component_ms(self, label: str) -> float:
        """Summed time of one compute label (vision / llm_prefill / decode / action) or a transfer prefix
        ("up", "down")."""
        if not self.feasible:
            return math.nan
        return sum(p.time_ms for p in self.parts if p.name == label or p.name.startswith(label + ":"))

    def bound_of(self, label: str) -> str:
        """ "compute"/"memory" of a compute label (the bound that takes most of its time), "" if absent."""
        ps = [p for p in self.parts if p.name == label]
        if not ps:
            return ""
        c = sum(p.time_ms for p in ps if p.bound == "compute")
        m = sum(p.time_ms for p in ps if p.bound == "memory")
        return "compute" if c > m else "memory"

    def row(self) -> dict[str, Any]:
        """Flat dict for CSV/JSON (infeasible: numbers are None)."""

        def num(x: float) -> float | None:
            return None if (x is None or (isinstance(x, float) and math.isnan(x))) else round(float(x), 6)

        r: dict[str, Any] = {
            "model": self.model,
            "placement": self.placement,
            "execution": self.execution,
            "device": self.device,
            "server": self.server,
            "network": self.network,
            "wan": self.wan,
            "cut": self.cut,
            "feasible": self.feasible,
            "reason": self.reason,
        }
        for lab in LABELS:
            r[f"{lab}_ms"] = num(self.component_ms(lab)) if any(p.name == lab for p in self.parts) else None
            r[f"{lab}_bound"] = self.bound_of(lab) or None
        r.update(
            {
                "network_ms": num(self.network_ms),
                "latency_ms": num(self.latency_ms),
                "sync_hz": num(self.sync_hz),
                "async_hz": num(self.async_hz),
                "control_hz": num(self.control_hz),
                "compute_hz": num(self.compute_hz),
                "link_hz": None if math.isinf(self.link_hz) else num(self.link_hz),
                "s2_ms": num(self.s2_ms),
                "s2_cap_hz": num(self.s2_cap_hz),
            }
        )
        for m in self.memory:
            r[f"memory_gb[{m.hardware}]"] = round(m.required_bytes / 1e9, 3)
        r.update(self.extra)
        return r

    def to_dict(self) -> dict[str, Any]:
        d = self.row()
        d["parts"] = [asdict(p) for p in self.parts]
        d["memory"] = [dict(asdict(m), required_bytes=m.required_bytes, fits=m.fits) for m in self.memory]
        return d


GIB_PER_GB = 2**30 / 1e9  # GenZ's Unit reads bandwidth and memory sizes in binary units


def paper_hardware(hw: Hardware) -> Hardware:
    """``hw`` as GenZ (VLA-Perf's engine) sees it: bandwidth and capacity in GiB instead of GB."""
    return replace(
        hw, mem_bandwidth_gbps=hw.mem_bandwidth_gbps * GIB_PER_GB, memory_bytes=int(hw.memory_bytes * GIB_PER_GB)
    )


def dual_system_hz(s1_ms: float, s2_ms: float, s2_cap_hz: float) -> float:
    """VLA-Perf's dual-system control rate, floored at the synchronous rate 1 / (S1 + S2):
    max(1 / (S1 + S2), (1 - cap x S2) / S1), times in ms, rates in Hz."""
    if s1_ms <= 0 or s2_ms < 0 or s2_cap_hz <= 0:
        raise PerfInputError(f"dual-system needs S1 > 0, S2 >= 0 and a positive cap, got {s1_ms}, {s2_ms}, {s2_cap_hz}")
    sync = 1e3 / (s1_ms + s2_ms)
    return max(sync, (1.0 - s2_cap_hz * s2_ms / 1e3) / (s1_ms / 1e3))


# ------------------------------------------------------------------------------------------------ compute side


def persistent_kv_bytes(spec: BlockSpec, dtype_bytes: int) -> int:
    """KV cache a block keeps between passes: the VLM/LLM layers for their context, the expert for its own tokens
    (the VLM context it attends to is counted once, by the VLM), vision layers none (per-image, transient)."""
    comp = component_of(spec.name)
    if spec.kind == "expert":
        tokens = max(p.tokens for p in spec.passes)
        return 2 * (spec.kv_heads or spec.heads) * spec.head_dim * tokens * spec.layers * dtype_bytes
    if spec.kind == "transformer_layer" and comp == "llm":
        return roofline.kv_cache_bytes(spec, dtype_bytes)
    return 0


@dataclass(frozen=True)
class _Side:
    parts: tuple[Part, ...]
    memory: MemoryFit
    total_ms: float


def _side(
    specs: Sequence[BlockSpec],
    hw: Hardware,
    dtype: str,
    extra_kv_bytes: int = 0,
    *,
    attention: str | None = None,
    genz_parallel_decode: bool = False,
) -> _Side:
    """Roofline breakdown of some blocks on one processor, with its memory fit."""
    nbytes = roofline.DTYPES[dtype][0]
    if not specs:
        return _Side((), MemoryFit(hw.name, 0, 0, hw.memory_bytes), 0.0)
    res = roofline.estimate(list(specs), hw, dtype, attention=attention, genz_parallel_decode=genz_parallel_decode)
    groups = roofline.breakdown(res, lambda name, phase: phase_label(component_of(name), phase))
    parts = tuple(Part(lab, hw.name, g.time_ms, g.bound, g.flops, g.bytes) for lab, g in groups.items())
    kv = sum(persistent_kv_bytes(s, nbytes) for s in specs) + extra_kv_bytes
    return _Side(parts, MemoryFit(hw.name, res.weight_bytes, kv, hw.memory_bytes), res.total_ms)


def _transfer(name: str, nbytes: float, link: NetworkLink, direction: str, overhead: float) -> tuple[Part, float]:
    """(Part with one-way latency + serialisation, serialisation-only ms)."""
    total = roofline.transfer_ms(nbytes, link, direction, protocol_overhead=overhead)  # type: ignore[arg-type]
    return Part(name, link.name, total, "network", 0.0, float(nbytes)), total - link.one_way_ms


def _check_cfg(cfg: VLAConfig) -> None:
    if not isinstance(cfg, VLAConfig):
        raise TypeError(f"expected a VLAConfig, got {type(cfg).__name__}")


def evaluate(
    cfg: VLAConfig,
    placement: str = "on-device",
    *,
    execution: str = "sync",
    device: Hardware | str = "Jetson AGX Thor",
    server: Hardware | str = "B100",
    network: NetworkLink | str | None = "WiFi 7",
    wan: NetworkLink | str | None = None,
    payloads: Payloads = Payloads(),
    s2_cap_hz: float = 5.0,
    dtype: str = "bfloat16",
    cut: int | None = None,
    accounting: str = "complete",
    attention: str | None = None,
) -> PerfResult:
    """Latency breakdown, frequencies and memory fit of ``cfg`` deployed as ``placement`` with ``execution``
    (``accounting`` and ``attention``: see the module docstring)."""
    _check_cfg(cfg)
    if accounting not in ACCOUNTINGS:
        raise PerfInputError(f"unknown accounting {accounting!r}; valid: {', '.join(ACCOUNTINGS)}")
    try:
        attention = roofline.resolve_attention(attention)
    except ValueError as e:
        raise PerfInputError(str(e)) from e
    side_kw: dict[str, Any] = {"attention": attention, "genz_parallel_decode": accounting == "paper"}
    if accounting == "paper" and cfg.state_tokens:
        cfg = cfg.with_(state_tokens=0)
    placement = resolve_mode(placement)[0] if placement not in PLACEMENTS else placement
    if execution not in EXECUTIONS:
        raise PerfInputError(f"unknown execution {execution!r}; valid: {', '.join(EXECUTIONS)}")
    if dtype not in roofline.DTYPES:
        raise PerfInputError(f"unknown dtype {dtype!r}; valid: {', '.join(roofline.DTYPES)}")
    if execution == "dual-system":
        if not (isinstance(s2_cap_hz, (int, float)) and math.isfinite(s2_cap_hz) and s2_cap_hz > 0):
            raise PerfInputError(f"s2_cap_hz must be a positive finite rate, got {s2_cap_hz!r}")
        if placement in ("split", "cut"):
            raise PerfInputError(
                f"dual-system runs on one processor (on-device, edge-server or cloud), not {placement!r}"
            )
    dev, srv = _hw(device), _hw(server)
    if placement == "cut":
        from executor.perf.cuts import evaluate_cut  # lazy: builds the executor model (torch)

        if accounting != "complete":
            raise PerfInputError("the cut placement prices the executor's model in complete accounting only")
        return evaluate_cut(
            cfg,
            dev,
            srv,
            _net(network or "WiFi 7"),
            dtype=dtype,
            cut=cut,
            execution=execution,
            payload_overhead=payloads.protocol_overhead,
        )
    if accounting == "paper":
        dev, srv = paper_hardware(dev), paper_hardware(srv)
    specs = block_specs(cfg)
    comps = [component_of(s.name) for s in specs]
    hops: list[NetworkLink] = []
    if placement in ("edge-server", "cloud", "split"):
        if network is None:
            raise PerfInputError(f"placement {placement!r} needs a network")
        hops.append(_net(network))
    if placement == "cloud":
        hops.append(_net(wan or "WAN hop, fast cloud"))
    elif placement == "split" and wan is not None:
        hops.append(_net(wan))

    nbytes = roofline.DTYPES[dtype][0]
    if placement == "on-device":
        local, remote = list(specs), []
    elif placement == "split":
        if cfg.action_head != "flow":
            raise PerfInputError(f"split mode needs a flow-matching action expert; {cfg.name} is autoregressive")
        local = [s for s, c in zip(specs, comps) if c == "action"]
        remote = [s for s, c in zip(specs, comps) if c != "action"]
    else:
        local, remote = [], list(specs)
    kv_down = cfg.kv_cache_bytes(nbytes)
    dev_side = _side(local, dev, dtype, extra_kv_bytes=kv_down if placement == "split" else 0, **side_kw)
    srv_side = _side(remote, srv, dtype, **side_kw)

    # network: image up over every hop (robot -> server), payload down over every hop in reverse
    up_parts: list[Any] = []
    down_parts: list[Any] = []
    link_hz = math.inf
    down_name, down_bytes = (
        ("down:kv_cache", kv_down) if placement == "split" else ("down:actions", payloads.actions(cfg))
    )
    for hop in hops:
        up, up_ser = _transfer("up:image", payloads.image(cfg), hop, "up", payloads.protocol_overhead)
        down, down_ser = _transfer(down_name, down_bytes, hop, "down", payloads.protocol_overhead)
        up_parts.append(up)
        down_parts.insert(0, down)
        ser = up_ser + down_ser
        link_hz = min(link_hz, 1e3 / ser if ser > 0 else math.inf)
    if placement == "split":
        parts = (*up_parts, *srv_side.parts, *down_parts, *dev_side.parts)
    elif placement == "on-device":
        parts = dev_side.parts
    else:
        parts = (*up_parts, *srv_side.parts, *down_parts)

    busy = [t for t in (dev_side.total_ms, srv_side.total_ms) if t > 0]
    compute_hz = 1e3 / max(busy)
    memory = tuple(m for m, side in ((dev_side.memory, local), (srv_side.memory, remote)) if side)
    bad = [m for m in memory if not m.fits]
    reason = "; ".join(m.describe() for m in bad)
    s2_ms = math.nan
    if execution == "dual-system":
        s2_ms = sum(p.time_ms for p in parts if p.name == "llm_prefill")
        if s2_cap_hz * s2_ms >= 1e3:
            log.info("System 2 takes %.2f ms and cannot run at %s Hz: the synchronous rate applies", s2_ms, s2_cap_hz)
    feasible = not reason
    if not feasible:
        log.info("%s %s on %s/%s infeasible: %s", cfg.name, placement, dev.name, srv.name, reason)
    return PerfResult(
        model=cfg.name,
        placement=placement,
        execution=execution,
        device=dev.name if local else "",
        server=srv.name if remote else "",
        network=hops[0].name if hops else "",
        wan=hops[1].name if len(hops) > 1 else "",
        parts=tuple(parts),
        memory=memory,
        feasible=feasible,
        reason=reason,
        compute_hz=compute_hz,
        link_hz=link_hz,
        s2_cap_hz=float(s2_cap_hz) if execution == "dual-system" else math.nan,
        s2_ms=s2_ms,
        extra={
            "image_bytes": payloads.image(cfg),
            "down_bytes": int(down_bytes) if hops else 0,
            "chunk": cfg.chunk,
            "denoising_steps": cfg.denoising_steps,
            "timesteps": cfg.timesteps,
            "action_head": cfg.action_head,
            "accounting": accounting,
            "attention": attention,
        },
    )


def evaluate_mode(cfg: VLAConfig, mode: str, *, base: str | None = None, **kw: Any) -> PerfResult:
    """:func:`evaluate` with a CLI mode name ("async" and "dual-system" take their placement from ``base``)."""
    placement, execution = resolve_mode(mode, base)
    if kw.get("execution") not in (None, execution) and mode in ("async", "dual-system"):
        raise PerfInputError(f"mode {mode!r} fixes execution {execution!r}, got execution={kw['execution']!r}")
    kw.setdefault("execution", execution)
    return evaluate(cfg, placement, **kw)


def check_parameters(**values: Any) -> None:
    """Reject impossible sweep/CLI parameters with their value (steps, chunk, timesteps, dof must be >= 1)."""
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PerfInputError(f"{k} must be an integer >= 1, got {v!r}")


__all__ = [
    "ACCOUNTINGS",
    "EXECUTIONS",
    "LABELS",
    "dual_system_hz",
    "GIB_PER_GB",
    "paper_hardware",
    "MODES",
    "MemoryFit",
    "PLACEMENTS",
    "Part",
    "Payloads",
    "PerfInputError",
    "PerfResult",
    "VLA_PERF_NETWORK_PAYLOADS",
    "check_parameters",
    "custom_link",
    "evaluate",
    "evaluate_mode",
    "mode_names",
    "persistent_kv_bytes",
    "resolve_mode",
]

_ = ConfigError  # re-exported for callers catching both
