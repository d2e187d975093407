"""The ``cut`` placement: every block cut of the executor's split model, priced by ``executor.costs.cut_table`` on
roofline Profiles of the device and the server (the same code path as the env and the planners).

Wire bytes are the executor's real payloads (raw uint8 images at cut 0, activations in ``wire_dtype`` after a block,
the KV cache for pi0's "VLM on the server, expert on the device" cut). ``CutTable.latency_ms`` charges one-way
latency per direction and per extra round trip; the protocol overhead of the other modes is applied to its bytes
here as well, so the two agree. A cut is infeasible when either side cannot hold its blocks' weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from executor import roofline
from executor.catalog import Hardware, NetworkLink
from executor.costs import CutTable, cut_table
from executor.perf.configs import ConfigError, VLAConfig, component_of, phase_label
from executor.perf.modes import MemoryFit, Part, PerfInputError, PerfResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutRow:
    """One cut of the executor's model on (device, server, link)."""

    index: int
    name: str
    placement: str
    edge_ms: float
    cloud_ms: float
    network_ms: float
    up_bytes: int
    down_bytes: int
    round_trips: int
    edge_weight_bytes: int
    cloud_weight_bytes: int
    edge_fits: bool
    cloud_fits: bool

    @property
    def feasible(self) -> bool:
        return self.edge_fits and self.cloud_fits

    @property
    def latency_ms(self) -> float:
        return self.edge_ms + self.cloud_ms + self.network_ms if self.feasible else math.nan


def _family_model(cfg: VLAConfig | str) -> Any:
    from executor.models import FAMILIES, build_model

    family = cfg if isinstance(cfg, str) else cfg.name
    if family not in FAMILIES:
        raise ConfigError(
            f"cut mode needs a model of the executor (families: {', '.join(FAMILIES)}); {family!r} is not one of them"
        )
    return build_model(family, "full", device="meta")


def cut_rows(
    cfg: VLAConfig | str,
    device: Hardware,
    server: Hardware,
    link: NetworkLink,
    *,
    dtype: str = "bfloat16",
    wire_dtype: str = "bfloat16",
    protocol_overhead: float = roofline.PROTOCOL_OVERHEAD,
) -> tuple[list[CutRow], Any, CutTable]:
    """Every cut of the executor's ``full`` model of this family (rows, the model, the CutTable)."""
    model = _family_model(cfg)
    specs, cuts = model.block_specs(), model.cut_specs(wire_dtype=wire_dtype)
    family = model.family if hasattr(model, "family") else str(cfg)
    edge = roofline.roofline_profile(
        specs, cuts, device, dtype, model_id=family, preset="full", wire_dtype=wire_dtype, check_memory=False
    )
    cloud = roofline.roofline_profile(
        specs, cuts, server, dtype, model_id=family, preset="full", wire_dtype=wire_dtype, check_memory=False
    )
    table = cut_table(edge, cloud)
    f = 1.0 + protocol_overhead
    lat = table.latency_ms(link.up_mbps / f, link.down_mbps / f, link.one_way_ms)
    total_params = float(sum(edge.block_param_bytes))
    rows = []
    for i, c in enumerate(cuts):
        e_w = int(table.edge_param_bytes[i])
        c_w = int(total_params - e_w)
        net = float(lat[i] - table.edge_ms[i] - table.cloud_ms[i])
        rows.append(
            CutRow(
                i,
                table.names[i],
                c.placement,
                float(table.edge_ms[i]),
                float(table.cloud_ms[i]),
                net,
                int(c.up_bytes),
                int(c.down_bytes),
                int(c.round_trips),
                e_w,
                c_w,
                e_w <= device.memory_bytes,
                c_w <= server.memory_bytes,
            )
        )
    return rows, model, table


