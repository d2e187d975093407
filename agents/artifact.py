"""The policy artifact: ``policy.safetensors`` (the network's weights) plus ``policy.json`` (metadata) beside it.

Loading an artifact never runs code from it: the weights are safetensors (raw tensors), the network is rebuilt from
the JSON description under ``network`` (policy class, observation box, action ``nvec``, ``net_arch``, activation
name from a short whitelist) and the weights are copied into it. An artifact is named by any of its files (or the
stem ``policy.zip``, the name earlier versions used), so ``--policy runs/X/policy.zip`` still finds it.

Metadata (``FORMAT_VERSION`` 2): format version, algorithm, the network description, the observation spec
(``ObservationBuilder.spec()``: field names, scales, feature parameters), the per-feature range seen in training
(for the guard), the action space, the model id and the edge/cloud Profile ids, the reward and env settings, a
fingerprint of the training traces, library versions and the sha256 of the weights. :func:`load_policy` refuses
anything that does not match with :class:`PolicyLoadError` naming the mismatch.

Format 1 (a Stable-Baselines3 ``policy.zip``) holds cloudpickled objects: loading one can run whatever its author
put there. :func:`load_policy` refuses it unless ``trust_pickle=True`` (``--trust-pickle`` on the CLI), and
:func:`migrate_policy` (``ecc policy migrate``) rewrites a trusted one in format 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Iterable
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

FORMAT_VERSION = 2
LEGACY_PICKLE_VERSION = 1  # a Stable-Baselines3 zip: cloudpickle inside, loaded only with trust_pickle
META_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".zip"
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024  # a split/skip policy MLP is kilobytes; anything near this is not one
MAX_META_BYTES = 16 * 1024 * 1024
# activation names the network description may hold -> torch.nn class name (nothing else is ever instantiated)
ACTIVATIONS = ("Tanh", "ReLU")
POLICY_CLASS = "MaskableActorCriticPolicy"


class PolicyLoadError(RuntimeError):
    """A policy artifact that cannot be used here; the message names the file and the mismatch."""


# Profile fields added after policies were first saved (calibration, 2026-12-06). At their defaults (an
# uncalibrated Profile) they are left out of the id, so adding such a field never renames the Profiles that do not
# use it: a policy trained before it still names its Profiles by the same id.
_ID_OPTIONAL_FIELDS = (
    "overhead_ms",
    "overhead_ms_per_mb",
    "block_ms_scale",
    "overhead_up_bytes",
    "overhead_down_bytes",
)
# the fields that the earlier id rule (2026-12-06, ``legacy_profile_id``) did not know and did not hash
_ID_LATER_FIELDS = ("block_ms_scale", "overhead_up_bytes", "overhead_down_bytes")


def profile_id(p: Profile) -> str:
    """``model/preset@device:source:`` plus a short hash of the Profile's content (optional calibration fields left
    out where they are at their defaults)."""
    content = p.to_dict()
    for key in _ID_OPTIONAL_FIELDS:
        if not content.get(key):  # (), [], 0.0: not calibrated
            content.pop(key, None)
    return _profile_id(p, content)


def _profile_id(p: Profile, content: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{p.model_id}/{p.preset}@{p.device}:{p.source}:{digest}"


def legacy_profile_id(p: Profile) -> str | None:
    """The id the same Profile had under the id rule of 2026-12-06 (``overhead_ms`` and ``overhead_ms_per_mb``
    always hashed, the later calibration fields unknown): policies saved by that code name their Profiles by it.
    None where the Profile uses a later field (no such policy exists)."""
    content = p.to_dict()
    if any(content.pop(key, None) for key in _ID_LATER_FIELDS):
        return None
    return _profile_id(p, content)


def profile_id_mismatch(
    profiles: Any, sides: Iterable[tuple[str, str | None, str | None]], *, all_same_rule: bool = False
) -> str | None:
    """Why a policy's ``profiles`` metadata ({side: id}) does not name the wanted Profiles, or None where it does.

    ``sides`` holds ``(side, want, legacy)``: the side's :func:`profile_id` (None: that side is not checked) and its
    :func:`legacy_profile_id` (None: it has none). Each side may match either id; with ``all_same_rule`` the checked
    sides must all match under one rule (all current ids, or all legacy ids): a mixed pair is refused. The message
    names the first failing side and both ids."""
    found = profiles if isinstance(profiles, dict) else {}
    checked = [(side, want, legacy) for side, want, legacy in sides if want is not None]
    if all_same_rule and all(legacy is not None and found.get(side) == legacy for side, _, legacy in checked):
        return None  # every side under the legacy rule
    for side, want, legacy in checked:
        got = found.get(side)
        if got == want:
            continue
        if legacy is not None and got == legacy:
            if not all_same_rule:
                continue
            return (
                f"{side} profile mismatch: policy was trained on {got!r}, the legacy id of {want!r}, while the other "
                "sides carry current ids (all sides must follow one id rule)"
            )
        return f"{side} profile mismatch: policy was trained on {got!r}, runtime uses {want!r}"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def meta_path(path: str | Path) -> Path:
    """The metadata JSON of the artifact named by ``path`` (any of its files)."""
    return Path(path).with_suffix(META_SUFFIX)


def weights_path(path: str | Path) -> Path:
    """The safetensors weights of the artifact named by ``path`` (any of its files)."""
    return Path(path).with_suffix(WEIGHTS_SUFFIX)


def legacy_path(path: str | Path) -> Path:
    """The Stable-Baselines3 zip of a format-1 artifact named by ``path``."""
    return Path(path).with_suffix(LEGACY_SUFFIX)


def save_policy(model: Any, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the artifact named by ``path`` (``.safetensors``, or ``.zip`` for its stem): weights and metadata
    JSON; returns the weights path. ``metadata`` must hold at least ``observation``, ``model_id``, ``profiles`` and
    ``cut_fits``. Raises ValueError for a network the JSON description cannot express."""
    path = Path(path)
    if path.suffix not in (WEIGHTS_SUFFIX, LEGACY_SUFFIX):
        raise ValueError(f"policy path must end in {WEIGHTS_SUFFIX} (or {LEGACY_SUFFIX}), got {path}")
    for key in ("observation", "model_id", "profiles", "cut_fits"):
        if key not in metadata:
            raise ValueError(f"policy metadata lacks {key!r}")
    from safetensors.torch import save_file

    network = describe_network(model)
    wpath = weights_path(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.policy.state_dict().items()}
    save_file(state, str(wpath), metadata={"format": "vla-ecc policy", "format_version": str(FORMAT_VERSION)})
    meta = {k: v for k, v in metadata.items() if k not in ("zip_sha256",)}
    meta["format_version"] = FORMAT_VERSION
    meta["algorithm"] = type(model).__name__
    meta["network"] = network
    meta["action_space"] = {"type": "MultiDiscrete", "nvec": np.asarray(model.action_space.nvec).tolist()}
    meta["weights_sha256"] = _sha256(wpath)
    meta.setdefault("versions", _versions())
    meta_path(path).write_text(json.dumps(meta, indent=2, default=_json_default))
    return wpath


