"""Batching across robots on the Ray engine: Ray Serve's ``@serve.batch`` groups concurrent first steps on a replica,
which runs one batched forward per cut among them; each robot gets the actions it gets alone (openvla tiny: argmax
actions, bit-identical) and requests at different cuts never share a forward."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = [pytest.mark.network, pytest.mark.slow]  # slow: starts a Ray cluster

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from executor.client import EdgeClient  # noqa: E402
from executor.models import build_model, run_split  # noqa: E402
from executor.ray_serve import RayServeConfig, RayServing  # noqa: E402
from executor.server import ServerConfig  # noqa: E402


@pytest.fixture(scope="module")
def serving():
    rc = RayServeConfig(
        replicas=1,
        num_cpus=2,
        num_cpus_per_replica=1.0,
        address="local",
        app_name="ecc-test-batching",
        request_timeout_s=60.0,
        object_store_memory_bytes=100_000_000,
    )
    with RayServing("openvla", "tiny", ServerConfig(port=0, max_batch=4, batch_wait_ms=500.0), rc, seed=0) as s:
        yield s


def _robots(model, url: str, jobs: list[tuple[int, int]]) -> list[np.ndarray]:
    clients = [EdgeClient(model, url) for _ in jobs]
    for c in clients:
        c.connect(timeout_s=60)
    barrier = threading.Barrier(len(jobs))

    def go(i: int) -> np.ndarray:
        barrier.wait()
        cut, seed = jobs[i]
        return clients[i].infer(model.make_observation(seed), cut).actions

    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(go, range(len(jobs))))
    finally:
        for c in clients:
            c.close()


def _batches(serving) -> list[tuple[int, int]]:
    d = serving.server._deployment.describe.remote().result(timeout_s=60)
    return [tuple(b) for b in d["batches"]]


def test_replica_batches_concurrent_robots_per_cut(serving):
    model = build_model("openvla", "tiny", seed=0)
    inside_llm = model._i_embed + 2
    jobs = [(0, 0), (0, 1), (0, 2), (0, 3)]
    for (cut, seed), actions in zip(jobs, _robots(model, serving.url, jobs)):
        np.testing.assert_array_equal(actions, run_split(model, model.make_observation(seed), cut)[0])
    assert _batches(serving)[-1] == (0, 4)
    before = len(_batches(serving))
    jobs = [(0, 4), (inside_llm, 5), (0, 6), (inside_llm, 7)]
    for (cut, seed), actions in zip(jobs, _robots(model, serving.url, jobs)):
        np.testing.assert_array_equal(actions, run_split(model, model.make_observation(seed), cut)[0])
    new = _batches(serving)[before:]
    assert sorted(new) == [(0, 2), (inside_llm, 2)]  # one Serve batch of 4, run as one forward per cut


def test_a_failing_request_in_a_replica_batch_fails_alone(serving):
    from websockets.sync.client import connect

    from executor import wire
    from executor.protocol import ERROR, REPLY, SPLIT, TYPE_KEY, encode_payload, to_payload

    model = build_model("openvla", "tiny", seed=0)
    good = [model.edge_session(0).start(model.make_observation(s)) for s in range(3)]
    hostile = good[0].tensors | {"prompt_ids": good[0].tensors["prompt_ids"].clone()}
    hostile["prompt_ids"][0] = 10**9  # valid shape and dtype; fails inside the batched forward
    payloads = [good[0], type(good[0])(kind="observation", cut=0, tensors=hostile), good[1], good[2]]
    barrier = threading.Barrier(len(payloads))

    def send(i: int):
        with connect(serving.url, max_size=None, open_timeout=30) as ws:
            ws.recv(timeout=30)  # metadata
            data = encode_payload(payloads[i], {TYPE_KEY: SPLIT, "request_id": i, "cut": 0})
            barrier.wait()
            ws.send(data)
            return wire.decode(ws.recv(timeout=60))

    before = len(_batches(serving))
    with ThreadPoolExecutor(len(payloads)) as pool:
        replies = list(pool.map(send, range(len(payloads))))
    assert _batches(serving)[before:] == [(0, 4)]
    assert replies[1].meta[TYPE_KEY] == ERROR and "IndexError" in replies[1].meta["message"]
    for i, seed in ((0, 0), (2, 1), (3, 2)):
        assert replies[i].meta[TYPE_KEY] == REPLY
        edge = model.edge_session(0)
        edge.start(model.make_observation(seed))
        np.testing.assert_array_equal(
            edge.on_reply(to_payload(replies[i])), run_split(model, model.make_observation(seed), 0)[0]
        )
