"""Hostile and malformed messages never crash the server: each gets an error reply or a clean close."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from executor import msgpack_numpy, wire  # noqa: E402
from executor.client import EdgeClient  # noqa: E402
from executor.models import Payload, build_model  # noqa: E402
from executor.protocol import encode_payload  # noqa: E402
from executor.server import CloudServer, ServerConfig  # noqa: E402

WAIT_S = 10.0
MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def setup():
    edge = build_model("openvla", "tiny", seed=0)
    cloud = build_model("openvla", "tiny", seed=0)
    server = CloudServer(cloud, ServerConfig(port=0, max_message_bytes=MAX_BYTES, max_errors_per_connection=8))
    server.start()
    yield edge, server
    server.stop()


def _valid_split(edge, request_id: int = 1, cut: int = 2) -> bytes:
    payload = edge.edge_session(cut).start(edge.make_observation(0))
    return encode_payload(payload, {"ecc": "split", "request_id": request_id, "cut": cut})


@contextlib.contextmanager
def _open(server):
    with connect(server.url, compression=None, max_size=None, open_timeout=WAIT_S) as ws:
        msgpack_numpy.unpackb(ws.recv(timeout=WAIT_S))  # metadata
        yield ws


def _reply(ws) -> tuple[str, dict]:
    """('text', {}) for a text frame, else (message type, wire metadata)."""
    raw = ws.recv(timeout=WAIT_S)
    if isinstance(raw, str):
        return "text", {"text": raw}
    meta = wire.decode(raw).meta
    return meta["ecc"], meta


def _server_still_serves(edge, server) -> None:
    obs = edge.make_observation(7)
    with EdgeClient(edge, server.url) as client:
        client.connect()
        out = client.infer(obs, 3, deadline=time.perf_counter() + WAIT_S)
    np.testing.assert_array_equal(out.actions, edge.forward(obs))


def _bad_dtype(edge) -> bytes:
    payload = edge.edge_session(0).start(edge.make_observation(0))
    tensors = {name: np.asarray(t, dtype=np.float64) for name, t in payload.tensors.items()}
    bad = Payload(kind=payload.kind, cut=payload.cut, tensors=tensors)
    return encode_payload(bad, {"ecc": "split", "request_id": 5, "cut": 0})


def _huge_shape_header() -> bytes:
    """A well-formed message whose header claims a 10**12-element tensor (the data region stays 16 bytes)."""
    import msgpack

    msg = wire.encode({"x": np.ones(4, dtype=np.float32)}, {"ecc": "split", "request_id": 6, "cut": 0})
    head_len = int.from_bytes(msg[6:10], "little")
    head_end = wire.PREFIX_BYTES + head_len
    data = msg[head_end + (-head_end) % wire.ALIGN_BYTES :]
    header = msgpack.unpackb(msg[wire.PREFIX_BYTES : head_end])
    header["tensors"][0]["shape"] = [10**6, 10**6]
    header["tensors"][0]["nbytes"] = 4 * 10**12
    new_head = msgpack.packb(header)
    prefix = bytearray(msg[: wire.PREFIX_BYTES])
    prefix[6:10] = len(new_head).to_bytes(4, "little")
    out = bytes(prefix) + new_head
    return out + b"\0" * ((-len(out)) % wire.ALIGN_BYTES) + data


CASES = {
    "garbage": (lambda e: b"\x00\x01garbage" * 10, "text"),
    "text_frame": (lambda e: "hello", "text"),
    "magic_only": (lambda e: wire.MAGIC, "error"),
    "truncated": (lambda e: _valid_split(e)[:-40], "error"),
    "truncated_header": (lambda e: _valid_split(e)[:14], "error"),
    "wrong_dtype": (_bad_dtype, "error"),
    "huge_shape": (lambda e: _huge_shape_header(), "error"),
    "unknown_type": (lambda e: wire.encode({}, {"ecc": "launch", "request_id": 1}), "error"),
    "bad_cut": (lambda e: wire.encode({}, {"ecc": "split", "request_id": 1, "cut": 999}), "error"),
    "string_request_id": (lambda e: wire.encode({}, {"ecc": "split", "request_id": "1", "cut": 0}), "error"),
    "continue_without_session": (lambda e: wire.encode({}, {"ecc": "continue", "request_id": 77}), "error"),
    "no_payload_header": (lambda e: wire.encode({}, {"ecc": "split", "request_id": 2, "cut": 1}), "error"),
    "openpi_not_a_map": (lambda e: msgpack_numpy.packb([1, 2, 3]), "text"),
    "openpi_object_dtype": (
        lambda e: msgpack_numpy.packb(
            {"images": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]}}
        ),
        "text",
    ),
    "openpi_lying_shape": (
        lambda e: msgpack_numpy.packb(
            {"images": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "<f4", b"shape": [10**9, 10**9]}}
        ),
        "text",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_message_gets_an_error_and_the_connection_survives(setup, case):
    edge, server = setup
    make, expected = CASES[case]
    with _open(server) as ws:
        ws.send(make(edge))
        kind, meta = _reply(ws)
        assert kind == expected, meta
        if kind == "error":
            assert meta["code"] in ("bad_message", "bad_request") and meta["message"]
        # the same connection still answers a valid request correctly
        ws.send(_valid_split(edge, request_id=42, cut=2))
        kind, meta = _reply(ws)
        assert kind == "reply" and meta["request_id"] == 42 and meta["final"] is True
    _server_still_serves(edge, server)


def test_oversized_message_closes_only_that_connection(setup):
    edge, server = setup
    with _open(server) as bystander, _open(server) as ws:
        ws.send(wire.encode({"x": np.zeros(MAX_BYTES, dtype=np.uint8)}, {"ecc": "ping"}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=WAIT_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
        bystander.send(_valid_split(edge, request_id=9))
        kind, meta = _reply(bystander)
        assert kind == "reply" and meta["request_id"] == 9
    _server_still_serves(edge, server)


def test_repeated_bad_messages_close_the_connection_with_policy_violation(setup):
    edge, server = setup
    closed = None
    with _open(server) as ws:
        for _ in range(20):
            try:
                ws.send(b"junk")
                _reply(ws)
            except ConnectionClosed as e:
                closed = e
                break
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 1008
    _server_still_serves(edge, server)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    mode=st.sampled_from(["random", "random_with_magic", "flip", "cut"]),
)
def test_fuzzed_messages_never_crash_the_server(setup, data, mode):
    edge, server = setup
    valid = _valid_split(edge, request_id=3, cut=1)
    if mode == "random":
        message = data.draw(st.binary(min_size=0, max_size=2048))
    elif mode == "random_with_magic":
        message = wire.MAGIC + data.draw(st.binary(min_size=0, max_size=2048))
    elif mode == "flip":
        positions = data.draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=8))
        buf = bytearray(valid)
        for p in positions:
            buf[p] ^= data.draw(st.integers(1, 255))
        message = bytes(buf)
    else:
        message = valid[: data.draw(st.integers(0, len(valid) - 1))]
    with _open(server) as ws:
        ws.send(message)
        try:
            kind, meta = _reply(ws)
        except ConnectionClosed as e:  # a clean close is an allowed answer
            assert e.rcvd is not None and e.rcvd.code in (1002, 1007, 1008, 1009)
        else:
            assert kind in ("text", "error", "reply", "pong"), meta
    assert server._thread is not None and server._thread.is_alive()


def test_server_survives_fuzzing(setup):
    edge, server = setup
    _server_still_serves(edge, server)
    assert server.errors_sent > 0
