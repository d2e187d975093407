"""The server's own failures are not the client's: engine failures (``ComputeUnavailable``) never count against a
connection's bad-message budget, and requests of one connection are answered concurrently, so a slow one does not
hold up the next. The engine is a test double (a ``CloudServer`` whose compute sleeps or fails on given cuts); the
sockets, wire messages and model are real."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

import numpy as np
import pytest

from executor import wire
from executor.models import build_model
from executor.protocol import E_BAD_MESSAGE, E_COMPUTE, ERROR, REPLY, SPLIT, TYPE_KEY, encode_payload
from executor.server import CloudServer, ComputeUnavailable, ServerConfig, request_budget_s

pytestmark = pytest.mark.network

SLOW_CUT, FAIL_CUT, FAST_CUT = 1, 2, 3
SLOW_S = 1.5


class _FaultyEngine(CloudServer):
    """Compute as usual, except: cut SLOW_CUT waits SLOW_S first, cut FAIL_CUT fails as a dead replica does."""

    budgets: ClassVar[list[float | None]] = []

    async def _execute(self, fn, *args):
        cut = args[0] if fn.__name__ == "cloud_step" else -1
        self.budgets.append(request_budget_s.get())
        if cut == FAIL_CUT:
            raise ComputeUnavailable("every replica attempt failed")
        if cut == SLOW_CUT:
            await asyncio.sleep(SLOW_S)
        return await super()._execute(fn, *args)


@pytest.fixture(scope="module")
def served():
    model = build_model("pi0", "tiny", seed=0)
    server = _FaultyEngine(model, ServerConfig(port=0, max_errors_per_connection=4)).start()
    yield model, server
    server.stop()


def _split(model, cut: int, request_id: int, **extra) -> bytes:
    out = model.edge_session(cut).start(model.make_observation(0))
    return encode_payload(out, {TYPE_KEY: SPLIT, "request_id": request_id, "cut": cut, **extra})


@contextlib.contextmanager
def _connect(url: str):
    from websockets.sync.client import connect

    with connect(url, max_size=None, open_timeout=10) as ws:
        ws.recv(timeout=10)  # metadata
        yield ws


def test_engine_failures_never_disconnect_a_client_but_bad_messages_still_do(served):
    model, server = served
    with _connect(server.url) as ws:
        for rid in range(20):  # 5x the connection's bad-message budget
            ws.send(_split(model, FAIL_CUT, rid))
            meta = wire.decode(ws.recv(timeout=10)).meta
            assert (meta[TYPE_KEY], meta["code"], meta["request_id"]) == (ERROR, E_COMPUTE, rid)
            assert "ComputeUnavailable" in meta["message"]
        ws.send(_split(model, FAST_CUT, 100))  # still served
        meta = wire.decode(ws.recv(timeout=10)).meta
        assert (meta[TYPE_KEY], meta["request_id"]) == (REPLY, 100)
        for _ in range(4):  # a client's own bad messages are counted as before
            ws.send(wire.MAGIC + b"garbage")
            reply = ws.recv(timeout=10)
            assert wire.decode(reply).meta["code"] == E_BAD_MESSAGE
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008


def test_a_slow_request_does_not_hold_up_the_next_on_the_same_connection(served):
    model, server = served
    with _connect(server.url) as ws:
        t0 = time.perf_counter()
        ws.send(_split(model, SLOW_CUT, 1))
        ws.send(_split(model, FAST_CUT, 2, budget_ms=750.0))
        first = wire.decode(ws.recv(timeout=10))
        t_first = time.perf_counter() - t0
        second = wire.decode(ws.recv(timeout=10))
        t_second = time.perf_counter() - t0
    assert first.meta["request_id"] == 2 and t_first < SLOW_S / 2  # answered while request 1 still waits
    assert second.meta["request_id"] == 1 and t_second >= SLOW_S
    assert first.meta[TYPE_KEY] == second.meta[TYPE_KEY] == REPLY
    # the reply to the fast request is the model's exact answer at that cut (the concurrency changes no result)
    expected = model.forward(model.make_observation(0))
    session = model.edge_session(FAST_CUT)
    session.start(model.make_observation(0))
    from executor.protocol import to_payload

    np.testing.assert_array_equal(np.asarray(session.on_reply(to_payload(first))), expected)
    # the client's budget reached the engine of its request only
    assert 0.75 in server.budgets and server.budgets.count(0.75) == 1


def test_in_flight_limit_is_validated():
    with pytest.raises(ValueError, match="max_in_flight_per_connection"):
        ServerConfig(max_in_flight_per_connection=0)
