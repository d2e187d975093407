"""Hostile input against ``ecc serve``: a seeded fuzz run over every message class (each bad message answered, no
1011 close, bounded memory, a well-formed client still exact), bounded error replies, idle and slowloris
connections closed, a connection cap, rate-limited authentication, the non-loopback rule and TLS."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")
import msgpack
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from executor import msgpack_numpy, wire
from executor.client import ClientConfig, EdgeClient
from executor.models import build_model
from executor.protocol import (
    ERROR_MESSAGE_CHARS,
    AuthenticationError,
    ServerUnavailable,
    encode_payload,
    max_message_bytes_for,
)
from executor.server import CloudServer, ServerConfig, _AddressStrikes, _LogBudget

WAIT_S = 10.0
FUZZ_MESSAGES = 2000


@pytest.fixture(scope="module")
def models():
    return build_model("openvla", "tiny", seed=0), build_model("openvla", "tiny", seed=0)


def _valid_split(edge, request_id: int = 1, cut: int = 2) -> bytes:
    payload = edge.edge_session(cut).start(edge.make_observation(0))
    return encode_payload(payload, {"ecc": "split", "request_id": request_id, "cut": cut})


def _exact(edge, url: str, config: ClientConfig | None = None) -> None:
    obs = edge.make_observation(7)
    with EdgeClient(edge, url, config or ClientConfig(connect_timeout_s=WAIT_S)) as client:
        client.connect()
        out = client.infer(obs, 3, deadline=time.perf_counter() + WAIT_S)
    np.testing.assert_array_equal(out.actions, edge.forward(obs))


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _rewrite_header(msg: bytes, edit) -> bytes:
    """``msg`` with its msgpack header passed through ``edit`` (data region kept)."""
    head_len = int.from_bytes(msg[6:10], "little")
    head_end = wire.PREFIX_BYTES + head_len
    data = msg[head_end + (-head_end) % wire.ALIGN_BYTES :]
    header = msgpack.unpackb(msg[wire.PREFIX_BYTES : head_end])
    edit(header)
    new_head = msgpack.packb(header)
    prefix = bytearray(msg[: wire.PREFIX_BYTES])
    prefix[6:10] = len(new_head).to_bytes(4, "little")
    out = bytes(prefix) + new_head
    return out + b"\0" * ((-len(out)) % wire.ALIGN_BYTES) + data


def _zero_and_huge(msg: bytes) -> bytes:
    def edit(h):
        t = h["tensors"][0]
        t["shape"], t["nbytes"], t["offset"] = [0, 2**62], 0, 0

    return _rewrite_header(msg, edit)


def fuzz_messages(edge, n: int, seed: int) -> list[tuple[str, bytes | str]]:
    """``n`` hostile messages over every class, deterministic in ``seed``: (class, message)."""
    rng = np.random.default_rng(seed)
    valid = _valid_split(edge, request_id=3, cut=1)
    ping = wire.encode({}, {"ecc": "ping", "t_client_s": 0.0})

    def nul_meta():
        return wire.encode({}, {"ecc": "\0" * int(rng.integers(1, 20_000)), "request_id": 1})

    def bad_tensor_name():
        return wire.encode(
            {"\0" * int(rng.integers(1, 4000)): np.zeros(2, np.float32)},
            {"ecc": "split", "request_id": 1, "cut": 1, "payload": {"kind": "\0" * 100, "cut": 1}},
        )

    classes = {
        "random": lambda: rng.bytes(int(rng.integers(0, 4096))),
        "magic_random": lambda: wire.MAGIC + rng.bytes(int(rng.integers(0, 4096))),
        "flip": lambda: bytes(
            np.bitwise_xor(
                np.frombuffer(valid, np.uint8), (rng.random(len(valid)) < 0.01) * rng.integers(1, 256, len(valid))
            ).astype(np.uint8)
        ),
        "truncate": lambda: valid[: int(rng.integers(0, len(valid)))],
        "zero_and_huge_dim": lambda: _zero_and_huge(valid),
        "nul_meta": nul_meta,
        "nul_tensor_name": bad_tensor_name,
        "huge_request_id": lambda: wire.encode(
            {}, {"ecc": "split", "request_id": int(rng.integers(2**62, 2**63)), "cut": 10**18}
        ),
        "bad_types": lambda: wire.encode({}, {"ecc": ["split"], "request_id": [1], "cut": "0"}),
        "unknown_type": lambda: wire.encode({}, {"ecc": "x" * int(rng.integers(1, 5000)), "request_id": 1}),
        "continue_no_session": lambda: wire.encode({}, {"ecc": "continue", "request_id": int(rng.integers(0, 9))}),
        "text": lambda: "\0" * int(rng.integers(1, 5000)),
        "openpi_not_map": lambda: msgpack_numpy.packb([1, 2, 3]),
        "openpi_lying": lambda: msgpack_numpy.packb(
            {"images": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "<f4", b"shape": [0, 2**62]}}
        ),
        "openpi_missing": lambda: msgpack_numpy.packb({"\0" * 1000: np.zeros(3, np.float32)}),
        "header_mutation": lambda: _rewrite_header(
            ping,
            lambda h: h.update(
                data_bytes=int(rng.integers(-5, 2**40)),
                tensors=[
                    {
                        "name": "x",
                        "dtype": "float32",
                        "codec": "none",
                        "shape": [int(rng.integers(0, 2**40))],
                        "offset": 0,
                        "nbytes": 4,
                    }
                ],
            ),
        ),
    }
    names = sorted(classes)
    return [(names[i % len(names)], classes[names[i % len(names)]]()) for i in range(n)]


def test_fuzz_every_bad_message_is_answered_and_memory_stays_bounded(models):
    """2,000 seeded messages over every class on one connection: each gets an error reply (text or ``error``) or,
    for a mutation that happens to be valid, a reply; never a close; RSS grows < 64 MB; a client is still exact."""
    edge, cloud = models
    config = ServerConfig(port=0, max_errors_per_connection=10**6, log_lines_per_minute=20)
    messages = fuzz_messages(edge, FUZZ_MESSAGES, seed=0)
    with CloudServer(cloud, config) as server:
        _exact(edge, server.url)
        rss0 = _rss_bytes()
        answers: dict[str, int] = {}
        with connect(server.url, compression=None, max_size=None, open_timeout=WAIT_S) as ws:
            msgpack_numpy.unpackb(ws.recv(timeout=WAIT_S))
            for cls, message in messages:
                ws.send(message)
                raw = ws.recv(timeout=WAIT_S)  # a ConnectionClosed here (1011 or any) fails the test
                assert len(raw) < 1024, (cls, len(raw))  # bounded, whatever the message held
                if isinstance(raw, str):
                    kind = "text"
                    assert raw.startswith("error [") and "\0" not in raw, (cls, raw[:100])
                else:
                    meta = wire.decode(raw).meta
                    kind = meta["ecc"]
                    if kind == "error":
                        assert len(meta["message"]) <= ERROR_MESSAGE_CHARS and meta["message"].isprintable()
                        assert meta["code"] != "internal", (cls, meta)
                answers[kind] = answers.get(kind, 0) + 1
                if cls not in ("flip", "truncate"):
                    assert kind in ("text", "error"), (cls, kind)
        growth = _rss_bytes() - rss0
        assert growth < 64 * 1024 * 1024, growth
        assert server.errors_sent >= sum(v for k, v in answers.items() if k in ("text", "error"))
        assert answers.get("text", 0) + answers.get("error", 0) >= 0.9 * FUZZ_MESSAGES
        _exact(edge, server.url)


def test_zero_size_tensor_with_a_huge_dimension_is_a_wire_format_error(models):
    edge, _ = models
    with pytest.raises(wire.WireFormatError, match="exceeds the limit"):
        wire.decode(_zero_and_huge(_valid_split(edge)))
    with pytest.raises(wire.WireFormatError):
        msgpack_numpy.unpackb(
            msgpack_numpy.packb({"a": {b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [0, 2**62]}})
        )


def test_default_max_message_is_derived_from_the_model(models):
    edge, cloud = models
    server = CloudServer(cloud, ServerConfig(port=0))
    assert server.max_message_bytes == max_message_bytes_for(cloud) <= 8 * 1024 * 1024
    assert server.info().max_message_bytes == server.max_message_bytes
    assert len(_valid_split(edge, cut=0)) < server.max_message_bytes


@contextlib.contextmanager
def _raw_ws(port: int):
    """A raw TCP websocket client (handshake by hand) for byte-level timing attacks."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "handshake refused"
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
    rest = buf.split(b"\r\n\r\n", 1)[1]  # then the metadata frame (binary, < 64 KiB): read it whole
    while len(rest) < 4 or len(rest) < 4 + struct.unpack(">H", rest[2:4])[0]:
        rest += sock.recv(65536)
    try:
        yield sock
    finally:
        sock.close()


