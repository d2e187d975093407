"""Policy artifact: save/load gives identical predict; every load_policy refusal names the mismatch; a pickled
(format-1) zip is refused without --trust-pickle and its payload never runs; migration keeps predict identical."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from agents.artifact import (
    PolicyExpectation,
    PolicyLoadError,
    load_policy,
    meta_path,
    migrate_policy,
    weights_path,
)
from agents.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    Toy = toy
    run_dir = tmp_path_factory.mktemp("runs")
    cfg = Toy.tiny_train_config(run_dir, "tiny", total_timesteps=512, n_steps=256)
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
    assert res.policy_path.suffix == ".safetensors" and not res.policy_path.with_suffix(".zip").exists()
    assert meta["format_version"] == 2 and meta["action_space"]["nvec"] == [4, 2]
    assert meta["network"]["activation"] == "Tanh" and meta["network"]["observation_space"]["shape"] == [33]
    assert meta["model_id"] == "toy/tiny" and len(meta["traces"]["fingerprint"]) == 64
    low, high = np.array(meta["obs_range"]["low"]), np.array(meta["obs_range"]["high"])
    assert low.shape == (33,) and np.all(low <= high) and np.all(low >= 0) and np.all(high <= 1)


@pytest.fixture
def fresh(trained, tmp_path):
    """A MaskablePPO with seeded random weights (ReLU, its own net_arch) in memory, saved as an artifact with the
    trained run's metadata: the reference that save->load must reproduce."""
    import torch
    from sb3_contrib import MaskablePPO

    res, env = trained
    model = MaskablePPO(
        "MlpPolicy",
        env,
        seed=3,
        device="cpu",
        n_steps=64,
        batch_size=32,
        policy_kwargs={"net_arch": [32, 16], "activation_fn": torch.nn.ReLU},
    )
    meta = json.loads(meta_path(res.policy_path).read_text())
    for k in ("network", "weights_sha256", "format_version", "action_space"):
        meta.pop(k)
    return model, meta, tmp_path


def test_save_load_identical_predict(trained, fresh):
    from agents.artifact import save_policy

    _, env = trained
    reference, meta, tmp = fresh
    path = save_policy(reference, tmp / "run" / "policy.zip", meta)
    assert path == tmp / "run" / "policy.safetensors" and not (tmp / "run" / "policy.zip").exists()
    loaded = load_policy(path, PolicyExpectation.for_env(env))
    loaded_torch = load_policy(path.with_suffix(".zip"), use_torch=True)  # the stem names the artifact too
    for name, tensor in reference.policy.state_dict().items():
        assert bool((loaded.planner.model.policy.state_dict()[name] == tensor).all()), name
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
    dst = tmp_path / "policy.safetensors"
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


def test_refuses_corrupt_weights(copy):
    path, _ = copy
    path.write_bytes(b"this is not a safetensors file")
    with pytest.raises(PolicyLoadError, match="sha256"):
        load_policy(path)
    _edit_meta(path, lambda m: m.pop("weights_sha256"))
    with pytest.raises(PolicyLoadError, match="not a readable safetensors file"):
        load_policy(path)


def test_refuses_weights_that_do_not_fit_the_network(copy):
    path, _ = copy
    _edit_meta(path, lambda m: m["network"].update(net_arch=[8]))
    with pytest.raises(PolicyLoadError, match="do not fit the described network|needs"):
        load_policy(path)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("activation", "os.system", "network.activation must be one of"),
        ("policy_class", "builtins.eval", "network.policy_class"),
        ("net_arch", "64,64", "network.net_arch must be a list"),
        ("net_arch", [2**40], "network.net_arch must be a list"),
        ("observation_space", [1, 2], "must be mappings"),
    ],
)
def test_refuses_bad_network_description(copy, field, value, match):
    path, _ = copy
    _edit_meta(path, lambda m: m["network"].update({field: value}))
    with pytest.raises(PolicyLoadError, match=match):
        load_policy(path)


@pytest.mark.parametrize("field", ["observation", "env", "obs_range", "action_space", "profiles"])
def test_metadata_fields_of_the_wrong_type_are_named(copy, field):
    path, env = copy
    _edit_meta(path, lambda m: m.update({field: ["a", "list"]}))
    with pytest.raises(PolicyLoadError, match=f"field '{field}' must be a mapping, got list"):
        load_policy(path, PolicyExpectation.for_env(env))


