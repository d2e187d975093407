"""Environments on Ray actors (local Ray, 2 CPUs): RayVecEnv steps exactly like DummyVecEnv, MaskablePPO trained on it
ends with the same weights, failures raise instead of hanging, and ``train`` on Ray writes a loadable artifact."""

from __future__ import annotations

import functools
import time
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from agents.ray_training import RayTrainConfig, RayVecEnv, RayWorkerError, train_on_ray  # noqa: E402
from agents.training import TrainConfig, load_trace_set, make_env, profiles_for, quick, train  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray cluster and trains on it: ~100 s on 2 cores

N_ENVS = 4


@pytest.fixture(scope="module")
def ray_local():
    from executor.ray_cluster import connect

    connection = connect(
        "local", num_cpus=2, object_store_memory_bytes=100_000_000, env_vars={"OMP_NUM_THREADS": "1"}
    )  # what `ecc train --engine ray` starts
    assert connection.started and not connection.attached
    yield connection
    connection.release()
    assert not ray.is_initialized()


def test_a_local_ray_instance_listens_on_loopback_only(ray_local):
    psutil = pytest.importorskip("psutil")  # vendored by Ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    listening = []
    for proc in psutil.Process().children(recursive=True):  # GCS, raylet, agents, workers started by this driver
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(proc.name(), c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "no Ray process found listening"
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _name, ip in listening), listening


@pytest.fixture(scope="module")
def env_fns():
    cfg = TrainConfig(model="pi0", preset="tiny", episode_s=5.0)
    edge, cloud = profiles_for(cfg)
    traces = load_trace_set(cfg)
    return [functools.partial(make_env, edge, cloud, traces, cfg)] * N_ENVS


def _rollout(venv, n_steps: int, seed: int):
    rng = np.random.default_rng(seed)
    nvec = venv.action_space.nvec  # MultiDiscrete (cut, skip): masks are the per-dimension masks concatenated
    venv.seed(seed)
    obs = venv.reset()
    out = [obs]
    for _ in range(n_steps):
        masks = np.stack(venv.env_method("action_masks"))
        actions = np.array(
            [[rng.choice(np.flatnonzero(part)) for part in np.split(m, np.cumsum(nvec)[:-1])] for m in masks]
        )
        obs, rewards, dones, infos = venv.step(actions)
        out.append((obs, rewards, dones, [sorted(i) for i in infos]))
    return out


def test_ray_vec_env_steps_exactly_like_dummy_vec_env(ray_local, env_fns):
    from stable_baselines3.common.vec_env import DummyVecEnv

    dummy = DummyVecEnv(env_fns)
    ray_env = RayVecEnv(env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5))
    try:
        assert ray_env.num_workers == 2 and ray_env.num_envs == N_ENVS
        assert ray_env.observation_space == dummy.observation_space
        steps = 60  # 5 s episodes: several auto-resets inside
        a, b = _rollout(dummy, steps, seed=3), _rollout(ray_env, steps, seed=3)
        np.testing.assert_array_equal(a[0], b[0])
        n_done = 0
        for x, y in zip(a[1:], b[1:]):
            for u, v in zip(x[:3], y[:3]):
                np.testing.assert_array_equal(u, v)
            assert x[3] == y[3]
            n_done += int(x[2].sum())
        assert n_done > 0  # the comparison covered episode ends
        assert ray_env.get_attr("spec", [1, 3])[0].id == dummy.get_attr("spec", [1])[0].id
    finally:
        ray_env.close()
        dummy.close()


def test_maskable_ppo_on_ray_learns_the_same_weights_as_on_dummy(ray_local, env_fns):
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    def learn(venv):
        model = MaskablePPO(
            "MlpPolicy",
            venv,
            n_steps=64,
            batch_size=64,
            n_epochs=2,
            seed=7,
            device="cpu",
            policy_kwargs={"net_arch": [16]},
        )
        model.learn(2 * 64 * N_ENVS)
        params = [p.detach().clone() for p in model.policy.parameters()]
        venv.close()
        return params, model.num_timesteps

    ref, n_ref = learn(DummyVecEnv(env_fns))
    got, n_got = learn(RayVecEnv(env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5)))
    assert n_ref == n_got == 2 * 64 * N_ENVS
    for p, q in zip(ref, got):
        torch.testing.assert_close(q, p, rtol=0, atol=0)