def _close_code(sock: socket.socket, within_s: float) -> int | None:
    """Read frames until the server's close frame (its code) or EOF (None) within ``within_s``."""
    sock.settimeout(within_s)
    data = b""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        i = 0
        while i + 2 <= len(data):
            op, ln = data[i] & 0x0F, data[i + 1] & 0x7F
            hdr = 2
            if ln == 126:
                ln, hdr = struct.unpack(">H", data[i + 2 : i + 4])[0], 4
            elif ln == 127:
                ln, hdr = struct.unpack(">Q", data[i + 2 : i + 10])[0], 10
            if i + hdr + ln > len(data):
                break
            if op == 8:
                return struct.unpack(">H", data[i + hdr : i + hdr + 2])[0]
            i += hdr + ln
    return None


def test_idle_and_slowloris_connections_are_closed_while_others_are_served(models):
    edge, cloud = models
    config = ServerConfig(port=0, idle_timeout_s=0.6, message_timeout_s=0.8, ping_interval_s=None)
    with CloudServer(cloud, config) as server:
        with _raw_ws(server.port) as idle, _raw_ws(server.port) as slow:
            # slowloris: a 1,000-byte binary frame announced, then one byte every 0.1 s (never idle that long)
            slow.sendall(bytes([0x82, 0x80 | 126]) + struct.pack(">H", 1000) + b"\0\0\0\0")
            t0 = time.monotonic()
            closed_after = code = None
            for i in range(40):
                slow.sendall(b"\0")
                if i == 3:
                    _exact(edge, server.url)  # others are served meanwhile
                if select.select([slow], [], [], 0.1)[0]:  # the server spoke: its close frame
                    closed_after, code = time.monotonic() - t0, _close_code(slow, 2.0)
                    break
            assert code == 1008 and closed_after is not None and 0.8 <= closed_after < 2.5, (code, closed_after)
            assert _close_code(idle, 3.0) == 1000
        assert server.connections_timed_out >= 2
        _exact(edge, server.url)


