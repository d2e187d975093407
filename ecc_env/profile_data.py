"""The env's default Profile pair, shipped as package data so that ``gym.make`` needs no model build.

``ecc_env/data/default_profiles.json`` holds the roofline Profiles of the ``full`` OpenVLA on a Jetson AGX Orin
(edge) and an A100 (cloud), priced under the default wire configuration. They are computed by ``executor.roofline`` from the meta-device model, which takes
seconds and imports torch/transformers; the env reads the JSON instead. Regenerate the file after a change to
the models or the cost model with ``python -m ecc_env.profile_data`` (``tests/ecc_env/test_profile_data.py``
fails when the shipped file drifts from what the models give).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from executor.profile import Profile, ProfileError

DEFAULT_FAMILY = "openvla"
DEFAULT_PRESET = "full"
DEFAULT_EDGE = "orin"
DEFAULT_CLOUD = "a100"
DATA_FILE = "default_profiles.json"


def build_default_profiles() -> tuple[Profile, Profile]:
    """Compute the default (edge, cloud) Profiles from the models with the roofline cost model, priced under the
    default wire configuration (``executor.wire_config.DEFAULT_WIRE``); slow: seconds, imports torch."""
    from executor.wire_config import roofline_pair  # lazy: torch/transformers

    return roofline_pair(DEFAULT_FAMILY, DEFAULT_PRESET, DEFAULT_EDGE, DEFAULT_CLOUD)


def profiles_document(edge: Profile, cloud: Profile) -> dict[str, Any]:
    """The JSON document of a Profile pair, as stored in the package data."""
    return {"edge": edge.to_dict(), "cloud": cloud.to_dict()}


def load_default_profiles() -> tuple[Profile, Profile]:
    """Read the shipped default (edge, cloud) Profiles (fast: no torch)."""
    ref = resources.files("ecc_env").joinpath("data", DATA_FILE)
    try:
        doc = json.loads(ref.read_text(encoding="utf-8"))
        edge = Profile.from_dict(doc["edge"], expect_model=DEFAULT_FAMILY, expect_preset=DEFAULT_PRESET)
        cloud = Profile.from_dict(doc["cloud"], expect_model=DEFAULT_FAMILY, expect_preset=DEFAULT_PRESET)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ProfileError) as e:
        raise ProfileError(
            f"ecc_env package data {DATA_FILE}: {e}; regenerate with `python -m ecc_env.profile_data`"
        ) from e
    return edge, cloud


def write_default_profiles(path: str | Path | None = None) -> Path:
    """Recompute the default Profiles and write them (to the package's data file unless ``path`` is given)."""
    target = Path(path) if path is not None else Path(__file__).with_name("data") / DATA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(profiles_document(*build_default_profiles()), indent=1) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":
    print(f"wrote {write_default_profiles()}")
