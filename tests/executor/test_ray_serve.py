"""The cloud half on Ray Serve (local Ray, 2 CPUs): replies equal the single-process server's at every cut, the
queue length is the deployment's, a killed replica loses no request silently and is replaced; a second server on the
same cluster can neither replace nor stop the first one's application; replica failures never disconnect a client; a
frozen replica delays only the requests it holds; a deploy that cannot get its resources fails with a clear error."""

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
from executor.ray_serve import (  # noqa: E402
    DeployError,
    ModelRef,
    RayCloudServer,
    RayServeConfig,
    RayServing,
    application_names,
    dumps,
    loads,
    running_replicas,
)
from executor.server import CloudServer, ServerConfig  # noqa: E402

WAIT_S = 30.0
FAMILIES = ("openvla", "pi0")


def deadline() -> float:
    return time.perf_counter() + WAIT_S


@pytest.fixture(scope="module")
def ray_local():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100_000_000,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
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
            rc = RayServeConfig(
                replicas=2, num_cpus_per_replica=0.5, app_name=f"ecc-test-{family}", request_timeout_s=WAIT_S
            )
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
            ref_info.model_id,
            ref_info.num_cuts,
            ref_info.cut_names,
        )
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
        request = {
            "observation/image": image,
            "observation/wrist_image": image,
            "observation/state": state,
            "prompt": "pick up the cube",
        }
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
        return (
            running_replicas(serving.ray_config.app_name) == 2
            and len(alive) == 2
            and victims[0]._actor_id not in {a._actor_id for a in alive}
        )

    t_end = time.monotonic() + 60
    while not replaced() and time.monotonic() < t_end:
        time.sleep(0.5)
    assert replaced(), (running_replicas(serving.ray_config.app_name), serving.replica_actors())
    with EdgeClient(edge, serving.url) as client:
        client.connect()
        np.testing.assert_array_equal(client.infer(obs, k, deadline=deadline()).actions, expected)


def _same_answers(edge, reference_url: str, url: str, cuts) -> None:
    with EdgeClient(edge, reference_url) as ref, EdgeClient(edge, url) as got:
        ref.connect()
        got.connect()
        for k in cuts:
            obs = edge.make_observation(k)
            np.testing.assert_array_equal(
                got.infer(obs, k, deadline=deadline()).actions,
                ref.infer(obs, k, deadline=deadline()).actions,
                err_msg=f"cut {k}",
            )


def test_a_second_server_can_neither_replace_nor_stop_the_first_ones_application(deployments):
    edge, local, first = deployments["openvla"]
    cuts = (0, 6, 7)  # the cuts where a replaced application answered with another seed's weights
    # same application name: refused, and the first server's application is untouched
    clash = RayServing(
        "openvla",
        "tiny",
        ServerConfig(port=0),
        RayServeConfig(num_cpus_per_replica=0.0, app_name=first.app_name, request_timeout_s=WAIT_S),
        seed=1,
    )
    with pytest.raises(DeployError, match="already runs.*refusing to replace"):
        clash.start()
    assert first.app_name in application_names()
    _same_answers(edge, local.url, first.url, cuts)
    # another seed on the same cluster: its own (derived) application name, so both run side by side
    second = RayServing(
        "openvla",
        "tiny",
        ServerConfig(port=0),
        RayServeConfig(num_cpus_per_replica=0.0, request_timeout_s=WAIT_S),
        seed=1,
    ).start()
    try:
        assert second.app_name != first.app_name and "openvla-tiny-seed1" in second.app_name
        _same_answers(edge, local.url, first.url, cuts)
        other = build_model("openvla", "tiny", seed=1)
        with CloudServer(other, ServerConfig(port=0)) as local_seed1:
            _same_answers(other, local_seed1.url, second.url, cuts[:1])
    finally:
        second.stop()
    # stopping the second server deleted its application only; Ray and the first application keep running
    assert ray.is_initialized()
    names = application_names()
    assert second.app_name not in names and first.app_name in names
    assert running_replicas(first.app_name) == 2
    _same_answers(edge, local.url, first.url, cuts)