def test_connection_cap_evicts_the_idlest_and_refuses_when_none_is_idle(models):
    edge, cloud = models
    config = ServerConfig(port=0, max_connections=3, ping_interval_s=None, evict_idle_after_s=0.3)
    with CloudServer(cloud, config) as server, contextlib.ExitStack() as stack:
        socks = [stack.enter_context(_raw_ws(server.port)) for _ in range(3)]
        with pytest.raises(InvalidStatus) as info:  # full, and nobody idle long enough yet
            connect(server.url, open_timeout=WAIT_S)
        assert info.value.response.status_code == 503
        time.sleep(0.4)
        _exact(edge, server.url)  # admitted: the connection idle longest is closed (1013) to make room
        assert _close_code(socks[0], 2.0) == 1013
        assert server.connections_evicted >= 1 and server.connections_refused >= 1
        assert server.connections <= 3


def test_repeated_oversized_messages_get_the_address_dropped_at_accept(models):
    """After ``oversized_per_minute`` oversized messages from an address, its new connections are dropped as soon as
    they are accepted (no handshake, no metadata); a connection already open keeps being served exactly; once the
    strikes have expired the address connects again."""
    edge, cloud = models
    config = ServerConfig(port=0, oversized_per_minute=3, ping_interval_s=None)
    obs = edge.make_observation(7)
    with (
        CloudServer(cloud, config) as server,
        EdgeClient(edge, server.url, ClientConfig(connect_timeout_s=WAIT_S, probe_interval_s=None)) as healthy,
    ):
        healthy.connect()
        big = wire.MAGIC + b"\0" * server.max_message_bytes  # one byte over the limit
        for _ in range(3):
            with connect(server.url, compression=None, max_size=None, open_timeout=WAIT_S) as ws:
                ws.recv(timeout=WAIT_S)
                with pytest.raises((ConnectionClosed, OSError)):  # close 1009, or the socket dropped mid-upload
                    ws.send(big)
                    ws.recv(timeout=WAIT_S)
        assert server.oversized_refused == 0
        with pytest.raises(ServerUnavailable):
            _exact(edge, server.url)
        assert server.oversized_refused >= 1
        out = healthy.infer(obs, 3, deadline=time.perf_counter() + WAIT_S)
        np.testing.assert_array_equal(out.actions, edge.forward(obs))
        server._oversized.clear()  # what a minute does
        _exact(edge, server.url)