def describe_network(model: Any) -> dict[str, Any]:
    """The JSON description :func:`build_network` rebuilds ``model.policy`` from (class, spaces, MLP shape)."""
    policy = model.policy
    if type(policy).__name__ != POLICY_CLASS:
        raise ValueError(f"only {POLICY_CLASS} policies can be saved, got {type(policy).__name__}")
    kwargs = dict(getattr(model, "policy_kwargs", None) or {})
    net_arch = kwargs.pop("net_arch", None)
    act = kwargs.pop("activation_fn", None)
    act_name = "Tanh" if act is None else getattr(act, "__name__", str(act))
    if act_name not in ACTIVATIONS:
        raise ValueError(f"activation {act_name!r} cannot be described; expected one of {ACTIVATIONS}")
    if kwargs:
        raise ValueError(
            f"policy_kwargs {sorted(kwargs)} cannot be described in the artifact (net_arch and activation_fn only)"
        )
    obs = model.observation_space
    if type(obs).__name__ != "Box" or type(model.action_space).__name__ != "MultiDiscrete":
        raise ValueError(
            f"spaces must be Box -> MultiDiscrete, got {type(obs).__name__} -> {type(model.action_space).__name__}"
        )
    return {
        "policy_class": POLICY_CLASS,
        "observation_space": {
            "type": "Box",
            "shape": list(obs.shape),
            "dtype": str(obs.dtype),
            "low": np.asarray(obs.low, dtype=np.float64).ravel().tolist(),
            "high": np.asarray(obs.high, dtype=np.float64).ravel().tolist(),
        },
        "action_space": {"type": "MultiDiscrete", "nvec": np.asarray(model.action_space.nvec).tolist()},
        "net_arch": net_arch,
        "activation": act_name,
    }


