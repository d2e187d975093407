"""Kernel shaping: two network namespaces joined by a veth pair, each direction rate-limited by `tc tbf`,
with the rate updated from a bandwidth trace as trace time advances.

Needs root, `ip netns` and `tc` (iproute2). This kernel has no netem, so one-way delay is not added here: combine
with the user-space relay (``executor.link``) for delay, or accept the veth's sub-millisecond latency. Everything is
created by ``KernelShapedLink.start()`` and removed by ``stop()`` (also on error and on ``__exit__``), so a test
leaves nothing behind. Addresses are link-local (169.254.x.y/30) inside the two private namespaces only.

    with KernelShapedLink(trace, name="ecc0") as link:
        link.run_in_cloud(["python", "-m", ...])     # processes started inside each namespace
        link.run_in_edge([...])
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIN_RATE_KBIT = 8  # tbf cannot express zero: an outage becomes 8 kbit/s


class NetnsUnavailable(RuntimeError):
    """Kernel shaping cannot run here (not root, or ip/tc missing, or namespaces refused)."""


@dataclass(frozen=True)
class KernelLinkConfig:
    """Namespaces and tbf settings.

    name: prefix of the namespaces (`{name}-edge`, `{name}-cloud`) and veth devices (at most 10 characters).
    subnet_octet: third octet of the link-local /30 (169.254.{octet}.1 edge, .2 cloud).
    update_interval_s: how often the rate is re-read from the trace.
    burst_ms: tbf bucket size expressed as milliseconds of the current rate (at least 2 MTUs).
    queue_ms: tbf queue limit expressed as latency.
    time_scale: trace seconds per wall second.
    start_offset_s: trace time when the link starts.
    """

    name: str = "ecc0"
    subnet_octet: int = 213
    update_interval_s: float = 0.1
    burst_ms: float = 5.0
    queue_ms: float = 200.0
    time_scale: float = 1.0
    start_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.name.isalnum() or not 1 <= len(self.name) <= 10:
            raise ValueError(f"name must be 1-10 letters/digits, got {self.name!r}")
        if not 0 <= self.subnet_octet <= 255:
            raise ValueError(f"subnet_octet must be 0..255, got {self.subnet_octet}")
        if self.update_interval_s <= 0 or self.burst_ms <= 0 or self.queue_ms <= 0 or self.time_scale <= 0:
            raise ValueError(f"intervals, burst, queue and time scale must be > 0: {self}")


def available() -> str | None:
    """None when kernel shaping can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "kernel shaping needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    return None


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _rate_kbit(mbps: float) -> int:
    return max(MIN_RATE_KBIT, int(round(mbps * 1000)))


class KernelShapedLink:
    """A veth link between an edge and a cloud namespace whose tbf rates follow a trace."""

    def __init__(self, trace: Any, config: KernelLinkConfig = KernelLinkConfig()) -> None:
        reason = available()
        if reason is not None:
            raise NetnsUnavailable(reason)
        self.trace = trace
        self.config = config
        n = config.name
        self.edge_ns, self.cloud_ns = f"{n}-edge", f"{n}-cloud"
        self.edge_dev, self.cloud_dev = f"{n}e", f"{n}c"
        self.edge_ip = f"169.254.{config.subnet_octet}.1"
        self.cloud_ip = f"169.254.{config.subnet_octet}.2"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.rate_updates = 0
        self._created = False

    # ------------------------------------------------------------------ set-up and tear-down
    def start(self) -> KernelShapedLink:
        cfg, ns_e, ns_c = self.config, self.edge_ns, self.cloud_ns
        try:
            _run(["ip", "netns", "add", ns_e])
            self._created = True
            _run(["ip", "netns", "add", ns_c])
            _run(
                [
                    "ip",
                    "link",
                    "add",
                    self.edge_dev,
                    "netns",
                    ns_e,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    self.cloud_dev,
                    "netns",
                    ns_c,
                ]
            )
            for ns, dev, ip in ((ns_e, self.edge_dev, self.edge_ip), (ns_c, self.cloud_dev, self.cloud_ip)):
                _run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._t0 = time.monotonic()
            self._apply(add=True)
        except Exception:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._update_loop, name=f"{cfg.name}-tc", daemon=True)
        self._thread.start()
        log.info("kernel-shaped link %s <-> %s up (%s)", self.edge_ip, self.cloud_ip, cfg.name)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._created:
            for ns in (self.edge_ns, self.cloud_ns):  # deleting a namespace removes its veth end and qdiscs
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
            self._created = False

    def __enter__(self) -> KernelShapedLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ rates
    def trace_time_s(self) -> float:
        return self.config.start_offset_s + (time.monotonic() - self._t0) * self.config.time_scale

    def current_rates_mbps(self) -> tuple[float, float]:
        t = self.trace_time_s()
        return float(self.trace.bandwidth_mbps(t, "up")), float(self.trace.bandwidth_mbps(t, "down"))

    def _tbf(self, ns: str, dev: str, mbps: float, verb: str) -> None:
        rate_kbit = _rate_kbit(mbps)
        bytes_per_ms = rate_kbit * 1000 / 8 / 1000
        burst = max(3028, int(bytes_per_ms * self.config.burst_ms))
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "tc",
                "qdisc",
                verb,
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                f"{rate_kbit}kbit",
                "burst",
                str(burst),
                "latency",
                f"{int(self.config.queue_ms)}ms",
            ]
        )

    def _apply(self, add: bool = False) -> None:
        up, down = self.current_rates_mbps()
        verb = "add" if add else "change"
        self._tbf(self.edge_ns, self.edge_dev, up, verb)  # edge egress = uplink
        self._tbf(self.cloud_ns, self.cloud_dev, down, verb)  # cloud egress = downlink
        self.rate_updates += 1

    def _update_loop(self) -> None:
        last = None
        while not self._stop.wait(self.config.update_interval_s):
            rates = tuple(_rate_kbit(r) for r in self.current_rates_mbps())
            if rates == last:
                continue
            try:
                self._apply()
                last = rates
            except NetnsUnavailable as e:  # namespace removed under us: stop quietly
                log.warning("rate update stopped: %s", e)
                return

    # ------------------------------------------------------------------ processes inside the namespaces
    def _popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)

    def run_in_edge(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start a process in the edge namespace (it reaches the cloud at ``cloud_ip``)."""
        return self._popen(self.edge_ns, argv, **kwargs)

    def run_in_cloud(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start a process in the cloud namespace (it should bind ``cloud_ip`` or 0.0.0.0 inside it)."""
        return self._popen(self.cloud_ns, argv, **kwargs)
