"""The cloud half on Ray Serve: N model replicas behind the package's own websocket ingress.

Shape: one ``RayCloudServer`` (a ``CloudServer`` whose compute runs elsewhere) speaks exactly the single-process
server's websocket protocol (metadata first, ``split``/``continue``/``ping``/``cancel``, openpi-compatible full
offload, auth, limits), so edge clients do not change. Every compute job (``executor.server.cloud_step``,
``executor.server.openpi_forward``: the same functions the single-process server runs) goes to a Ray Serve
deployment of ``CloudReplica``: N replicas, each with one model instance (jobs serialised on it), placed by Ray.

Replicas are stateless between jobs: a multi-round-trip exchange (decode steps across a cut inside an LLM) keeps its
cloud session in the ingress, and each ``continue`` ships the session to whichever replica Serve picks. The model
itself never travels: references to it inside a session are pickled as a placeholder and re-bound to the receiving
replica's model (``dumps``/``loads``). This pickle stays inside the Ray cluster (ingress <-> replicas, as Ray's own
calls do); the wire to robots never carries pickle. The price: the session's KV cache crosses the object store on
every round trip; the gain: any replica can continue any exchange, so a dead replica loses no session.

Queue length: the ingress counts every job in flight at the deployment (queued at Serve's router or a replica, or
running), so ``queue_length`` in each reply is the deployment's, not one replica's. ``queue_ms`` is the ingress's
submit-to-reply time minus the replica's compute time (routing, transfer, waiting at the replica).

Batching across robots (``ServerConfig.max_batch`` > 1): the ingress does not batch; it sends each first step of an
exchange to the replicas' ``run_first``, which Serve's own ``@serve.batch`` groups (up to ``max_batch`` requests,
waiting at most ``batch_wait_ms`` for a batch to fill); a replica splits a batch by cut and runs each cut's requests
as one batched forward (``executor.server.cloud_batch_step``), so requests at different cuts are never batched
together and a request that fails, fails alone. Serve sends a replica up to ``max(max_ongoing_requests, max_batch)``
requests at once, so a full batch can form.

Faults: a job whose replica dies (or is unreachable) or does not answer within its attempt's timeout is retried on
another replica (``max_attempts``; safe because jobs are pure functions of their arguments, the openpi noise seed
included). An attempt's timeout is ``request_timeout_s``, shortened to an even share of what is left of the client's
budget (``budget_ms`` in the request, the time to its deadline) so that a retry still fits. When no attempt succeeds,
the client gets an explicit ``compute_failed`` error reply at once, which ``EdgeRuntime`` turns into its edge-only
fallback; such a failure is the server's, never counted against the client's bad-message budget. Serve's controller
replaces dead replicas.

Cluster hygiene: each server deploys its own Serve application (``app_name``; default ``default_app_name``: model,
preset, seed and port), refuses to replace an application of that name that it did not deploy, waits at most
``deploy_timeout_s`` for its replicas (a clear error naming the resources asked for and available), and on stop
deletes only its own application. Which Ray it uses and how it lets go is ``executor.ray_cluster``'s rule: a local
instance started here (loopback only) is shut down, an attached cluster is only disconnected from.

Ray is imported lazily: importing this module does not import ray.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any

from executor import server as _server
from executor.server import CloudServer, ServerConfig

log = logging.getLogger(__name__)

DEFAULT_APP_NAME = "ecc-cloud"  # prefix of the derived per-server names (default_app_name)
_MODEL_PID = "ecc-split-model"
_JOBS = {"cloud_step": _server.cloud_step, "openpi_forward": _server.openpi_forward}


class ReplicaUnavailable(_server.ComputeUnavailable):
    """No replica of the deployment completed the job (every attempt hit a dead or unreachable replica)."""


class ReplicaTimeout(_server.ComputeUnavailable, TimeoutError):
    """No attempt at the deployment answered a job in time (``request_timeout_s`` or the client's budget)."""


class DeployError(RuntimeError):
    """The Serve application could not be deployed: its name is taken, or its replicas did not start in time."""


def default_app_name(family: str, preset: str, seed: int, port: int) -> str:
    """The Serve application name of a server: model, preset, seed and port (the process id for port 0), so two
    servers on one cluster never share an application unless they are told to."""
    where = f"port{port}" if port else f"pid{os.getpid()}"
    return f"{DEFAULT_APP_NAME}-{family}-{preset}-seed{seed}-{where}"


@dataclass(frozen=True)
class RayServeConfig:
    """Ray Serve deployment of the cloud half.

    replicas: model replicas (the initial count when autoscaling).
    max_replicas: > replicas turns on Serve autoscaling on ongoing requests per replica (None: fixed count).
    target_ongoing_requests: autoscaling target of ongoing requests per replica.
    num_cpus_per_replica: CPUs Ray reserves for each replica (fractions allowed).
    num_gpus_per_replica: GPUs Ray reserves for each replica.
    torch_threads: torch CPU threads inside each replica.
    max_ongoing_requests: jobs Serve sends to one replica at once (they queue on its model lock).
    request_timeout_s: bound on one job attempt at the deployment (shortened to fit the client's budget).
    max_attempts: attempts per job when a replica dies under it or does not answer in time (>= 1).
    address: Ray address (``executor.ray_cluster``: None = $RAY_ADDRESS if set, else local; "local"; a cluster).
    num_cpus: CPUs of a local Ray instance (None: Ray's default, all cores).
    object_store_memory_bytes: object store of a local Ray instance (None: Ray's default).
    app_name: Serve application name (None: ``default_app_name`` of the model, preset, seed and port).
    deploy_timeout_s: bound on the wait for the replicas to run (resources short: a clear error, not a hang).
    loopback: a local Ray instance listens on 127.0.0.1 only.
    """

    replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    num_cpus_per_replica: float = 1.0
    num_gpus_per_replica: float = 0.0
    torch_threads: int = 1
    max_ongoing_requests: int = 8
    request_timeout_s: float = 30.0
    max_attempts: int = 2
    address: str | None = None
    num_cpus: int | None = None
    object_store_memory_bytes: int | None = 200_000_000
    app_name: str | None = None
    deploy_timeout_s: float = 120.0
    loopback: bool = True

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas must be >= replicas ({self.replicas}), got {self.max_replicas}")
        if self.num_cpus_per_replica < 0 or self.num_gpus_per_replica < 0:
            raise ValueError(
                f"replica resources must be >= 0, got cpus={self.num_cpus_per_replica} gpus={self.num_gpus_per_replica}"
            )
        if self.torch_threads < 1 or self.max_ongoing_requests < 1 or self.max_attempts < 1:
            raise ValueError(f"torch_threads, max_ongoing_requests and max_attempts must be >= 1: {self}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if not self.deploy_timeout_s > 0:
            raise ValueError(f"deploy_timeout_s must be > 0, got {self.deploy_timeout_s}")
        if self.app_name is not None and not self.app_name.strip():
            raise ValueError("app_name must be a non-empty string or None")
        if self.target_ongoing_requests <= 0:
            raise ValueError(f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")


# -- the job codec: pickle with the model left out ---------------------------------------------------------------------
class ModelRef:
    """Placeholder for "the model of the process that unpickles" (what a session's model reference becomes in the
    ingress, which holds no runnable model)."""

    def __repr__(self) -> str:
        return "ModelRef()"


class _Pickler(pickle.Pickler):
    def __init__(self, f: io.BytesIO, model: Any) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self._model = model

    def persistent_id(self, obj: Any) -> str | None:
        if isinstance(obj, ModelRef) or (self._model is not None and obj is self._model):
            return _MODEL_PID
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: io.BytesIO, model: Any) -> None:
        super().__init__(f)
        self._model = model

    def persistent_load(self, pid: Any) -> Any:
        if pid != _MODEL_PID:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._model if self._model is not None else ModelRef()


def dumps(obj: Any, model: Any = None) -> bytes:
    """Pickle ``obj`` with every reference to ``model`` (or to a ``ModelRef``) replaced by a placeholder."""
    buf = io.BytesIO()
    _Pickler(buf, model).dump(obj)
    return buf.getvalue()


def loads(data: bytes, model: Any = None) -> Any:
    """Unpickle what ``dumps`` wrote, binding the placeholder to ``model`` (or to a ``ModelRef`` when None).
    Only for data from this package's own processes inside one Ray cluster, never for data from clients."""
    return _Unpickler(io.BytesIO(data), model).load()


# -- the replica ---------------------------------------------------------------------------------------------------------
class CloudReplica:
    """One Serve replica: one model instance; runs the server's compute jobs one at a time (a batch is one job)."""

    def __init__(
        self,
        family: str,
        preset: str,
        seed: int = 0,
        device: str = "cpu",
        torch_threads: int = 1,
        max_batch: int = 1,
        batch_wait_ms: float = 0.0,
    ) -> None:
        import torch
        from ray import serve

        from executor.models import build_model

        torch.set_num_threads(torch_threads)
        self.model = build_model(family, preset, device=device, seed=seed)
        self._lock = threading.Lock()
        self.jobs_run = 0
        self.batches: list[tuple[int, int]] = []  # (cut, requests) of every batched forward run here

        async def first_steps(blobs: list[bytes]) -> list[bytes]:
            return await asyncio.get_running_loop().run_in_executor(None, self._run_batch, blobs)

        self._batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=batch_wait_ms / 1e3)(first_steps)
        log.info(
            "replica pid %d ready: %s/%s seed %d on %s (batches up to %d)",
            os.getpid(),
            family,
            preset,
            seed,
            device,
            max_batch,
        )

    async def run_first(self, blob: bytes) -> bytes:
        """The first step of an exchange (job ``cloud_step`` with no session), batched by ``@serve.batch`` with the
        concurrent ones; same answer format as ``run``."""
        return await self._batched(blob)

    def _run_batch(self, blobs: list[bytes]) -> list[bytes]:
        """Run a batch of first steps: one batched forward per cut among them (cuts never mixed)."""
        arrived = time.perf_counter()
        jobs = [loads(b, self.model) for b in blobs]
        out: list[bytes] = [b""] * len(jobs)
        by_cut: dict[int, list[int]] = {}
        for i, (name, args) in enumerate(jobs):
            if name != "cloud_step" or len(args) != 3 or args[1] is not None:
                out[i] = dumps((False, ValueError(f"run_first takes first cloud steps, got {name!r}"), 0.0, 0.0))
                continue
            by_cut.setdefault(int(args[0]), []).append(i)
        for cut, where in by_cut.items():
            with self._lock:
                started = time.perf_counter()
                try:
                    results = _server.cloud_batch_step(self.model, cut, [jobs[i][1][2] for i in where])
                except Exception as e:  # noqa: BLE001 - carried back to each request of the group
                    results = [e] * len(where)
                finished = time.perf_counter()
                self.jobs_run += 1
                self.batches.append((cut, len(where)))
            for i, r in zip(where, results):
                ok = not isinstance(r, BaseException)
                out[i] = self._answer(ok, r, started - arrived, finished - started, "cloud_step")
        return out

    def _answer(self, ok: bool, value: Any, wait_s: float, compute_s: float, name: str) -> bytes:
        try:
            return dumps((ok, value, wait_s, compute_s), self.model)
        except Exception as e:  # noqa: BLE001 - an unpicklable exception or result becomes a plain error
            err = RuntimeError(f"replica cannot return the result of {name}: {type(e).__name__}: {e}")
            return dumps((False, err, wait_s, compute_s), self.model)

    def run(self, blob: bytes) -> bytes:
        """Run one job ``(name, args)``; returns ``dumps((ok, result_or_exception, wait_s, compute_s))``."""
        arrived = time.perf_counter()
        name, args = loads(blob, self.model)
        fn = _JOBS.get(name)
        with self._lock:
            started = time.perf_counter()
            try:
                if fn is None:
                    raise ValueError(f"unknown job {name!r}; valid: {sorted(_JOBS)}")
                out: tuple[bool, Any] = (True, fn(self.model, *args))
            except Exception as e:  # noqa: BLE001 - carried back to the ingress, which answers the client
                out = (False, e)
            finished = time.perf_counter()
            self.jobs_run += 1
        return self._answer(*out, started - arrived, finished - started, name)

    def describe(self) -> dict[str, Any]:
        """pid, Ray actor id, jobs run, the model's id and the batches run (tests and monitoring)."""
        import ray

        return {
            "pid": os.getpid(),
            "actor_id": ray.get_runtime_context().get_actor_id(),
            "jobs_run": self.jobs_run,
            "model": f"{self.model.family}/{self.model.preset}",
            "batches": list(self.batches),
        }


def _retryable_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions as rx

    errors: list[type[BaseException]] = [rx.RayActorError, rx.WorkerCrashedError, rx.ObjectLostError]
    for name in ("ActorUnavailableError", "NodeDiedError", "OutOfMemoryError"):
        if hasattr(rx, name):
            errors.append(getattr(rx, name))
    try:
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        errors += [BackPressureError, DeploymentUnavailableError]
    except ImportError:  # pragma: no cover - older Serve
        pass
    return tuple(errors)


# -- the ingress ---------------------------------------------------------------------------------------------------------
class RayCloudServer(CloudServer):
    """``CloudServer`` whose compute jobs run on a Ray Serve deployment (``handle``).

    ``model`` only describes the model (metadata, cut validation): build it on the meta device
    (``build_model(..., on_meta=True)``); the replicas hold the runnable copies (same family, preset and seed).
    """

    def __init__(self, model: Any, config: ServerConfig | None, handle: Any, ray_config: RayServeConfig) -> None:
        super().__init__(model, config)
        self._deployment = handle
        self.ray_config = ray_config
        self._retryable = _retryable_errors()
        self.failovers = 0  # attempts lost to a dead or unreachable replica
        self.timeouts = 0  # attempts that did not answer in time

    def _batches_in_server(self) -> bool:
        return False  # the replicas batch (Serve's @serve.batch on run_first)

    async def _execute(self, fn: Any, *args: Any) -> tuple[Any, float, float]:
        name = getattr(fn, "__name__", "")
        if _JOBS.get(name) is not fn:
            raise TypeError(f"{fn!r} is not one of the server's compute jobs {sorted(_JOBS)}")
        blob = dumps((name, args))
        rc = self.ray_config
        submitted = time.perf_counter()
        budget_s = _server.request_budget_s.get()
        deadline = None if budget_s is None else submitted + budget_s
        last: BaseException | None = None
        for attempt in range(1, rc.max_attempts + 1):
            timeout_s = rc.request_timeout_s
            if deadline is not None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                timeout_s = min(timeout_s, left / (rc.max_attempts - attempt + 1))
            batched = name == "cloud_step" and args[1] is None and self.config.max_batch > 1
            response = (self._deployment.run_first if batched else self._deployment.run).remote(blob)
            try:
                data = await asyncio.wait_for(_awaited(response), timeout_s)
            except asyncio.TimeoutError:
                response.cancel()
                last = ReplicaTimeout(f"no answer within {timeout_s:.3f} s")
                self.timeouts += 1
                log.warning(
                    "%s attempt %d/%d: no answer within %.3f s; %s",
                    name,
                    attempt,
                    rc.max_attempts,
                    timeout_s,
                    "retrying" if attempt < rc.max_attempts else "giving up",
                )
                continue
            except self._retryable as e:
                last = e
                self.failovers += 1
                log.warning(
                    "%s attempt %d/%d failed on a replica (%s); %s",
                    name,
                    attempt,
                    rc.max_attempts,
                    type(e).__name__,
                    "retrying" if attempt < rc.max_attempts else "giving up",
                )
                continue
            ok, value, _wait_s, compute_s = loads(data)
            if not ok:
                raise value
            return value, max(0.0, time.perf_counter() - submitted - compute_s), compute_s
        waited = time.perf_counter() - submitted
        if last is None or isinstance(last, ReplicaTimeout):
            raise ReplicaTimeout(
                f"no replica answered {name} in {waited:.3f} s ({rc.max_attempts} attempt(s); "
                f"attempt timeout {rc.request_timeout_s} s"
                + (f", client budget {budget_s * 1e3:.0f} ms)" if budget_s is not None else ")")
            )
        raise ReplicaUnavailable(
            f"{name} failed on {rc.max_attempts} replica attempt(s): {type(last).__name__}: {last}"
        ) from last


async def _awaited(response: Any) -> Any:
    return await response


# -- deployment lifecycle ------------------------------------------------------------------------------------------------
def ensure_ray(rc: RayServeConfig) -> Any:
    """Attach to or start Ray per ``executor.ray_cluster`` (``rc.address``); returns the ``RayConnection`` to release."""
    from executor.ray_cluster import connect

    return connect(
        rc.address,
        num_cpus=rc.num_cpus,
        object_store_memory_bytes=rc.object_store_memory_bytes,
        env_vars={"OMP_NUM_THREADS": str(rc.torch_threads)},
        loopback=rc.loopback,
    )


def application_names() -> set[str]:
    """Names of the Serve applications on the connected cluster (empty when Serve is not running there)."""
    from ray import serve

    try:
        return set(serve.status().applications)
    except Exception as e:  # noqa: BLE001 - Serve not started on this cluster yet
        log.debug("serve.status(): %s: %s", type(e).__name__, e)
        return set()


def _resources_note(rc: RayServeConfig) -> str:
    import ray

    try:
        free = ray.available_resources()
        total = ray.cluster_resources()
    except Exception:  # noqa: BLE001 - only for the message
        return ""
    return (
        f"; each replica asks for {rc.num_cpus_per_replica:g} CPU and {rc.num_gpus_per_replica:g} GPU, the cluster "
        f"has {free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} of "
        f"{total.get('GPU', 0):g} GPUs free (lower --replicas or --replica-cpus, or add nodes)"
    )


def deploy(
    family: str,
    preset: str,
    *,
    seed: int = 0,
    device: str = "cpu",
    rc: RayServeConfig | None = None,
    app_name: str | None = None,
    max_batch: int = 1,
    batch_wait_ms: float = 0.0,
) -> Any:
    """Deploy ``CloudReplica`` as Serve application ``app_name`` (HTTP proxy off: the ingress is ours) and wait up to
    ``rc.deploy_timeout_s`` for it to run; returns the DeploymentHandle. ``max_batch``/``batch_wait_ms``: the
    replicas' batching of first steps (``ServerConfig``'s). Raises ``DeployError`` when an application
    of that name already runs (it is left alone), or when the replicas do not run in time (the attempt is deleted)."""
    from ray import serve
    from ray.serve.api import RunTarget

    rc = rc or RayServeConfig()
    name = app_name or rc.app_name or default_app_name(family, preset, seed, 0)
    if name in application_names():
        raise DeployError(
            f"a Serve application named {name!r} already runs on this Ray cluster and was not "
            "deployed by this server; refusing to replace it (choose another --app-name, or stop the "
            "server that runs it)"
        )
    serve.start(proxy_location="Disabled")
    options: dict[str, Any] = {
        "name": "CloudReplica",
        "ray_actor_options": {
            "num_cpus": rc.num_cpus_per_replica,
            "num_gpus": rc.num_gpus_per_replica,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(rc.torch_threads)}},
        },
        "max_ongoing_requests": max(rc.max_ongoing_requests, max_batch),
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
    }
    if rc.max_replicas is not None and rc.max_replicas > rc.replicas:
        options["autoscaling_config"] = {
            "min_replicas": rc.replicas,
            "initial_replicas": rc.replicas,
            "max_replicas": rc.max_replicas,
            "target_ongoing_requests": rc.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = rc.replicas
    app = serve.deployment(CloudReplica, **options).bind(
        family, preset, seed, device, rc.torch_threads, max_batch, batch_wait_ms
    )
    handle = serve.run_many([RunTarget(target=app, name=name, route_prefix=None)], wait_for_applications_running=False)[
        0
    ]
    t_end = time.monotonic() + rc.deploy_timeout_s
    status, message = "", ""
    while time.monotonic() < t_end:
        app_status = serve.status().applications.get(name)
        status = str(getattr(getattr(app_status, "status", ""), "value", "")) if app_status is not None else ""
        message = getattr(app_status, "message", "") if app_status is not None else ""
        if status.endswith("RUNNING"):
            return handle
        if status.endswith("DEPLOY_FAILED"):
            break
        time.sleep(0.2)
    note = _resources_note(rc)  # before the clean-up frees what the attempt holds
    _delete_quietly(name)
    if status.endswith("DEPLOY_FAILED"):
        raise DeployError(f"Serve application {name!r} failed to deploy: {message}")
    raise DeployError(
        f"the {rc.replicas} replica(s) of {name!r} did not start within {rc.deploy_timeout_s:g} s "
        f"(status {status or 'unknown'}){note}"
    )


def _delete_quietly(name: str) -> None:
    from ray import serve

    try:
        serve.delete(name)
    except Exception as e:  # noqa: BLE001 - best effort on the way out
        log.warning("deleting Serve application %s: %s: %s", name, type(e).__name__, e)


class RayServing:
    """Ray Serve deployment + websocket ingress, started together and stopped together.

    ``RayServing(family, preset, server_config, ray_config).start()``; ``.url`` is the websocket address;
    ``.stop()`` stops the ingress, deletes the Serve application this object deployed (and nothing else), and lets go
    of Ray as ``executor.ray_cluster`` says (a local instance started here is shut down; a cluster is left running).
    """

    def __init__(
        self,
        family: str,
        preset: str,
        config: ServerConfig | None = None,
        ray_config: RayServeConfig | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.family, self.preset, self.seed, self.device = family, preset, seed, device
        self.config = config or ServerConfig()
        self.ray_config = ray_config or RayServeConfig()
        self.app_name = self.ray_config.app_name or default_app_name(family, preset, seed, self.config.port)
        self.server: RayCloudServer | None = None
        self._connection: Any = None
        self._deployed = False

    def connect(self) -> RayServing:
        """Attach to or start Ray (``start`` does it when not done yet). Ray installs its own signal handlers in
        ``ray.init``: a caller with its own (the CLI) re-installs them after this."""
        if self._connection is None:
            self._connection = ensure_ray(self.ray_config)
        return self

    def start(self, timeout_s: float = 10.0) -> RayServing:
        from executor.models import build_model

        meta_model = build_model(self.family, self.preset, seed=self.seed, on_meta=True)  # validates the names
        try:
            self.connect()
            handle = deploy(
                self.family,
                self.preset,
                seed=self.seed,
                device=self.device,
                rc=self.ray_config,
                app_name=self.app_name,
                max_batch=self.config.max_batch,
                batch_wait_ms=self.config.batch_wait_ms,
            )
            self._deployed = True
            self.server = RayCloudServer(meta_model, self.config, handle, self.ray_config).start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("not started")
        return self.server.url

    def replica_actors(self) -> list[Any]:
        """Handles of the live replica actors of this application (for fault tests and monitoring)."""
        return replica_actors(self.app_name)

    def running_replicas(self) -> int:
        """Replicas Serve reports RUNNING for this server's application."""
        return running_replicas(self.app_name)

    def stop(self) -> None:
        """Stop the ingress, delete this server's Serve application, let go of Ray. Safe to call twice."""
        if self.server is not None:
            self.server.stop()
        try:
            import ray

            if ray.is_initialized():
                if self._deployed:
                    _delete_quietly(self.app_name)
                if self._connection is not None and self._connection.started:
                    from ray import serve

                    serve.shutdown()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("ray serve shutdown: %s: %s", type(e).__name__, e)
        self._deployed = False
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("ray shutdown: %s: %s", type(e).__name__, e)
            self._connection = None

    def __enter__(self) -> RayServing:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def replica_actors(app_name: str) -> list[Any]:
    """Actor handles of the running replicas of ``app_name``'s CloudReplica deployment."""
    import ray

    out = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name, namespace = entry["name"], entry["namespace"]
        parts = name.split("#")  # SERVE_REPLICA::<app>#<deployment>#<replica id>
        if len(parts) >= 2 and parts[0].endswith(f"::{app_name}") and parts[1] == "CloudReplica":
            try:
                out.append(ray.get_actor(name, namespace=namespace))
            except ValueError:  # died between the listing and the lookup
                continue
    return out


def running_replicas(app_name: str) -> int:
    """Replicas Serve reports RUNNING for the application (0 if it is not deployed)."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return 0
    dep = app.deployments.get("CloudReplica")
    if dep is None:
        return 0
    counts = dep.replica_states
    return int(counts.get("RUNNING", 0))
