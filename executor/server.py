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

Security: a maximum message size (enforced by websockets while reading, before the message is assembled), wire
messages validated (dtype whitelist, shapes, sizes) before any array is built, never pickle, optional shared token
checked in the handshake (``Authorization: Api-Key <token>``, as openpi's client sends it, or ``Bearer <token>``).
A malformed message gets an error reply and the connection stays open; a connection that keeps sending bad messages
is closed (policy violation); other connections are never affected.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import http
import itertools
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from executor import msgpack_numpy, wire
from executor.protocol import (
    CANCEL,
    CONTINUE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PORT,
    E_BAD_MESSAGE,
    E_BAD_REQUEST,
    E_COMPUTE,
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
    payload_header,
    to_payload,
    wire_limits,
)

if TYPE_CHECKING:  # pragma: no cover
    from executor.emulation import HardwareEmulator
    from executor.models import SplitModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Cloud server settings.

    host: bind address (loopback by default; another address only when asked).
    port: TCP port; 0 lets the OS choose (read ``CloudServer.port`` after start).
    max_message_bytes: largest incoming message; bigger ones close the connection (1009).
    api_key: shared token required in the handshake, or None for no authentication.
    max_errors_per_connection: bad messages tolerated before the connection is closed (1008); the server's own
        failures (``ComputeUnavailable``: a dead or silent replica) never count.
    max_in_flight_per_connection: requests of one connection answered concurrently (our protocol; each reply names
        its request id), so a slow one does not hold up the next; openpi requests are answered in order.
    reply_compression: wire codec for reply payloads ("none" keeps results bit-exact).
    ping_interval_s: websocket keepalive pings (None disables).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    api_key: str | None = None
    max_errors_per_connection: int = 16
    max_in_flight_per_connection: int = 8
    reply_compression: str = "none"
    ping_interval_s: float | None = 20.0
    close_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string or None")
        if self.max_errors_per_connection < 1:
            raise ValueError(f"max_errors_per_connection must be >= 1, got {self.max_errors_per_connection}")
        if self.max_in_flight_per_connection < 1:
            raise ValueError(f"max_in_flight_per_connection must be >= 1, got {self.max_in_flight_per_connection}")
        if self.reply_compression not in wire.COMPRESSIONS:
            raise ValueError(f"reply_compression must be one of {wire.COMPRESSIONS}, got {self.reply_compression!r}")


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
        self._queue_length = 0
        self._queue_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: Any = None
        self._seed_counter = itertools.count()
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
            max_message_bytes=self.config.max_message_bytes,
            auth_required=self.config.api_key is not None,
            emulation=self.emulator.describe() if self.emulator is not None else None,
            server_time_s=time.time(),
        )

    @property
    def queue_length(self) -> int:
        return self._queue_length

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

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
        try:
            async with serve(
                self._handle,
                self.config.host,
                self.config.port,
                compression=None,
                max_size=self.config.max_message_bytes,
                process_request=self._process_request,
                ping_interval=self.config.ping_interval_s,
                close_timeout=self.config.close_timeout_s,
            ) as server:
                self._server = server
                self.port = next(iter(server.sockets)).getsockname()[1]
                log.info("serving %s/%s on ws://%s:%d", self.model.family, self.model.preset, self.config.host, self.port)
                self._ready.set()
                await self._stop_event.wait()
                server.close(close_connections=True)
                await server.wait_closed()
        finally:
            self._ready.set()
            await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown, True)

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
        key = self.config.api_key
        if key is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("api-key", "bearer") and hmac.compare_digest(token.strip().encode(), key.encode()):
            return None
        log.info("refused a connection from %s: missing or wrong token", connection.remote_address)
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong Authorization token\n")

    # -- connection -------------------------------------------------------------------------------------------------
    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = ws.remote_address
        log.info("connection from %s", peer)
        sessions: dict[int, Any] = {}  # request id -> cloud session (insertion order = age)
        errors = [0]  # bad messages from this client (the server's own failures are not counted)
        slots = asyncio.Semaphore(self.config.max_in_flight_per_connection)
        in_flight: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slots.release()

        try:
            await ws.send(msgpack_numpy.packb(self.info().to_dict()))
            while True:
                data = await ws.recv()
                recv_time = time.time()
                recv_perf = time.perf_counter()
                if isinstance(data, bytes | bytearray) and bytes(data[:4]) == wire.MAGIC:
                    await slots.acquire()  # at most max_in_flight_per_connection answered at once
                    task = asyncio.create_task(self._answer(ws, data, sessions, errors, recv_time, recv_perf))
                    in_flight.add(task)
                    task.add_done_callback(done)
                else:  # openpi (no request ids) and text frames: answered in order
                    await self._answer(ws, data, sessions, errors, recv_time, recv_perf)
        except ConnectionClosed:
            pass
        finally:
            for task in list(in_flight):
                task.cancel()
            sessions.clear()
            log.info("connection from %s closed", peer)

    async def _answer(self, ws: Any, data: Any, sessions: dict[int, Any], errors: list[int], recv_time: float,
                      recv_perf: float) -> None:
        """Answer one message (a reply or an error reply); close the connection after too many bad messages."""
        from websockets.exceptions import ConnectionClosed

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
            except _BadRequest as e:
                self.errors_sent += 1
                log.info("%s from %s: [%s] %s", "server failure" if isinstance(e, _ServerFault) else "bad request",
                         ws.remote_address, e.code, e)
                await ws.send(self._error_frame(data, e.code, str(e)))
                if not isinstance(e, _ServerFault):
                    errors[0] += 1
                    if errors[0] >= self.config.max_errors_per_connection:
                        await ws.close(1008, f"too many bad messages ({errors[0]})")
        except ConnectionClosed:
            pass

    def _error_frame(self, data: Any, code: str, message: str) -> bytes | str:
        """Our error message for our clients (binary, with the request id), a text frame for everyone else."""
        if isinstance(data, bytes | bytearray) and bytes(data[:4]) == wire.MAGIC:
            request_id = -1
            try:
                meta, _ = wire.read_header(data, limits=self._limits())
                rid = meta.get("request_id")
                request_id = rid if type(rid) is int else -1
            except (wire.WireFormatError, TypeError):
                pass
            return wire.encode({}, {TYPE_KEY: ERROR, "request_id": request_id, "code": code, "message": message})
        return f"error [{code}]: {message}"

    def _limits(self) -> wire.WireLimits:
        return wire_limits(self.config.max_message_bytes)

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
            message = wire.decode(data, limits=self._limits())
        except wire.WireFormatError as e:
            raise _BadRequest(E_BAD_MESSAGE, str(e)) from e
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
            raise _BadRequest(E_BAD_MESSAGE, f"request_id must be an int, got {request_id!r}")
        if kind == CANCEL:
            sessions.pop(request_id, None)
            return None
        if kind == SPLIT:
            cut = meta.get("cut")
            if type(cut) is not int or not 0 <= cut < self.num_cuts:
                raise _BadRequest(E_BAD_REQUEST, f"cut must be an int in 0..{self.num_cuts - 1}, got {cut!r}")
            # one exchange in flight per connection: a new inference ends every earlier one (bounded memory)
            sessions.clear()
            session = None
        elif kind == CONTINUE:
            if request_id not in sessions:
                raise _BadRequest(E_BAD_REQUEST, f"no open session for request_id {request_id}")
            session = sessions[request_id]
            cut = -1
        else:
            raise _BadRequest(E_BAD_MESSAGE, f"unknown message type {kind!r}; expected one of split/continue/cancel/ping")
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
            (sess, result), queue_s, compute_s = await self._run(cloud_step, cut, session, message)
        except ComputeUnavailable as e:
            sessions.pop(request_id, None)
            log.warning("request %d: %s", request_id, e)
            raise _ServerFault(E_COMPUTE, f"{type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - any model failure on a hostile payload is answered, not fatal
            sessions.pop(request_id, None)
            code = E_BAD_REQUEST if isinstance(e, ValueError | TypeError) else E_COMPUTE
            log.info("request %d failed: %s: %s", request_id, type(e).__name__, e)
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
            return encode_payload(result, envelope, self.config.reply_compression)
        except (wire.WireFormatError, TypeError, AttributeError) as e:
            raise _BadRequest(E_COMPUTE, f"cannot encode the reply: {e}") from e

    # -- openpi policy-server format ---------------------------------------------------------------------------------
    async def _handle_openpi(self, data: bytes, recv_time: float, recv_perf: float) -> bytes:
        try:
            request = msgpack_numpy.unpackb(data, max_message_bytes=self.config.max_message_bytes)
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
def cloud_step(model: SplitModel, cut: int, session: Any, message: wire.Message) -> tuple[Any, Any]:
    """One cloud step of a split exchange: a new cloud session at ``cut`` (``session`` None) or the given one."""
    sess = session if session is not None else model.cloud_session(cut)
    return sess, sess.on_request(to_payload(message))


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

