"""The cloud half on Ray Serve (local Ray, 2 CPUs): replies equal the single-process server's at every cut, the
queue length is the deployment's, a killed replica loses no request silently and is replaced."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.network, pytest.mark.slow]  # slow: starts a Ray cluster (~50 s on 2 cores)

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from executor import msgpack_numpy  # noqa: E402
from executor.client import EdgeClient  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.protocol import RemoteError, ServerUnavailable, TransportTimeout  # noqa: E402
from executor.ray_serve import ModelRef, RayServeConfig, RayServing, dumps, loads, running_replicas  # noqa: E402
from executor.server import CloudServer, ServerConfig  # noqa: E402

WAIT_S = 30.0
FAMILIES = ("openvla", "pi0")


def deadline() -> float:
    return time.perf_counter() + WAIT_S


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100_000_000, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def deployments(ray_local):
    """family -> (edge model, single-process server, RayServing with 2 replicas); both servers share the seed."""
    out = {}
    try:
        for family in FAMILIES:
            rc = RayServeConfig(replicas=2, num_cpus_per_replica=0.5, app_name=f"ecc-test-{family}",
                                request_timeout_s=WAIT_S)
            serving = RayServing(family, "tiny", ServerConfig(port=0), rc, seed=0).start()
            local = CloudServer(build_model(family, "tiny", seed=0), ServerConfig(port=0)).start()
            out[family] = (build_model(family, "tiny", seed=0), local, serving)
        yield out
    finally:
        for _edge, local, serving in out.values():
            local.stop()
            serving.stop()


def test_codec_keeps_the_model_out_and_rebinds_it():
    model = build_model("pi0", "tiny", seed=0)
    session = model.cloud_session(0)
    blob = dumps(session, model)
    assert len(blob) < 10_000  # the weights did not travel
    in_ingress = loads(blob)
    assert isinstance(in_ingress.m, ModelRef)
    back = loads(dumps(in_ingress), model)
    assert back.m is model and back.cut == session.cut


@pytest.mark.parametrize("family", FAMILIES)
def test_replicas_reply_exactly_as_the_single_process_server_at_every_cut(deployments, family):
    edge, local, serving = deployments[family]
    specs = edge.cut_specs()
    with EdgeClient(edge, local.url) as ref_client, EdgeClient(edge, serving.url) as ray_client:
        ref_info, ray_info = ref_client.connect(), ray_client.connect()
        assert (ray_info.model_id, ray_info.num_cuts, ray_info.cut_names) == (
            ref_info.model_id, ref_info.num_cuts, ref_info.cut_names)
        for seed in (0, 1):
            obs = edge.make_observation(seed)
            for k in range(edge.num_cuts):
                expected = ref_client.infer(obs, k, deadline=deadline())
                got = ray_client.infer(obs, k, deadline=deadline())
                np.testing.assert_array_equal(got.actions, expected.actions, err_msg=f"{family} cut {k} seed {seed}")
                assert got.networked == expected.networked == specs[k].uses_network
                if specs[k].uses_network:
                    assert got.timing.round_trips == expected.timing.round_trips == specs[k].round_trips
    assert serving.server.requests_served >= 2 * sum(s.uses_network for s in specs)


def _openpi_call(url: str, request: dict) -> dict:
    from websockets.sync.client import connect

    with connect(url, max_size=None, open_timeout=WAIT_S) as ws:
        msgpack_numpy.unpackb(ws.recv(timeout=WAIT_S))  # metadata
        ws.send(msgpack_numpy.packb(request))
        reply = ws.recv(timeout=WAIT_S)
    assert isinstance(reply, bytes), reply
    return msgpack_numpy.unpackb(reply)


def test_openpi_full_offload_equals_the_single_process_server(deployments):
    edge, local, serving = deployments["pi0"]
    obs = edge.make_observation(3)
    image = obs["images"][0]
    for state in (np.arange(5, dtype=np.float32), np.ones(3, dtype=np.float32)):
        request = {"observation/image": image, "observation/wrist_image": image, "observation/state": state,
                   "prompt": "pick up the cube"}
        if obs["images"].shape[0] == 1:
            del request["observation/wrist_image"]
        expected = _openpi_call(local.url, request)
        got = _openpi_call(serving.url, request)
        np.testing.assert_array_equal(got["actions"], expected["actions"])
        assert got["server_timing"]["compute_ms"] > 0 and got["queue_length"] >= 0
    # a bad request is answered with an error frame by the replica path too
    from websockets.sync.client import connect

    with connect(serving.url, open_timeout=WAIT_S) as ws:
        ws.recv(timeout=WAIT_S)
        ws.send(msgpack_numpy.packb({"prompt": "no image"}))
        reply = ws.recv(timeout=WAIT_S)
    assert isinstance(reply, str) and "bad_request" in reply and "observation/image" in reply


def test_queue_length_counts_requests_of_all_clients(deployments):
    edge, _local, serving = deployments["openvla"]
    n_clients, n_requests = 6, 4
    obs = edge.make_observation(0)
    seen: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(n_clients)

    def worker() -> None:
        try:
            with EdgeClient(edge, serving.url) as client:
                client.connect()
                start.wait(WAIT_S)
                for _ in range(n_requests):
                    seen.append(client.infer(obs, 0, deadline=deadline()).timing.server_queue_length)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * WAIT_S)
    assert not failures, failures
    assert len(seen) == n_clients * n_requests
    # the reply's queue length is the other requests in flight at the whole deployment (never more than exist)
    assert 0 <= min(seen) and max(seen) <= n_clients - 1
    assert max(seen) >= 1


def test_killing_a_replica_mid_run_loses_no_request_silently(deployments):
    edge, local, serving = deployments["openvla"]
    obs = edge.make_observation(0)
    k = next(c.k for c in edge.cut_specs() if c.round_trips > 0)  # multi-round exchange: the session travels
    with EdgeClient(edge, local.url) as ref:
        ref.connect()
        expected = ref.infer(obs, k, deadline=deadline()).actions
    n_clients, n_requests = 4, 12
    outcomes: list[str] = []
    lock = threading.Lock()
    started = threading.Event()

    def worker() -> None:
        with EdgeClient(edge, serving.url) as client:
            client.connect()
            for _ in range(n_requests):
                try:
                    result = client.infer(obs, k, deadline=deadline())
                    np.testing.assert_array_equal(result.actions, expected)
                    outcome = "ok"
                except RemoteError as e:  # the explicit error the edge runtime falls back on
                    outcome = f"error:{e.code}"
                except (ServerUnavailable, TransportTimeout) as e:
                    outcome = f"lost:{type(e).__name__}"
                with lock:
                    outcomes.append(outcome)
                started.set()

    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    assert started.wait(WAIT_S)
    victims = serving.replica_actors()
    assert len(victims) == 2
    ray.kill(victims[0], no_restart=True)
    for t in threads:
        t.join(3 * WAIT_S)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == n_clients * n_requests  # every request got an answer
    assert all(o == "ok" or o.startswith("error:") for o in outcomes), outcomes
    assert outcomes.count("ok") >= n_clients * n_requests // 2
    # Serve replaces the dead replica, and the deployment answers correctly afterwards. Serve's status may still
    # count the victim as RUNNING for a moment after the kill, so wait until two replicas run without it.
    def replaced() -> bool:
        alive = serving.replica_actors()
        return (running_replicas(serving.ray_config.app_name) == 2 and len(alive) == 2
                and victims[0]._actor_id not in {a._actor_id for a in alive})

    t_end = time.monotonic() + 60
    while not replaced() and time.monotonic() < t_end:
        time.sleep(0.5)
    assert replaced(), (running_replicas(serving.ray_config.app_name), serving.replica_actors())
    with EdgeClient(edge, serving.url) as client:
        client.connect()
        np.testing.assert_array_equal(client.infer(obs, k, deadline=deadline()).actions, expected)
