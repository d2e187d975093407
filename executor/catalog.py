"""Hardware and network catalogues for the roofline cost model (VLA-Perf's tables, see shared/reference).

Figures are datasheet peaks: dense bf16 (fp16 where the vendor gives no bf16 figure: Jetson Orin), memory
capacity and bandwidth in decimal units (GB = 10**9 bytes, GB/s = 10**9 bytes/s), link rates in Mbit/s
(10**6 bit/s). Look-ups accept the canonical name or an alias, case- and separator-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GB = 10**9


@dataclass(frozen=True)
class Hardware:
    """One accelerator: dense peak bf16 TFLOP/s, memory capacity (bytes) and bandwidth (GB/s = 10**9 B/s)."""

    name: str
    peak_tflops_bf16: float
    memory_bytes: int
    mem_bandwidth_gbps: float  # GB/s (bytes), not Gbit/s
    kind: str = "datacenter"  # "edge" (on-robot module), "desktop" or "datacenter"
    aliases: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.peak_tflops_bf16 <= 0 or self.memory_bytes <= 0 or self.mem_bandwidth_gbps <= 0:
            raise ValueError(f"hardware {self.name!r}: peak, memory and bandwidth must be > 0")

    @property
    def peak_flops(self) -> float:
        """FLOP/s."""
        return self.peak_tflops_bf16 * 1e12

    @property
    def mem_bandwidth_bytes_per_s(self) -> float:
        return self.mem_bandwidth_gbps * 1e9

    @property
    def balance_flops_per_byte(self) -> float:
        """Ridge point of the roofline: operational intensity where compute and memory time are equal."""
        return self.peak_flops / self.mem_bandwidth_bytes_per_s


@dataclass(frozen=True)
class NetworkLink:
    """One link type: effective upload/download rate (Mbit/s) and one-way base latency (ms)."""

    name: str
    up_mbps: float
    down_mbps: float
    one_way_ms: float
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.up_mbps <= 0 or self.down_mbps <= 0 or self.one_way_ms < 0:
            raise ValueError(f"link {self.name!r}: rates must be > 0 and latency >= 0")


HARDWARE: tuple[Hardware, ...] = (
    Hardware(
        "Jetson AGX Orin 64GB",
        67.0,
        64 * GB,
        204.8,
        "edge",
        ("orin", "agx orin", "jetson orin", "orin agx"),
        note="fp16 dense (no separate bf16 figure)",
    ),
    Hardware(
        "Jetson Orin NX 16GB",
        25.0,
        16 * GB,
        102.4,
        "edge",
        ("orin nx", "orinnx", "jetson orin nx"),
        note="fp16 dense (no separate bf16 figure)",
    ),
    Hardware("Jetson AGX Thor", 400.0, 128 * GB, 270.0, "edge", ("thor", "jetson thor", "agx thor")),
    Hardware("RTX 4090", 165.0, 24 * GB, 1008.0, "desktop", ("4090", "rtx4090", "geforce rtx 4090")),
    Hardware("A100-80GB", 312.0, 80 * GB, 2039.0, "datacenter", ("a100", "a100 80gb", "a100-sxm")),
    Hardware("H100 SXM", 989.0, 80 * GB, 3350.0, "datacenter", ("h100", "h100-sxm")),
    Hardware("B100", 1750.0, 192 * GB, 8000.0, "datacenter", ("b100",)),
)

NETWORKS: tuple[NetworkLink, ...] = (
    NetworkLink("Ethernet 1G", 1000.0, 1000.0, 0.1, ("ethernet", "eth1g", "1g", "gige")),
    NetworkLink("Ethernet 10G", 10000.0, 10000.0, 0.05, ("eth10g", "10g", "10gbe")),
    NetworkLink("WiFi 6", 560.0, 800.0, 3.5, ("wifi6", "wifi", "802.11ax")),
    NetworkLink("WiFi 7", 2100.0, 3000.0, 2.5, ("wifi7", "802.11be")),
    NetworkLink("4G LTE", 19.0, 75.0, 25.0, ("4g", "lte")),
    NetworkLink("5G sub-6", 80.0, 500.0, 10.0, ("5g", "5g sub6")),
    NetworkLink("WAN hop, fast cloud", 10000.0, 10000.0, 10.0, ("wan fast", "cloud fast", "fast cloud")),
    NetworkLink("WAN hop, slow cloud", 1000.0, 1000.0, 100.0, ("wan slow", "cloud slow", "slow cloud")),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def _index(items: tuple) -> dict[str, object]:
    idx: dict[str, object] = {}
    for item in items:
        for n in (item.name, *item.aliases):
            k = _key(n)
            if k in idx and idx[k] is not item:
                raise RuntimeError(f"catalogue name clash: {n!r}")
            idx[k] = item
    return idx


_HW_INDEX = _index(HARDWARE)
_NET_INDEX = _index(NETWORKS)


def hardware(name: str | Hardware) -> Hardware:
    """Catalogue hardware by name or alias ("orin", "a100", "thor" ...); ValueError lists the valid names."""
    if isinstance(name, Hardware):
        return name
    hit = _HW_INDEX.get(_key(str(name)))
    if hit is None:
        raise ValueError(f"unknown hardware {name!r}; valid: {', '.join(hardware_names())}")
    return hit  # type: ignore[return-value]


def network(name: str | NetworkLink) -> NetworkLink:
    """Catalogue link by name or alias ("wifi6", "5g", "eth10g" ...); ValueError lists the valid names."""
    if isinstance(name, NetworkLink):
        return name
    hit = _NET_INDEX.get(_key(str(name)))
    if hit is None:
        raise ValueError(f"unknown network {name!r}; valid: {', '.join(network_names())}")
    return hit  # type: ignore[return-value]


def hardware_names() -> list[str]:
    """Canonical hardware names with their aliases, for messages and CLI help."""
    return [f"{h.name} ({'/'.join(h.aliases)})" if h.aliases else h.name for h in HARDWARE]


def network_names() -> list[str]:
    return [f"{n.name} ({'/'.join(n.aliases)})" if n.aliases else n.name for n in NETWORKS]
