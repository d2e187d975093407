"""The policy artifact: ``policy.zip`` (Stable-Baselines3's own format) plus ``policy.json`` (metadata) beside it.

Metadata (``FORMAT_VERSION`` 1): format version, algorithm, the observation spec (``ObservationBuilder.spec()``:
field names, scales, feature parameters), the per-feature range seen in training (for the guard), the action space,
the model id and the edge/cloud Profile ids, the reward and env settings, a fingerprint of the training traces,
library versions and the sha256 of the zip. :func:`load_policy` refuses anything that does not match with
:class:`PolicyLoadError` naming the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.compat import control_mismatch
from agents.planner import ObsView
from agents.policy import PPOPlanner
from ecc_env.observation import ObservationConfig
from executor.profile import Profile

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_SUFFIX = ".json"


class PolicyLoadError(RuntimeError):
    """A policy artifact that cannot be used here; the message names the file and the mismatch."""


def profile_id(p: Profile) -> str:
    """``model/preset@device`` plus a short hash of the Profile's content."""
    digest = hashlib.sha256(json.dumps(p.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{p.model_id}/{p.preset}@{p.device}:{p.source}:{digest}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def meta_path(zip_path: str | Path) -> Path:
    return Path(zip_path).with_suffix(META_SUFFIX)


def save_policy(model: Any, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``path`` (SB3 zip) and its metadata JSON; returns the zip path. ``metadata`` must hold at least
    ``observation``, ``model_id``, ``profiles`` and ``cut_fits``."""
    path = Path(path)
    if path.suffix != ".zip":
        raise ValueError(f"policy path must end in .zip, got {path}")
    for key in ("observation", "model_id", "profiles", "cut_fits"):
        if key not in metadata:
            raise ValueError(f"policy metadata lacks {key!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["algorithm"] = type(model).__name__
    meta["action_space"] = {"type": "MultiDiscrete", "nvec": np.asarray(model.action_space.nvec).tolist()}
    meta["zip_sha256"] = _sha256(path)
    meta.setdefault("versions", _versions())
    meta_path(path).write_text(json.dumps(meta, indent=2, default=_json_default))
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _versions() -> dict[str, str]:
    import sb3_contrib
    import stable_baselines3
    import torch

    return {"stable_baselines3": stable_baselines3.__version__, "sb3_contrib": sb3_contrib.__version__,
            "torch": torch.__version__}


@dataclass(frozen=True)
class PolicyExpectation:
    """What the runtime needs of a policy; None fields are not checked."""

    observation: dict[str, Any] | None = None
    model_id: str | None = None
    edge_profile_id: str | None = None
    cloud_profile_id: str | None = None
    num_cuts: int | None = None
    chunk_size: int | None = None
    period_ms: float | None = None

    @classmethod
    def for_env(cls, env: Any) -> PolicyExpectation:
        e = env.unwrapped
        return cls(
            observation=e.builder.spec(),
            model_id=f"{e.edge_profile.model_id}/{e.edge_profile.preset}",
            edge_profile_id=profile_id(e.edge_profile),
            cloud_profile_id=profile_id(e.cloud_profile),
            num_cuts=int(e.num_cuts),
            chunk_size=int(e.config.chunk_size),
            period_ms=float(e.config.period_ms),
        )


@dataclass
class LoadedPolicy:
    """A loaded artifact: the PPOPlanner, its metadata and the per-feature training range."""

    planner: PPOPlanner
    metadata: dict[str, Any]
    obs_low: np.ndarray
    obs_high: np.ndarray
    path: Path

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        return self.planner.predict(observation, state, episode_start, deterministic)


def hedge_mismatch(metadata: dict[str, Any], hedge: bool) -> str | None:
    """A warning text when a policy trained with(out) hedged execution (``env.hedge`` of its metadata; absent: off)
    runs under the other rule, else None. Not a refusal: the observation is the same, only the latencies differ."""
    trained = bool((metadata.get("env") or {}).get("hedge", False))
    if trained == bool(hedge):
        return None
    return (f"the policy was trained {'with' if trained else 'without'} hedged execution, it runs "
            f"{'with' if hedge else 'without'} it here (see --hedge)")


def _spec_diff(found: dict[str, Any], want: dict[str, Any], prefix: str = "observation") -> str | None:
    for key in sorted(set(found) | set(want)):
        a, b = found.get(key, "<missing>"), want.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            d = _spec_diff(a, b, f"{prefix}.{key}")
            if d:
                return d
        elif a != b:
            return f"{prefix}.{key}: policy has {a!r}, runtime has {b!r}"
    return None


def load_policy(path: str | Path, expect: PolicyExpectation | None = None, *, use_torch: bool = False) -> LoadedPolicy:
    """Load and check a policy artifact; raises PolicyLoadError for a missing file, a corrupt zip (or one that does
    not match its recorded hash), another format version, a policy with privileged (simulation-only) fields, an
    observation-spec, model, Profile or action-space mismatch."""
    path = Path(path)
    mpath = meta_path(path)
    if not path.is_file():
        raise PolicyLoadError(f"policy file not found: {path}")
    if not mpath.is_file():
        raise PolicyLoadError(f"policy metadata not found: {mpath} (expected beside {path.name})")
    try:
        meta = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicyLoadError(f"{mpath}: metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise PolicyLoadError(f"{mpath}: metadata must be a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise PolicyLoadError(f"{mpath}: format version {version!r}, this package reads {FORMAT_VERSION}")
    if not zipfile.is_zipfile(path):
        raise PolicyLoadError(f"{path}: not a zip file (corrupt or truncated)")
    sha = meta.get("zip_sha256")
    if sha is not None and sha != _sha256(path):
        raise PolicyLoadError(f"{path}: content does not match the sha256 recorded in {mpath.name} (corrupt file)")
    privileged = meta.get("privileged")
    if privileged:
        fields = privileged.get("fields") if isinstance(privileged, dict) else privileged
        raise PolicyLoadError(f"{mpath}: the policy observes privileged simulation-only fields {fields!r} "
                              "(ecc_env.privileged) that no runtime can supply; it is a yardstick, not deployable")
    if expect is not None:
        _check(meta, expect, mpath)
    try:
        from sb3_contrib import MaskablePPO

        model = MaskablePPO.load(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - any failure inside SB3's loader means an unusable file
        raise PolicyLoadError(f"{path}: cannot be loaded by MaskablePPO ({type(e).__name__}: {e})") from e
    nvec = np.asarray(model.action_space.nvec).tolist()
    if nvec != meta.get("action_space", {}).get("nvec"):
        raise PolicyLoadError(f"{path}: model action space {nvec} differs from its metadata {meta.get('action_space')}")
    try:
        scales = dict(meta["observation"]["scales"])
        view = ObsView(ObservationConfig(**scales))
        planner = PPOPlanner(model, np.asarray(meta["cut_fits"], dtype=bool), view, use_torch=use_torch)
    except (KeyError, TypeError, ValueError) as e:
        raise PolicyLoadError(f"{mpath}: metadata is inconsistent with the model ({e})") from e
    size = view.size
    rng = meta.get("obs_range") or {}
    low = np.asarray(rng.get("low", np.zeros(size)), dtype=np.float64)
    high = np.asarray(rng.get("high", np.ones(size)), dtype=np.float64)
    if low.shape != (size,) or high.shape != (size,):
        raise PolicyLoadError(f"{mpath}: obs_range has the wrong length (expected {size})")
    return LoadedPolicy(planner, meta, low, high, path)


def _check(meta: dict[str, Any], expect: PolicyExpectation, mpath: Path) -> None:
    control = control_mismatch(meta, chunk_size=expect.chunk_size, period_ms=expect.period_ms)
    if control:
        raise PolicyLoadError(f"{mpath}: {control}")
    if expect.observation is not None:
        found = meta.get("observation")
        if not isinstance(found, dict):
            raise PolicyLoadError(f"{mpath}: observation spec missing")
        diff = _spec_diff(found, json.loads(json.dumps(expect.observation, default=_json_default)))
        if diff:
            raise PolicyLoadError(f"{mpath}: observation spec mismatch: {diff}")
    if expect.model_id is not None and meta.get("model_id") != expect.model_id:
        raise PolicyLoadError(f"{mpath}: model mismatch: policy is for {meta.get('model_id')!r}, "
                              f"runtime runs {expect.model_id!r}")
    profiles = meta.get("profiles") or {}
    for side, want in (("edge", expect.edge_profile_id), ("cloud", expect.cloud_profile_id)):
        if want is not None and profiles.get(side) != want:
            raise PolicyLoadError(f"{mpath}: {side} profile mismatch: policy was trained on {profiles.get(side)!r}, "
                                  f"runtime uses {want!r}")
    if expect.num_cuts is not None:
        nvec = meta.get("action_space", {}).get("nvec")
        if nvec != [expect.num_cuts, 2]:
            raise PolicyLoadError(f"{mpath}: action space mismatch: policy has {nvec}, runtime needs "
                                  f"[{expect.num_cuts}, 2]")
