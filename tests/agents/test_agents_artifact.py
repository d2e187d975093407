"""Policy artifact: save/load gives identical predict; every load_policy refusal names the mismatch."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from agents.artifact import PolicyExpectation, PolicyLoadError, load_policy, meta_path
from agents.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    Toy = toy
    run_dir = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(total_timesteps=512, n_envs=1, n_steps=256, batch_size=64, eval_every_steps=256,
                      eval_episodes=1, episode_s=2.0, run_dir=str(run_dir), run_name="tiny")
    profiles = Toy.three_block_profiles()
    res = train(cfg, trace_set=Toy.alternating_set(), profiles=profiles)
    env = Toy.make_env(profiles, Toy.alternating_set(), episode_s=2.0)
    return res, env


def test_run_folder_contents(trained):
    res, _ = trained
    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["total_timesteps"] == 512 and cfg["train_traces"]["n"] == 3
    curve = (res.run_dir / "learning_curve.csv").read_text().splitlines()
    assert curve[0].startswith("timesteps,") and len(curve) >= 3
    meta = json.loads(meta_path(res.policy_path).read_text())
    assert meta["format_version"] == 1 and meta["action_space"]["nvec"] == [4, 2]
    assert meta["model_id"] == "toy/tiny" and len(meta["traces"]["fingerprint"]) == 64
    low, high = np.array(meta["obs_range"]["low"]), np.array(meta["obs_range"]["high"])
    assert low.shape == (33,) and np.all(low <= high) and np.all(low >= 0) and np.all(high <= 1)


def test_save_load_identical_predict(trained):
    from sb3_contrib import MaskablePPO

    res, env = trained
    loaded = load_policy(res.policy_path, PolicyExpectation.for_env(env))
    reference = MaskablePPO.load(str(res.policy_path), device="cpu")
    loaded_torch = load_policy(res.policy_path, use_torch=True)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for i in range(60):
        masks = env.unwrapped.action_masks()
        a_ref, _ = reference.predict(obs, deterministic=True, action_masks=masks)
        a_fast, _ = loaded.predict(obs)
        a_torch, _ = loaded_torch.predict(obs)
        assert a_fast.tolist() == a_ref.tolist() == a_torch.tolist()
        # also on random observations inside the space (wider coverage of the argmax)
        o = rng.uniform(0, 1, 33).astype(np.float32)
        m = np.concatenate([loaded.planner.cut_fits, [True, o[21] > 0]])
        assert loaded.predict(o)[0].tolist() == reference.predict(o, deterministic=True, action_masks=m)[0].tolist()
        obs, _, _, trunc, _ = env.step(a_ref)
        if trunc:
            obs, _ = env.reset(seed=i)


@pytest.fixture
def copy(trained, tmp_path):
    res, env = trained
    dst = tmp_path / "policy.zip"
    shutil.copy(res.policy_path, dst)
    shutil.copy(meta_path(res.policy_path), meta_path(dst))
    return dst, env


def _edit_meta(path, fn):
    m = json.loads(meta_path(path).read_text())
    fn(m)
    meta_path(path).write_text(json.dumps(m))


def test_refuses_missing_files(copy, tmp_path):
    path, _ = copy
    with pytest.raises(PolicyLoadError, match="not found"):
        load_policy(tmp_path / "nope.zip")
    meta_path(path).unlink()
    with pytest.raises(PolicyLoadError, match="metadata not found"):
        load_policy(path)


def test_refuses_corrupt_zip(copy):
    path, _ = copy
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(PolicyLoadError, match="not a zip"):
        load_policy(path)


def test_refuses_truncated_or_altered_zip(copy):
    path, _ = copy
    data = path.read_bytes()
    path.write_bytes(data[:-10] + b"\0" * 10)  # still a zip by its header scan? hash catches it either way
    with pytest.raises(PolicyLoadError, match="(sha256|not a zip)"):
        load_policy(path)


def test_refuses_zip_sb3_cannot_read(copy):
    import zipfile

    path, _ = copy
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", "{}")
    _edit_meta(path, lambda m: m.pop("zip_sha256"))
    with pytest.raises(PolicyLoadError, match="cannot be loaded by MaskablePPO"):
        load_policy(path)


def test_refuses_other_format_version(copy):
    path, _ = copy
    _edit_meta(path, lambda m: m.update(format_version=99))
    with pytest.raises(PolicyLoadError, match="format version 99"):
        load_policy(path)


def test_refuses_corrupt_metadata(copy):
    path, _ = copy
    meta_path(path).write_text("{not json")
    with pytest.raises(PolicyLoadError, match="not valid JSON"):
        load_policy(path)


def test_refuses_observation_spec_mismatch(copy):
    path, env = copy
    exp = PolicyExpectation.for_env(env)
    spec = json.loads(json.dumps(exp.observation))
    spec["scales"]["bandwidth_scale_mbps"] = 1000.0
    with pytest.raises(PolicyLoadError, match="observation.scales.bandwidth_scale_mbps"):
        load_policy(path, replace(exp, observation=spec))
    spec = json.loads(json.dumps(exp.observation))
    spec["version"] = spec["version"] + 1
    with pytest.raises(PolicyLoadError, match="observation.version"):
        load_policy(path, replace(exp, observation=spec))


def test_refuses_model_and_profile_mismatch(copy):
    path, env = copy
    exp = PolicyExpectation.for_env(env)
    with pytest.raises(PolicyLoadError, match="model mismatch.*'toy/tiny'.*'pi0/full'"):
        load_policy(path, replace(exp, model_id="pi0/full"))
    with pytest.raises(PolicyLoadError, match="edge profile mismatch"):
        load_policy(path, replace(exp, edge_profile_id="toy/tiny@thor:roofline:0"))
    with pytest.raises(PolicyLoadError, match="cloud profile mismatch"):
        load_policy(path, replace(exp, cloud_profile_id="toy/tiny@h100:roofline:0"))
    with pytest.raises(PolicyLoadError, match="action space mismatch"):
        load_policy(path, replace(exp, num_cuts=7))
    assert load_policy(path, exp).metadata["model_id"] == "toy/tiny"
