"""Training across Ray actors: the PPO environments live in Ray worker actors (any machine of a Ray cluster).

``RayVecEnv`` is a stable-baselines3 ``VecEnv`` whose ``num_envs`` environments are split over ``num_workers`` Ray
actors, each stepping its slice with a ``DummyVecEnv`` (auto-reset, ``terminal_observation``, seeds: the same code as
the single-process path). Results are concatenated in environment order, so a ``RayVecEnv`` of n environments
returns exactly what ``DummyVecEnv`` of the same n environments returns, and MaskablePPO trains on it unchanged; the
action masks come back with every step and reset (one round trip per step, not two). The learner (PPO update) stays
in the driver; ``agents.training.train`` writes the run folder and the policy artifact as usual, so the artifact is
the format ``load_policy`` reads.

Every wait on a worker is bounded (``step_timeout_s``). A worker that dies or does not answer in time is replaced
(``max_worker_restarts`` per run): a new actor re-creates its environments and resets them with their seeds; the
interrupted step reports those environments' episodes as ended (reward 0, ``info["worker_restarted"]``), and
training goes on. When a worker cannot be replaced (restarts used up, or the new one fails too), ``RayWorkerError``
(an ``agents.training.EnvWorkersLost``) is raised, and ``train`` stops with the best policy so far. An exception
inside an environment is a bug, not a lost worker: it raises ``RayWorkerError`` at once.

Which Ray: ``executor.ray_cluster`` (``address`` None attaches to ``$RAY_ADDRESS`` when set, else starts a local,
loopback-only instance; ``"local"`` always starts one). Ray is imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.training import EnvWorkersLost

log = logging.getLogger(__name__)


class RayWorkerError(EnvWorkersLost):
    """An environment worker actor died, failed or did not answer in time, and could not be replaced."""


@dataclass(frozen=True)
class RayTrainConfig:
    """Where the environments run.

    num_workers: Ray actors holding the environments (each gets a contiguous slice of them).
    num_cpus_per_worker: CPUs Ray reserves for each worker.
    step_timeout_s: bound on one step/reset round trip to the workers.
    max_worker_restarts: dead or stuck workers replaced per run before training gives up.
    address: Ray address (``executor.ray_cluster``: None = $RAY_ADDRESS if set, else local; "local"; a cluster).
    num_cpus: CPUs of a local Ray instance (None: all cores).
    object_store_memory_bytes: object store of a local Ray instance.
    """

    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    step_timeout_s: float = 60.0
    max_worker_restarts: int = 3
    address: str | None = None
    num_cpus: int | None = None
    object_store_memory_bytes: int | None = 100_000_000

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.num_cpus_per_worker < 0:
            raise ValueError(f"num_cpus_per_worker must be >= 0, got {self.num_cpus_per_worker}")
        if not self.step_timeout_s > 0:
            raise ValueError(f"step_timeout_s must be > 0, got {self.step_timeout_s}")
        if self.max_worker_restarts < 0:
            raise ValueError(f"max_worker_restarts must be >= 0, got {self.max_worker_restarts}")


def ensure_ray(rc: RayTrainConfig) -> Any:
    """Attach to or start Ray per ``executor.ray_cluster`` (``rc.address``); returns the ``RayConnection``."""
    from executor.ray_cluster import connect

    return connect(
        rc.address,
        num_cpus=rc.num_cpus,
        object_store_memory_bytes=rc.object_store_memory_bytes,
        env_vars={"OMP_NUM_THREADS": "1"},
    )


class EnvWorker:
    """Ray actor body: a DummyVecEnv over a slice of the environments."""

    def __init__(self, env_fns: Sequence[Callable[[], Any]]) -> None:
        import torch
        from stable_baselines3.common.vec_env import DummyVecEnv

        torch.set_num_threads(1)
        self.venv = DummyVecEnv(list(env_fns))

    def _masks(self) -> np.ndarray | None:
        if not self.venv.has_attr("action_masks"):
            return None
        return np.stack(self.venv.env_method("action_masks"))

    def reset(self, seeds: list[int | None], options: list[dict[str, Any]]) -> tuple[Any, list[dict], Any]:
        self.venv._seeds = list(seeds)
        self.venv._options = list(options)
        obs = self.venv.reset()
        return obs, list(self.venv.reset_infos), self._masks()

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, list[dict], Any]:
        obs, rewards, dones, infos = self.venv.step(actions)
        return obs, rewards, dones, infos, self._masks()

    def call(self, what: str, name: str, local: list[int], args: tuple, kwargs: dict[str, Any]) -> list[Any]:
        if what == "get_attr":
            return self.venv.get_attr(name, local)
        if what == "set_attr":
            self.venv.set_attr(name, args[0], local)
            return []
        if what == "env_method":
            return self.venv.env_method(name, *args, indices=local, **kwargs)
        if what == "env_is_wrapped":
            return self.venv.env_is_wrapped(args[0], local)
        raise ValueError(f"unknown call {what!r}")

    def close(self) -> None:
        self.venv.close()


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts)


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(v[i] for v in obs)
    return obs[i]


def _make_vec_env_base() -> type:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    return VecEnv


class RayVecEnv(_make_vec_env_base()):  # type: ignore[misc]
    """SB3 VecEnv over Ray actors (see the module docstring). ``env_fns`` must be picklable (cloudpickle)."""

    def __init__(self, env_fns: Sequence[Callable[[], Any]], config: RayTrainConfig | None = None) -> None:
        import ray

        self.config = config or RayTrainConfig()
        n = len(env_fns)
        if n < 1:
            raise ValueError("need at least one environment")
        workers = min(self.config.num_workers, n)
        if workers < self.config.num_workers:
            log.warning("%d workers for %d environments: using %d workers", self.config.num_workers, n, workers)
        self._connection = ensure_ray(self.config)
        bounds = np.linspace(0, n, workers + 1).round().astype(int)
        self._slices = [list(range(bounds[i], bounds[i + 1])) for i in range(workers)]
        self._env_fns = list(env_fns)
        self._remote_cls = ray.remote(num_cpus=self.config.num_cpus_per_worker, max_restarts=0)(EnvWorker)
        self._workers = [self._remote_cls.remote([env_fns[i] for i in s]) for s in self._slices]
        probe = env_fns[0]()  # spaces, from one local instance
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        super().__init__(n, obs_space, act_space)
        self._masks: np.ndarray | None = None
        self._pending: list[Any] | None = None
        self._closed = False
        self._env_seeds: list[int | None] = [None] * n  # what seed() gave each environment (re-used on a restart)
        self.worker_restarts = 0

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def seed(self, seed: int | None = None) -> Any:
        out = super().seed(seed)
        self._env_seeds = list(self._seeds)
        return out

    def _get(self, refs: list[Any], what: str) -> list[Any]:
        """All results, or RayWorkerError (no replacement: for calls other than step and reset)."""
        out, lost = self._gather(refs, what)
        if lost:
            w, why = lost[0]
            raise RayWorkerError(f"{what}: env worker {w} {why}")
        return out

    def _gather(self, refs: list[Any], what: str) -> tuple[list[Any], list[tuple[int, str]]]:
        """Results by worker (None where lost) and the lost workers with why. An exception raised by an environment
        raises RayWorkerError at once (a bug, which a new worker would repeat)."""
        import ray
        from ray import exceptions as rx

        _ready, not_ready = ray.wait(refs, num_returns=len(refs), timeout=self.config.step_timeout_s)
        late = set(not_ready)
        out: list[Any] = []
        lost: list[tuple[int, str]] = []
        for w, ref in enumerate(refs):
            if ref in late:
                out.append(None)
                lost.append((w, f"did not answer within {self.config.step_timeout_s} s"))
                continue
            try:
                out.append(ray.get(ref))
            except rx.RayTaskError as e:
                raise RayWorkerError(f"{what}: an environment of worker {w} raised: {e}") from e
            except rx.RayError as e:  # the actor died or its node went away
                out.append(None)
                lost.append((w, f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
        return out, lost

    def _replace(self, w: int, why: str, what: str) -> tuple[Any, list[dict], Any]:
        """A new actor for worker ``w``, its environments re-created and reset with their seeds; returns its reset."""
        import ray

        if self.worker_restarts >= self.config.max_worker_restarts:
            raise RayWorkerError(
                f"{what}: env worker {w} {why}; {self.worker_restarts} worker restart(s) already "
                f"used (max_worker_restarts={self.config.max_worker_restarts})"
            )
        self.worker_restarts += 1
        log.warning(
            "%s: env worker %d %s; replacing it (restart %d of %d)",
            what,
            w,
            why,
            self.worker_restarts,
            self.config.max_worker_restarts,
        )
        try:
            ray.kill(self._workers[w], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        s = self._slices[w]
        self._workers[w] = self._remote_cls.remote([self._env_fns[i] for i in s])
        ref = self._workers[w].reset.remote([self._env_seeds[i] for i in s], [self._options[i] for i in s])
        out, lost = self._gather([ref], what)
        if lost:
            raise RayWorkerError(f"{what}: env worker {w} {why}, and its replacement {lost[0][1]}")
        return out[0]

    def reset(self) -> Any:
        refs = [
            w.reset.remote([self._seeds[i] for i in s], [self._options[i] for i in s])
            for w, s in zip(self._workers, self._slices)
        ]
        out, lost = self._gather(refs, "reset")
        for w, why in lost:
            out[w] = self._replace(w, why, "reset")
        self.reset_infos = [info for part in out for info in part[1]]
        self._masks = _concat([p[2] for p in out]) if out[0][2] is not None else None
        self._reset_seeds()
        self._reset_options()
        return _concat([p[0] for p in out])

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        self._pending = [w.step.remote(actions[s[0] : s[-1] + 1]) for w, s in zip(self._workers, self._slices)]

    def step_wait(self) -> Any:
        if self._pending is None:
            raise RuntimeError("step_wait() without step_async()")
        refs, self._pending = self._pending, None
        out, lost = self._gather(refs, "step")
        for w, why in lost:  # the replaced environments' episodes end here; they start again from their seeds
            obs, _infos, masks = self._replace(w, why, "step")
            k = len(self._slices[w])
            infos = [{"worker_restarted": True, "terminal_observation": _row(obs, i)} for i in range(k)]
            out[w] = (obs, np.zeros(k, dtype=np.float32), np.ones(k, dtype=bool), infos, masks)
        obs = _concat([p[0] for p in out])
        rewards = np.concatenate([p[1] for p in out])
        dones = np.concatenate([p[2] for p in out])
        infos = [info for p in out for info in p[3]]
        self._masks = _concat([p[4] for p in out]) if out[0][4] is not None else None
        return obs, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """Masks of every environment after the last step/reset (what env_method('action_masks') returns)."""
        if self._masks is None:
            raise RuntimeError("no action masks: reset() first, or the environments have no action_masks()")
        return self._masks

    def _route(self, indices: Any) -> list[tuple[int, list[int]]]:
        wanted = list(self._get_indices(indices))
        out = []
        for w, s in enumerate(self._slices):
            local = [i - s[0] for i in wanted if s[0] <= i <= s[-1]]
            if local:
                out.append((w, local))
        return out

    def _call(self, what: str, name: str, indices: Any, args: tuple = (), kwargs: dict | None = None) -> list[Any]:
        route = self._route(indices)
        refs = [self._workers[w].call.remote(what, name, local, args, kwargs or {}) for w, local in route]
        return [x for part in self._get(refs, what) for x in part]

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        if method_name == "action_masks" and not method_args and not method_kwargs and self._masks is not None:
            return list(self._masks[list(self._get_indices(indices))])
        return self._call("env_method", method_name, indices, method_args, method_kwargs)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return self._call("get_attr", attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        self._call("set_attr", attr_name, indices, (value,))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return self._call("env_is_wrapped", "", indices, (wrapper_class,))

    def has_attr(self, attr_name: str) -> bool:
        return bool(self._call("env_method", "has_wrapper_attr", [0], (attr_name,))[0])

    def close(self) -> None:
        """Close the environments and end the worker actors (and Ray, if this object started it)."""
        if self._closed:
            return
        self._closed = True
        import ray

        try:
            ray.get([w.close.remote() for w in self._workers], timeout=min(self.config.step_timeout_s, 10.0))
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("closing env workers: %s: %s", type(e).__name__, e)
        for w in self._workers:
            ray.kill(w)
        self._connection.release()


def train_on_ray(cfg: Any, ray_config: RayTrainConfig | None = None, **train_kwargs: Any) -> Any:
    """``agents.training.train(cfg)`` with its environments on Ray actors (``RayVecEnv``, passed as train's
    ``venv_factory``); returns its TrainResult."""
    from agents.training import train

    rc = ray_config or RayTrainConfig()
    return train(cfg, venv_factory=lambda env_fns: RayVecEnv(env_fns, rc), **train_kwargs)