def test_a_deploy_that_cannot_get_its_resources_fails_with_a_clear_error(ray_local):
    rc = RayServeConfig(num_cpus_per_replica=64.0, deploy_timeout_s=3.0, app_name="ecc-test-too-big")
    serving = RayServing("pi0", "tiny", ServerConfig(port=0), rc)
    t0 = time.monotonic()
    with pytest.raises(DeployError, match=r"did not start within 3 s.*64 CPU.*of 2 CPUs"):
        serving.start()
    assert time.monotonic() - t0 < 90  # bounded: Serve's start-up on a busy 2-core machine + 3 s + the clean-up
    assert "ecc-test-too-big" not in application_names()  # the attempt was deleted
    assert ray.is_initialized()  # and the Ray this server did not start is left running


def test_twenty_replica_failures_do_not_disconnect_a_client(deployments):
    edge, _local, serving = deployments["pi0"]
    # an ingress on the same replicas whose attempts cannot succeed in time: every request is a replica failure
    impatient = RayServeConfig(request_timeout_s=1e-4, max_attempts=2, app_name=serving.app_name)
    server = RayCloudServer(
        build_model("pi0", "tiny", seed=0, on_meta=True), ServerConfig(port=0), serving.server._deployment, impatient
    ).start()
    try:
        with EdgeClient(edge, server.url) as client:
            client.connect()
            obs = edge.make_observation(0)
            for _ in range(20):
                with pytest.raises(RemoteError) as err:
                    client.infer(obs, 0, deadline=deadline())
                assert err.value.code == "compute_failed" and "ReplicaTimeout" in str(err.value)
            assert client.connected and client.ping(timeout_s=5.0) >= 0
        assert server.timeouts == 40 and server.errors_sent == 20
    finally:
        server.stop()


def test_a_frozen_replica_delays_only_the_requests_it_holds(deployments):
    import os
    import signal

    edge, local, serving = deployments["openvla"]
    handle = serving.server._deployment
    pids: set[int] = set()
    t_end = time.monotonic() + WAIT_S
    while len(pids) < 2 and time.monotonic() < t_end:
        pids.add(handle.describe.remote().result(timeout_s=WAIT_S)["pid"])
    assert len(pids) == 2
    frozen = min(pids)
    obs = edge.make_observation(0)
    with EdgeClient(edge, local.url) as ref:
        ref.connect()
        expected = ref.infer(obs, 0, deadline=deadline()).actions
    budget_s = 2.0
    latencies = []
    os.kill(frozen, signal.SIGSTOP)
    try:
        with EdgeClient(edge, serving.url) as client:
            client.connect()
            for _ in range(8):
                t0 = time.perf_counter()
                result = client.infer(obs, 0, deadline=time.perf_counter() + budget_s)  # no fallback needed
                latencies.append(time.perf_counter() - t0)
                np.testing.assert_array_equal(result.actions, expected)
    finally:
        os.kill(frozen, signal.SIGCONT)
    # a request the frozen replica held waited at most its attempt's share of the budget, then went to the other
    # replica; the others were not held up at all
    assert max(latencies) < budget_s
    assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies

    # every replica frozen: the request waits (its budget), yet the connection stays responsive meanwhile (a ping
    # on it is answered at once: requests of one connection are served concurrently), and the client stays connected
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    held: dict[str, object] = {}
    try:
        with EdgeClient(edge, serving.url) as client:
            client.connect()

            def request() -> None:
                t0 = time.perf_counter()
                try:
                    client.infer(obs, 0, deadline=time.perf_counter() + budget_s)
                except (RemoteError, TransportTimeout) as e:
                    held["error"] = e
                held["s"] = time.perf_counter() - t0

            thread = threading.Thread(target=request)
            thread.start()
            time.sleep(0.3)
            t0 = time.perf_counter()
            client.ping(timeout_s=budget_s)
            ping_s = time.perf_counter() - t0
            thread.join(3 * budget_s)
            assert client.connected
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert ping_s < 0.5 and "error" in held, (ping_s, held)
    assert budget_s * 0.9 <= held["s"] < budget_s + 1.0
