"""The env's default Profiles ship as package data; they must match what the models and the cost model give."""

import json

import pytest

from ecc_env import profile_data
from executor.profile import ProfileError


def test_shipped_default_profiles_match_the_models():
    """Regenerate the pair from the meta-device OpenVLA ``full`` and the roofline model: any drift fails here.

    Fix a failure with ``python -m ecc_env.profile_data`` (after checking that the change is intended).
    """
    shipped = profile_data.load_default_profiles()
    built = profile_data.build_default_profiles()

    def as_json(pair):
        return json.loads(json.dumps(profile_data.profiles_document(*pair)))

    assert as_json(shipped) == as_json(built), (
        "ecc_env/data/default_profiles.json drifted from the models; regenerate with `python -m ecc_env.profile_data`"
    )
    edge, cloud = shipped
    assert (edge.model_id, edge.preset, edge.source) == ("openvla", "full", "roofline")
    assert edge.device != cloud.device and edge.num_cuts == cloud.num_cuts


def test_default_env_profiles_come_from_the_package_data_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, gymnasium as gym, ecc_env; env = gym.make(ecc_env.ENV_ID); env.reset(seed=0); "
        "print('torch' in sys.modules, 'transformers' in sys.modules, env.unwrapped.num_cuts)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    torch_loaded, tf_loaded, n_cuts = out.stdout.split()
    assert (torch_loaded, tf_loaded) == ("False", "False")
    assert int(n_cuts) == profile_data.load_default_profiles()[0].num_cuts


def test_broken_package_data_names_the_file_and_the_fix(tmp_path, monkeypatch):
    bad = tmp_path / "ecc_env" / "data"
    bad.mkdir(parents=True)
    (bad / profile_data.DATA_FILE).write_text('{"edge": {}}')

    class _Files:
        def joinpath(self, *parts):
            return tmp_path.joinpath("ecc_env", *parts)

    monkeypatch.setattr(profile_data.resources, "files", lambda _pkg: _Files())
    with pytest.raises(ProfileError, match=r"default_profiles\.json.*python -m ecc_env\.profile_data"):
        profile_data.load_default_profiles()
