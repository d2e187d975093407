"""Which Ray instance a command uses, and how it lets go of it: one rule for ``ecc serve`` and ``ecc train``.

Address (``--ray-address``; the ``address`` field of the Ray configs):

=================  =====================================================================================================
``None`` (default)  attach to ``$RAY_ADDRESS`` when it is set (Ray's own convention), else start a local instance
``"local"``         always start a new local instance, even when ``$RAY_ADDRESS`` is set
anything else       attach to that cluster (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://host:10001"``)
=================  =====================================================================================================

A local instance gets the CPUs and object store asked for and, unless ``loopback=False``, listens on 127.0.0.1
only (every Ray server of it: GCS, raylet, workers, agents). Attaching passes neither resources nor an object store
size (a running cluster has its own; Ray refuses them) and never changes the cluster.

Letting go (``RayConnection.release``): a local instance this process started is shut down; an attached cluster is
only disconnected from (other users' applications and actors keep running); a Ray connection that was already open
in this process when the command began (a test, a notebook) is left as it was.

Ray is imported lazily.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOCAL = "local"
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # False: Ray's node IP is the loopback address


@dataclass(frozen=True)
class RayConnection:
    """How this process holds Ray: ``started`` a local instance, ``attached`` to a running cluster, or neither
    (Ray was already initialised here by someone else)."""

    started: bool
    attached: bool
    address: str

    def release(self) -> None:
        """Shut down a local instance started here; disconnect from an attached cluster; otherwise do nothing."""
        if not (self.started or self.attached):
            return
        import ray

        if ray.is_initialized():
            ray.shutdown()


def resolve_address(address: str | None) -> str:
    """``"local"`` or a cluster address, per the module docstring's table (``$RAY_ADDRESS`` read here)."""
    if address is not None:
        if not address.strip():
            raise ValueError("the Ray address must be 'local' or a cluster address, got an empty string")
        return address.strip()
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return env if env else LOCAL


def init_kwargs(
    address: str,
    *,
    num_cpus: int | None = None,
    object_store_memory_bytes: int | None = None,
    env_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``ray.init`` keyword arguments for ``address`` (already resolved): resources only for a local instance."""
    kw: dict[str, Any] = {
        "address": address,
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if env_vars:
        kw["runtime_env"] = {"env_vars": dict(env_vars)}
    if address == LOCAL:
        if num_cpus is not None:
            kw["num_cpus"] = num_cpus
        if object_store_memory_bytes is not None:
            kw["object_store_memory"] = object_store_memory_bytes
    return kw


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory_bytes: int | None = None,
    env_vars: dict[str, str] | None = None,
    loopback: bool = True,
) -> RayConnection:
    """Attach to a cluster or start a local instance (see the module docstring); returns what to release."""
    import ray

    if ray.is_initialized():
        return RayConnection(started=False, attached=False, address="(already connected)")
    resolved = resolve_address(address)
    kw = init_kwargs(
        resolved, num_cpus=num_cpus, object_store_memory_bytes=object_store_memory_bytes, env_vars=env_vars
    )
    if resolved != LOCAL:
        log.info("attaching to the Ray cluster at %s%s", resolved, " (from $RAY_ADDRESS)" if address is None else "")
        try:
            ray.init(**kw)
        except ConnectionError as e:
            raise ConnectionError(
                f"cannot attach to the Ray cluster at {resolved!r}: {e} (use --ray-address local "
                "to start a local instance instead)"
            ) from e
        return RayConnection(started=False, attached=True, address=resolved)
    if not loopback:
        ray.init(**kw)
        return RayConnection(started=True, attached=False, address=LOCAL)
    from ray._private import ray_constants

    saved_env, saved_const = os.environ.get(_CLUSTER_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_ENV] = "0"  # inherited by the GCS, raylet and workers this call starts
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(**kw)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(_CLUSTER_ENV, None)
        else:
            os.environ[_CLUSTER_ENV] = saved_env
    log.info("started a local Ray instance on 127.0.0.1 (%s CPUs)", num_cpus if num_cpus is not None else "all")
    return RayConnection(started=True, attached=False, address=LOCAL)
