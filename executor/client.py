"""Edge client: runs the edge half of a split model and exchanges payloads with a ``CloudServer``.

``EdgeClient`` is the inference loop; each other concern lives in its own module:
- ``executor.client_connection``: the websocket on a private event-loop thread, the single reader, reconnect with
  backoff, deadlines on every wait (``infer`` never waits for a connection: ``ServerUnavailable`` at once, so the
  caller can fall back to the edge);
- ``executor.client_probe``: clock sync, the propagation-RTT estimate, bandwidth probes and samples;
- ``executor.client_timing``: what a call's exchanges add up to (``CallTiming``, ``BandwidthSample``);
- ``executor.hedge``: hedged execution (the edge goes on locally while the payload travels).

Timing of one inference (``protocol.CallTiming``): edge compute, encode, uplink, cloud queue, cloud compute,
downlink, decode, total; summed over the round trips of a decode exchange.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from executor import wire
from executor.client_connection import Connection
from executor.client_probe import LinkProbe
from executor.client_timing import BandwidthSample, CallAccount
from executor.frame_transport import encode_frames
from executor.hedge import Hedger
from executor.protocol import (
    CONTINUE,
    DEFAULT_MAX_MESSAGE_BYTES,
    ERROR,
    SPLIT,
    TYPE_KEY,
    CallTiming,
    ProtocolError,
    RemoteError,
    ServerInfo,
    ServerTiming,
    TransportTimeout,
    encode_payload,
    to_payload,
)
from executor.wire_config import EXACT_WIRE, WireConfig

if TYPE_CHECKING:  # pragma: no cover
    import collections

    from executor.models import SplitModel

__all__ = ["BandwidthSample", "ClientConfig", "EdgeClient", "SplitResult"]


@dataclass(frozen=True)
class ClientConfig:
    """Edge client settings.

    connect_timeout_s: bound on one connection attempt (TCP + handshake + metadata + clock pings).
    wire: how camera frames and activations travel (``executor.wire_config.WireConfig`` or its text, e.g.
    ``"jpeg:90,fp16"``). The bare transport's default is ``EXACT_WIRE`` (raw frames, fp32) ON PURPOSE: a client knows
    nothing of how its cuts were priced, and a lossy codec changes the actions, so a library caller gets the unsplit
    forward's actions bit for bit unless it asks otherwise. Everything that prices a deployment defaults to
    ``DEFAULT_WIRE`` (the commands, EvalConfig/TrainConfig, the env's Profiles) and hands its wire to the client:
    ``ecc edge --wire``, and ``wire_config.priced_wire`` (the Profiles' wire) in the env's executor backend and the
    closed loop through the runtime. ``tests/agents/test_wire_defaults.py`` pins this. Token ids, state and actions
    always travel exactly.
    auto_reconnect: keep reconnecting in the background (backoff reconnect_initial_s doubling to reconnect_max_s).
    bandwidth_history: how many per-call bandwidth samples to keep.
    probe_interval_s: a tiny ping this often while connected (None: only at connect); the smallest round trip of the
    last ``rtt_window`` pings is the propagation RTT estimate (``base_rtt_ms``).
    probe_bytes: after each tiny ping, and once while connecting, a ping padded to this many bytes measures the
    uplink (a ``BandwidthSample`` with NaN downlink), as ``ecc_env.latency.ProbeConfig`` prices it in the env; 0 (or
    ``probe_interval_s=None``) disables bandwidth probes. A
    probe not answered within ``probe_interval_s`` leaves no sample; none is sent while an inference call is in
    flight (it would queue behind the call's upload and measure the queue).
    """

    connect_timeout_s: float = 2.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    api_key: str | None = None
    cafile: str | None = None  # PEM CA bundle that signed a wss:// server's certificate (None: the system's)
    wire: WireConfig | str = EXACT_WIRE
    clock_sync_pings: int = 5
    auto_reconnect: bool = False
    reconnect_initial_s: float = 0.05
    reconnect_max_s: float = 2.0
    ping_interval_s: float | None = 20.0
    bandwidth_history: int = 64
    probe_interval_s: float | None = 0.25
    probe_bytes: int = 8_192
    rtt_window: int = 5

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s}")
        object.__setattr__(self, "wire", WireConfig.parse(self.wire))
        if not 0 < self.reconnect_initial_s <= self.reconnect_max_s:
            raise ValueError(
                f"need 0 < reconnect_initial_s <= reconnect_max_s, got {self.reconnect_initial_s}, "
                f"{self.reconnect_max_s}"
            )
        if self.probe_interval_s is not None and self.probe_interval_s <= 0:
            raise ValueError(f"probe_interval_s must be > 0 or None, got {self.probe_interval_s}")
        if self.probe_bytes < 0:
            raise ValueError(f"probe_bytes must be >= 0, got {self.probe_bytes}")
        if self.rtt_window < 1:
            raise ValueError(f"rtt_window must be >= 1, got {self.rtt_window}")
        if self.clock_sync_pings < 0 or self.bandwidth_history < 1:
            raise ValueError(
                f"clock_sync_pings must be >= 0 and bandwidth_history >= 1, got {self.clock_sync_pings}, "
                f"{self.bandwidth_history}"
            )


@dataclass(frozen=True)
class SplitResult:
    """Actions of one inference and how they were obtained."""

    actions: np.ndarray
    cut: int
    networked: bool
    timing: CallTiming
    request_id: int = -1
    hedged: bool = False  # the local continuation of a hedged call won (``networked`` is then False)


class EdgeClient:
    """Connection to one cloud server for the edge half of ``model`` (its own model instance).

    ``connect()`` opens the connection and returns the server's metadata (model must match). ``infer(obs, cut,
    deadline=...)`` runs the edge blocks, exchanges payloads and returns a ``SplitResult``; the edge-only cut never
    touches the network. ``deadline`` is an absolute ``time.perf_counter()`` value; ``TransportTimeout`` if the
    reply is not in by then, ``ServerUnavailable`` if there is no connection, ``RemoteError`` if the server refused
    the request. Thread-safe for one caller at a time (calls are serialised by a lock).
    """

    def __init__(self, model: SplitModel, url: str, config: ClientConfig | None = None) -> None:
        self.model = model
        self.config = config or ClientConfig()
        self.connection = Connection(url, self.config, self._check_model, self._on_handshake, self._on_open)
        self.probe = LinkProbe(self.connection, self.config)
        self.hedger = Hedger(model, url)
        self._ids = itertools.count(1)
        self._call_lock = threading.Lock()

    # -- connection and link state (the parts' own) ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def server_info(self) -> ServerInfo | None:
        return self.connection.server_info

    @property
    def connects(self) -> int:
        """Connections opened so far (reconnects included)."""
        return self.connection.connects

    @property
    def clock_offset_s(self) -> float:
        """Server clock - client clock, from the pings at the last connect."""
        return self.probe.clock_offset_s

    @property
    def bandwidth(self) -> collections.deque[BandwidthSample]:
        """The last ``bandwidth_history`` samples of calls, probes and deadline misses."""
        return self.probe.bandwidth

    @property
    def base_rtt_ms(self) -> float | None:
        """Propagation round trip estimate: the smallest of the last ``rtt_window`` tiny-ping round trips."""
        return self.probe.base_rtt_ms

    @property
    def last_server_queue_length(self) -> int:
        """The server's queue length in its last reply or pong."""
        return self.probe.last_server_queue_length

    def connect(self, timeout_s: float | None = None) -> ServerInfo:
        """Connect now (or, with auto_reconnect, start the background loop and wait up to ``timeout_s``)."""
        return self.connection.connect(timeout_s)

    def _check_model(self, info: ServerInfo) -> None:
        mine = (self.model.family, self.model.preset, self.model.num_cuts)
        theirs = (info.model_id, info.preset, info.num_cuts)
        if mine != theirs:
            raise ProtocolError(f"server runs {theirs[0]}/{theirs[1]} with {theirs[2]} cuts, this edge {mine}")

    async def _on_handshake(self, ws: Any) -> None:
        await self.probe.sync_clock(ws)

    async def _on_open(self, ws: Any) -> None:
        await self.probe.on_open(ws)

    def close(self, timeout_s: float = 2.0) -> None:
        """Close the connection and stop the client's loop thread."""
        if not self.connection.closed:
            self.hedger.cancel()
        self.connection.close(timeout_s)

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------------------------------
    def ping(self, timeout_s: float = 1.0) -> float:
        """Round trip of a tiny message in ms (also refreshes the RTT estimate and the server queue length)."""
        ws = self.connection.require_ws()
        future = self.connection.submit(self.probe.ping_once(ws))
        t0, t1, _ = self.connection.wait(future, time.perf_counter() + timeout_s)
        return (t1 - t0) * 1e3

    def infer(
        self, obs: dict[str, np.ndarray], cut: int, *, deadline: float | None = None, hedge: bool = False
    ) -> SplitResult:
        """One inference at ``cut``; see the class docstring for the errors.

        ``hedge``: on a hedgeable cut (``executor.hedge``), run the cloud's blocks locally while the payload travels
        and return whichever actions come first (``SplitResult.hedged`` when the local ones won). A deadline that
        passes first abandons the network and waits for the local actions instead of raising ``TransportTimeout``.
        """
        with self._call_lock:
            self.hedger.reap()
            return self._infer(obs, cut, deadline, hedge)

    def _infer(self, obs: dict[str, np.ndarray], cut: int, deadline: float | None, hedge: bool) -> SplitResult:
        conn = self.connection
        t_start = time.perf_counter()
        acc = CallAccount()
        session = self.model.edge_session(cut)
        t = time.perf_counter()
        out = session.start(obs)
        acc.edge_s += time.perf_counter() - t
        if isinstance(out, np.ndarray):
            return SplitResult(out, cut, False, acc.timing(t_start))
        ws = conn.require_ws()
        request_id = next(self._ids)
        hedged = hedge and self.hedger.hedgeable(cut)
        if hedged:
            self.hedger.start(cut, out)
        kind = SPLIT
        while True:
            t = time.perf_counter()
            envelope = {TYPE_KEY: kind, "request_id": request_id, "cut": cut}
            if deadline is not None:  # the server bounds its own waits by it (a retry on another replica fits)
                envelope["budget_ms"] = max(0.0, (deadline - time.perf_counter()) * 1e3)
            sent = encode_frames(out, self.config.wire)  # camera frames in the configured encoding
            codec = self.config.wire.compression
            envelope["reply_compression"] = codec
            data = encode_payload(sent, envelope, codec)
            acc.encode_s += time.perf_counter() - t
            if kind == SPLIT:
                first_send_perf, first_bytes = time.perf_counter(), len(data)
            future = conn.submit(conn.exchange(ws, data, request_id))
            if hedged:
                local = self.hedger.race(
                    future, deadline, lambda: self.probe.record_miss(first_bytes, time.perf_counter() - first_send_perf)
                )
                if local is not None:
                    acc.edge_s = time.perf_counter() - t_start - acc.encode_s
                    return SplitResult(local, cut, False, acc.timing(t_start), request_id, hedged=True)
            try:
                ex = conn.wait(future, deadline)
            except TransportTimeout:
                if deadline is not None:
                    self.probe.record_miss(first_bytes, deadline - first_send_perf)
                raise
            t = time.perf_counter()
            try:
                message = wire.decode(ex.reply, limits=conn.limits)
            except wire.WireFormatError as e:
                raise ProtocolError(f"unreadable reply from {self.url}: {e}") from e
            meta = message.meta
            if meta.get(TYPE_KEY) == ERROR:
                raise RemoteError(str(meta.get("code")), str(meta.get("message")), request_id)
            timing = ServerTiming.from_dict(meta.get("timing"))
            try:
                payload = to_payload(message)
            except (ProtocolError, ValueError) as e:
                raise ProtocolError(f"bad reply payload from {self.url}: {e}") from e
            acc.decode_s += time.perf_counter() - t
            acc.add_exchange(ex, timing, len(data), self.probe.clock_offset_s)
            self.probe.last_server_queue_length = timing.queue_length
            t = time.perf_counter()
            out = session.on_reply(payload)
            acc.edge_s += time.perf_counter() - t
            if isinstance(out, np.ndarray):
                break
            kind = CONTINUE
        result = SplitResult(out, cut, True, acc.timing(t_start), request_id)
        self.bandwidth.append(acc.sample(result.timing, self.base_rtt_ms))
        return result
