"""`Profile`: per-block latency on one device plus the wire cost of every cut, measured or predicted.

The same type comes from the profiler (measured on this machine's CPU or a GPU) and from the roofline cost model
(predicted for a catalogue device). A pair of Profiles of one model (edge device, cloud device) gives the cost of
every cut; see ``executor.costs``.

Cut convention (shared by the executor, the env and the planners): ``cuts[k]`` for k in 0..N (N = number of blocks)
is the forward cut "edge runs blocks [0, k), cloud runs [k, N)"; k = 0 uploads the raw observation (cloud-only),
k = N is edge-only. Extra cuts after index N (e.g. pi0 "VLM on the cloud, action expert on the edge") have
``placement == "cloud_then_edge"``: the cloud runs blocks [0, k) and the edge runs [k, N).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

PROFILE_SCHEMA_VERSION = 1

Placement = Literal["edge_then_cloud", "cloud_then_edge"]


MAX_BLOCK_MS = 3.6e6  # an hour per block: beyond, a Profile is corrupt or hostile, not a measurement


class ProfileError(ValueError):
    """A Profile file or object that cannot be used (wrong schema, wrong model, inconsistent fields)."""


@dataclass(frozen=True)
class CutSpec:
    """Wire cost of one cut.

    up_bytes: bytes sent edge -> cloud once per inference (the raw observation at k = 0, the payload otherwise).
    down_bytes: bytes sent cloud -> edge once per inference (the actions; or the payload for cloud_then_edge).
    round_trips: extra round trips per inference (autoregressive decode across the cut: one per generated token
    after the first), each moving ``round_trip_up_bytes`` up and ``round_trip_down_bytes`` down.
    """

    k: int
    placement: Placement = "edge_then_cloud"
    up_bytes: int = 0
    down_bytes: int = 0
    round_trips: int = 0
    round_trip_up_bytes: int = 0
    round_trip_down_bytes: int = 0
    name: str = ""

    @property
    def uses_network(self) -> bool:
        """False only for the edge-only cut."""
        return self.up_bytes > 0 or self.down_bytes > 0 or self.round_trips > 0


def hedgeable(edge_first: bool, round_trips: int) -> bool:
    """Whether hedged execution applies to a network cut: the edge computes first (it holds the payload it sent and
    can run the cloud's blocks on it) and the exchange is one request and one reply (with extra round trips the
    edge's half keeps state that the reply must meet). One rule for the env's pricing (``ecc_env.latency``) and the
    edge client (``executor.hedge``)."""
    return bool(edge_first) and int(round_trips) == 0


@dataclass(frozen=True)
class Profile:
    """Per-block latency of one model preset on one device, and the bytes that cross each cut."""

    model_id: str
    preset: str
    device: str
    dtype: str
    source: Literal["measured", "roofline"]
    block_names: tuple[str, ...]
    block_ms: tuple[float, ...]
    cuts: tuple[CutSpec, ...]
    block_param_bytes: tuple[int, ...] = ()
    peak_memory_bytes: int = 0
    device_memory_bytes: int = 0
    wire_dtype: str = "float32"
    notes: dict[str, Any] = field(default_factory=dict)
    codec_ms: tuple[float, ...] = ()  # per cut: this device's payload encode/decode time (executor.wire_config)
    # Calibrated overheads of the real executor on this device (executor.calibration; 0 / () for catalogue and
    # roofline Profiles): per cut, the fixed time per inference outside the blocks and the codec (framework glue,
    # session set-up, message hand-offs, event loop); and the serialisation time per MB (1e6 bytes) sent or received.
    overhead_ms: tuple[float, ...] = ()
    overhead_ms_per_mb: float = 0.0
    # Also calibrated, per cut (() otherwise): the factor on this device's block time at that cut when the executor
    # calls it (one inference at a time, after network waits, the other half's model in between) over the profiler's
    # back-to-back runs; and the bytes every message carries on the link beyond its payload (wire header, message
    # envelope, websocket framing), edge -> cloud and cloud -> edge.
    block_ms_scale: tuple[float, ...] = ()
    overhead_up_bytes: tuple[float, ...] = ()
    overhead_down_bytes: tuple[float, ...] = ()
    schema_version: int = PROFILE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        n = len(self.block_names)
        if n == 0:
            raise ProfileError(f"profile {self.model_id}/{self.preset} has no blocks")
        if len(self.block_ms) != n:
            raise ProfileError(f"block_ms has {len(self.block_ms)} entries, expected {n} (one per block)")
        if any((not math.isfinite(t)) or t < 0 or t > MAX_BLOCK_MS for t in self.block_ms):
            raise ProfileError(
                f"block_ms must be finite, >= 0 and at most {MAX_BLOCK_MS:g} ms (an hour per block), "
                f"got {self.block_ms}"
            )
        if self.block_param_bytes and len(self.block_param_bytes) != n:
            raise ProfileError(f"block_param_bytes has {len(self.block_param_bytes)} entries, expected {n}")
        if len(self.cuts) < n + 1:
            raise ProfileError(f"profile needs at least {n + 1} cuts (0..{n}), got {len(self.cuts)}")
        for i, cut in enumerate(self.cuts[: n + 1]):
            if cut.k != i or cut.placement != "edge_then_cloud":
                raise ProfileError(f"cuts[{i}] must be the forward cut k={i}, got k={cut.k} {cut.placement}")
        if self.codec_ms and (
            len(self.codec_ms) != len(self.cuts) or any((not math.isfinite(t)) or t < 0 for t in self.codec_ms)
        ):
            raise ProfileError(f"codec_ms needs one finite value >= 0 per cut ({len(self.cuts)}), got {self.codec_ms}")
        if self.overhead_ms and (
            len(self.overhead_ms) != len(self.cuts)
            or any((not math.isfinite(t)) or t < 0 or t > MAX_BLOCK_MS for t in self.overhead_ms)
        ):
            raise ProfileError(
                f"overhead_ms needs one finite value in [0, {MAX_BLOCK_MS:g}] per cut ({len(self.cuts)}), "
                f"got {self.overhead_ms}"
            )
        if not (math.isfinite(self.overhead_ms_per_mb) and 0 <= self.overhead_ms_per_mb <= MAX_BLOCK_MS):
            raise ProfileError(
                f"overhead_ms_per_mb must be finite and in [0, {MAX_BLOCK_MS:g}], got {self.overhead_ms_per_mb!r}"
            )
        if self.block_ms_scale and (
            len(self.block_ms_scale) != len(self.cuts)
            or any((not math.isfinite(x)) or not 0.1 <= x <= 100.0 for x in self.block_ms_scale)
        ):
            raise ProfileError(
                f"block_ms_scale needs one finite value in [0.1, 100] per cut ({len(self.cuts)}), "
                f"got {self.block_ms_scale}"
            )
        for key in ("overhead_up_bytes", "overhead_down_bytes"):
            extra = getattr(self, key)
            if extra and (len(extra) != len(self.cuts) or any((not math.isfinite(b)) or b < 0 for b in extra)):
                raise ProfileError(f"{key} needs one finite value >= 0 per cut ({len(self.cuts)}), got {extra}")
        for cut in self.cuts:
            if not 0 <= cut.k <= n:
                raise ProfileError(f"cut k={cut.k} outside 0..{n}")
            if min(cut.up_bytes, cut.down_bytes, cut.round_trips) < 0:
                raise ProfileError(f"cut {cut.k} has negative bytes or round trips: {cut}")

    @property
    def num_blocks(self) -> int:
        return len(self.block_names)

    @property
    def num_cuts(self) -> int:
        return len(self.cuts)

    @property
    def total_ms(self) -> float:
        return float(sum(self.block_ms))

    def edge_blocks(self, cut_index: int) -> range:
        """Indices of the blocks the edge runs at this cut."""
        cut = self.cuts[cut_index]
        n = self.num_blocks
        return range(0, cut.k) if cut.placement == "edge_then_cloud" else range(cut.k, n)

    def cloud_blocks(self, cut_index: int) -> range:
        """Indices of the blocks the cloud runs at this cut."""
        cut = self.cuts[cut_index]
        n = self.num_blocks
        return range(cut.k, n) if cut.placement == "edge_then_cloud" else range(0, cut.k)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cuts"] = [asdict(c) for c in self.cuts]
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], *, expect_model: str | None = None, expect_preset: str | None = None
    ) -> Profile:
        """Build from a dict; refuses another schema version or (if given) another model/preset."""
        if not isinstance(d, dict):
            raise ProfileError(f"a profile must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version != PROFILE_SCHEMA_VERSION:
            raise ProfileError(
                f"profile schema version {version!r} is not supported (this package reads {PROFILE_SCHEMA_VERSION})"
            )
        if expect_model is not None and d.get("model_id") != expect_model:
            raise ProfileError(f"profile is for model {d.get('model_id')!r}, expected {expect_model!r}")
        if expect_preset is not None and d.get("preset") != expect_preset:
            raise ProfileError(f"profile is for preset {d.get('preset')!r}, expected {expect_preset!r}")
        try:
            fields = dict(d)
            fields["cuts"] = tuple(CutSpec(**c) for c in d["cuts"])
            for key in (
                "block_names",
                "block_ms",
                "block_param_bytes",
                "codec_ms",
                "overhead_ms",
                "block_ms_scale",
                "overhead_up_bytes",
                "overhead_down_bytes",
            ):
                if key in fields:
                    fields[key] = tuple(fields[key])
            return cls(**fields)
        except (KeyError, TypeError) as e:
            raise ProfileError(f"profile is missing or has unexpected fields: {e}") from e

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, expect_model: str | None = None, expect_preset: str | None = None) -> Profile:
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ProfileError(f"{path}: not valid JSON ({e})") from e
        try:
            return cls.from_dict(d, expect_model=expect_model, expect_preset=expect_preset)
        except ProfileError as e:
            raise ProfileError(f"{path}: {e}") from e
