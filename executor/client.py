"""Edge client: runs the edge half of a split model and exchanges payloads with a ``CloudServer``.

The caller's thread runs the model (edge blocks) and the wire encode/decode; a private event loop on a daemon thread
owns the websocket, so every wait has a deadline (``concurrent.futures`` timeouts) and a lost server is noticed at
once (the connection closes). With ``auto_reconnect`` the loop keeps reconnecting with exponential backoff while the
server is gone; ``infer`` never waits for a connection: it raises ``ServerUnavailable`` straight away so the caller
can fall back to the edge.

Timing of one inference (``protocol.CallTiming``): edge compute, encode, uplink, cloud queue, cloud compute,
downlink, decode, total; summed over the round trips of a decode exchange. Uplink/downlink use the server's clock
corrected by the offset from a ping exchange at connect (NTP-style, the ping with the smallest round trip wins);
``network_ms`` (round trip minus server residence) and the effective bandwidth need no clock agreement.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from executor import msgpack_numpy, wire
from executor.frame_transport import encode_frames
from executor.protocol import (
    CONTINUE,
    DEFAULT_MAX_MESSAGE_BYTES,
    ERROR,
    PING,
    PONG,
    SPLIT,
    TYPE_KEY,
    AuthenticationError,
    CallTiming,
    ProtocolError,
    RemoteError,
    ServerInfo,
    ServerTiming,
    ServerUnavailable,
    TransportTimeout,
    encode_payload,
    missed_upload_mbps,
    to_payload,
    wire_limits,
)
from executor.wire_config import EXACT_WIRE, WireConfig
from traces.units import BITS_PER_BYTE, MBIT

if TYPE_CHECKING:  # pragma: no cover
    from executor.models import SplitModel

log = logging.getLogger(__name__)


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
class _Exchange:
    reply: bytes
    send_wall: float
    send_perf: float
    recv_wall: float
    recv_perf: float


def _client_ssl(cafile: str | None) -> Any:
    """TLS context of a wss:// connection: certificate and host name verified, against ``cafile`` when given."""
    import ssl

    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot read the CA file {cafile}: {e}") from e


def _reply_counts(future: concurrent.futures.Future, deadline: float | None) -> bool:
    """Whether a call's network outcome stands: a reply received by the deadline, or a network failure. The check
    can run a little after the deadline: a reply received after it is a miss even when it is already there (a hedged
    call takes the local actions then), and one received before it is not (``_wait`` returns it)."""
    if not future.done() or future.cancelled():
        return False
    if future.exception() is not None:
        return True
    return deadline is None or future.result().recv_perf <= deadline


@dataclass
class _Accumulator:
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