def test_decoding_runs_off_the_event_loop_under_the_in_flight_byte_budget(models, monkeypatch):
    """A message whose decoding does not finish (a stand-in for a huge int8 payload) holds no other connection up:
    it is decoded on the server's decode threads while another connection is answered; while it holds the in-flight
    byte budget, a message that does not fit waits ``busy_timeout_s`` and is answered ``busy``; a message bigger
    than the whole budget is answered ``busy`` at once; every connection stays open."""
    edge, cloud = models
    slow_msg = _valid_split(edge, request_id=77, cut=2)
    _, infos = wire.read_header(slow_msg)
    needed = len(slow_msg) + wire.decoded_nbytes(infos)
    release = threading.Event()
    decode_threads = []
    real_decode = wire.decode

    def decode(data, **kw):
        message = real_decode(data, **kw)
        if message.meta.get("request_id") == 77:
            decode_threads.append(threading.current_thread().name)
            release.wait(3 * WAIT_S)  # on the event loop this would freeze every connection
        return message

    monkeypatch.setattr(wire, "decode", decode)
    ping = wire.encode({}, {"ecc": "ping", "t_client_s": 0.0})
    config = ServerConfig(port=0, max_inflight_bytes=needed + 1024, busy_timeout_s=0.3)
    try:
        with (
            CloudServer(cloud, config) as server,
            connect(server.url, compression=None, max_size=None, open_timeout=WAIT_S) as slow,
            connect(server.url, compression=None, max_size=None, open_timeout=WAIT_S) as other,
        ):
            slow.recv(timeout=WAIT_S)
            other.recv(timeout=WAIT_S)
            slow.send(slow_msg)
            while not decode_threads:
                time.sleep(0.01)
            other.send(ping)
            assert real_decode(other.recv(timeout=WAIT_S)).meta["ecc"] == "pong"  # served meanwhile
            other.send(_valid_split(edge, request_id=5, cut=2))  # does not fit beside request 77
            busy = real_decode(other.recv(timeout=WAIT_S)).meta
            assert (busy["ecc"], busy["code"], busy["request_id"]) == ("error", "busy", 5), busy
            whole = wire.encode({"x": np.zeros(2 * needed, np.uint8)}, {"ecc": "ping", "request_id": 6})
            assert len(whole) + wire.decoded_nbytes(wire.read_header(whole)[1]) > config.max_inflight_bytes
            other.send(whole)  # more than the whole budget
            busy = real_decode(other.recv(timeout=WAIT_S)).meta
            assert (busy["ecc"], busy["code"], busy["request_id"]) == ("error", "busy", 6), busy
            release.set()
            reply = real_decode(slow.recv(timeout=WAIT_S)).meta
            assert (reply["ecc"], reply["request_id"]) == ("reply", 77), reply
            other.send(ping)
            assert real_decode(other.recv(timeout=WAIT_S)).meta["ecc"] == "pong"
    finally:
        release.set()
    assert decode_threads and all(n.startswith("ecc-decode") for n in decode_threads), decode_threads


def test_ray_engine_serves_connections_with_the_same_handler():
    """``ecc serve --engine ray`` runs ``RayCloudServer``: every limit above lives in code it inherits unchanged
    (only where a compute job runs differs)."""
    from executor.ray_serve import RayCloudServer

    assert issubclass(RayCloudServer, CloudServer)
    for name in (
        "serve",
        "_process_request",
        "_handle",
        "_next_message",
        "_answer",
        "_error_frame",
        "_handle_ours",
        "_handle_openpi",
        "_off_loop",
        "_evict_idlest",
        "_info_message",
    ):
        assert getattr(RayCloudServer, name) is getattr(CloudServer, name), name


def test_address_strikes_expire_after_a_minute_and_forget_the_oldest_address():
    now = [0.0]
    strikes = _AddressStrikes(per_minute=2, max_addresses=3, clock=lambda: now[0])
    strikes.add("a")
    assert not strikes.exceeded("a")
    strikes.add("a")
    assert strikes.exceeded("a") and not strikes.exceeded("b")
    now[0] = 30.0
    assert strikes.exceeded("a")
    now[0] = 60.5
    assert not strikes.exceeded("a")
    for host in "bcde":
        strikes.add(host)
        strikes.add(host)
    assert not strikes.exceeded("b") and strikes.exceeded("c") and strikes.exceeded("e")  # a and b forgotten