def _net_arch(value: Any, where: str) -> Any:
    def layers(v: Any, name: str) -> list[int]:
        if not isinstance(v, list) or len(v) > 16 or not all(type(x) is int and 0 < x <= 65536 for x in v):
            raise PolicyLoadError(
                f"{where}: network.{name} must be a list of at most 16 layer widths in 1..65536, got {_short(v)}"
            )
        return list(v)

    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) - {"pi", "vf"}:
            raise PolicyLoadError(f"{where}: network.net_arch may hold only 'pi' and 'vf', got {sorted(value)}")
        return {k: layers(v, f"net_arch.{k}") for k, v in value.items()}
    return layers(value, "net_arch")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_network(network: Any, where: str) -> Any:
    """A MaskablePPO (no env) whose policy is built from a :func:`describe_network` description; every field is
    type-checked first and nothing named in the file is imported or called. Raises PolicyLoadError."""
    if not isinstance(network, dict):
        raise PolicyLoadError(f"{where}: field 'network' must be a mapping, got {type(network).__name__}")
    if network.get("policy_class") != POLICY_CLASS:
        raise PolicyLoadError(
            f"{where}: network.policy_class must be {POLICY_CLASS!r}, got {_short(network.get('policy_class'))}"
        )
    act = network.get("activation")
    if act not in ACTIVATIONS:
        raise PolicyLoadError(f"{where}: network.activation must be one of {ACTIVATIONS}, got {_short(act)}")
    obs, acts = network.get("observation_space"), network.get("action_space")
    if not isinstance(obs, dict) or not isinstance(acts, dict):
        raise PolicyLoadError(f"{where}: network.observation_space and network.action_space must be mappings")
    shape, low, high = obs.get("shape"), obs.get("low"), obs.get("high")
    if (
        not isinstance(shape, list)
        or len(shape) != 1
        or type(shape[0]) is not int
        or not 0 < shape[0] <= 65536
        or obs.get("dtype") != "float32"
    ):
        raise PolicyLoadError(
            f"{where}: network.observation_space must be a float32 vector box of 1..65536 "
            f"features, got shape {_short(shape)} dtype {_short(obs.get('dtype'))}"
        )
    for name, bound in (("low", low), ("high", high)):
        if (
            not isinstance(bound, list)
            or len(bound) != shape[0]
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in bound)
        ):
            raise PolicyLoadError(f"{where}: network.observation_space.{name} must be {shape[0]} numbers")
    nvec = acts.get("nvec")
    if not isinstance(nvec, list) or not 0 < len(nvec) <= 16 or not all(type(n) is int and 1 < n <= 4096 for n in nvec):
        raise PolicyLoadError(
            f"{where}: network.action_space.nvec must be a list of ints in 2..4096, got {_short(nvec)}"
        )
    net_arch = _net_arch(network.get("net_arch"), where)
    import torch
    from gymnasium import spaces
    from sb3_contrib import MaskablePPO

    kwargs: dict[str, Any] = {"activation_fn": getattr(torch.nn, act)}
    if net_arch is not None:
        kwargs["net_arch"] = net_arch
    model = MaskablePPO(
        "MlpPolicy", env=None, device="cpu", policy_kwargs=kwargs, n_steps=2, batch_size=2, _init_setup_model=False
    )
    model.observation_space = spaces.Box(
        np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32), dtype=np.float32
    )
    model.action_space = spaces.MultiDiscrete(np.asarray(nvec, dtype=np.int64))
    model.n_envs = 1
    model._setup_model()
    model.policy.set_training_mode(False)
    return model


