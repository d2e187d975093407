"""User-space shaped link: a local TCP relay that paces bytes by a bandwidth trace and adds its one-way delay.

The edge connects to the relay's local port instead of the server; the relay forwards every byte to the server and
back. Each direction is modelled as one store-and-forward bottleneck link:

* a chunk read from the sender at wall time ``now`` starts serialising at ``start = max(now, link_free_at)``,
* it finishes at ``finish = start + trace.transfer_time_s(len(chunk), trace_time(start), direction)``
  (piecewise-constant bandwidth integrated exactly, zero-bandwidth stretches waited through),
* it is handed to the receiver at ``finish + one_way_delay(start)`` (delivery times never go backwards, TCP keeps
  order).

So a message of ``B`` bytes on a constant trace arrives ``B * 8 / rate + delay`` after it was sent, whatever the
chunk size. Trace time advances with wall time from the moment the relay starts (plus ``start_offset_s``); the
trace wraps at its end. All connections through one relay share the link (one bottleneck per direction), as the
robot's radio is shared.

Why a relay rather than pacing inside the websocket send path: the relay shapes the real bytes on the wire
(framing and headers included) in both directions, needs no change to the client or server code, works for any
client (openpi's own client too) and keeps the measurement honest: the edge client only sees bytes arriving when the
modelled link would deliver them. The relay runs in threads of the edge process; it needs no root. A chunk whose
transfer would wait longer than ``max_wait_s`` (a long outage) closes that connection, as a real TCP connection
would eventually time out.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]


class TraceLike(Protocol):
    """What the relay needs from a ``traces.BandwidthTrace``."""

    def transfer_time_s(
        self, nbytes: int, start_s: float, direction: Direction, *, max_wait_s: float = ...
    ) -> float: ...

    def one_way_delay_ms(self, t_s: float) -> float: ...


@dataclass(frozen=True)
class LinkConfig:
    """Relay settings.

    chunk_bytes: largest piece read and scheduled at once (smaller = finer pacing, more wake-ups).
    start_offset_s: trace time at the moment the relay starts.
    time_scale: trace seconds per wall second (1.0 = real time).
    max_wait_s: longest single-chunk wait through an outage before the connection is closed.
    listen_host: where the relay listens (loopback by default).
    """

    chunk_bytes: int = 16 * 1024
    start_offset_s: float = 0.0
    time_scale: float = 1.0
    max_wait_s: float = 30.0
    listen_host: str = "127.0.0.1"
    apply_delay: bool = True

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {self.chunk_bytes}")
        if self.start_offset_s < 0:
            raise ValueError(f"start_offset_s must be >= 0, got {self.start_offset_s}")
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale}")
        if self.max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be > 0, got {self.max_wait_s}")


class _Pacer:
    """Serialisation clock of one direction of the link (shared by every connection through the relay)."""

    def __init__(self, trace: TraceLike, direction: Direction, t0: float, config: LinkConfig) -> None:
        self._trace = trace
        self._direction = direction
        self._t0 = t0
        self._config = config
        self._lock = threading.Lock()
        self._free_at = 0.0  # wall (perf_counter) time the link finishes its current backlog
        self._last_delivery = 0.0
        self.bytes_total = 0

    def trace_time(self, wall: float) -> float:
        return self._config.start_offset_s + (wall - self._t0) * self._config.time_scale

    def schedule(self, nbytes: int, now: float) -> float:
        """Wall time at which a chunk of ``nbytes`` read at ``now`` reaches the far end."""
        with self._lock:
            start = max(now, self._free_at)
            t_trace = self.trace_time(start)
            duration_trace = self._trace.transfer_time_s(
                nbytes, t_trace, self._direction, max_wait_s=self._config.max_wait_s
            )
            finish = start + duration_trace / self._config.time_scale
            self._free_at = finish
            delay = self._trace.one_way_delay_ms(t_trace) / 1e3 if self._config.apply_delay else 0.0
            deliver = max(finish + delay / self._config.time_scale, self._last_delivery)
            self._last_delivery = deliver
            self.bytes_total += nbytes
            return deliver


_EOF = object()


def _sleep_until(deadline: float) -> None:
    """Sleep to a perf_counter deadline; spin the last fraction of a millisecond for accuracy."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        time.sleep(left - 0.0003 if left > 0.0006 else 0)


