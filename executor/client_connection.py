"""The edge client's connection to one cloud server: a websocket owned by a private event loop on a daemon thread.

Every wait has a deadline (``concurrent.futures`` timeouts) and a lost server is noticed at once (the connection
closes). One reader routes replies by request id and pongs by their timestamp. With ``auto_reconnect`` a supervisor
keeps reconnecting with exponential backoff while the server is gone; a caller never waits for a connection:
``require_ws`` raises ``ServerUnavailable`` straight away so it can fall back to the edge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from executor import msgpack_numpy, wire
from executor.client_timing import Exchange
from executor.protocol import (
    ERROR,
    PONG,
    TYPE_KEY,
    AuthenticationError,
    ProtocolError,
    RemoteError,
    ServerInfo,
    ServerUnavailable,
    TransportTimeout,
    wire_limits,
)

if TYPE_CHECKING:  # pragma: no cover
    from executor.client import ClientConfig

log = logging.getLogger(__name__)

Hook = Callable[[Any], Awaitable[None]]


def _client_ssl(cafile: str | None) -> Any:
    """TLS context of a wss:// connection: certificate and host name verified, against ``cafile`` when given."""
    import ssl

    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot read the CA file {cafile}: {e}") from e


def reply_counts(future: concurrent.futures.Future, deadline: float | None) -> bool:
    """Whether a call's network outcome stands: a reply received by the deadline, or a network failure. The check
    can run a little after the deadline: a reply received after it is a miss even when it is already there (a hedged
    call takes the local actions then), and one received before it is not (``Connection.wait`` returns it)."""
    if not future.done() or future.cancelled():
        return False
    if future.exception() is not None:
        return True
    return deadline is None or future.result().recv_perf <= deadline