def _crafted_pickle_zip(path, marker):
    """A format-1 artifact whose zip holds a pickle that would write ``marker`` when unpickled."""
    import base64
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "data",
            json.dumps(
                {
                    "policy_class": {
                        ":type:": "<class>",
                        ":serialized:": base64.b64encode(pickle.dumps(Payload())).decode(),
                    }
                }
            ),
        )
        z.writestr("policy.pth", pickle.dumps(Payload()))
        z.writestr("pytorch_variables.pth", pickle.dumps(Payload()))
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch notes the crafted file's protocol
def test_crafted_pickle_policy_is_refused_and_never_runs(copy, tmp_path, caplog):
    path, env = copy
    marker = tmp_path / "pwned"
    legacy = _crafted_pickle_zip(path.with_suffix(".zip"), marker)
    path.unlink()  # only the pickled zip and its JSON remain, as a format-1 artifact
    _edit_meta(path, lambda m: m.update(format_version=1))
    for name in (legacy, legacy.with_suffix(".json"), legacy.parent):
        target = name / "policy.zip" if name.is_dir() else name
        with pytest.raises(PolicyLoadError, match="pickled.*refused.*--trust-pickle"):
            load_policy(target, PolicyExpectation.for_env(env))
    from agents.guard import GuardedPolicy
    from agents.heuristics import EdgeOnly
    from agents.planner import PlannerContext

    guarded = GuardedPolicy(legacy, EdgeOnly(PlannerContext.from_env(env)))
    assert guarded.policy is None and "--trust-pickle" in guarded.load_error
    from agents.eval_cli import main as eval_main

    rc = eval_main(["--planners", f"ppo:{legacy},edge", "--episodes", "1", "--episode-s", "1"])
    assert rc == 2
    assert not marker.exists()
    # the payload is real: with the user's explicit trust, SB3's loader runs it (and then fails on the rest)
    with (
        caplog.at_level("WARNING", logger="agents.artifact"),
        pytest.raises(PolicyLoadError, match="cannot be loaded by MaskablePPO"),
    ):
        load_policy(legacy, trust_pickle=True)
    assert marker.exists()
    assert "with pickle (--trust-pickle): it can run arbitrary code" in caplog.text  # trusted, never silently


def test_migrate_keeps_predict_identical(trained, fresh):
    _, env = trained
    model, meta, tmp_path = fresh
    legacy = tmp_path / "old" / "policy.zip"
    legacy.parent.mkdir()
    model.save(str(legacy))  # what format 1 wrote: SB3's zip + the same JSON
    meta["format_version"] = 1
    meta["action_space"] = {"type": "MultiDiscrete", "nvec": [4, 2]}
    meta_path(legacy).write_text(json.dumps(meta))
    with pytest.raises(PolicyLoadError, match="--trust-pickle"):
        load_policy(legacy)
    trusted = load_policy(legacy, trust_pickle=True)
    new = migrate_policy(legacy)
    assert new == weights_path(legacy) and json.loads(meta_path(legacy).read_text())["format_version"] == 2
    migrated = load_policy(legacy, PolicyExpectation.for_env(env))  # no trust needed any more
    rng = np.random.default_rng(1)
    for _ in range(50):
        o = rng.uniform(0, 1, 33).astype(np.float32)
        assert migrated.predict(o)[0].tolist() == trusted.predict(o)[0].tolist()
    with pytest.raises(PolicyLoadError, match="nothing to migrate"):
        migrate_policy(legacy)


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


def test_policy_cli_migrate_needs_trust(trained, fresh, capsys):
    from agents.policy_cli import main

    model, meta, tmp_path = fresh
    legacy = tmp_path / "cli" / "policy.zip"
    legacy.parent.mkdir()
    model.save(str(legacy))
    meta.update(format_version=1, action_space={"type": "MultiDiscrete", "nvec": [4, 2]})
    meta_path(legacy).write_text(json.dumps(meta))
    assert main(["migrate", str(legacy.parent)]) == 2 and "--trust-pickle" in capsys.readouterr().err
    assert main(["migrate", "--trust-pickle", str(legacy.parent)]) == 0
    assert weights_path(legacy).is_file()
    assert main(["show", str(legacy.parent)]) == 0 and '"format_version": 2' in capsys.readouterr().out


def test_profile_id_ignores_calibration_fields_left_at_their_defaults():
    """A Profile field added later never renames an uncalibrated Profile: its id is the hash of the content without
    the calibration fields (the rule policies were saved under before they existed); calibrating changes it."""
    import hashlib

    from agents.artifact import legacy_profile_id, profile_id
    from ecc_env.profile_data import load_default_profiles

    p = load_default_profiles()[0]
    content = {
        k: v
        for k, v in p.to_dict().items()
        if k not in ("overhead_ms", "overhead_ms_per_mb", "block_ms_scale", "overhead_up_bytes", "overhead_down_bytes")
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert profile_id(p) == f"{p.model_id}/{p.preset}@{p.device}:{p.source}:{digest}"
    n = len(p.cuts)
    calibrated = replace(p, overhead_ms=(1.0,) * n)
    assert profile_id(calibrated) != profile_id(p)
    assert profile_id(replace(p, block_ms_scale=(1.3,) * n)) != profile_id(p)
    # the 2026-12-06 rule hashed overhead_ms / overhead_ms_per_mb even when empty: accepted as a legacy id
    assert legacy_profile_id(p) not in (None, profile_id(p))
    assert legacy_profile_id(replace(p, overhead_up_bytes=(300.0,) * n)) is None
