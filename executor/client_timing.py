"""Timing of one edge-client call: what each exchange of a call adds up to (``CallTiming``) and what the call tells
about the link (``BandwidthSample``), from the edge's clocks and the server's reported times.

Uplink/downlink use the server's clock corrected by the client's clock offset (``executor.client_probe``);
``network_ms`` (round trip minus server residence) and the effective bandwidth need no clock agreement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from executor.protocol import CallTiming, ServerTiming
from traces.units import rate_mbps

# a transfer faster than this cannot be told apart from clock noise
MIN_TRANSFER_S = 1e-5


@dataclass(frozen=True)
class BandwidthSample:
    """What one networked call tells about the link, as the edge can measure it.

    A call that missed its deadline leaves a sample too: ``uplink_mbps`` = ``missed_upload_mbps`` (upload bits / time
    from its start to the deadline, an upper bound), ``uplink_done_s`` = the deadline, the other rates NaN.

    uplink_mbps: the call's main (first) upload, bits / its serialisation time (uplink time minus the one-way delay
    estimate ``base_rtt_ms / 2``), as the env's observation defines it; downlink_mbps: the same for the last reply;
    effective_mbps: RoboECC's bytes both ways / (round trips - server residence); uplink_done_s: client wall clock
    (time.time()) when the main upload finished; rtt_ms: the propagation RTT estimate at that time.
    """

    uplink_done_s: float
    uplink_mbps: float
    downlink_mbps: float
    effective_mbps: float
    rtt_ms: float
    bytes_up: int
    bytes_down: int


@dataclass
class Exchange:
    """One request and its reply: the reply's bytes and both ends' wall (``time.time``) and perf-counter times."""

    reply: bytes
    send_wall: float
    send_perf: float
    recv_wall: float
    recv_perf: float


@dataclass
class CallAccount:
    """The running totals of one call over its exchanges (a decode exchange has several round trips)."""

    edge_s: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    uplink_s: float = 0.0
    downlink_s: float = 0.0
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    network_s: float = 0.0
    rtt_s: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    trips: int = 0
    queue_length: int = 0
    first_up_s: float = 0.0
    first_up_bytes: int = 0
    first_send_wall: float = 0.0
    last_down_s: float = 0.0
    last_down_bytes: int = 0

    def add_exchange(self, ex: Exchange, timing: ServerTiming, sent: int, clock_offset_s: float) -> None:
        """Add one exchange of ``sent`` bytes, split into uplink / server / downlink by the server's times."""
        rtt = ex.recv_perf - ex.send_perf
        self.trips += 1
        self.rtt_s += rtt
        self.bytes_up += sent
        self.bytes_down += len(ex.reply)
        self.queue_ms += timing.queue_ms
        self.compute_ms += timing.compute_ms
        network = max(rtt - timing.residence_ms / 1e3, 0.0)
        self.network_s += network
        up = (timing.recv_time_s - clock_offset_s) - ex.send_wall
        down = ex.recv_wall - (timing.send_time_s - clock_offset_s)
        # clocks never agree perfectly: keep each direction within [0, network] and their sum at most network
        up = min(max(up, 0.0), network)
        down = network - up if down < 0 or up + down > network else down
        self.uplink_s += up
        self.downlink_s += down
        if self.trips == 1:
            self.first_up_s, self.first_up_bytes, self.first_send_wall = up, sent, ex.send_wall
        self.last_down_s, self.last_down_bytes = down, len(ex.reply)
        self.queue_length = timing.queue_length

    def timing(self, t_start: float) -> CallTiming:
        """The call's ``CallTiming``, its total from ``t_start`` (a ``time.perf_counter()`` value) to now."""

        def mbps(nbytes: int, seconds: float) -> float:
            return rate_mbps(nbytes, seconds) if seconds > 0 else 0.0

        return CallTiming(
            edge_ms=self.edge_s * 1e3,
            encode_ms=self.encode_s * 1e3,
            uplink_ms=self.uplink_s * 1e3,
            cloud_queue_ms=self.queue_ms,
            cloud_compute_ms=self.compute_ms,
            downlink_ms=self.downlink_s * 1e3,
            decode_ms=self.decode_s * 1e3,
            total_ms=(time.perf_counter() - t_start) * 1e3,
            network_ms=self.network_s * 1e3,
            round_trips=max(self.trips - 1, 0),
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            effective_mbps=mbps(self.bytes_up + self.bytes_down, self.network_s),
            uplink_mbps=mbps(self.bytes_up, self.uplink_s),
            downlink_mbps=mbps(self.bytes_down, self.downlink_s),
            server_queue_length=self.queue_length,
        )

    def sample(self, timing: CallTiming, base_rtt_ms: float | None) -> BandwidthSample:
        """The env's bandwidth estimates from the call: serialisation time = measured time - one-way delay."""
        one_way_s = (base_rtt_ms or 0.0) / 2e3
        up_s = max(self.first_up_s - one_way_s, MIN_TRANSFER_S)
        down_s = max(self.last_down_s - one_way_s, MIN_TRANSFER_S)
        return BandwidthSample(
            uplink_done_s=self.first_send_wall + up_s,
            uplink_mbps=rate_mbps(self.first_up_bytes, up_s),
            downlink_mbps=rate_mbps(self.last_down_bytes, down_s),
            effective_mbps=timing.effective_mbps,
            rtt_ms=base_rtt_ms if base_rtt_ms is not None else timing.network_ms / max(timing.round_trips + 1, 1),
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
        )
