"""Messages between the edge client and the cloud server, and the errors callers catch.

Every frame is binary unless it is an error for a client that cannot read ours (openpi's client expects errors as
a text frame). Our frames are ``executor.wire`` messages: a msgpack header (the envelope below, under the wire
header's metadata) plus raw array bytes; nothing is ever pickled.

Connection:  server -> client  METADATA (plain msgpack map, readable by openpi's client too)
Our requests (client -> server), header field ``ecc`` = message type:
  ``split``     request_id, cut, payload arrays    first message of one inference at cut ``cut``
  ``continue``  request_id, payload arrays         next message of the same inference (decode round trips)
  ``cancel``    request_id                         drop the server's session of that request (no reply)
  ``ping``      t_client_s                         clock and liveness probe
Our replies (server -> client):
  ``reply``     request_id, final, timing, payload arrays   ``final`` = the edge session finishes with this
  ``error``     request_id (or -1), code, message
  ``pong``      t_client_s, t_server_s, queue_length
A binary frame that is not one of ours is read as an openpi policy-server request (see ``executor.server``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from executor import wire
from traces.units import rate_mbps

SCHEMA_VERSION = 1
PROTOCOL_NAME = "vla-ecc"
DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# header key that marks our envelope inside the wire metadata, and the message types
TYPE_KEY = "ecc"
SPLIT, CONTINUE, CANCEL, PING = "split", "continue", "cancel", "ping"
REPLY, ERROR, PONG = "reply", "error", "pong"
REQUEST_TYPES = (SPLIT, CONTINUE, CANCEL, PING)

# error codes carried by ERROR messages
E_BAD_MESSAGE = "bad_message"  # undecodable, wrong dtype/shape, missing field
E_BAD_REQUEST = "bad_request"  # decodable but invalid (unknown cut, unknown request id, ...)
E_COMPUTE = "compute_failed"  # the model raised
E_BUSY = "busy"  # the server's budget of in-flight decoded bytes stayed full (retry later)
E_INTERNAL = "internal"  # a server fault while handling a message (the connection stays open)
ERROR_MESSAGE_CHARS = 200  # an error reply's text: printable ASCII, at most this long, never the client's bytes

# the default bound on an incoming message: this many times the served model's largest legitimate request ...
MESSAGE_MARGIN = 4.0
# ... and at least this (openpi requests carry camera images at the client's size; the server resizes them)
MIN_DERIVED_MESSAGE_BYTES = 4 * 1024 * 1024


class ProtocolError(ValueError):
    """A message that does not follow the protocol (malformed, wrong type, unexpected reply)."""


class AuthenticationError(ConnectionError):
    """The server refused the handshake (missing or wrong token)."""


class ServerUnavailable(ConnectionError):
    """No usable connection to the server (never connected, refused, closed or lost mid-request)."""


class RemoteError(RuntimeError):
    """The server answered a request with an error."""

    def __init__(self, code: str, message: str, request_id: int = -1) -> None:
        super().__init__(f"server error [{code}] (request {request_id}): {message}")
        self.code = code
        self.remote_message = message
        self.request_id = request_id


class TransportTimeout(TimeoutError):
    """No reply (or no connection) within the deadline."""


@dataclass(frozen=True)
class ServerInfo:
    """The metadata message a server sends first on every connection."""

    model_id: str
    preset: str
    num_blocks: int
    num_cuts: int
    cut_names: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    protocol: str = PROTOCOL_NAME
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    auth_required: bool = False
    emulation: dict[str, Any] | None = None
    server_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cut_names"] = list(self.cut_names)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ServerInfo:
        if not isinstance(d, dict) or d.get("protocol") != PROTOCOL_NAME:
            raise ProtocolError(f"not a {PROTOCOL_NAME} server metadata message: {str(d)[:200]!r}")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ProtocolError(
                f"server speaks schema version {d.get('schema_version')!r}, this client {SCHEMA_VERSION}"
            )
        try:
            return cls(
                model_id=str(d["model_id"]),
                preset=str(d["preset"]),
                num_blocks=int(d["num_blocks"]),
                num_cuts=int(d["num_cuts"]),
                cut_names=tuple(str(n) for n in d.get("cut_names", ())),
                schema_version=int(d["schema_version"]),
                protocol=str(d["protocol"]),
                max_message_bytes=int(d.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)),
                auth_required=bool(d.get("auth_required", False)),
                emulation=d.get("emulation"),
                server_time_s=float(d.get("server_time_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"server metadata is missing or has bad fields: {e}") from e


@dataclass(frozen=True)
class ServerTiming:
    """What the server reports with every reply.

    queue_ms: from the message's arrival to the start of its compute; compute_ms: the model's time on it;
    residence_ms: arrival to reply sent (queue + compute + decode/encode); queue_length: requests queued or
    running on the server when the reply was sent; recv_time_s / send_time_s: server wall clock (time.time()).
    """

    queue_ms: float
    compute_ms: float
    residence_ms: float
    queue_length: int
    recv_time_s: float
    send_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> ServerTiming:
        try:
            return cls(**{k: type_(d[k]) for k, type_ in _TIMING_FIELDS.items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"reply timing is missing or has bad fields: {e}") from e


_TIMING_FIELDS = {
    "queue_ms": float,
    "compute_ms": float,
    "residence_ms": float,
    "queue_length": int,
    "recv_time_s": float,
    "send_time_s": float,
}


@dataclass(frozen=True)
class CallTiming:
    """Breakdown of one inference as the edge saw it (all ms). Sums over the round trips of a decode exchange.

        uplink_ms / downlink_ms come from the server's receive/send clock corrected by the offset estimated at connect
        (ping exchange), so they include each direction's serialisation and one-way delay; ``network_ms`` (round trip
        minus server residence) needs no clock agreement. ``effective_mbps`` = bytes both ways / network time (RoboECC's
    bytes / (round trip - remote time)); ``uplink_mbps`` / ``downlink_mbps`` = each direction's bytes / its time.
    """

    edge_ms: float = 0.0
    encode_ms: float = 0.0
    uplink_ms: float = 0.0
    cloud_queue_ms: float = 0.0
    cloud_compute_ms: float = 0.0
    downlink_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    network_ms: float = 0.0
    round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    effective_mbps: float = 0.0
    uplink_mbps: float = 0.0
    downlink_mbps: float = 0.0
    server_queue_length: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def missed_upload_mbps(nbytes: float, waited_s: float) -> float:
    """The uplink estimate a deadline miss leaves: the main upload's bits / the time from its start to the deadline.

    The edge cannot tell how far an upload got when no reply came back in time, only that the exchange did not fit
    what was left of the deadline, so the link delivered less than this rate (an upper bound). The env and the edge
    runtime both record it as the step's uplink sample (``ecc_env.latency.step_timing`` and ``EdgeClient``). NaN
    when nothing was sent or the deadline had already passed when the upload started.
    """
    if not (nbytes > 0 and waited_s > 0):
        return float("nan")
    return rate_mbps(nbytes, waited_s)


def wire_limits(max_message_bytes: int) -> wire.WireLimits:
    """Decode limits for a message size bound: decoded arrays at most 8x the message (int8 -> float64)."""
    return wire.WireLimits(
        max_message_bytes=max_message_bytes,
        max_decoded_bytes=min(wire.DEFAULT_LIMITS.max_decoded_bytes, 8 * max_message_bytes),
        max_header_bytes=min(wire.DEFAULT_LIMITS.max_header_bytes, max_message_bytes),
    )


def largest_request_bytes(model: Any) -> int:
    """The largest request a well-formed client sends ``model`` (tensor bytes at float32): the biggest upload of any
    cut or decode round trip, or the raw observation of a full offload."""
    cuts = model.cut_specs("float32")
    split = max((max(c.up_bytes, c.round_trip_up_bytes) for c in cuts), default=0)
    obs = sum(int(getattr(v, "nbytes", 0)) for v in model.make_observation(0).values())
    return int(max(split, obs))


def max_message_bytes_for(model: Any, margin: float = MESSAGE_MARGIN) -> int:
    """The default message bound for a server of ``model``: ``margin`` x :func:`largest_request_bytes` (headers
    and float64 inputs fit), at least ``MIN_DERIVED_MESSAGE_BYTES``."""
    return int(max(MIN_DERIVED_MESSAGE_BYTES, margin * largest_request_bytes(model)))


def safe_error_text(text: str, limit: int = ERROR_MESSAGE_CHARS) -> str:
    """``text`` as printable ASCII (anything else becomes '?'), at most ``limit`` characters: an error reply or log
    line built from it can neither grow with nor carry the bytes a client sent."""
    out = "".join(c if " " <= c <= "~" else "?" for c in text[: limit + 1])
    return out if len(out) <= limit else out[: limit - 3] + "..."


# -- payloads under our envelope (shared by server and client) ------------------------------------------------------
def payload_header(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``payload`` field of an envelope, checked: kind str, cut/step int, activations list of str, meta map."""
    h = meta.get("payload")
    if not isinstance(h, dict):
        raise ProtocolError(f"message has no payload header map, got {type(h).__name__}")
    kind, cut, step, acts, pmeta = (
        h.get("kind"),
        h.get("cut"),
        h.get("step", 0),
        h.get("activations", []),
        h.get("meta", {}),
    )
    if not isinstance(kind, str) or type(cut) is not int or type(step) is not int:
        raise ProtocolError(f"payload header needs kind (str), cut (int), step (int); got {kind!r}, {cut!r}, {step!r}")
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts) or not isinstance(pmeta, dict):
        raise ProtocolError("payload header: activations must be a list of names and meta a map")
    return {"kind": kind, "cut": cut, "step": step, "activations": tuple(acts), "meta": pmeta}


def to_payload(message: wire.Message) -> Any:
    """A decoded wire message as a models ``Payload`` (torch tensors in their original dtypes, writable copies;
    encoded camera frames decoded, see ``executor.frame_transport``)."""
    from executor.frame_transport import decode_frames
    from executor.models.base import Payload

    header = payload_header(message.meta)
    return Payload(tensors=decode_frames(wire.to_torch(message), header["meta"]), **header)


def encode_payload(payload: Any, envelope: dict[str, Any], compression: str = "none") -> bytes:
    """Encode a models ``Payload`` under our envelope; ``compression`` applies to its activations only."""
    header = dict(envelope)
    header["payload"] = payload.header()
    codecs = {name: compression for name in payload.activations} if compression != "none" else "none"
    return wire.encode(payload.tensors, header, compression=codecs)
