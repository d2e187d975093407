"""Batching across robots in the websocket server (``ServerConfig.max_batch``): concurrent first steps at one cut run
as one batched forward, each robot gets the actions it gets alone, cuts are never mixed in a batch, and a bad request
in a batch fails alone. Real sockets, real clients, real model (openvla tiny: argmax actions, bit-identical)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from executor import wire
from executor.client import EdgeClient
from executor.models import build_model, run_split
from executor.protocol import E_COMPUTE, ERROR, REPLY, SPLIT, TYPE_KEY, encode_payload
from executor.server import CloudServer, ServerConfig

pytestmark = pytest.mark.network

WAIT_MS = 400.0  # long enough for every robot of a test to join its batch on a loaded machine


class _RecordingServer(CloudServer):
    """The real server, recording the (cut, size) of every batch it runs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_log: list[tuple[int, int]] = []
        self._log_lock = threading.Lock()

    async def _execute(self, fn, *args):
        if fn.__name__ == "cloud_batch_step":
            with self._log_lock:
                self.batch_log.append((args[0], len(args[1])))
        return await super()._execute(fn, *args)


@pytest.fixture(scope="module")
def model():
    return build_model("openvla", "tiny", seed=0)


@pytest.fixture
def server(model):
    srv = _RecordingServer(model, ServerConfig(port=0, max_batch=4, batch_wait_ms=WAIT_MS)).start()
    yield srv
    srv.stop()


def _robots(model, url: str, jobs: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each (cut, seed) is one robot on its own connection; all connect first, then infer at once."""
    clients = [EdgeClient(model, url) for _ in jobs]
    for c in clients:
        c.connect(timeout_s=30)
    barrier = threading.Barrier(len(jobs))

    def go(i: int) -> np.ndarray:
        cut, seed = jobs[i]
        barrier.wait()
        return clients[i].infer(model.make_observation(seed), cut).actions

    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(go, range(len(jobs))))
    finally:
        for c in clients:
            c.close()


def _alone(model, cut: int, seed: int) -> np.ndarray:
    return run_split(model, model.make_observation(seed), cut)[0]


def test_concurrent_robots_at_one_cut_share_a_batch_and_get_their_own_actions(model, server):
    inside_llm = model._i_embed + 2  # decode round trips continue on each robot's own session after the batch
    for cut in (0, inside_llm):
        server.batch_log.clear()
        jobs = [(cut, seed) for seed in range(4)]
        for (c, seed), actions in zip(jobs, _robots(model, server.url, jobs)):
            np.testing.assert_array_equal(actions, _alone(model, c, seed))
        assert server.batch_log == [(cut, 4)]


def test_requests_at_different_cuts_are_never_batched_together(model, server):
    jobs = [(0, 0), (5, 1), (0, 2), (5, 3), (0, 4)]
    for (c, seed), actions in zip(jobs, _robots(model, server.url, jobs)):
        np.testing.assert_array_equal(actions, _alone(model, c, seed))
    assert sorted(server.batch_log) == [(0, 3), (5, 2)]


def test_a_failing_request_in_a_batch_fails_alone(model, server):
    from websockets.sync.client import connect

    good = [model.edge_session(0).start(model.make_observation(s)) for s in range(3)]
    hostile = good[0].tensors | {"prompt_ids": good[0].tensors["prompt_ids"].clone()}
    hostile["prompt_ids"][0] = 10**9  # valid shape and dtype; fails inside the forward
    payloads = [good[0], type(good[0])(kind="observation", cut=0, tensors=hostile), good[1], good[2]]
    barrier = threading.Barrier(len(payloads))

    def send(i: int):
        with connect(server.url, max_size=None, open_timeout=10) as ws:
            ws.recv(timeout=10)  # metadata
            data = encode_payload(payloads[i], {TYPE_KEY: SPLIT, "request_id": i, "cut": 0})
            barrier.wait()
            ws.send(data)
            return wire.decode(ws.recv(timeout=30))

    with ThreadPoolExecutor(len(payloads)) as pool:
        replies = list(pool.map(send, range(len(payloads))))
    assert server.batch_log == [(0, 4)]
    assert (replies[1].meta[TYPE_KEY], replies[1].meta["code"]) == (ERROR, E_COMPUTE)
    assert "IndexError" in replies[1].meta["message"]
    from executor.protocol import to_payload

    for i, seed in ((0, 0), (2, 1), (3, 2)):
        assert replies[i].meta[TYPE_KEY] == REPLY
        edge = model.edge_session(0)
        edge.start(model.make_observation(seed))
        np.testing.assert_array_equal(edge.on_reply(to_payload(replies[i])), _alone(model, 0, seed))


def test_batching_settings_are_validated():
    with pytest.raises(ValueError, match="max_batch"):
        ServerConfig(max_batch=0)
    with pytest.raises(ValueError, match="batch_wait_ms"):
        ServerConfig(batch_wait_ms=-1.0)


def test_ecc_serve_rejects_bad_batching_flags(capsys, tmp_path):
    from executor.serve_cli import main

    assert main(["--model", "openvla", "--preset", "tiny", "--port", "0", "--max-batch", "0"]) == 2
    assert "max_batch must be >= 1" in capsys.readouterr().err
    assert main(["--model", "openvla", "--preset", "tiny", "--port", "0", "--batch-wait-ms", "-5"]) == 2
    assert "batch_wait_ms" in capsys.readouterr().err
    profile = tmp_path / "p.json"
    profile.write_text("{}")
    assert main(["--model", "openvla", "--preset", "tiny", "--max-batch", "4", "--emulate", str(profile)]) == 2
    assert "--emulate or --max-batch" in capsys.readouterr().err
