"""Environments on Ray actors (local Ray, 2 CPUs): RayVecEnv steps exactly like DummyVecEnv, MaskablePPO trained on it
ends with the same weights, failures raise instead of hanging, and ``train`` on Ray writes a loadable artifact."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from agents.ray_training import RayTrainConfig, RayVecEnv, RayWorkerError, train_on_ray  # noqa: E402
from agents.training import TrainConfig, load_trace_set, make_env, profiles_for, quick  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray cluster and trains on it: ~100 s on 2 cores

N_ENVS = 4


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100_000_000, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


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
        actions = np.array([[rng.choice(np.flatnonzero(part)) for part in np.split(m, np.cumsum(nvec)[:-1])]
                            for m in masks])
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
        model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=7, device="cpu",
                            policy_kwargs={"net_arch": [16]})
        model.learn(2 * 64 * N_ENVS)
        params = [p.detach().clone() for p in model.policy.parameters()]
        venv.close()
        return params, model.num_timesteps

    ref, n_ref = learn(DummyVecEnv(env_fns))
    got, n_got = learn(RayVecEnv(env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5)))
    assert n_ref == n_got == 2 * 64 * N_ENVS
    for p, q in zip(ref, got):
        torch.testing.assert_close(q, p, rtol=0, atol=0)


def test_a_dead_worker_raises_instead_of_hanging(ray_local, env_fns):
    venv = RayVecEnv(env_fns, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5, step_timeout_s=20))
    try:
        venv.reset()
        ray.kill(venv._workers[1], no_restart=True)
        # ray.kill is asynchronous: a step sent before the kill lands still succeeds, so step until it raises (each
        # step is bounded by step_timeout_s); the first error must be RayWorkerError, within a few seconds
        deadline = time.monotonic() + 30.0
        with pytest.raises(RayWorkerError, match="env worker failed"):
            while time.monotonic() < deadline:
                venv.step(np.zeros((N_ENVS, 2), dtype=np.int64))
                time.sleep(0.05)
    finally:
        venv.close()


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="num_workers"):
        RayTrainConfig(num_workers=0)
    with pytest.raises(ValueError, match="step_timeout_s"):
        RayTrainConfig(step_timeout_s=0)


def test_train_on_ray_writes_a_loadable_policy_artifact(ray_local, tmp_path):
    from agents.artifact import load_policy

    cfg = quick(TrainConfig(model="pi0", preset="tiny", run_dir=str(tmp_path), run_name="ray", n_envs=2))
    res = train_on_ray(cfg, RayTrainConfig(num_workers=2, num_cpus_per_worker=0.5))
    assert res.timesteps >= cfg.total_timesteps
    policy = load_policy(res.policy_path)
    assert policy is not None and res.policy_path.exists()
