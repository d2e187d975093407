"""Cloud server: runs the cloud half of a split model for edge clients over websockets.

One asyncio websocket server (``websockets``), bound to 127.0.0.1 unless another host is asked for. Every connection
first receives a metadata message (``protocol.ServerInfo``: model id, preset, number of blocks and cuts, schema
version, message size limit, whether hardware emulation is on). The model's compute runs on one worker thread (one
model instance, so requests are serialised there and never run concurrently on it); the event loop only receives,
validates and sends, so many clients are served at once and a slow client does not hold up the others. Every reply
carries the server's timing (queue wait, compute, residence) and the current queue length (requests queued or
running).

Two request formats on one port, told apart by the first bytes of a binary frame:

* ours (``executor.wire`` messages, magic ``ECCW``; see ``executor.protocol``): ``split`` / ``continue`` for split
  inference at any cut, with multi-round-trip exchanges (decode steps across a cut inside an autoregressive LLM)
  served by one cloud session per connection and request id; ``ping``; ``cancel``. Errors come back as ``error``
  messages naming the request.
* openpi's policy-server format (any other binary frame): a msgpack map with numpy arrays
  (``executor.msgpack_numpy``), answered with ``{"actions": array, "server_timing": {...}, "queue_length": n}``,
  errors as a text frame, exactly what openpi's ``WebsocketClientPolicy`` expects. This is a full offload: the
  server runs the whole model on the observation.

  Observation keys, openpi's LIBERO names beside ours (ours win when both are given):

  ==========================  ======================================================================================
  openpi key                  our observation field
  ==========================  ======================================================================================
  ``observation/image``       ``images[0]`` (H, W, 3) uint8; resized (bilinear) to the model's camera size if needed
  ``observation/wrist_image`` ``images[1]`` when the model has a second camera; otherwise ignored
  ``observation/state``       ``state``: float32, cut or zero-padded to the model's state size
  ``prompt``                  prompt token ids: UTF-8 bytes of the string modulo the vocabulary, cut or padded to
                              the model's prompt length (the random-weight models have no real tokenizer)
  (none)                      any other model input (e.g. flow-matching ``noise``) comes from
                              ``model.make_observation(seed)`` with a per-request seed counter
  ==========================  ======================================================================================

Security (``docs/security.md``): a maximum message size (by default ``MESSAGE_MARGIN`` x the served model's largest
legitimate request, enforced by websockets while reading, before the message is assembled); wire messages validated
(dtype whitelist, shapes, sizes) before any array is built, and decoded on a small thread pool (never on the event
loop) under a server-wide budget of in-flight decoded bytes; never pickle; a shared token checked in the handshake
(``Authorization: Api-Key <token>``, as openpi's client sends it, or ``Bearer <token>``) with failed attempts
rate-limited per address; a non-loopback bind refused without a token unless ``insecure``; TLS with
``certfile``/``keyfile`` (``wss://``); a connection cap, an idle timeout and a per-message receive deadline
(slowloris). A malformed message gets a bounded error reply (printable ASCII, never the client's bytes) and the
connection stays open; a connection that keeps sending bad messages is closed (policy violation); other connections
are never affected. Log lines about clients are rate-limited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import hmac
import http
import ipaddress
import itertools
import logging
import math
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from executor import msgpack_numpy, wire
from executor.protocol import (
    CANCEL,
    CONTINUE,
    DEFAULT_PORT,
    E_BAD_MESSAGE,
    E_BAD_REQUEST,
    E_BUSY,
    E_COMPUTE,
    E_INTERNAL,
    ERROR,
    PING,
    PONG,
    REPLY,
    SPLIT,
    TYPE_KEY,
    ProtocolError,
    ServerInfo,
    ServerTiming,
    encode_payload,
    max_message_bytes_for,
    payload_header,
    safe_error_text,
    to_payload,
    wire_limits,
)

if TYPE_CHECKING:  # pragma: no cover
    from executor.emulation import HardwareEmulator
    from executor.models import SplitModel

log = logging.getLogger(__name__)


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Cloud server settings.

    host: bind address (loopback by default; another address only when asked, and then only with ``api_key``
    unless ``insecure``).
    port: TCP port; 0 lets the OS choose (read ``CloudServer.port`` after start).
    max_message_bytes: largest incoming message; bigger ones close the connection (1009) before they are decoded.
    None: ``protocol.max_message_bytes_for(model)`` (a margin over the served model's largest legitimate request).
    api_key: shared token required in the handshake, or None for no authentication.
    insecure: allow a non-loopback bind without ``api_key`` (anyone who reaches the port can use the model).
    certfile / keyfile: PEM certificate chain and private key: serve TLS (``wss://``); both or neither.
    max_errors_per_connection: bad messages tolerated before the connection is closed (1008); the server's own
        failures (``ComputeUnavailable``: a dead or silent replica) never count.
    max_in_flight_per_connection: requests of one connection answered concurrently (our protocol; each reply names
        its request id), so a slow one does not hold up the next; openpi requests are answered in order.
    reply_compression: wire codec for reply payloads ("none" keeps results bit-exact) when the request names none
        (our client names its wire configuration's codec in the envelope's ``reply_compression``).
    ping_interval_s: websocket keepalive pings (None disables).
    max_connections: open connections served at once; at the cap a new handshake closes the connection idle longest
    (1013; no message for ``evict_idle_after_s`` and none being handled), or gets HTTP 503 when none is.
    idle_timeout_s: a connection that sends no message for this long is closed (1000).
    message_timeout_s: a message must arrive in full within this long of its first byte (slowloris; 1008).
    open_timeout_s: a TCP connection must finish its websocket handshake within this long.
    auth_failures_per_minute: failed token checks tolerated per client address and minute; beyond, HTTP 429.
    oversized_per_minute: oversized messages (close 1009) tolerated per client address and minute; beyond, new
    connections from that address are dropped as soon as they are accepted (before the HTTP request is read) for
    the rest of the minute, so a flood of oversized messages costs the server an accept instead of a handshake.
    decode_workers: threads that decode messages (off the event loop).
    max_inflight_bytes: server-wide budget of received plus decoded bytes of the messages being handled; a message
    that finds it full waits up to ``busy_timeout_s`` and is then answered ``busy``.
    log_lines_per_minute: log lines about clients (bad requests, connections, auth failures) per minute; the rest are
    counted and summarised.
    max_batch: batching across robots: up to this many concurrent first steps of our protocol at one cut run as one
    batched forward (``SplitModel.cloud_batch``); 1 (default) serves one request at a time. Requests at different
    cuts are never batched together; decode round trips (``continue``) and openpi requests are not batched.
    batch_wait_ms: how long the oldest waiting request may wait for more of its cut to fill a batch; 0 (default)
    batches only what queued up while the model was busy, so a lone robot never waits.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_message_bytes: int | None = None
    api_key: str | None = None
    max_errors_per_connection: int = 16
    max_in_flight_per_connection: int = 8
    reply_compression: str = "none"
    ping_interval_s: float | None = 20.0
    close_timeout_s: float = 2.0
    insecure: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    max_connections: int = 256
    idle_timeout_s: float = 300.0
    message_timeout_s: float = 60.0
    open_timeout_s: float = 10.0
    auth_failures_per_minute: int = 10
    oversized_per_minute: int = 10
    decode_workers: int = 2
    max_inflight_bytes: int = 512 * 1024 * 1024
    busy_timeout_s: float = 5.0
    log_lines_per_minute: int = 120
    evict_idle_after_s: float = 1.0
    max_batch: int = 1
    batch_wait_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_message_bytes is not None and self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024 (or None: derived), got {self.max_message_bytes}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string or None")
        if self.max_errors_per_connection < 1:
            raise ValueError(f"max_errors_per_connection must be >= 1, got {self.max_errors_per_connection}")
        if self.max_in_flight_per_connection < 1:
            raise ValueError(f"max_in_flight_per_connection must be >= 1, got {self.max_in_flight_per_connection}")
        if self.reply_compression not in wire.COMPRESSIONS:
            raise ValueError(f"reply_compression must be one of {wire.COMPRESSIONS}, got {self.reply_compression!r}")
        if not is_loopback(self.host) and self.api_key is None and not self.insecure:
            raise ValueError(
                f"binding {self.host} (not loopback) needs an API key (--api-key or ECC_API_KEY); "
                "--insecure serves anyone who can reach the port"
            )
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together (TLS needs both)")
        if not (math.isfinite(self.batch_wait_ms) and self.batch_wait_ms >= 0):
            raise ValueError(f"batch_wait_ms must be finite and >= 0, got {self.batch_wait_ms}")
        for name in (
            "max_connections",
            "auth_failures_per_minute",
            "oversized_per_minute",
            "decode_workers",
            "max_inflight_bytes",
            "log_lines_per_minute",
            "max_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("idle_timeout_s", "message_timeout_s", "open_timeout_s", "busy_timeout_s", "evict_idle_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without ``certfile``); raises ValueError for unreadable files."""
        if self.certfile is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load TLS certificate {self.certfile} / key {self.keyfile}: {e}") from e
        return ctx