def evaluate_cut(
    cfg: VLAConfig | str,
    device: Hardware,
    server: Hardware,
    link: NetworkLink,
    *,
    dtype: str = "bfloat16",
    cut: int | None = None,
    execution: str = "sync",
    payload_overhead: float = roofline.PROTOCOL_OVERHEAD,
) -> PerfResult:
    """One cut as a PerfResult: the given index, or the fastest feasible cut when ``cut`` is None."""
    if execution == "dual-system":
        raise PerfInputError("dual-system is not defined for the cut placement")
    rows, model, table = cut_rows(cfg, device, server, link, dtype=dtype, protocol_overhead=payload_overhead)
    if cut is None:
        ok = [r for r in rows if r.feasible]
        chosen = min(ok, key=lambda r: r.latency_ms) if ok else rows[0]
    else:
        if isinstance(cut, bool) or not isinstance(cut, (int, np.integer)) or not 0 <= cut < len(rows):
            raise PerfInputError(f"cut index must be in 0..{len(rows) - 1}, got {cut!r}")
        chosen = rows[int(cut)]
    specs = model.block_specs()
    prof_cut = model.cut_specs()[chosen.index]
    n = len(specs)
    edge_idx = range(0, prof_cut.k) if prof_cut.placement == "edge_then_cloud" else range(prof_cut.k, n)
    cloud_idx = [i for i in range(n) if i not in edge_idx]

    def side(idx: Any, hw: Hardware) -> tuple[tuple[Part, ...], float]:
        sub = [specs[i] for i in idx]
        if not sub:
            return (), 0.0
        res = roofline.estimate(sub, hw, dtype)
        groups = roofline.breakdown(res, lambda name, phase: phase_label(component_of(name), phase))
        return tuple(Part(k, hw.name, g.time_ms, g.bound, g.flops, g.bytes) for k, g in groups.items()), res.total_ms

    e_parts, e_ms = side(edge_idx, device)
    c_parts, c_ms = side(cloud_idx, server)
    net_parts: tuple[Part, ...] = ()
    ser_ms = 0.0
    if chosen.up_bytes or chosen.down_bytes or chosen.round_trips:
        up = roofline.transfer_ms(chosen.up_bytes, link, "up", protocol_overhead=payload_overhead)
        down = chosen.network_ms - up
        net_parts = (
            Part("up:payload", link.name, up, "network", 0.0, chosen.up_bytes),
            Part("down:payload", link.name, down, "network", 0.0, chosen.down_bytes),
        )
        ser_ms = chosen.network_ms - 2 * link.one_way_ms * (1 + chosen.round_trips)
    order = (
        (*e_parts, *net_parts, *c_parts)
        if prof_cut.placement == "edge_then_cloud"
        else (*net_parts[:1], *c_parts, *net_parts[1:], *e_parts)
    )
    memory = tuple(
        m
        for m, idx in (
            (MemoryFit(device.name, chosen.edge_weight_bytes, 0, device.memory_bytes), edge_idx),
            (MemoryFit(server.name, chosen.cloud_weight_bytes, 0, server.memory_bytes), cloud_idx),
        )
        if len(idx)
    )
    bad = [m for m in memory if not m.fits]
    busy = [t for t in (e_ms, c_ms) if t > 0]
    return PerfResult(
        model=model.family if hasattr(model, "family") else str(cfg),
        placement="cut",
        execution=execution,
        device=device.name if len(edge_idx) else "",
        server=server.name if cloud_idx else "",
        network=link.name if net_parts else "",
        wan="",
        parts=tuple(order),
        memory=memory,
        feasible=not bad,
        reason="; ".join(m.describe() for m in bad),
        compute_hz=1e3 / max(busy),
        link_hz=1e3 / ser_ms if ser_ms > 0 else math.inf,
        cut=f"{chosen.index}:{chosen.name}",
        extra={"num_cuts": len(rows), "cut_latency_ms": chosen.latency_ms},
    )


__all__ = ["CutRow", "cut_rows", "evaluate_cut"]