class Connection:
    """The websocket to ``url`` and the loop thread that owns it.

    ``check_info(info)`` vets the server's metadata (raises ``ProtocolError`` on a mismatch); ``on_handshake(ws)``
    runs once the reader is up, before the connection counts as open (clock sync; an error closes it);
    ``on_open(ws)`` runs right after it does (probes). ``pending`` (request id -> reply future) and ``pings``
    (t_client_s -> pong future) belong to the loop thread.
    """

    def __init__(
        self,
        url: str,
        config: ClientConfig,
        check_info: Callable[[ServerInfo], None],
        on_handshake: Hook,
        on_open: Hook,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss://, got {url!r}")
        self.url = url
        self.config = config
        self.check_info = check_info
        self.on_handshake = on_handshake
        self.on_open = on_open
        self.server_info: ServerInfo | None = None
        self.connects = 0
        self.closed = False
        self.ws: Any = None
        self.limits = wire_limits(config.max_message_bytes)
        self.pending: dict[int, asyncio.Future] = {}
        self.pings: dict[float, asyncio.Future] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ecc-edge-client", daemon=True)
        self._thread.start()
        self._connected_event = threading.Event()
        self._supervisor: concurrent.futures.Future | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def connected(self) -> bool:
        ws = self.ws
        return ws is not None and ws.state.name == "OPEN"

    def connect(self, timeout_s: float | None = None) -> ServerInfo:
        """Connect now (or, with auto_reconnect, start the supervisor and wait up to ``timeout_s``)."""
        timeout = self.config.connect_timeout_s if timeout_s is None else timeout_s
        if self.closed:
            raise ServerUnavailable("client is closed")
        if self.config.auto_reconnect:
            if self._supervisor is None:
                self._supervisor = self.submit(self._supervise())
            if not self._connected_event.wait(timeout):
                raise TransportTimeout(f"no connection to {self.url} within {timeout:.3f} s")
            assert self.server_info is not None
            return self.server_info
        future = self.submit(self._open())
        try:
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise TransportTimeout(f"no connection to {self.url} within {timeout:.3f} s") from e

    def submit(self, coro: Any) -> concurrent.futures.Future:
        """Run ``coro`` on the loop thread; its result as a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def spawn(self, coro: Any) -> None:
        """A background task on the loop (call from the loop thread); cancelled at ``close``."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                    self.check_info(info)
                    self.spawn(self._read_loop(ws))
                    await self.on_handshake(ws)
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
        self.ws, self.server_info = ws, info
        await self.on_open(ws)
        self.connects += 1
        self._connected_event.set()
        log.info("connected to %s (%s/%s)", self.url, info.model_id, info.preset)
        return info

    async def _read_loop(self, ws: Any) -> None:
        """The only reader of the connection: routes replies by request id and pongs by their timestamp."""
        from websockets.exceptions import ConnectionClosed

        error: BaseException = ServerUnavailable(f"connection to {self.url} closed")
        try:
            async for raw in ws:
                recv_wall, recv_perf = time.time(), time.perf_counter()
                if isinstance(raw, str):
                    for fut in list(self.pending.values()):
                        if not fut.done():
                            fut.set_exception(RemoteError("text", raw))
                    continue
                try:
                    meta, _ = wire.read_header(raw, limits=self.limits)
                except wire.WireFormatError as e:
                    log.warning("unreadable message from %s: %s", self.url, e)
                    continue
                kind = meta.get(TYPE_KEY)
                if kind == PONG:
                    key = meta.get("t_client_s")
                    pong = self.pings.get(key) if isinstance(key, float) else None
                    if pong is not None and not pong.done():
                        pong.set_result((meta, recv_wall))
                    continue
                rid = meta.get("request_id")
                targets = (
                    list(self.pending.values())
                    if rid == -1 and kind == ERROR
                    else [self.pending.get(rid) if isinstance(rid, int) else None]
                )
                for target in targets:
                    if target is not None and not target.done():
                        target.set_result((raw, recv_wall, recv_perf))
                if targets == [None]:
                    log.debug("discarding a stale message (request %s)", rid)
        except ConnectionClosed as e:
            error = ServerUnavailable(f"connection to {self.url} closed: {e}")
        finally:
            for fut in list(self.pending.values()) + list(self.pings.values()):
                if not fut.done():
                    fut.set_exception(error)
                    # A waiter, if any, still gets the error; at close() the waiters are being cancelled, and
                    # asyncio would otherwise log "Future exception was never retrieved" for each such future.
                    fut.exception()

    async def _supervise(self) -> None:
        """Keep a connection open: reconnect with exponential backoff whenever it closes."""
        backoff = self.config.reconnect_initial_s
        while not self.closed:
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
            await self.ws.wait_closed()
            self._connected_event.clear()
            log.info("connection to %s closed; reconnecting", self.url)

    def require_ws(self) -> Any:
        """The open websocket; ``ServerUnavailable`` at once when there is none."""
        ws = self.ws
        if self.closed or ws is None or ws.state.name != "OPEN":
            raise ServerUnavailable(f"not connected to {self.url}")
        return ws

    def wait(self, future: concurrent.futures.Future, deadline: float | None) -> Any:
        """``future``'s result by ``deadline`` (a ``time.perf_counter()`` value), network errors as this package's:
        ``TransportTimeout``, ``ServerUnavailable``, ``ProtocolError`` (``RemoteError`` as is)."""
        from websockets.exceptions import ConnectionClosed

        timeout = None if deadline is None else deadline - time.perf_counter()
        try:
            if timeout is not None and timeout <= 0 and not reply_counts(future, deadline):
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

    async def exchange(self, ws: Any, data: bytes, request_id: int) -> Exchange:
        """Send ``data`` and await the reply routed to ``request_id``."""
        fut = self.loop.create_future()
        self.pending[request_id] = fut
        try:
            send_wall, send_perf = time.time(), time.perf_counter()
            await ws.send(data)
            raw, recv_wall, recv_perf = await fut
        finally:
            self.pending.pop(request_id, None)
        return Exchange(raw, send_wall, send_perf, recv_wall, recv_perf)

    def close(self, timeout_s: float = 2.0) -> None:
        """Close the websocket, cancel the loop's tasks and stop the loop thread."""
        if self.closed:
            return
        self.closed = True

        async def shutdown() -> None:
            if self.ws is not None:
                await self.ws.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            self.submit(shutdown()).result(timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.loop.close()