def _step_until_restarted(venv, deadline_s: float = 30.0):
    """Step with zero actions until a step reports a replaced worker (ray.kill is asynchronous: a step sent before
    the kill lands still succeeds); returns that step's result."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        out = venv.step(np.zeros((N_ENVS, 2), dtype=np.int64))
        if any(i.get("worker_restarted") for i in out[3]):
            return out
        time.sleep(0.05)
    raise AssertionError("no worker restart seen")


def test_a_dead_worker_is_replaced_with_its_envs_reseeded_and_stepping_goes_on(ray_local, env_fns):
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = RayVecEnv(env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5, step_timeout_s=20))
    try:
        venv.seed(5)
        venv.reset()
        ray.kill(venv._workers[1], no_restart=True)
        obs, rewards, dones, infos = _step_until_restarted(venv)
        assert venv.worker_restarts == 1
        lost = venv._slices[1]
        assert dones[lost].all() and (rewards[lost] == 0).all()
        assert all(infos[i]["worker_restarted"] for i in lost)
        # the replaced environments start again from their own seeds: what a fresh DummyVecEnv of them returns
        ref = DummyVecEnv([env_fns[i] for i in lost])
        ref.seed(5 + lost[0])
        np.testing.assert_array_equal(obs[lost], ref.reset())
        ref.close()
        for _ in range(5):  # and the venv keeps stepping on the new worker
            assert venv.step(np.zeros((N_ENVS, 2), dtype=np.int64))[0].shape[0] == N_ENVS
    finally:
        venv.close()


def test_a_dead_worker_without_restarts_left_raises_instead_of_hanging(ray_local, env_fns):
    venv = RayVecEnv(
        env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5, step_timeout_s=20, max_worker_restarts=0)
    )
    try:
        venv.reset()
        ray.kill(venv._workers[1], no_restart=True)
        deadline = time.monotonic() + 30.0
        with pytest.raises(RayWorkerError, match="env worker 1 failed.*0 worker restart"):
            while time.monotonic() < deadline:
                venv.step(np.zeros((N_ENVS, 2), dtype=np.int64))
                time.sleep(0.05)
    finally:
        venv.close()


class _KillingVecEnv(RayVecEnv):
    """Kills env worker 1 once, after ``kill_after`` steps (a real actor death in the middle of training)."""

    kill_after = 40

    def step_async(self, actions):
        self._steps = getattr(self, "_steps", 0) + 1
        if self._steps == self.kill_after:
            ray.kill(self._workers[1], no_restart=True)
            time.sleep(0.5)  # let the kill land before the step is sent
        super().step_async(actions)


def _tiny_train_cfg(tmp_path, name):
    return replace(
        quick(TrainConfig(model="pi0", preset="tiny", run_dir=str(tmp_path), run_name=name, n_envs=2)),
        total_timesteps=512,
        n_steps=128,
        batch_size=128,
        eval_every_steps=256,
        episode_s=5.0,
    )


def test_training_survives_a_worker_death(ray_local, tmp_path):
    from agents.artifact import load_policy

    made = []

    def factory(fns):
        made.append(_KillingVecEnv(fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5, step_timeout_s=20)))
        return made[0]

    cfg = _tiny_train_cfg(tmp_path, "survives")
    res = train(cfg, venv_factory=factory)
    assert made[0].worker_restarts == 1
    assert res.stopped_early is None and res.timesteps >= cfg.total_timesteps
    assert load_policy(res.policy_path) is not None


def test_training_that_cannot_replace_a_worker_stops_with_the_best_policy_so_far(ray_local, tmp_path):
    from agents.artifact import load_policy

    def factory(fns):
        return _KillingVecEnv(
            fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5, step_timeout_s=20, max_worker_restarts=0)
        )

    cfg = _tiny_train_cfg(tmp_path, "stops")
    res = train(cfg, venv_factory=factory)
    assert res.stopped_early is not None and "env worker 1" in res.stopped_early
    assert 0 < res.timesteps < cfg.total_timesteps
    assert res.policy_path.exists() and load_policy(res.policy_path) is not None
    assert np.isfinite(res.best_val_return)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="num_workers"):
        RayTrainConfig(num_workers=0)
    with pytest.raises(ValueError, match="step_timeout_s"):
        RayTrainConfig(step_timeout_s=0)
    with pytest.raises(ValueError, match="max_worker_restarts"):
        RayTrainConfig(max_worker_restarts=-1)


def test_train_on_ray_writes_a_loadable_policy_artifact(ray_local, tmp_path):
    from agents.artifact import load_policy

    cfg = quick(TrainConfig(model="pi0", preset="tiny", run_dir=str(tmp_path), run_name="ray", n_envs=2))
    res = train_on_ray(cfg, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5))
    assert res.timesteps >= cfg.total_timesteps
    policy = load_policy(res.policy_path)
    assert policy is not None and res.policy_path.exists()