def _load_weights(model: Any, wpath: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    size = wpath.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise PolicyLoadError(f"{wpath}: {size} bytes of weights, more than the {MAX_WEIGHTS_BYTES}-byte limit")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise PolicyLoadError(f"{wpath}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    own = model.policy.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise PolicyLoadError(
            f"{wpath}: weights do not fit the described network (missing {missing[:4]}, unexpected {extra[:4]})"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape) or tensor.dtype != own[name].dtype:
            raise PolicyLoadError(
                f"{wpath}: weight {name!r} is {tuple(tensor.shape)} {tensor.dtype}, the described "
                f"network needs {tuple(own[name].shape)} {own[name].dtype}"
            )
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise PolicyLoadError(f"{wpath}: weight {name!r} holds non-finite values")
    model.policy.load_state_dict(state, strict=True)


def read_metadata(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The artifact's metadata (a JSON object, size-bounded) and its path; the one place it is read. Raises
    PolicyLoadError for a missing, oversized or malformed file."""
    mpath = meta_path(path)
    if not mpath.is_file():
        raise PolicyLoadError(f"policy metadata not found: {mpath} (expected beside {Path(path).name})")
    if mpath.stat().st_size > MAX_META_BYTES:
        raise PolicyLoadError(f"{mpath}: {mpath.stat().st_size} bytes, more than the {MAX_META_BYTES}-byte limit")
    try:
        meta = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PolicyLoadError(f"{mpath}: metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise PolicyLoadError(f"{mpath}: metadata must be a JSON object, got {type(meta).__name__}")
    for key in ("observation", "obs_range", "env", "action_space", "profiles", "privileged"):
        value = meta.get(key)
        if value is not None and not isinstance(value, dict) and not (key == "privileged" and isinstance(value, list)):
            raise PolicyLoadError(f"{mpath}: field {key!r} must be a mapping, got {type(value).__name__}")
    return meta, mpath


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

    return {
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "torch": torch.__version__,
    }


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
    wire: dict[str, Any] | None = None  # executor.wire_config.WireConfig.to_dict() of the runtime's Profiles
    legacy_profile_ids: tuple[str | None, str | None] = (None, None)  # (edge, cloud) also accepted: legacy_profile_id

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
            wire=e.edge_profile.notes.get("wire"),
            legacy_profile_ids=(legacy_profile_id(e.edge_profile), legacy_profile_id(e.cloud_profile)),
        )


@dataclass
class LoadedPolicy:
    """A loaded artifact: the PPOPlanner, its metadata and the per-feature training range."""

    planner: PPOPlanner
    metadata: dict[str, Any]
    obs_low: np.ndarray
    obs_high: np.ndarray
    path: Path

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        return self.planner.predict(observation, state, episode_start, deterministic)


def hedge_mismatch(metadata: dict[str, Any], hedge: bool) -> str | None:
    """A warning text when a policy trained with(out) hedged execution (``env.hedge`` of its metadata; absent: off)
    runs under the other rule, else None. Not a refusal: the observation is the same, only the latencies differ."""
    trained = bool((metadata.get("env") or {}).get("hedge", False))
    if trained == bool(hedge):
        return None
    return (
        f"the policy was trained {'with' if trained else 'without'} hedged execution, it runs "
        f"{'with' if hedge else 'without'} it here (see --hedge)"
    )


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


def load_policy(
    path: str | Path, expect: PolicyExpectation | None = None, *, use_torch: bool = False, trust_pickle: bool = False
) -> LoadedPolicy:
    """Load and check a policy artifact named by ``path`` (any of its files, or its run folder's stem); raises
    PolicyLoadError for a missing file, corrupt weights (or ones that do not match their recorded hash or the
    described network), another format version, a pickled format-1 zip without ``trust_pickle``, a policy with
    privileged (simulation-only) fields, an observation-spec, model, Profile or action-space mismatch."""
    path = Path(path)
    wpath, zpath = weights_path(path), legacy_path(path)
    if not wpath.is_file() and not zpath.is_file() and not meta_path(path).is_file():
        raise PolicyLoadError(f"policy file not found: {path}")
    meta, mpath = read_metadata(path)
    version = meta.get("format_version")
    if version == LEGACY_PICKLE_VERSION:
        if not trust_pickle:
            raise PolicyLoadError(
                f"{mpath}: a format-1 policy (a pickled Stable-Baselines3 zip) can run arbitrary code when loaded; "
                "refused. If you trust its author, pass --trust-pickle, or convert it once with "
                f"`ecc policy migrate --trust-pickle {zpath}`"
            )
        model = _load_legacy(zpath, meta, mpath)
    elif version == FORMAT_VERSION:
        if not wpath.is_file():
            raise PolicyLoadError(f"policy weights not found: {wpath} (expected beside {mpath.name})")
        sha = meta.get("weights_sha256")
        if sha is not None and sha != _sha256(wpath):
            raise PolicyLoadError(f"{wpath}: content does not match the sha256 recorded in {mpath.name} (corrupt file)")
    else:
        raise PolicyLoadError(
            f"{mpath}: format version {_short(version)}, this package reads {FORMAT_VERSION} "
            f"(and {LEGACY_PICKLE_VERSION} with --trust-pickle)"
        )
    privileged = meta.get("privileged")
    if privileged:
        fields = privileged.get("fields") if isinstance(privileged, dict) else privileged
        raise PolicyLoadError(
            f"{mpath}: the policy observes privileged simulation-only fields {fields!r} "
            "(ecc_env.privileged) that no runtime can supply; it is a yardstick, not deployable"
        )
    if expect is not None:
        _check(meta, expect, mpath)
    if version == FORMAT_VERSION:
        model = build_network(meta.get("network"), str(mpath))
        _load_weights(model, wpath)
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
    try:
        low = np.asarray(rng.get("low", np.zeros(size)), dtype=np.float64)
        high = np.asarray(rng.get("high", np.ones(size)), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PolicyLoadError(f"{mpath}: field 'obs_range' must hold two lists of numbers ({e})") from e
    if low.shape != (size,) or high.shape != (size,):
        raise PolicyLoadError(f"{mpath}: obs_range has the wrong length (expected {size})")
    return LoadedPolicy(planner, meta, low, high, path)


def load_model(path: str | Path) -> Any:
    """The bare MaskablePPO of a format-2 artifact (network rebuilt, weights checked), without the runtime checks of
    :func:`load_policy` (privileged yardstick policies included: for studies, never for deployment)."""
    meta, mpath = read_metadata(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise PolicyLoadError(
            f"{mpath}: format version {_short(meta.get('format_version'))}, expected "
            f"{FORMAT_VERSION} (see `ecc policy migrate`)"
        )
    wpath = weights_path(path)
    if not wpath.is_file():
        raise PolicyLoadError(f"policy weights not found: {wpath}")
    model = build_network(meta.get("network"), str(mpath))
    _load_weights(model, wpath)
    return model


def _load_legacy(zpath: Path, meta: dict[str, Any], mpath: Path) -> Any:
    """A format-1 SB3 zip, loaded with cloudpickle: only ever called with the user's explicit trust."""
    if not zpath.is_file():
        raise PolicyLoadError(f"policy file not found: {zpath}")
    if not zipfile.is_zipfile(zpath):
        raise PolicyLoadError(f"{zpath}: not a zip file (corrupt or truncated)")
    sha = meta.get("zip_sha256")
    if sha is not None and sha != _sha256(zpath):
        raise PolicyLoadError(f"{zpath}: content does not match the sha256 recorded in {mpath.name} (corrupt file)")
    log.warning(
        "loading %s with pickle (--trust-pickle): it can run arbitrary code; migrate it with `ecc policy migrate`",
        zpath,
    )
    try:
        from sb3_contrib import MaskablePPO

        return MaskablePPO.load(str(zpath), device="cpu")
    except Exception as e:  # noqa: BLE001 - any failure inside SB3's loader means an unusable file
        raise PolicyLoadError(f"{zpath}: cannot be loaded by MaskablePPO ({type(e).__name__}: {e})") from e


def migrate_policy(path: str | Path, out: str | Path | None = None) -> Path:
    """Rewrite a trusted format-1 artifact (pickled SB3 zip + JSON) as format 2 (safetensors + JSON) beside it, or
    at ``out``; returns the new weights path. Loading the zip runs its pickles: call this only on a file you trust.
    Raises PolicyLoadError for an artifact that is not format 1 or does not load."""
    path = Path(path)
    meta, mpath = read_metadata(path)
    if meta.get("format_version") != LEGACY_PICKLE_VERSION:
        raise PolicyLoadError(
            f"{mpath}: format version {_short(meta.get('format_version'))} is not the pickled "
            f"format {LEGACY_PICKLE_VERSION}; nothing to migrate"
        )
    model = _load_legacy(legacy_path(path), meta, mpath)
    target = Path(out) if out is not None else weights_path(path)
    try:
        return save_policy(model, target.with_suffix(WEIGHTS_SUFFIX), meta)
    except ValueError as e:
        raise PolicyLoadError(f"{legacy_path(path)}: cannot be described in format {FORMAT_VERSION} ({e})") from e


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
        raise PolicyLoadError(
            f"{mpath}: model mismatch: policy is for {meta.get('model_id')!r}, runtime runs {expect.model_id!r}"
        )
    if expect.wire is not None:  # before the profile ids: a wire mismatch changes them, this names it
        from executor.wire_config import WireConfig, wire_mismatch

        msg = wire_mismatch(meta.get("wire"), WireConfig.from_dict(expect.wire))
        if msg:
            raise PolicyLoadError(f"{mpath}: wire configuration mismatch: {msg}")
    pairs = zip(("edge", "cloud"), (expect.edge_profile_id, expect.cloud_profile_id), expect.legacy_profile_ids)
    msg = profile_id_mismatch(meta.get("profiles"), pairs)
    if msg:
        raise PolicyLoadError(f"{mpath}: {msg}")
    if expect.num_cuts is not None:
        nvec = meta.get("action_space", {}).get("nvec")
        if nvec != [expect.num_cuts, 2]:
            raise PolicyLoadError(
                f"{mpath}: action space mismatch: policy has {nvec}, runtime needs [{expect.num_cuts}, 2]"
            )