class EdgeClient:
    """Connection to one cloud server for the edge half of ``model`` (its own model instance).

    ``connect()`` opens the connection and returns the server's metadata (model must match). ``infer(obs, cut,
    deadline=...)`` runs the edge blocks, exchanges payloads and returns a ``SplitResult``; the edge-only cut never
    touches the network. ``deadline`` is an absolute ``time.perf_counter()`` value; ``TransportTimeout`` if the
    reply is not in by then, ``ServerUnavailable`` if there is no connection, ``RemoteError`` if the server refused
    the request. Thread-safe for one caller at a time (calls are serialised by a lock).
    """

    def __init__(self, model: SplitModel, url: str, config: ClientConfig | None = None) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss://, got {url!r}")
        self.model = model
        self.url = url
        self.config = config or ClientConfig()
        self.server_info: ServerInfo | None = None
        self.clock_offset_s = 0.0  # server clock - client clock
        self.bandwidth: collections.deque[BandwidthSample] = collections.deque(maxlen=self.config.bandwidth_history)
        self.last_server_queue_length = 0
        self.connects = 0
        self._ws: Any = None
        self._ids = itertools.count(1)
        self._call_lock = threading.Lock()
        self._closed = False
        self._connected_event = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ecc-edge-client", daemon=True)
        self._thread.start()
        self._supervisor: concurrent.futures.Future | None = None
        self._limits = wire_limits(self.config.max_message_bytes)
        self._pending: dict[int, asyncio.Future] = {}  # request id -> reply future (owned by the loop thread)
        self._pings: dict[float, asyncio.Future] = {}  # t_client_s -> pong future
        self._rtt_samples: collections.deque[float] = collections.deque(maxlen=self.config.rtt_window)
        self._tasks: set[asyncio.Task] = set()
        self._hedge: Any = None  # the last call's LocalContinuation (executor.hedge), stopped before the next call
        self._hedge_cuts: dict[int, bool] = {}

    # -- connection -------------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and ws.state.name == "OPEN"

    def connect(self, timeout_s: float | None = None) -> ServerInfo:
        """Connect now (or, with auto_reconnect, start the background loop and wait up to ``timeout_s``)."""
        timeout = self.config.connect_timeout_s if timeout_s is None else timeout_s
        if self._closed:
            raise ServerUnavailable("client is closed")
        if self.config.auto_reconnect:
            if self._supervisor is None:
                self._supervisor = asyncio.run_coroutine_threadsafe(self._supervise(), self._loop)
            if not self._connected_event.wait(timeout):
                raise TransportTimeout(f"no connection to {self.url} within {timeout:.3f} s")
            assert self.server_info is not None
            return self.server_info
        future = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise TransportTimeout(f"no connection to {self.url} within {timeout:.3f} s") from e

    async def _open(self) -> ServerInfo:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        headers = {"Authorization": f"Api-Key {self.config.api_key}"} if self.config.api_key else None
        timeout = self.config.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                tls = {"ssl": _client_ssl(self.config.cafile)} if self.url.startswith("wss://") else {}
                ws = await connect(
                    self.url,
                    **tls,
                    additional_headers=headers,
                    compression=None,
                    max_size=self.config.max_message_bytes,
                    open_timeout=timeout,
                    ping_interval=self.config.ping_interval_s,
                    close_timeout=1.0,
                )
                try:
                    first = await ws.recv()
                    info = ServerInfo.from_dict(msgpack_numpy.unpackb(first) if isinstance(first, bytes) else first)
                    self._check_model(info)
                    self._spawn(self._read_loop(ws))
                    offset = await self._sync_clock(ws)
                except BaseException:
                    await ws.close()
                    raise
        except TimeoutError as e:
            raise TransportTimeout(f"connecting to {self.url} took longer than {timeout:.3f} s") from e
        except InvalidStatus as e:
            if e.response.status_code in (401, 403):
                raise AuthenticationError(f"{self.url} refused the token (HTTP {e.response.status_code})") from e
            raise ServerUnavailable(f"{self.url} refused the connection: {e}") from e
        except (OSError, WebSocketException) as e:
            raise ServerUnavailable(f"cannot connect to {self.url}: {e}") from e
        except wire.WireFormatError as e:
            raise ProtocolError(f"{self.url} sent unreadable metadata: {e}") from e
        self._ws, self.server_info, self.clock_offset_s = ws, info, offset
        await self._connect_probe(ws)
        self.connects += 1
        self._connected_event.set()
        if self.config.probe_interval_s is not None:
            self._spawn(self._probe_loop(ws))
        log.info("connected to %s (%s/%s, clock offset %.3f ms)", self.url, info.model_id, info.preset, offset * 1e3)
        return info

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_model(self, info: ServerInfo) -> None:
        mine = (self.model.family, self.model.preset, self.model.num_cuts)
        theirs = (info.model_id, info.preset, info.num_cuts)
        if mine != theirs:
            raise ProtocolError(f"server runs {theirs[0]}/{theirs[1]} with {theirs[2]} cuts, this edge {mine}")

    async def _read_loop(self, ws: Any) -> None:
        """The only reader of the connection: routes replies by request id and pongs by their timestamp."""
        from websockets.exceptions import ConnectionClosed

        error: BaseException = ServerUnavailable(f"connection to {self.url} closed")
        try:
            async for raw in ws:
                recv_wall, recv_perf = time.time(), time.perf_counter()
                if isinstance(raw, str):
                    for fut in list(self._pending.values()):
                        if not fut.done():
                            fut.set_exception(RemoteError("text", raw))
                    continue
                try:
                    meta, _ = wire.read_header(raw, limits=self._limits)
                except wire.WireFormatError as e:
                    log.warning("unreadable message from %s: %s", self.url, e)
                    continue
                kind = meta.get(TYPE_KEY)
                if kind == PONG:
                    fut = self._pings.get(meta.get("t_client_s"))
                    if fut is not None and not fut.done():
                        fut.set_result((meta, recv_wall))
                    continue
                rid = meta.get("request_id")
                targets = list(self._pending.values()) if rid == -1 and kind == ERROR else [self._pending.get(rid)]
                for fut in targets:
                    if fut is not None and not fut.done():
                        fut.set_result((raw, recv_wall, recv_perf))
                if targets == [None]:
                    log.debug("discarding a stale message (request %s)", rid)
        except ConnectionClosed as e:
            error = ServerUnavailable(f"connection to {self.url} closed: {e}")
        finally:
            for fut in list(self._pending.values()) + list(self._pings.values()):
                if not fut.done():
                    fut.set_exception(error)
                    # A waiter, if any, still gets the error; at close() the waiters are being cancelled, and
                    # asyncio would otherwise log "Future exception was never retrieved" for each such future.
                    fut.exception()

    async def _ping_once(self, ws: Any, pad_bytes: int = 0) -> tuple[float, float, dict[str, Any]]:
        """(send wall time, receive wall time, pong metadata) of one ping. A tiny one records an RTT sample; one
        padded with ``pad_bytes`` records an uplink ``BandwidthSample`` from the server's receive time instead."""
        t0 = time.time()
        fut = self._loop.create_future()
        self._pings[t0] = fut
        arrays = {"pad": np.zeros(pad_bytes, dtype=np.uint8)} if pad_bytes > 0 else {}
        data = wire.encode(arrays, {TYPE_KEY: PING, "t_client_s": t0})
        try:
            await ws.send(data)
            meta, t1 = await fut
        finally:
            self._pings.pop(t0, None)
        self.last_server_queue_length = int(meta.get("queue_length", 0))
        if pad_bytes <= 0:
            self._rtt_samples.append((t1 - t0) * 1e3)
            return t0, t1, meta
        up_s = (float(meta.get("t_server_s", t1)) - self.clock_offset_s) - t0
        up_s = min(max(up_s - (self.base_rtt_ms or 0.0) / 2e3, 1e-5), t1 - t0)  # serialisation time, as in _sample
        self._add_uplink_sample(t0 + up_s, len(data) * BITS_PER_BYTE / (up_s * MBIT), len(data))
        return t0, t1, meta

    def _add_uplink_sample(self, done_s: float, mbps: float, nbytes: int) -> None:
        """Record a sample that measured the uplink only (a bandwidth probe or a missed call): other rates NaN."""
        nan = float("nan")
        rtt = self.base_rtt_ms
        self.bandwidth.append(BandwidthSample(
            uplink_done_s=done_s, uplink_mbps=mbps, downlink_mbps=nan, effective_mbps=nan,
            rtt_ms=rtt if rtt is not None else nan, bytes_up=nbytes, bytes_down=0,
        ))

    async def _sync_clock(self, ws: Any) -> float:
        best: tuple[float, float] | None = None  # (rtt, offset)
        for _ in range(self.config.clock_sync_pings):
            t0, t1, meta = await self._ping_once(ws)
            offset = float(meta["t_server_s"]) - (t0 + t1) / 2
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, offset)
        return best[1] if best is not None else 0.0

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
            await asyncio.wait_for(self._ping_once(ws, self.config.probe_bytes), timeout=timeout_s)
        except TimeoutError:
            log.debug("bandwidth probe not through within %.3f s: no sample", timeout_s)

    async def _probe_loop(self, ws: Any) -> None:
        """Every probe_interval_s: a tiny ping (propagation-RTT estimate), then a padded bandwidth probe."""
        interval = self.config.probe_interval_s
        while ws.state.name == "OPEN" and not self._closed:
            await asyncio.sleep(interval)
            try:
                await asyncio.wait_for(self._ping_once(ws), timeout=max(5.0, 10 * interval))
                if self.config.probe_bytes > 0 and not self._pending:  # behind an upload it would measure the queue
                    await self._bandwidth_probe(ws, interval)
            except (TimeoutError, ServerUnavailable, ConnectionError):
                return
            except Exception as e:  # noqa: BLE001 - a failed probe must never kill the loop thread
                log.debug("probe failed: %s", e)
                return

    @property
    def base_rtt_ms(self) -> float | None:
        """Propagation round trip estimate: the smallest of the last ``rtt_window`` tiny-ping round trips."""
        samples = list(self._rtt_samples)
        return min(samples) if samples else None

    async def _supervise(self) -> None:
        """Keep a connection open: reconnect with exponential backoff whenever it closes."""
        backoff = self.config.reconnect_initial_s
        while not self._closed:
            try:
                await self._open()
            except AuthenticationError:
                log.error("server refused the token; not retrying")
                return
            except (ServerUnavailable, TransportTimeout, ProtocolError) as e:
                log.debug("reconnect to %s failed: %s; next try in %.2f s", self.url, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max_s)
                continue
            backoff = self.config.reconnect_initial_s
            await self._ws.wait_closed()
            self._connected_event.clear()
            log.info("connection to %s closed; reconnecting", self.url)

    def close(self, timeout_s: float = 2.0) -> None:
        """Close the connection and stop the client's loop thread."""
        if self._closed:
            return
        self._closed = True
        if self._hedge is not None:
            self._hedge.cancel()

        async def shutdown() -> None:
            if self._ws is not None:
                await self._ws.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------------------------------
    def ping(self, timeout_s: float = 1.0) -> float:
        """Round trip of a tiny message in ms (also refreshes the RTT estimate and the server queue length)."""
        ws = self._require_ws()
        future = asyncio.run_coroutine_threadsafe(self._ping_once(ws), self._loop)
        t0, t1, _ = self._wait(future, time.perf_counter() + timeout_s)
        return (t1 - t0) * 1e3

    def infer(self, obs: dict[str, np.ndarray], cut: int, *, deadline: float | None = None,
              hedge: bool = False) -> SplitResult:
        """One inference at ``cut``; see the class docstring for the errors.

        ``hedge``: on a hedgeable cut (``executor.hedge``), run the cloud's blocks locally while the payload travels
        and return whichever actions come first (``SplitResult.hedged`` when the local ones won). A deadline that
        passes first abandons the network and waits for the local actions instead of raising ``TransportTimeout``.
        """
        with self._call_lock:
            self._reap_hedge()
            return self._infer(obs, cut, deadline, hedge)

    def _reap_hedge(self, timeout_s: float = 10.0) -> None:
        """Wait for the previous call's abandoned local continuation to stop (it does at its next block)."""
        cont, self._hedge = self._hedge, None
        if cont is not None:
            cont.cancel()
            if not cont.join(timeout_s):
                log.warning("a cancelled local continuation at cut %d is still running after %.0f s", cont.cut,
                            timeout_s)

    def _hedgeable(self, cut: int) -> bool:
        if cut not in self._hedge_cuts:
            from executor.hedge import cut_is_hedgeable

            self._hedge_cuts[cut] = cut_is_hedgeable(self.model, cut)
        return self._hedge_cuts[cut]

    def _require_ws(self) -> Any:
        ws = self._ws
        if self._closed or ws is None or ws.state.name != "OPEN":
            raise ServerUnavailable(f"not connected to {self.url}")
        return ws

    def _wait(self, future: concurrent.futures.Future, deadline: float | None) -> Any:
        from websockets.exceptions import ConnectionClosed

        timeout = None if deadline is None else deadline - time.perf_counter()
        try:
            if timeout is not None and timeout <= 0 and not _reply_counts(future, deadline):
                raise concurrent.futures.TimeoutError()
            return future.result(timeout)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise TransportTimeout(f"no reply from {self.url} before the deadline") from e
        except (ServerUnavailable, RemoteError):
            raise
        except ConnectionClosed as e:
            raise ServerUnavailable(f"connection to {self.url} closed: {e}") from e
        except OSError as e:
            raise ServerUnavailable(f"connection to {self.url} failed: {e}") from e
        except wire.WireFormatError as e:
            raise ProtocolError(f"unreadable reply from {self.url}: {e}") from e

    async def _exchange(self, ws: Any, data: bytes, request_id: int) -> _Exchange:
        fut = self._loop.create_future()
        self._pending[request_id] = fut
        try:
            send_wall, send_perf = time.time(), time.perf_counter()
            await ws.send(data)
            raw, recv_wall, recv_perf = await fut
        finally:
            self._pending.pop(request_id, None)
        return _Exchange(raw, send_wall, send_perf, recv_wall, recv_perf)

    def _infer(self, obs: dict[str, np.ndarray], cut: int, deadline: float | None, hedge: bool) -> SplitResult:
        t_start = time.perf_counter()
        acc = _Accumulator()
        session = self.model.edge_session(cut)
        t = time.perf_counter()
        out = session.start(obs)
        acc.edge_s += time.perf_counter() - t
        if isinstance(out, np.ndarray):
            return SplitResult(out, cut, False, self._timing(acc, t_start))
        ws = self._require_ws()
        request_id = next(self._ids)
        if hedge and self._hedgeable(cut):
            from executor.hedge import LocalContinuation

            self._hedge = LocalContinuation(self.model, cut, out)
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
            future = asyncio.run_coroutine_threadsafe(self._exchange(ws, data, request_id), self._loop)
            if self._hedge is not None:
                local = self._race(future, deadline, first_send_perf, first_bytes)
                if local is not None:
                    acc.edge_s = time.perf_counter() - t_start - acc.encode_s
                    return SplitResult(local, cut, False, self._timing(acc, t_start), request_id, hedged=True)
            try:
                ex = self._wait(future, deadline)
            except TransportTimeout:
                if deadline is not None:
                    self._record_miss(first_bytes, deadline - first_send_perf)
                raise
            t = time.perf_counter()
            try:
                message = wire.decode(ex.reply, limits=self._limits)
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
            self._account(acc, ex, timing, len(data))
            t = time.perf_counter()
            out = session.on_reply(payload)
            acc.edge_s += time.perf_counter() - t
            if isinstance(out, np.ndarray):
                break
            kind = CONTINUE
        result = SplitResult(out, cut, True, self._timing(acc, t_start), request_id)
        self.bandwidth.append(self._sample(acc, result.timing))
        return result

    def _race(self, future: concurrent.futures.Future, deadline: float | None, send_perf: float,
              nbytes: int) -> np.ndarray | None:
        """Wait for the network reply or the local continuation, whichever is first. Returns the local actions when
        they won (or the deadline passed first: the network is abandoned, the local actions awaited); None when the
        reply is in (or the network failed, or the local run did): the caller reads ``future`` as without a hedge."""
        cont = self._hedge
        timeout = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        concurrent.futures.wait([future, cont.future], timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        if _reply_counts(future, deadline) or (cont.future.done() and cont.future.exception() is not None):
            cont.cancel()
            return None
        future.cancel()  # local actions first, or the deadline passed: a late reply is dropped by its request id
        self._record_miss(nbytes, time.perf_counter() - send_perf)  # stamped at min(deadline, local finish)
        try:
            return cont.future.result()
        except Exception:  # noqa: BLE001 - the local run failed after the deadline: report the deadline miss
            raise TransportTimeout(f"no reply from {self.url} before the deadline") from None

    def _record_miss(self, nbytes: int, waited_s: float) -> None:
        """A call missed its deadline: record the env's upper-bound uplink sample (``missed_upload_mbps``)."""
        mbps = missed_upload_mbps(nbytes, waited_s)
        if mbps == mbps:
            self._add_uplink_sample(time.time(), mbps, nbytes)

    def _sample(self, acc: _Accumulator, timing: CallTiming) -> BandwidthSample:
        """The env's bandwidth estimates from one call: serialisation time = measured time - one-way delay."""
        rtt = self.base_rtt_ms
        one_way_s = (rtt or 0.0) / 2e3
        floor_s = 1e-5  # a transfer faster than this cannot be told apart from clock noise
        up_s = max(acc.first_up_s - one_way_s, floor_s)
        down_s = max(acc.last_down_s - one_way_s, floor_s)
        return BandwidthSample(
            uplink_done_s=acc.first_send_wall + up_s,
            uplink_mbps=acc.first_up_bytes * BITS_PER_BYTE / (up_s * MBIT),
            downlink_mbps=acc.last_down_bytes * BITS_PER_BYTE / (down_s * MBIT),
            effective_mbps=timing.effective_mbps,
            rtt_ms=rtt if rtt is not None else timing.network_ms / max(timing.round_trips + 1, 1),
            bytes_up=acc.bytes_up,
            bytes_down=acc.bytes_down,
        )

    def _account(self, acc: _Accumulator, ex: _Exchange, timing: ServerTiming, sent: int) -> None:
        rtt = ex.recv_perf - ex.send_perf
        acc.trips += 1
        acc.rtt_s += rtt
        acc.bytes_up += sent
        acc.bytes_down += len(ex.reply)
        acc.queue_ms += timing.queue_ms
        acc.compute_ms += timing.compute_ms
        network = max(rtt - timing.residence_ms / 1e3, 0.0)
        acc.network_s += network
        up = (timing.recv_time_s - self.clock_offset_s) - ex.send_wall
        down = ex.recv_wall - (timing.send_time_s - self.clock_offset_s)
        # clocks never agree perfectly: keep each direction within [0, network] and their sum at most network
        up = min(max(up, 0.0), network)
        down = network - up if down < 0 or up + down > network else down
        acc.uplink_s += up
        acc.downlink_s += down
        if acc.trips == 1:
            acc.first_up_s, acc.first_up_bytes, acc.first_send_wall = up, sent, ex.send_wall
        acc.last_down_s, acc.last_down_bytes = down, len(ex.reply)
        acc.queue_length = timing.queue_length
        self.last_server_queue_length = timing.queue_length

    def _timing(self, acc: _Accumulator, t_start: float) -> CallTiming:
        def mbps(nbytes: int, seconds: float) -> float:
            return nbytes * BITS_PER_BYTE / (seconds * MBIT) if seconds > 0 else 0.0

        return CallTiming(
            edge_ms=acc.edge_s * 1e3,
            encode_ms=acc.encode_s * 1e3,
            uplink_ms=acc.uplink_s * 1e3,
            cloud_queue_ms=acc.queue_ms,
            cloud_compute_ms=acc.compute_ms,
            downlink_ms=acc.downlink_s * 1e3,
            decode_ms=acc.decode_s * 1e3,
            total_ms=(time.perf_counter() - t_start) * 1e3,
            network_ms=acc.network_s * 1e3,
            round_trips=max(acc.trips - 1, 0),
            bytes_up=acc.bytes_up,
            bytes_down=acc.bytes_down,
            effective_mbps=mbps(acc.bytes_up + acc.bytes_down, acc.network_s),
            uplink_mbps=mbps(acc.bytes_up, acc.uplink_s),
            downlink_mbps=mbps(acc.bytes_down, acc.downlink_s),
            server_queue_length=acc.queue_length,
        )