class _LogBudget:
    """At most ``per_minute`` log lines about clients; the rest are counted and summarised in the next line."""

    def __init__(self, logger: logging.Logger, per_minute: int, clock: Any = time.monotonic) -> None:
        self.logger, self.per_minute, self.clock = logger, per_minute, clock
        self.window_start = clock()
        self.lines = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        if now - self.window_start >= 60.0:
            if self.suppressed:
                self.logger.warning("%d log lines about clients suppressed in the last minute", self.suppressed)
            self.window_start, self.lines, self.suppressed = now, 0, 0
        if self.lines < self.per_minute:
            self.lines += 1
            return True
        self.suppressed += 1
        return False

    def log(self, level: int, msg: str, *args: Any) -> None:
        if self.allow():
            self.logger.log(level, msg, *args)


class _LogBudgetFilter(logging.Filter):
    """Rate-limits records of a library logger at INFO and above (asyncio's accept errors, websockets' handshake
    failures and its "connection open"/"connection closed" line for every connection, an attacker's too)."""

    def __init__(self, budget: _LogBudget) -> None:
        super().__init__()
        self.budget = budget

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.INFO or self.budget.allow()


class _ByteBudget:
    """Server-wide budget of bytes held by messages being handled (received + decoded); event-loop only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int, timeout_s: float) -> AsyncIterator[None]:
        if nbytes > self.capacity:
            raise _BadRequest(E_BUSY, f"the message needs {nbytes} bytes, more than the server's whole budget")
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.used + nbytes <= self.capacity), timeout_s)
            except TimeoutError as e:
                raise _BadRequest(E_BUSY, "the server is busy decoding other messages; retry later") from e
            self.used += nbytes
        try:
            yield
        finally:
            async with self._changed:
                self.used -= nbytes
                self._changed.notify_all()


class _ConnectionTimeout(Exception):
    """Internal: a connection idle too long (code 1000) or trickling a message too slowly (code 1008)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _AddressStrikes:
    """Events per client address within the last minute (failed token checks, oversized messages); at most
    ``max_addresses`` addresses are remembered (the oldest are forgotten)."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, max_addresses: int = 4096, clock: Any = time.monotonic) -> None:
        self.per_minute, self.max_addresses, self.clock = per_minute, max_addresses, clock
        self._times: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def exceeded(self, address: str) -> bool:
        """Whether ``address`` has used up its events for the current minute."""
        times = self._times.get(address)
        if times is None:
            return False
        now = self.clock()
        while times and now - times[0] > self.WINDOW_S:
            times.popleft()
        return len(times) >= self.per_minute

    def add(self, address: str) -> None:
        times = self._times.get(address)
        if times is None:
            times = self._times[address] = collections.deque(maxlen=self.per_minute)
            while len(self._times) > self.max_addresses:
                self._times.popitem(last=False)
        times.append(self.clock())

    def clear(self) -> None:
        self._times.clear()


def _peer_host(address: Any) -> str:
    """The host part of a socket peer address (``(host, port[, ...])``), "?" when unknown."""
    return str(address[0]) if isinstance(address, tuple) and address else "?"


def _connection_class(server: CloudServer) -> type:
    """websockets' ServerConnection that (1) stops reading a connection once it has sent close 1009 (message too
    big): the rest of an oversized message is dropped with the socket instead of being read just to be discarded,
    and the sender's address gets a strike; (2) drops a new connection from an address out of strikes as soon as it
    is accepted, before any HTTP is parsed or answered."""
    from websockets.asyncio.server import ServerConnection

    class _DropOversized(ServerConnection):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if server._oversized.exceeded(_peer_host(transport.get_extra_info("peername"))):
                server.oversized_refused += 1
                transport.abort()  # the handshake then ends without a request, silently

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            sent = self.protocol.close_sent
            if sent is not None and sent.code == 1009 and not self.transport.is_closing():
                self.transport.close()  # flushes the close frame, reads nothing more
                peer = _peer_host(self.transport.get_extra_info("peername"))
                server._oversized.add(peer)
                server._log.log(logging.INFO, "closed the connection from %s: oversized message", peer)

    return _DropOversized


def _message_in_progress(ws: Any) -> bool:
    """Whether part of a message has arrived (websockets' parser holds a partial frame or a fragmented message)."""
    proto = getattr(ws, "protocol", None)
    if proto is None:
        return False
    if getattr(proto, "current_size", None) is not None:
        return True
    reader = getattr(proto, "reader", None)
    return bool(len(getattr(reader, "buffer", b"")))


class ComputeUnavailable(RuntimeError):
    """The server could not run a job (an engine's replica died or did not answer): the server's fault, answered with
    a ``compute_failed`` error and never counted against the client."""


request_budget_s: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_budget_s", default=None)
"""Seconds the client gives the request being answered (its ``budget_ms``: the time to its deadline), or None.
Engines bound their waits by it (``executor.ray_serve``)."""


class _BadRequest(Exception):
    """Internal: a request to answer with an error message (code, text)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, so other engines can carry it back from a worker
        return (type(self), (self.code, str(self)))


class _ServerFault(_BadRequest):
    """Internal: an error reply for a failure of the server itself (not counted against the client)."""


@dataclass
class _Waiting:
    cut: int
    message: wire.Message
    future: asyncio.Future[Any]
    arrived: float


class _Batcher:
    """Groups concurrent first steps at one cut into batches for the compute worker (event-loop only).

    The oldest waiting request picks the cut; up to ``max_batch`` requests at that cut go together, after waiting at
    most ``wait_s`` from the oldest one's arrival for the batch to fill. One batch runs at a time (the model runs on
    one worker thread), so requests arriving meanwhile form the next batch.
    """

    def __init__(self, execute: Any, max_batch: int, wait_s: float) -> None:
        self._execute = execute
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_requests = 0

    async def submit(self, cut: int, message: wire.Message) -> tuple[Any, float, float]:
        """((session, reply), queue_s, compute_s) of one first step, run in a batch; raises its own error."""
        loop = asyncio.get_running_loop()
        item = _Waiting(cut, message, loop.create_future(), loop.time())
        self.waiting.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch())
        self._wake.set()
        return await item.future

    def _count(self, cut: int) -> int:
        return sum(1 for w in self.waiting if w.cut == cut)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.waiting = [w for w in self.waiting if not w.future.done()]  # cancelled: connection gone
            if not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            cut = self.waiting[0].cut
            deadline = self.waiting[0].arrived + self.wait_s
            while self._count(cut) < self.max_batch and (left := deadline - loop.time()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
            batch = [w for w in self.waiting if w.cut == cut and not w.future.done()][: self.max_batch]
            taken = {id(w) for w in batch}
            self.waiting = [w for w in self.waiting if id(w) not in taken]
            if not batch:
                continue
            started = loop.time()
            try:
                results, queue_s, compute_s = await self._execute(cloud_batch_step, cut, [w.message for w in batch])
            except Exception as e:  # noqa: BLE001 - the engine failed the whole batch: every request gets it
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(e)
                continue
            self.batches += 1
            self.batched_requests += len(batch)
            for w, r in zip(batch, results):
                if w.future.done():
                    continue
                if isinstance(r, BaseException):
                    w.future.set_exception(r)
                else:
                    w.future.set_result((r, started - w.arrived + queue_s, compute_s))


class CloudServer:
    """The cloud half: a websocket server around one ``SplitModel``.

    ``start()`` runs it on a background thread with its own event loop (tests, notebooks); ``serve_forever()`` runs
    it in the caller's thread until ``stop()`` or Ctrl-C (the CLI). ``stop()`` closes every connection (1001), waits
    for the running compute and shuts the worker down.
    """

    def __init__(
        self, model: SplitModel, config: ServerConfig | None = None, *, emulator: HardwareEmulator | None = None
    ) -> None:
        self.model = model
        self.config = config or ServerConfig()
        self.emulator = emulator
        self.cut_names = tuple(c.name for c in model.cut_specs())
        self.num_cuts = len(self.cut_names)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecc-cloud-compute")
        self._decoder = ThreadPoolExecutor(max_workers=self.config.decode_workers, thread_name_prefix="ecc-decode")
        self.max_message_bytes = (
            self.config.max_message_bytes if self.config.max_message_bytes is not None else max_message_bytes_for(model)
        )
        self._wire_limits = wire_limits(self.max_message_bytes)
        self._ssl = self.config.ssl_context()
        self._log = _LogBudget(log, self.config.log_lines_per_minute)
        self._budget: _ByteBudget | None = None
        self._auth_failures = _AddressStrikes(self.config.auth_failures_per_minute)
        self._oversized = _AddressStrikes(self.config.oversized_per_minute)
        self._info_dict: dict[str, Any] | None = None
        self._active: dict[Any, float] = {}  # open connection -> loop time of its last complete message (or open)
        self._busy: set[Any] = set()  # connections with a message being handled
        self.connections_refused = 0
        self.connections_evicted = 0
        self.connections_timed_out = 0
        self.auth_refused = 0
        self.oversized_refused = 0
        self._queue_length = 0
        self._queue_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: Any = None
        self._seed_counter = itertools.count()
        self._batcher: _Batcher | None = None
        self.port = 0
        self.requests_served = 0
        self.errors_sent = 0

    # -- metadata ---------------------------------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        return ServerInfo(
            model_id=self.model.family,
            preset=self.model.preset,
            num_blocks=self.model.num_blocks,
            num_cuts=self.num_cuts,
            cut_names=self.cut_names,
            max_message_bytes=self.max_message_bytes,
            auth_required=self.config.api_key is not None,
            emulation=self.emulator.describe() if self.emulator is not None else None,
            server_time_s=time.time(),
        )

    def _info_message(self) -> dict[str, Any]:
        """``info().to_dict()`` for a new connection (every connection gets one, an attacker's too): the static part
        is built once; the clock and the emulator's counters are fresh."""
        if self._info_dict is None:
            self._info_dict = self.info().to_dict()
        d = {**self._info_dict, "server_time_s": time.time()}
        if self.emulator is not None:
            d["emulation"] = self.emulator.describe()
        return d

    @property
    def queue_length(self) -> int:
        return self._queue_length

    @property
    def url(self) -> str:
        return f"{'wss' if self.config.tls else 'ws'}://{self.config.host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> CloudServer:
        """Serve on a background thread; returns once the socket is bound (``self.port`` is set)."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._thread_main, name="ecc-cloud-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"server did not start within {timeout_s} s")
        if self._start_error is not None:
            raise self._start_error
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as e:  # noqa: BLE001 - reported to start() or logged
            if not self._ready.is_set():
                self._start_error = e
                self._ready.set()
            else:
                log.exception("cloud server stopped with an error")

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` is called from another thread or KeyboardInterrupt."""
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:
            log.info("interrupted; server stopped")

    async def serve(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._budget = _ByteBudget(self.config.max_inflight_bytes)
        if self.config.max_batch > 1 and self._batches_in_server():
            self._batcher = _Batcher(self._execute, self.config.max_batch, self.config.batch_wait_ms / 1e3)
        library_filter = _LogBudgetFilter(_LogBudget(log, self.config.log_lines_per_minute))
        library_loggers = [logging.getLogger(n) for n in ("asyncio", "websockets.server", "websockets")]
        for lg in library_loggers:
            lg.addFilter(library_filter)
        try:
            async with serve(
                self._handle,
                self.config.host,
                self.config.port,
                compression=None,
                max_size=self.max_message_bytes,
                process_request=self._process_request,
                ping_interval=self.config.ping_interval_s,
                close_timeout=self.config.close_timeout_s,
                open_timeout=self.config.open_timeout_s,
                ssl=self._ssl,
                create_connection=_connection_class(self),
            ) as server:
                self._server = server
                self.port = next(iter(server.sockets)).getsockname()[1]
                log.info(
                    "serving %s/%s on %s (max message %d bytes)",
                    self.model.family,
                    self.model.preset,
                    self.url,
                    self.max_message_bytes,
                )
                self._ready.set()
                await self._stop_event.wait()
                server.close(close_connections=True)
                await server.wait_closed()
        finally:
            for lg in library_loggers:
                lg.removeFilter(library_filter)
            self._ready.set()
            await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown, True)
            self._decoder.shutdown(wait=False, cancel_futures=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close all connections, wait for running compute, stop serving. Safe to call twice."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("server thread did not stop within %.1f s", timeout_s)

    def __enter__(self) -> CloudServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handshake --------------------------------------------------------------------------------------------------
    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.connections >= self.config.max_connections and not self._evict_idlest():
            self.connections_refused += 1
            self._log.log(
                logging.WARNING,
                "refused a connection: %d connections open (max_connections), none idle for %g s",
                self.connections,
                self.config.evict_idle_after_s,
            )
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; retry later\n")
        key = self.config.api_key
        if key is None:
            return None
        peer = _peer_host(connection.remote_address)
        if self._auth_failures.exceeded(peer):
            self.auth_refused += 1
            self._log.log(logging.WARNING, "refused %s: too many failed token attempts", peer)
            return connection.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS, "too many failed token attempts; retry in a minute\n"
            )
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("api-key", "bearer") and hmac.compare_digest(token.strip().encode(), key.encode()):
            return None
        self._auth_failures.add(peer)
        self.auth_refused += 1
        self._log.log(logging.INFO, "refused a connection from %s: missing or wrong token", peer)
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong Authorization token\n")

    # -- connection -------------------------------------------------------------------------------------------------
    @property
    def connections(self) -> int:
        """Open connections (handshake done, not evicted or closed)."""
        return len(self._active)

    def _evict_idlest(self) -> bool:
        """At the cap: close the connection idle longest (no message for ``evict_idle_after_s``, none being handled)
        to admit a new one, so idle connections cannot lock new clients out; False when none qualifies."""
        now = asyncio.get_running_loop().time()
        idle = [(t, id(ws), ws) for ws, t in self._active.items() if ws not in self._busy]
        if not idle:
            return False
        t, _, victim = min(idle)
        if now - t < self.config.evict_idle_after_s:
            return False
        del self._active[victim]
        self.connections_evicted += 1
        self._log.log(
            logging.INFO,
            "closing the connection from %s, idle %.1f s, to admit a new one",
            victim.remote_address,
            now - t,
        )
        asyncio.ensure_future(victim.close(1013, "evicted: idle while the server was full"))
        return True

    async def _next_message(self, ws: Any) -> Any:
        """The next complete message; raises _ConnectionTimeout when none starts within ``idle_timeout_s`` or one
        that started does not finish within ``message_timeout_s``."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        recv = asyncio.ensure_future(ws.recv())
        poll_s = min(1.0, cfg.idle_timeout_s / 4, cfg.message_timeout_s / 4)
        waiting_since = loop.time()
        started: float | None = None
        try:
            while True:
                done, _ = await asyncio.wait({recv}, timeout=poll_s)
                if done:
                    return recv.result()
                now = loop.time()
                if started is None and _message_in_progress(ws):
                    started = now
                if started is not None and now - started > cfg.message_timeout_s:
                    raise _ConnectionTimeout(1008, f"message not complete within {cfg.message_timeout_s:g} s")
                if started is None and now - waiting_since > cfg.idle_timeout_s:
                    raise _ConnectionTimeout(1000, f"idle for {cfg.idle_timeout_s:g} s")
        finally:
            if not recv.done():
                recv.cancel()
                with contextlib.suppress(BaseException):
                    await recv

    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = ws.remote_address
        loop = asyncio.get_running_loop()
        if self.connections >= self.config.max_connections and not self._evict_idlest():  # raced past the check
            self.connections_refused += 1
            await ws.close(1013, "too many connections; retry later")
            return
        self._active[ws] = loop.time()
        self._log.log(logging.INFO, "connection from %s", peer)
        sessions: dict[int, Any] = {}  # request id -> cloud session (insertion order = age)
        errors = [0]  # bad messages from this client (the server's own failures are not counted)
        slots = asyncio.Semaphore(self.config.max_in_flight_per_connection)
        in_flight: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slots.release()
            if not in_flight:
                self._busy.discard(ws)

        try:
            await ws.send(msgpack_numpy.packb(self._info_message()))
            while True:
                if not in_flight:
                    self._busy.discard(ws)
                if ws in self._active:
                    self._active[ws] = loop.time()
                data = await self._next_message(ws)
                if ws not in self._active:  # evicted meanwhile
                    return
                self._active[ws] = loop.time()
                self._busy.add(ws)
                recv_time = time.time()
                recv_perf = time.perf_counter()
                if isinstance(data, bytes | bytearray) and bytes(data[:4]) == wire.MAGIC:
                    await slots.acquire()  # at most max_in_flight_per_connection answered at once
                    task = asyncio.create_task(self._answer(ws, data, sessions, errors, recv_time, recv_perf))
                    in_flight.add(task)
                    task.add_done_callback(done)
                else:  # openpi (no request ids) and text frames: answered in order
                    await self._answer(ws, data, sessions, errors, recv_time, recv_perf)
        except _ConnectionTimeout as e:
            self.connections_timed_out += 1
            self._log.log(logging.INFO, "closing the connection from %s: %s", peer, e)
            await ws.close(e.code, str(e))
        except ConnectionClosed:
            pass
        finally:
            for task in list(in_flight):
                task.cancel()
            self._active.pop(ws, None)
            self._busy.discard(ws)
            sessions.clear()
            self._log.log(logging.INFO, "connection from %s closed", peer)

    async def _answer(
        self, ws: Any, data: Any, sessions: dict[int, Any], errors: list[int], recv_time: float, recv_perf: float
    ) -> None:
        """Answer one message: a reply, or an error reply for any failure (never a 1011 close). Bad messages count
        toward ``max_errors_per_connection`` (then the connection is closed, 1008); the server's own failures
        (``_ServerFault``, or an unexpected exception, logged as internal) never do."""
        from websockets.exceptions import ConnectionClosed

        peer = ws.remote_address
        try:
            try:
                if isinstance(data, str):
                    raise _BadRequest(E_BAD_MESSAGE, "text frames are not requests; send binary messages")
                if bytes(data[:4]) == wire.MAGIC:
                    reply = await self._handle_ours(data, sessions, recv_time, recv_perf)
                    if reply is not None:
                        await ws.send(reply)
                else:
                    await ws.send(await self._handle_openpi(data, recv_time, recv_perf))
            except ConnectionClosed:
                raise
            except Exception as e:  # noqa: BLE001 - every failure on one message is answered, never a 1011 close
                fault = isinstance(e, _ServerFault) or not isinstance(e, _BadRequest)
                if not isinstance(e, _BadRequest):
                    self._log.log(
                        logging.ERROR,
                        "internal error on a message from %s: %s: %s",
                        peer,
                        type(e).__name__,
                        safe_error_text(str(e)),
                    )
                    e = _BadRequest(E_INTERNAL, f"the server failed on this message ({type(e).__name__})")
                self.errors_sent += 1
                self._log.log(
                    logging.INFO,
                    "%s from %s: [%s] %s",
                    "server failure" if fault else "bad request",
                    peer,
                    e.code,
                    safe_error_text(str(e)),
                )
                await ws.send(self._error_frame(data, e.code, str(e)))
                if not fault:
                    errors[0] += 1
                    if errors[0] >= self.config.max_errors_per_connection:
                        await ws.close(1008, f"too many bad messages ({errors[0]})")
        except ConnectionClosed:
            pass

    def _error_frame(self, data: Any, code: str, message: str) -> bytes | str:
        """Our error message for our clients (binary, with the request id), a text frame for everyone else. The
        text is ``safe_error_text`` (printable ASCII, bounded), so the frame never grows with the client's bytes."""
        text = safe_error_text(message)
        if isinstance(data, bytes | bytearray) and bytes(data[:4]) == wire.MAGIC:
            request_id = -1
            try:
                meta, _ = wire.read_header(data, limits=self._limits())
                rid = meta.get("request_id")
                request_id = rid if type(rid) is int and -(2**63) <= rid < 2**63 else -1
            except (wire.WireFormatError, TypeError):
                pass
            return wire.encode({}, {TYPE_KEY: ERROR, "request_id": request_id, "code": code, "message": text})
        return f"error [{code}]: {text}"

    def _limits(self) -> wire.WireLimits:
        return self._wire_limits

    async def _off_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the decode pool (parsing and decoding never block the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._decoder, functools.partial(fn, *args, **kwargs))

    async def _run(self, fn: Any, *args: Any) -> tuple[Any, float, float]:
        """Run the compute job ``fn(model, *args)``, counted in the queue length; returns (result, queue_s,
        compute_s)."""
        with self._queue_lock:
            self._queue_length += 1
        try:
            return await self._execute(fn, *args)
        finally:
            with self._queue_lock:
                self._queue_length -= 1

    def _batches_in_server(self) -> bool:
        """Whether this server groups requests into batches itself (an engine may batch where it computes)."""
        return True

    async def _first_step(self, cut: int, message: wire.Message) -> tuple[Any, float, float]:
        """The first cloud step of an exchange, batched with concurrent ones at its cut when batching is on."""
        if self._batcher is None:
            return await self._run(cloud_step, cut, None, message)
        with self._queue_lock:
            self._queue_length += 1
        try:
            return await self._batcher.submit(cut, message)
        finally:
            with self._queue_lock:
                self._queue_length -= 1

    async def _execute(self, fn: Any, *args: Any) -> tuple[Any, float, float]:
        """Run ``fn(self.model, *args)`` on the compute worker thread. The override point for other engines
        (``executor.ray_serve`` runs the same jobs on Ray Serve replicas)."""
        submitted = time.perf_counter()
        started: list[float] = []

        def job() -> tuple[Any, float]:
            started.append(time.perf_counter())
            result = fn(self.model, *args)
            return result, time.perf_counter()

        result, finished = await asyncio.wrap_future(self._worker.submit(job))
        return result, started[0] - submitted, finished - started[0]

    def _timing(self, recv_time: float, recv_perf: float, queue_s: float, compute_s: float) -> dict[str, Any]:
        return ServerTiming(
            queue_ms=queue_s * 1e3,
            compute_ms=compute_s * 1e3,
            residence_ms=(time.perf_counter() - recv_perf) * 1e3,
            queue_length=self._queue_length,
            recv_time_s=recv_time,
            send_time_s=time.time(),
        ).to_dict()

    # -- our protocol -----------------------------------------------------------------------------------------------
    async def _handle_ours(
        self, data: bytes, sessions: dict[int, Any], recv_time: float, recv_perf: float
    ) -> bytes | None:
        try:
            _, infos = await self._off_loop(wire.read_header, data, limits=self._limits())
        except wire.WireFormatError as e:
            raise _BadRequest(E_BAD_MESSAGE, str(e)) from e
        assert self._budget is not None
        async with self._budget.reserve(len(data) + wire.decoded_nbytes(infos), self.config.busy_timeout_s):
            try:
                message = await self._off_loop(wire.decode, data, limits=self._limits())
            except wire.WireFormatError as e:
                raise _BadRequest(E_BAD_MESSAGE, str(e)) from e
            return await self._serve_ours(message, sessions, recv_time, recv_perf)

    async def _serve_ours(
        self, message: wire.Message, sessions: dict[int, Any], recv_time: float, recv_perf: float
    ) -> bytes | None:
        meta = message.meta
        kind = meta.get(TYPE_KEY)
        if kind == PING:
            t_client = meta.get("t_client_s", 0.0)
            return wire.encode(
                {},
                {
                    TYPE_KEY: PONG,
                    "t_client_s": t_client if isinstance(t_client, int | float) else 0.0,
                    "t_server_s": time.time(),
                    "queue_length": self._queue_length,
                },
            )
        request_id = meta.get("request_id")
        if type(request_id) is not int:
            raise _BadRequest(E_BAD_MESSAGE, f"request_id must be an int, got a {type(request_id).__name__}")
        if kind == CANCEL:
            sessions.pop(request_id, None)
            return None
        if kind == SPLIT:
            cut = meta.get("cut")
            if type(cut) is not int or not 0 <= cut < self.num_cuts:
                raise _BadRequest(
                    E_BAD_REQUEST,
                    f"cut must be an int in 0..{self.num_cuts - 1}, got "
                    f"{cut if type(cut) is int and abs(cut) < 10**6 else 'a ' + type(cut).__name__}",
                )
            # one exchange in flight per connection: a new inference ends every earlier one (bounded memory)
            sessions.clear()
            session = None
        elif kind == CONTINUE:
            if request_id not in sessions:
                raise _BadRequest(E_BAD_REQUEST, f"no open session for request_id {request_id}")
            session = sessions[request_id]
            cut = -1
        else:
            raise _BadRequest(
                E_BAD_MESSAGE,
                f"unknown message type (a {type(kind).__name__}); expected one of split/continue/cancel/ping",
            )
        try:
            header = payload_header(meta)
        except ProtocolError as e:
            raise _BadRequest(E_BAD_MESSAGE, str(e)) from e
        if session is None and header["cut"] != cut:
            raise _BadRequest(E_BAD_REQUEST, f"payload is for cut {header['cut']}, the request for cut {cut}")
        budget_ms = meta.get("budget_ms")
        if type(budget_ms) in (int, float) and budget_ms > 0:
            request_budget_s.set(budget_ms / 1e3)  # this task's context only
        try:
            if session is None:
                (sess, result), queue_s, compute_s = await self._first_step(cut, message)
            else:
                (sess, result), queue_s, compute_s = await self._run(cloud_step, cut, session, message)
        except ComputeUnavailable as e:
            sessions.pop(request_id, None)
            log.warning("request %d: %s", request_id, e)
            raise _ServerFault(E_COMPUTE, f"{type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - any model failure on a hostile payload is answered, not fatal
            sessions.pop(request_id, None)
            code = E_BAD_REQUEST if isinstance(e, ValueError | TypeError) else E_COMPUTE
            self._log.log(
                logging.INFO, "request %d failed: %s: %s", request_id, type(e).__name__, safe_error_text(str(e))
            )
            raise _BadRequest(code, f"{type(e).__name__}: {e}") from e
        final = getattr(result, "kind", None) == "actions"
        if final:
            sessions.pop(request_id, None)
        else:
            sessions[request_id] = sess
        self.requests_served += 1
        envelope = {TYPE_KEY: REPLY, "request_id": request_id, "final": final}
        envelope["timing"] = self._timing(recv_time, recv_perf, queue_s, compute_s)
        try:
            return encode_payload(result, envelope, reply_codec(meta, self.config.reply_compression))
        except (wire.WireFormatError, TypeError, AttributeError) as e:
            raise _BadRequest(E_COMPUTE, f"cannot encode the reply: {e}") from e

    # -- openpi policy-server format ---------------------------------------------------------------------------------
    async def _handle_openpi(self, data: bytes, recv_time: float, recv_perf: float) -> bytes:
        assert self._budget is not None
        async with self._budget.reserve(2 * len(data), self.config.busy_timeout_s):  # the arrays are views
            return await self._serve_openpi(data, recv_time, recv_perf)

    async def _serve_openpi(self, data: bytes, recv_time: float, recv_perf: float) -> bytes:
        try:
            request = await self._off_loop(msgpack_numpy.unpackb, data, max_message_bytes=self.max_message_bytes)
        except wire.WireFormatError as e:
            raise _BadRequest(E_BAD_MESSAGE, str(e)) from e
        if not isinstance(request, dict):
            raise _BadRequest(E_BAD_MESSAGE, f"an openpi request must be a map, got {type(request).__name__}")
        seed = next(self._seed_counter)
        try:
            actions, queue_s, compute_s = await self._run(openpi_forward, request, seed)
        except _BadRequest:
            raise
        except ComputeUnavailable as e:
            raise _ServerFault(E_COMPUTE, f"{type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - answered with an error frame, the server keeps serving
            raise _BadRequest(E_COMPUTE, f"{type(e).__name__}: {e}") from e
        self.requests_served += 1
        timing = self._timing(recv_time, recv_perf, queue_s, compute_s)
        timing["infer_ms"] = timing["compute_ms"]  # openpi's name for the model's time
        return msgpack_numpy.packb(
            {"actions": np.asarray(actions), "server_timing": timing, "queue_length": timing["queue_length"]}
        )

    def observation_from_openpi(self, request: dict[Any, Any], seed: int | None = None) -> dict[str, np.ndarray]:
        """Build the model's observation from openpi keys and/or ours (see the module docstring's table)."""
        return openpi_observation(self.model, request, next(self._seed_counter) if seed is None else seed)


# -- compute jobs: module-level functions of (model, ...) so any engine can run them where the model lives ----------
def reply_codec(meta: dict[str, Any], default: str) -> str:
    """The codec of a reply's activations: the request's ``reply_compression`` when it names a valid one (the edge's
    wire configuration, executor.wire_config), else ``default``."""
    codec = meta.get("reply_compression", default)
    return codec if codec in wire.COMPRESSIONS else default


def cloud_step(model: SplitModel, cut: int, session: Any, message: wire.Message) -> tuple[Any, Any]:
    """One cloud step of a split exchange: a new cloud session at ``cut`` (``session`` None) or the given one."""
    sess = session if session is not None else model.cloud_session(cut)
    return sess, sess.on_request(to_payload(message))


def cloud_batch_step(model: SplitModel, cut: int, messages: list[wire.Message]) -> list[Any]:
    """The first cloud steps of several exchanges at ``cut`` as one batched forward (``SplitModel.cloud_batch``):
    per message, (its session, its reply) or the exception that message alone raised."""
    results: list[Any] = [None] * len(messages)
    payloads, where = [], []
    for i, message in enumerate(messages):
        try:
            payloads.append(to_payload(message))
            where.append(i)
        except Exception as e:  # noqa: BLE001 - this message's own error
            results[i] = e
    if payloads:
        for i, r in zip(where, model.cloud_batch(cut, payloads)):
            results[i] = r
    return results


def openpi_forward(model: SplitModel, request: dict[Any, Any], seed: int) -> np.ndarray:
    """Full offload of an openpi request: observation (``openpi_observation``) then the unsplit model."""
    return model.forward(openpi_observation(model, request, seed))


_REFERENCE_OBS: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_REFERENCE_LOCK = threading.Lock()


def openpi_observation(model: SplitModel, request: dict[Any, Any], seed: int) -> dict[str, np.ndarray]:
    """The model's observation from openpi keys and/or ours; inputs not given come from
    ``model.make_observation(seed)``. Raises the server's bad-request error naming a missing or malformed key."""
    with _REFERENCE_LOCK:
        ref = _REFERENCE_OBS.get(model)
        if ref is None:
            ref = _REFERENCE_OBS[model] = model.make_observation(seed=0)
    fresh = model.make_observation(seed=seed)
    req = {k.decode() if isinstance(k, bytes) else k: v for k, v in request.items()}
    obs: dict[str, np.ndarray] = {}
    for name, ref_value in ref.items():
        if name in req:
            obs[name] = _checked_array(name, req[name], ref_value)
    if "images" not in obs and "images" in ref:
        obs["images"] = _openpi_images(req, ref["images"])
    if "state" not in obs and "state" in ref and "observation/state" in req:
        obs["state"] = _fit_vector("observation/state", req["observation/state"], ref["state"])
    prompt_key = next((k for k in ref if "prompt" in k or "token" in k), None)
    if prompt_key is not None and prompt_key not in obs and "prompt" in req:
        obs[prompt_key] = _tokens_from_text(req["prompt"], ref[prompt_key], model)
    for name in ref:
        if name not in obs:
            if name in ("images", "state") or name == prompt_key:
                raise _BadRequest(
                    E_BAD_REQUEST,
                    f"observation is missing {name!r} (or its openpi key); got keys {sorted(map(str, req))}",
                )
            obs[name] = fresh[name]
    return obs


def _openpi_images(req: dict[str, Any], ref: np.ndarray) -> np.ndarray:
    if "observation/image" not in req:
        raise _BadRequest(E_BAD_REQUEST, f"observation has no 'images' nor 'observation/image'; keys {sorted(req)}")
    cams, height, width = ref.shape[0], ref.shape[1], ref.shape[2]
    keys = ["observation/image", "observation/wrist_image"][:cams]
    out = np.zeros(ref.shape, dtype=np.uint8)
    for i, key in enumerate(keys):
        if key not in req:
            raise _BadRequest(E_BAD_REQUEST, f"the model has {cams} cameras; {key!r} is missing")
        out[i] = _image(key, req[key], height, width)
    return out


def _checked_array(name: str, value: Any, ref: np.ndarray) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise _BadRequest(E_BAD_REQUEST, f"{name!r} must be an array, got {type(value).__name__}")
    if value.shape != ref.shape or value.dtype != ref.dtype:
        raise _BadRequest(
            E_BAD_REQUEST, f"{name!r} must have shape {ref.shape} dtype {ref.dtype}, got {value.shape} {value.dtype}"
        )
    return np.array(value)  # writable copy (decoded arrays are read-only views of the message)


def _image(key: str, value: Any, height: int, width: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[-1] != 3:
        raise _BadRequest(E_BAD_REQUEST, f"{key!r} must be an (H, W, 3) array, got {getattr(value, 'shape', value)!r}")
    if value.dtype != np.uint8:
        if value.dtype.kind != "f":
            raise _BadRequest(E_BAD_REQUEST, f"{key!r} must be uint8 (or float in [0, 1]), got {value.dtype}")
        value = (np.clip(value, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if value.shape[:2] != (height, width):
        from PIL import Image

        value = np.asarray(Image.fromarray(np.ascontiguousarray(value)).resize((width, height), Image.BILINEAR))
    return value


def _fit_vector(key: str, value: Any, ref: np.ndarray) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise _BadRequest(E_BAD_REQUEST, f"{key!r} must be a numeric array, got {type(value).__name__}")
    flat = value.astype(np.float32).reshape(-1)
    out = np.zeros(ref.size, dtype=ref.dtype)
    n = min(flat.size, out.size)
    out[:n] = flat[:n]
    return out.reshape(ref.shape)


def _tokens_from_text(text: Any, ref: np.ndarray, model: Any) -> np.ndarray:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise _BadRequest(E_BAD_REQUEST, f"'prompt' must be a string, got {type(text).__name__}")
    vocab = int(getattr(model, "vocab_size", 0) or 256)
    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) % vocab
    out = np.zeros(ref.size, dtype=ref.dtype)
    n = min(ids.size, out.size)
    out[:n] = ids[:n]
    return out.reshape(ref.shape)
