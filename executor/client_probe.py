"""What the edge client measures about the link between calls: the server's clock offset, the propagation RTT and
the uplink rate, and the bandwidth samples the runtime observes.

Clock sync: ``clock_sync_pings`` pings at connect, NTP-style, the one with the smallest round trip wins. RTT: the
smallest of the last ``rtt_window`` tiny-ping round trips (``base_rtt_ms``). Uplink: a ping padded to
``probe_bytes`` once while connecting and after each tiny ping, as ``ecc_env.latency.ProbeConfig`` prices it in the
env; a probe not answered within ``probe_interval_s`` leaves no sample, and none is sent while a call is in flight
(it would queue behind the call's upload and measure the queue).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from executor import wire
from executor.client_timing import MIN_TRANSFER_S, BandwidthSample
from executor.protocol import PING, TYPE_KEY, ServerUnavailable, missed_upload_mbps
from traces.units import rate_mbps

if TYPE_CHECKING:  # pragma: no cover
    from executor.client import ClientConfig
    from executor.client_connection import Connection

log = logging.getLogger(__name__)


class LinkProbe:
    """Pings over ``conn``: clock offset, RTT estimate, uplink probes; holds the bandwidth samples."""

    def __init__(self, conn: Connection, config: ClientConfig) -> None:
        self.conn = conn
        self.config = config
        self.clock_offset_s = 0.0  # server clock - client clock
        self.bandwidth: collections.deque[BandwidthSample] = collections.deque(maxlen=config.bandwidth_history)
        self.last_server_queue_length = 0
        self._rtt_samples: collections.deque[float] = collections.deque(maxlen=config.rtt_window)
        self._offset_at_handshake = 0.0

    @property
    def base_rtt_ms(self) -> float | None:
        """Propagation round trip estimate: the smallest of the last ``rtt_window`` tiny-ping round trips."""
        samples = list(self._rtt_samples)
        return min(samples) if samples else None

    async def ping_once(self, ws: Any, pad_bytes: int = 0) -> tuple[float, float, dict[str, Any]]:
        """(send wall time, receive wall time, pong metadata) of one ping. A tiny one records an RTT sample; one
        padded with ``pad_bytes`` records an uplink ``BandwidthSample`` from the server's receive time instead."""
        t0 = time.time()
        fut = self.conn.loop.create_future()
        self.conn.pings[t0] = fut
        arrays = {"pad": np.zeros(pad_bytes, dtype=np.uint8)} if pad_bytes > 0 else {}
        data = wire.encode(arrays, {TYPE_KEY: PING, "t_client_s": t0})
        try:
            await ws.send(data)
            meta, t1 = await fut
        finally:
            self.conn.pings.pop(t0, None)
        self.last_server_queue_length = int(meta.get("queue_length", 0))
        if pad_bytes <= 0:
            self._rtt_samples.append((t1 - t0) * 1e3)
            return t0, t1, meta
        up_s = (float(meta.get("t_server_s", t1)) - self.clock_offset_s) - t0
        up_s = min(max(up_s - (self.base_rtt_ms or 0.0) / 2e3, MIN_TRANSFER_S), t1 - t0)  # serialisation time
        self.add_uplink_sample(t0 + up_s, rate_mbps(len(data), up_s), len(data))
        return t0, t1, meta

    def add_uplink_sample(self, done_s: float, mbps: float, nbytes: int) -> None:
        """Record a sample that measured the uplink only (a bandwidth probe or a missed call): other rates NaN."""
        nan = float("nan")
        rtt = self.base_rtt_ms
        self.bandwidth.append(
            BandwidthSample(
                uplink_done_s=done_s,
                uplink_mbps=mbps,
                downlink_mbps=nan,
                effective_mbps=nan,
                rtt_ms=rtt if rtt is not None else nan,
                bytes_up=nbytes,
                bytes_down=0,
            )
        )

    def record_miss(self, nbytes: int, waited_s: float) -> None:
        """A call missed its deadline: record the env's upper-bound uplink sample (``missed_upload_mbps``)."""
        mbps = missed_upload_mbps(nbytes, waited_s)
        if mbps == mbps:
            self.add_uplink_sample(time.time(), mbps, nbytes)

    async def sync_clock(self, ws: Any) -> None:
        """The connection's handshake: NTP-style pings; the offset takes effect when the connection opens."""
        best: tuple[float, float] | None = None  # (rtt, offset)
        for _ in range(self.config.clock_sync_pings):
            t0, t1, meta = await self.ping_once(ws)
            offset = float(meta["t_server_s"]) - (t0 + t1) / 2
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, offset)
        self._offset_at_handshake = best[1] if best is not None else 0.0

    async def on_open(self, ws: Any) -> None:
        """The connection is open: adopt the handshake's clock offset, probe once, start the periodic probes."""
        self.clock_offset_s = self._offset_at_handshake
        log.debug("clock offset to %s: %.3f ms", self.conn.url, self.clock_offset_s * 1e3)
        await self._connect_probe(ws)
        if self.config.probe_interval_s is not None:
            self.conn.spawn(self._probe_loop(ws))

    async def _connect_probe(self, ws: Any) -> None:
        """One bandwidth probe before ``connect`` returns, so the planner's first decision sees the link (the env
        prices the same probe at t = 0); none when bandwidth probes are off. One not through within
        ``probe_interval_s`` leaves no sample and does not fail the connection."""
        interval = self.config.probe_interval_s
        if interval is None or self.config.probe_bytes <= 0:
            return
        try:
            await self._bandwidth_probe(ws, interval)
        except Exception as e:  # noqa: BLE001 - a lost connection surfaces at the next call, as without the probe
            log.debug("connect probe failed: %s", e)

    async def _bandwidth_probe(self, ws: Any, timeout_s: float) -> None:
        """One ping padded to ``probe_bytes`` (an uplink sample); one not through within ``timeout_s`` leaves none."""
        try:
            await asyncio.wait_for(self.ping_once(ws, self.config.probe_bytes), timeout=timeout_s)
        except TimeoutError:
            log.debug("bandwidth probe not through within %.3f s: no sample", timeout_s)

    async def _probe_loop(self, ws: Any) -> None:
        """Every probe_interval_s: a tiny ping (propagation-RTT estimate), then a padded bandwidth probe."""
        interval = self.config.probe_interval_s
        assert interval is not None
        while ws.state.name == "OPEN" and not self.conn.closed:
            await asyncio.sleep(interval)
            try:
                await asyncio.wait_for(self.ping_once(ws), timeout=max(5.0, 10 * interval))
                if self.config.probe_bytes > 0 and not self.conn.pending:  # behind an upload: it measures the queue
                    await self._bandwidth_probe(ws, interval)
            except (TimeoutError, ServerUnavailable, ConnectionError):
                return
            except Exception as e:  # noqa: BLE001 - a failed probe must never kill the loop thread
                log.debug("probe failed: %s", e)
                return
