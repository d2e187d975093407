"""`ecc serve`: run the cloud half of a split model as a websocket server (see ``executor.server``).

Example: ``ecc serve --model openvla --preset small --host 127.0.0.1 --port 8765``. Binds loopback unless
``--host`` says otherwise; another address needs ``--api-key`` (or the ECC_API_KEY environment variable: clients
send ``Authorization: Api-Key <token>``) unless ``--insecure``. ``--certfile/--keyfile`` serve TLS (``wss://``), so
the token does not travel in clear text (see docs/security.md). ``--emulate PROFILE.json`` pads every block to that Profile's per-block time
(hardware emulation; the server's metadata says so). Prints one line ``serving ws://HOST:PORT`` when ready
(``--port 0`` picks a free port).

``--engine ray --replicas N`` serves the same protocol from N model replicas on Ray Serve (``executor.ray_serve``;
needs ``pip install vla-ecc[ray]``). Which Ray: ``--ray-address`` unset attaches to ``$RAY_ADDRESS`` when it is set
and otherwise starts a local instance (listening on 127.0.0.1 only); ``--ray-address local`` always starts a local
one; any other value attaches to that cluster. Each server deploys its own Serve application (``--app-name``,
default from model, preset, seed and port), refuses to replace one it did not deploy, and on exit deletes only its
own; it shuts Ray down only when it started it. ``--deploy-timeout-s`` bounds the wait for the replicas (a clear
error when the cluster lacks the resources); ``--request-timeout-s`` bounds one attempt at a replica (shortened to
the client's deadline), after which the job is retried on another replica.

``--max-batch B`` batches concurrent requests at one cut (same model, preset and seed: the server's) into one forward
of up to B requests, waiting at most ``--batch-wait-ms`` for a batch to fill (default 0: only what queued up while
the model was busy, so a lone robot is not delayed); the local engine batches in the server, the Ray engine in each
replica (Ray Serve's ``@serve.batch``). Off by default (B = 1): batched float32 results of pi0/smolvla may differ from
a lone request's in the last bits (docs/scale_out.md).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from executor.protocol import DEFAULT_PORT
from traces.cliargs import parse_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeArgs:
    """The options of ``ecc serve``."""

    model: str  # model family, e.g. openvla, pi0
    preset: str = "small"  # tiny | small
    host: str = "127.0.0.1"  # bind address (127.0.0.1: loopback only)
    port: int = DEFAULT_PORT  # TCP port, 0 = any free port
    seed: int = 0  # weight seed; the edge must use the same
    device: str = "cpu"  # torch device (cpu, cuda, cuda:1 ...)
    threads: int | None = None  # torch CPU threads (None: torch's setting)
    api_key: str | None = None  # shared token clients must present (None: $ECC_API_KEY, else none)
    insecure: bool = False  # allow a non-loopback --host without --api-key (anyone who reaches the port uses the model)
    certfile: str | None = None  # PEM certificate chain: serve TLS (wss://); needs --keyfile
    keyfile: str | None = None  # PEM private key of --certfile
    max_message_mb: float | None = None
    """largest accepted message in MB (None: 4x the model's largest legitimate request, at least 4 MiB)"""
    max_connections: int = 256  # open connections served at once
    idle_timeout_s: float = 300.0  # close a connection that sends no message for this long
    message_timeout_s: float = 60.0  # a message must arrive in full within this long of its first byte
    max_batch: int = 1  # batch up to this many concurrent requests at one cut into one forward (both engines; 1: off)
    batch_wait_ms: float = 0.0
    """with --max-batch: longest wait for a batch to fill (0: batch what queued while the model was busy; a lone robot
    never waits)"""
    oversized_per_minute: int = 10
    """oversized messages tolerated per client address and minute; beyond, that address's new connections are
    dropped at accept for the rest of the minute"""
    reply_compression: str = "none"  # codec for reply activations: none|fp16|bf16|int8
    emulate: Path | None = None  # Profile JSON whose per-block times to emulate
    engine: Literal["local", "ray"] = "local"  # local: one process; ray: replicas on Ray Serve
    replicas: int = 1  # model replicas with --engine ray
    max_replicas: int | None = None  # with --engine ray: autoscale on queue length up to this many replicas (None: off)
    replica_cpus: float = 1.0  # CPUs Ray reserves per replica
    replica_gpus: float = 0.0  # GPUs Ray reserves per replica
    ray_address: Annotated[str | None, tyro.conf.arg(aliases=("--address",))] = None
    """Ray to use with --engine ray: 'local' starts a local instance; an address attaches to that cluster (None:
    $RAY_ADDRESS if set, else local)"""
    app_name: str | None = None  # Serve application name with --engine ray (None: ecc-cloud-MODEL-PRESET-seedN-portP)
    deploy_timeout_s: float = 120.0  # with --engine ray: give up when the replicas do not run within this
    request_timeout_s: float = 30.0
    """with --engine ray: bound on one attempt at a replica, shortened to the client's deadline"""
    max_attempts: int = 2  # with --engine ray: attempts per request on a dead or silent replica


def parse_args(argv: Sequence[str]) -> ServeArgs:
    """The command line of ``ecc serve``."""
    return parse_config(ServeArgs, argv, prog="ecc serve", description=__doc__)


def _raise_fd_limit(max_connections: int) -> None:
    """Lift the soft open-file limit towards the hard one, so the connection cap (not the fd limit) decides."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4 * max_connections + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard)
            )
    except (ImportError, ValueError, OSError) as e:  # not on this platform, or not allowed
        log.info("open-file limit left as it is: %s", e)


class _Terminated(Exception):
    """SIGTERM/SIGINT during start-up: unwind so that what was started is stopped (no orphaned Ray processes)."""


def _serve_ray(args: ServeArgs, config: object) -> int:
    from executor.ray_serve import DeployError, RayServeConfig, RayServing

    threads = args.threads or 1
    rc = RayServeConfig(
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        num_cpus_per_replica=args.replica_cpus,
        num_gpus_per_replica=args.replica_gpus,
        torch_threads=threads,
        address=args.ray_address,
        object_store_memory_bytes=None,
        app_name=args.app_name,
        deploy_timeout_s=args.deploy_timeout_s,
        request_timeout_s=args.request_timeout_s,
        max_attempts=args.max_attempts,
    )
    serving = RayServing(args.model, args.preset, config, rc, seed=args.seed, device=args.device)  # type: ignore[arg-type]
    stop = threading.Event()
    starting = [True]

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if starting[0]:
            raise _Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            serving.connect()
        except BaseException:
            serving.stop()
            raise
        finally:  # ray.init installs its own SIGTERM handler (abort, orphaning Ray's processes): ours again
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        serving.start(timeout_s=30.0)  # stops what it started when it fails or is interrupted
        starting[0] = False
    except _Terminated as e:
        print(f"ecc serve: {e} during start-up; stopped", file=sys.stderr)
        return 1
    except (DeployError, ConnectionError) as e:
        print(f"ecc serve: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ecc serve: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"serving {serving.url} ({args.replicas} Ray Serve replica(s), application {serving.app_name})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        served = serving.server.requests_served if serving.server is not None else 0
        serving.stop()
    print(f"stopped after {served} requests", flush=True)
    return 0


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    api_key = args.api_key if args.api_key is not None else os.environ.get("ECC_API_KEY") or None
    import torch

    from executor.models import build_model
    from executor.server import CloudServer, ServerConfig

    if args.threads is not None:
        if args.threads < 1:
            print(f"ecc serve: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    if args.emulate is not None and args.max_batch > 1:
        print(
            "ecc serve: --emulate pads every block to one request's Profile time, so a batch would cost what one "
            "request does; use --emulate or --max-batch, not both",
            file=sys.stderr,
        )
        return 2
    if args.engine == "ray":
        if args.emulate is not None:
            print("ecc serve: --emulate is not supported with --engine ray", file=sys.stderr)
            return 2
        if args.replicas < 1:
            print(f"ecc serve: --replicas must be >= 1, got {args.replicas}", file=sys.stderr)
            return 2
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ecc serve: --engine ray needs Ray: pip install 'vla-ecc[ray]'", file=sys.stderr)
            return 2
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            max_message_bytes=None if args.max_message_mb is None else int(args.max_message_mb * 1e6),
            api_key=api_key,
            reply_compression=args.reply_compression,
            insecure=args.insecure,
            certfile=args.certfile,
            keyfile=args.keyfile,
            max_connections=args.max_connections,
            idle_timeout_s=args.idle_timeout_s,
            message_timeout_s=args.message_timeout_s,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            oversized_per_minute=args.oversized_per_minute,
        )
        config.ssl_context()  # unreadable certificate files are an argument error, reported before the model loads
        if args.engine == "ray":
            build_model(args.model, args.preset, seed=args.seed, on_meta=True)  # names checked before Ray starts
            return _serve_ray(args, config)
        model = build_model(args.model, args.preset, device=args.device, seed=args.seed)
        emulator = None
        if args.emulate is not None:
            from executor.emulation import HardwareEmulator
            from executor.profile import Profile

            emulator = HardwareEmulator(
                model, Profile.load(args.emulate, expect_model=args.model, expect_preset=args.preset)
            ).attach()
    except ValueError as e:
        print(f"ecc serve: {e}", file=sys.stderr)
        return 2
    if args.insecure and api_key is None:
        log.warning(
            "serving on %s without --api-key (--insecure): anyone who can reach it can use the model", args.host
        )
    _raise_fd_limit(config.max_connections)
    server = CloudServer(model, config, emulator=emulator)
    try:
        server.start()
    except OSError as e:
        print(f"ecc serve: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"serving {server.url}", flush=True)
    if emulator is not None:
        print(f"hardware emulation ON: {emulator.describe()}", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print(f"stopped after {server.requests_served} requests", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