def test_library_log_lines_about_connections_are_budgeted(models, caplog):
    """websockets logs "connection open"/"connection closed" at INFO for every connection: a flood of connections
    must not grow the log beyond the budget."""
    edge, cloud = models
    with caplog.at_level(logging.INFO), CloudServer(cloud, ServerConfig(port=0, log_lines_per_minute=5)) as server:
        for _ in range(20):
            with connect(server.url, compression=None, open_timeout=WAIT_S) as ws:
                ws.recv(timeout=WAIT_S)
        _exact(edge, server.url)
    library = [r for r in caplog.records if r.name.startswith(("websockets", "asyncio"))]
    ours = [r for r in caplog.records if r.name == "executor.server"]
    assert 1 <= len(library) <= 5 and len(ours) <= 5 + 2, ([r.getMessage() for r in library], len(ours))


def test_failed_authentication_is_rate_limited(models):
    edge, cloud = models
    config = ServerConfig(port=0, api_key="s3cret", auth_failures_per_minute=3)
    with CloudServer(cloud, config) as server:
        codes = []
        for _ in range(5):
            with pytest.raises(InvalidStatus) as info:
                connect(server.url, additional_headers={"Authorization": "Api-Key wrong"}, open_timeout=WAIT_S)
            codes.append(info.value.response.status_code)
        assert codes == [401, 401, 401, 429, 429]
        with pytest.raises(ServerUnavailable, match="429"):  # the address is blocked for a minute, right key or not
            _exact(edge, server.url, ClientConfig(api_key="s3cret", connect_timeout_s=WAIT_S))
        server._auth_failures.clear()
        with pytest.raises(AuthenticationError):
            _exact(edge, server.url, ClientConfig(api_key="wrong", connect_timeout_s=WAIT_S))
        _exact(edge, server.url, ClientConfig(api_key="s3cret", connect_timeout_s=WAIT_S))


def test_non_loopback_bind_needs_a_key_or_insecure():
    with pytest.raises(ValueError, match="needs an API key.*--insecure"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", api_key="k").host == "0.0.0.0"
    assert ServerConfig(host="0.0.0.0", insecure=True).insecure
    assert ServerConfig(host="::1").host == "::1" and ServerConfig(host="localhost").host == "localhost"
    with pytest.raises(ValueError, match="certfile and keyfile"):
        ServerConfig(certfile="a.pem")


def test_serve_cli_refuses_public_bind_without_key(capsys):
    from executor.serve_cli import main

    assert main(["--model", "openvla", "--preset", "tiny", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--insecure" in capsys.readouterr().err
    assert main(["--model", "openvla", "--preset", "tiny", "--port", "0", "--oversized-per-minute", "0"]) == 2
    assert "oversized_per_minute must be >= 1, got 0" in capsys.readouterr().err


def _self_signed(tmp_path):
    crypto = pytest.importorskip("cryptography")  # noqa: F841
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(certfile), str(keyfile)


def test_tls_server_and_client(models, tmp_path):
    edge, cloud = models
    certfile, keyfile = _self_signed(tmp_path)
    config = ServerConfig(port=0, api_key="k", certfile=certfile, keyfile=keyfile)
    with CloudServer(cloud, config) as server:
        assert server.url.startswith("wss://")
        _exact(edge, server.url, ClientConfig(api_key="k", cafile=certfile, connect_timeout_s=WAIT_S))
        with pytest.raises(ServerUnavailable):  # without the CA the certificate is not trusted
            _exact(edge, server.url, ClientConfig(api_key="k", connect_timeout_s=WAIT_S))
        with pytest.raises((ServerUnavailable, ConnectionClosed, OSError, Exception)):  # plain ws:// is not served
            _exact(edge, server.url.replace("wss://", "ws://"), ClientConfig(api_key="k", connect_timeout_s=2.0))
    with pytest.raises(ValueError, match="cannot load TLS certificate"):
        ServerConfig(certfile=str(tmp_path / "missing.pem"), keyfile=keyfile).ssl_context()


def test_log_budget_counts_and_summarises():
    now = [0.0]
    records = []

    class L:
        def log(self, level, msg, *args):
            records.append(msg % args)

        def warning(self, msg, *args):
            records.append(msg % args)

    budget = _LogBudget(L(), per_minute=5, clock=lambda: now[0])
    for _ in range(100):
        budget.log(20, "bad request %d", 1)
    assert len(records) == 5
    now[0] = 61.0
    budget.log(20, "bad request %d", 2)
    assert records[5] == "95 log lines about clients suppressed in the last minute" and len(records) == 7