class _Pipe:
    """One direction of one connection: a reader thread schedules chunks, a writer thread delivers them on time."""

    def __init__(self, src: socket.socket, dst: socket.socket, pacer: _Pacer, config: LinkConfig, name: str) -> None:
        self._src, self._dst, self._pacer, self._config = src, dst, pacer, config
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, name=f"{name}-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-write", daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    @property
    def alive(self) -> bool:
        return self._reader.is_alive() or self._writer.is_alive()

    def join(self, timeout_s: float) -> None:
        self._reader.join(timeout_s)
        self._writer.join(timeout_s)

    def _read_loop(self) -> None:
        try:
            while True:
                data = self._src.recv(self._config.chunk_bytes)
                if not data:
                    break
                self._queue.put((self._pacer.schedule(len(data), time.perf_counter()), data))
        except OSError:
            pass  # socket closed by the other pipe or by stop()
        except Exception as e:  # TransferTimeout through an outage, or a trace error
            self.error = e
            log.warning("shaped link: closing a connection: %s", e)
        self._queue.put((0.0, _EOF))

    def _write_loop(self) -> None:
        try:
            while True:
                deliver_at, data = self._queue.get()
                if data is _EOF:
                    break
                _sleep_until(deliver_at)
                self._dst.sendall(data)
        except OSError:
            pass
        if self.error is not None:
            _close(self._src)
            _close(self._dst)
            return
        try:
            self._dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class ShapedLink:
    """A TCP relay on ``listen_host:port`` forwarding to ``target_host:target_port`` through a shaped link.

    Use as a context manager (``with ShapedLink(trace, "127.0.0.1", 8765) as link: connect to link.port``) or call
    ``start()`` / ``stop()``. ``bytes_up`` / ``bytes_down`` count what crossed the link.
    """

    def __init__(self, trace: TraceLike, target_host: str, target_port: int, config: LinkConfig | None = None) -> None:
        if not 0 < int(target_port) < 65536:
            raise ValueError(f"target_port must be in 1..65535, got {target_port}")
        self.trace = trace
        self.target = (target_host, int(target_port))
        self.config = config or LinkConfig()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: list[tuple[socket.socket, socket.socket, _Pipe, _Pipe]] = []
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._up: _Pacer | None = None
        self._down: _Pacer | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> ShapedLink:
        if self._listener is not None:
            raise RuntimeError("ShapedLink already started")
        self._t0 = time.perf_counter()
        self._up = _Pacer(self.trace, "up", self._t0, self.config)
        self._down = _Pacer(self.trace, "down", self._t0, self.config)
        listener = socket.create_server((self.config.listen_host, 0))
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="shaped-link-accept", daemon=True)
        self._accept_thread.start()
        log.info("shaped link %s:%d -> %s:%d", self.config.listen_host, self.port, *self.target)
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close the listener and every relayed connection; wait (bounded) for the threads."""
        self._stopping.set()
        if self._listener is not None:
            _close(self._listener)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout_s)
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream, up, down in conns:
            _close(client)
            _close(upstream)
        for _, _, up, down in conns:
            up.join(timeout_s)
            down.join(timeout_s)

    def __enter__(self) -> ShapedLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- info -----------------------------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return self.config.listen_host, self.port

    @property
    def bytes_up(self) -> int:
        return self._up.bytes_total if self._up else 0

    @property
    def bytes_down(self) -> int:
        return self._down.bytes_total if self._down else 0

    def trace_time_s(self) -> float:
        """Current trace time (where the link is in its trace)."""
        return self.config.start_offset_s + (time.perf_counter() - self._t0) * self.config.time_scale

    # -- relay ----------------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError as e:
                log.info("shaped link: upstream %s:%d unreachable: %s", *self.target, e)
                _close(client)
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert self._up is not None and self._down is not None
            up = _Pipe(client, upstream, self._up, self.config, "link-up")
            down = _Pipe(upstream, client, self._down, self.config, "link-down")
            with self._lock:
                alive = []
                for conn in self._conns:
                    if conn[2].alive or conn[3].alive:
                        alive.append(conn)
                    else:
                        _close(conn[0])
                        _close(conn[1])
                self._conns = alive + [(client, upstream, up, down)]
            up.start()
            down.start()
