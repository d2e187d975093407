"""The wire configuration: how camera frames and activations travel, defined once for every part of the package.

``WireConfig(image, activation_dtype)``: ``image`` is an ``executor.camera.ImageEncoding`` spec (``raw``, ``png``,
``jpeg:Q``, ``resize:PX[+jpeg:Q]``), ``activation_dtype`` the dtype of floating activations on the wire
(``float32``, ``float16``, ``bfloat16``, ``int8``; aliases fp32/fp16/bf16). ``DEFAULT_WIRE`` is what a user would
deploy (``jpeg:90`` frames, fp16 activations); ``EXACT_WIRE`` (raw frames, fp32 activations) reproduces the unsplit
forward bit for bit. The text form is ``"IMAGE,DTYPE"`` (e.g. ``"jpeg:90,fp16"``, ``"raw,fp32"``), or ``default`` /
``exact``.

The same config prices the cuts (``wire_cut_specs``: the bytes of the messages the client and the server really
send, framing included), charges the encode/decode time (``codec_ms``: a per-device model for catalogue devices,
``measured_codec_ms`` on this CPU), and drives the client (``executor.frame_transport`` encodes the frames, the wire
codec the activations). Users: the Profile and cut table, the env, training, ``ecc eval``, ``ecc cutmap``, the
client and the server.

Codec-time model for catalogue devices (``CODEC_SPEED``): JPEG/PNG encode and decode rates in megapixels per second
on the device's CPU (Pillow / libjpeg-turbo, one core), and a cast of the activations at the device's memory
bandwidth. The datacenter/desktop host rates are those measured on this package's reference CPU (AMD EPYC, 3 frames
of 224 px: JPEG q90 encode ~160 Mpx/s, decode ~95 Mpx/s; PNG level 1 ~11 / ~27 Mpx/s); the Jetson rates scale them by
an assumed single-core Arm/x86 ratio (0.4 for Orin's Cortex-A78AE, 0.65 for Thor's Neoverse V3AE). No hardware JPEG
engine is assumed. See docs/payloads.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgpack

from executor.camera import IMAGE_TENSOR, ImageEncoding, image_crossings, image_shape
from executor.profile import CutSpec, Profile

if TYPE_CHECKING:  # pragma: no cover
    from executor.models.base import SplitModel, TensorSpec

ACTIVATION_DTYPES: dict[str, str] = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "int8": "int8",
}
#: activation dtype -> ``executor.wire`` codec applied to the payload's activations
WIRE_CODEC: dict[str, str] = {"float32": "none", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}
_WIRE_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
_CODEC_ITEMSIZE = {"fp16": 2, "bf16": 2, "int8": 1}
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_NATIVE_ITEMSIZE = {
    "uint8": 1,
    "int8": 1,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "bool": 1,
}
FRAMES_META_KEY = "frames"  # payload meta entry that describes encoded camera frames


@dataclass(frozen=True)
class WireConfig:
    """How payloads travel: camera frames in ``image`` encoding, floating activations in ``activation_dtype``."""

    image: str = "jpeg:90"
    activation_dtype: str = "float16"

    def __post_init__(self) -> None:
        if not isinstance(self.image, str | ImageEncoding):
            raise TypeError(f"image must be an encoding spec string, got {type(self.image).__name__}")
        object.__setattr__(self, "image", ImageEncoding.parse(self.image).label)
        dt = ACTIVATION_DTYPES.get(str(self.activation_dtype).lower())
        if dt is None:
            raise ValueError(
                f"unknown activation dtype {self.activation_dtype!r}; valid: {', '.join(ACTIVATION_DTYPES)}"
            )
        object.__setattr__(self, "activation_dtype", dt)

    @classmethod
    def parse(cls, spec: str | WireConfig | Mapping[str, Any] | None) -> WireConfig:
        """``"IMAGE,DTYPE"`` (e.g. ``jpeg:90,fp16``), ``default``, ``exact``, a dict, a WireConfig or None (default)."""
        if spec is None:
            return DEFAULT_WIRE
        if isinstance(spec, WireConfig):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if not isinstance(spec, str):
            raise TypeError(f"wire configuration must be a string like 'jpeg:90,fp16', got {type(spec).__name__}")
        text = spec.strip().lower()
        if text in ("default", ""):
            return DEFAULT_WIRE
        if text == "exact":
            return EXACT_WIRE
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise ValueError(
                f"bad wire configuration {spec!r}; expected IMAGE,DTYPE (e.g. jpeg:90,fp16 or raw,fp32), "
                "'default' or 'exact'"
            )
        return cls(parts[0], parts[1])

    @property
    def label(self) -> str:
        """Canonical text form (``parse(label) == self``)."""
        return f"{self.image},{_SHORT[self.activation_dtype]}"

    @property
    def encoding(self) -> ImageEncoding:
        return ImageEncoding.parse(self.image)

    @property
    def frames_encoded(self) -> bool:
        """Do the camera frames travel encoded (a codec other than raw, or resized)? Else as the raw array."""
        enc = self.encoding
        return enc.codec != "raw" or enc.resize_px is not None

    @property
    def compression(self) -> str:
        """The ``executor.wire`` codec of the activations."""
        return WIRE_CODEC[self.activation_dtype]

    @property
    def exact(self) -> bool:
        """Raw frames and fp32 activations: the split reproduces the unsplit forward exactly."""
        return self == EXACT_WIRE

    def to_dict(self) -> dict[str, str]:
        return {"image": self.image, "activation_dtype": self.activation_dtype, "label": self.label}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WireConfig:
        if not isinstance(d, Mapping) or "image" not in d or "activation_dtype" not in d:
            raise ValueError(f"a wire configuration needs 'image' and 'activation_dtype', got {d!r}")
        return cls(str(d["image"]), str(d["activation_dtype"]))


DEFAULT_WIRE = WireConfig()
EXACT_WIRE = WireConfig("raw", "float32")


def wire_mismatch(recorded: Mapping[str, Any] | None, current: WireConfig) -> str | None:
    """A message when a policy's recorded wire configuration differs from the one it runs under (None if equal or
    not recorded)."""
    if not recorded:
        return None
    try:
        theirs = WireConfig.from_dict(recorded)
    except (ValueError, TypeError) as e:
        return f"the policy records an unreadable wire configuration {recorded!r}: {e}"
    if theirs != current:
        return (
            f"the policy was trained with wire configuration {theirs.label} and runs under {current.label}: "
            "its cut decisions were learned for other payload sizes"
        )
    return None


# ------------------------------------------------------------------------------------------- bytes on the wire


def _pad16(n: int) -> int:
    return n + (-n) % 16


def _entry(
    name: str, dtype: str, shape: Sequence[int], codec: str, nbytes: int, offset: int, scale_nbytes: int = 0
) -> tuple[dict[str, Any], int]:
    e: dict[str, Any] = {
        "name": name,
        "dtype": dtype,
        "shape": list(shape),
        "codec": codec,
        "offset": offset,
        "nbytes": nbytes,
    }
    offset = _pad16(offset + nbytes)
    if scale_nbytes:
        e["scale_offset"], e["scale_nbytes"] = offset, scale_nbytes
        offset = _pad16(offset + scale_nbytes)
    return e, offset


def message_bytes(
    specs: Sequence[TensorSpec],
    wire: WireConfig,
    envelope: Mapping[str, Any],
    payload_meta: Mapping[str, Any],
    frame_bytes: Sequence[int] = (),
    kind: str = "activations",
    step: int = 0,
) -> int:
    """Bytes of one ``executor.wire`` message carrying ``specs`` under ``wire`` (prefix, msgpack header, alignment,
    data): what ``executor.protocol.encode_payload`` produces for such a payload, up to the few bytes by which the
    envelope's numbers differ. ``frame_bytes``: sizes of the encoded camera frames when the images travel encoded."""
    entries: list[dict[str, Any]] = []
    offset = 0
    activations = []
    for s in specs:
        if s.name == IMAGE_TENSOR and frame_bytes:
            for i, nb in enumerate(frame_bytes):
                e, offset = _entry(f"{IMAGE_TENSOR}@{i}", "uint8", (nb,), "none", nb, offset)
                entries.append(e)
            continue
        n = math.prod(s.shape) if s.shape else 1
        codec = wire.compression if s.activation else "none"
        if s.activation:
            activations.append(s.name)
        if codec != "none" and (
            s.dtype not in _FLOATS or (codec in ("fp16", "bf16") and _NATIVE_ITEMSIZE[s.dtype] <= 2)
        ):
            codec = "none"  # as executor.wire: integers never compressed, a 16-bit float not re-encoded
        if codec == "none":
            e, offset = _entry(s.name, s.dtype, s.shape, "none", n * _NATIVE_ITEMSIZE[s.dtype], offset)
        else:
            e, offset = _entry(
                s.name, s.dtype, s.shape, codec, n * _CODEC_ITEMSIZE[codec], offset, 4 if codec == "int8" else 0
            )
        entries.append(e)
    meta = dict(envelope)
    meta["payload"] = {"kind": kind, "cut": 0, "step": step, "activations": activations, "meta": dict(payload_meta)}
    header = msgpack.packb({"meta": meta, "tensors": entries, "data_bytes": offset}, use_bin_type=True)
    return _pad16(10 + len(header)) + offset


# codec names: 4 characters; budget_ms: the time left to the request's deadline, sent with every deadline (a float)
_REQUEST = {"ecc": "split", "request_id": 1, "cut": 0, "budget_ms": 0.5, "reply_compression": "none"}
_REPLY = {
    "ecc": "reply",
    "request_id": 1,
    "final": True,
    "timing": {
        "queue_ms": 0.01,
        "compute_ms": 1.5,
        "residence_ms": 1.6,
        "queue_length": 0,
        "recv_time_s": 1.7e9 + 0.1,
        "send_time_s": 1.7e9 + 0.2,
    },
}


def frames_meta(wire: WireConfig, shape: Sequence[int]) -> dict[str, Any]:
    """The payload meta entry that announces encoded camera frames (shape: cameras, H, W, 3)."""
    return {FRAMES_META_KEY: {"encoding": wire.image, "shape": [int(s) for s in shape]}}


def wire_cut_specs(model: SplitModel, wire: WireConfig | str | None = None) -> list[CutSpec]:
    """Bytes of every cut of ``model`` under ``wire``: the encoded frames (measured on ``camera.sample_frames``)
    where the upload carries the camera frames, activations in the wire dtype, and each message's framing.

    Matches what ``EdgeClient`` and ``CloudServer`` send (``tests/executor/test_wire_config.py``) when the camera
    frames are the sample frames; other frames encode to other sizes (JPEG size depends on the picture).
    """
    wire = WireConfig.parse(wire)
    base = model.cut_specs(wire.activation_dtype)
    carries = image_crossings(model)
    frame_sizes: tuple[int, ...] = ()
    if wire.frames_encoded:
        shape = image_shape(model)
        frame_sizes = _frame_sizes(wire.encoding, shape.cameras, shape.image_px)
        fmeta = frames_meta(wire, (shape.cameras, shape.image_px, shape.image_px, 3))
    else:
        fmeta = {}
    n = model.num_blocks
    out = []
    for i, cut in enumerate(base):
        placement, k = model.placement(i)
        if placement == "edge_then_cloud" and k == n:
            out.append(cut)
            continue
        if placement == "edge_then_cloud":
            up_specs = model._payload_specs(k)
            down_specs = model._action_specs()
            _, rt_up, rt_down = model._round_trip_specs(k)
        else:
            up_specs, down_specs = model._reverse_specs(k)
            rt_up, rt_down = [], []
        frames = frame_sizes if carries[i] else ()
        up_kind = "observation" if placement == "cloud_then_edge" or k == 0 else "activations"
        down_kind = "kv_cache" if placement == "cloud_then_edge" else "actions"
        up = message_bytes(up_specs, wire, _REQUEST, fmeta if frames else {}, frames, up_kind)
        down = message_bytes(
            down_specs, wire, _REPLY, {}, kind=down_kind, step=cut.round_trips + 1 if cut.round_trips else 0
        )
        rt_up_b = rt_down_b = 0
        if cut.round_trips:
            rt_up_b = message_bytes(rt_up, wire, {**_REQUEST, "ecc": "continue"}, {}, kind="decode", step=1)
            rt_down_b = message_bytes(rt_down, wire, {**_REPLY, "final": False}, {}, kind="token", step=1)
        out.append(
            replace(cut, up_bytes=up, down_bytes=down, round_trip_up_bytes=rt_up_b, round_trip_down_bytes=rt_down_b)
        )
    return out


@functools.lru_cache(maxsize=64)
def _frame_sizes(enc: ImageEncoding, cameras: int, image_px: int) -> tuple[int, ...]:
    from executor.camera import sample_frames

    if enc.codec == "raw":
        px = enc.resize_px or image_px
        return (px * px * 3,) * cameras
    return tuple(len(f) for f in enc.encode(sample_frames(cameras, image_px, 0)).frames)


# ----------------------------------------------------------------------------------------- encode/decode time


@dataclass(frozen=True)
class CodecSpeed:
    """Codec rates of one device's CPU (megapixels/s) and its memory bandwidth for activation casts (GB/s)."""

    jpeg_encode_mpx_s: float
    jpeg_decode_mpx_s: float
    png_encode_mpx_s: float
    png_decode_mpx_s: float
    cast_gb_s: float


_HOST = (160.0, 95.0, 11.0, 27.0)  # measured on the reference AMD EPYC core (see the module docstring)
_ARM_RATIO = {"Jetson AGX Orin 64GB": 0.4, "Jetson Orin NX 16GB": 0.4, "Jetson AGX Thor": 0.65}


def codec_speed(device: str) -> CodecSpeed:
    """The codec-time model of a catalogue device (see the module docstring)."""
    from executor.catalog import hardware

    hw = hardware(device)
    r = _ARM_RATIO.get(hw.name, 0.4 if hw.kind == "edge" else 1.0)
    je, jd, pe, pd = (x * r for x in _HOST)
    return CodecSpeed(je, jd, pe, pd, hw.mem_bandwidth_gbps)


def _frame_ms(enc: ImageEncoding, pixels: float, speed: CodecSpeed, side: str) -> float:
    if enc.codec == "raw":
        return 0.0
    rate = {
        ("jpeg", "edge"): speed.jpeg_encode_mpx_s,
        ("jpeg", "cloud"): speed.jpeg_decode_mpx_s,
        ("png", "edge"): speed.png_encode_mpx_s,
        ("png", "cloud"): speed.png_decode_mpx_s,
    }[(enc.codec, side)]
    return pixels / 1e6 / rate * 1e3


def _cast_ms(specs: Sequence[TensorSpec], wire: WireConfig, gb_s: float) -> float:
    if wire.compression == "none":
        return 0.0
    elems = sum(math.prod(s.shape) if s.shape else 1 for s in specs if s.activation)
    return elems * (4 + _WIRE_ITEMSIZE[wire.activation_dtype]) / (gb_s * 1e9) * 1e3


def codec_ms(model: SplitModel, wire: WireConfig | str | None, device: str, role: str) -> tuple[float, ...]:
    """Per cut index: the ms ``device`` spends encoding and decoding payloads in ``role`` ("edge" or "cloud").

    The sender encodes (the edge the frames and its activations, the cloud a reverse cut's activations), the
    receiver decodes; frames cost pixels / rate of ``codec_speed(device)``, activations a cast at its memory
    bandwidth. Edge-only is free; raw frames and fp32 activations cost nothing.
    """
    if role not in ("edge", "cloud"):
        raise ValueError(f"role must be 'edge' or 'cloud', got {role!r}")
    wire = WireConfig.parse(wire)
    speed = codec_speed(device)
    carries = image_crossings(model)
    shape = image_shape(model)
    pixels = shape.cameras * shape.image_px * shape.image_px
    n = model.num_blocks
    out = []
    for i in range(model.num_cuts):
        placement, k = model.placement(i)
        if placement == "edge_then_cloud" and k == n:
            out.append(0.0)
            continue
        frames = _frame_ms(wire.encoding, pixels, speed, role) if carries[i] else 0.0
        if placement == "edge_then_cloud":
            acts = list(model._payload_specs(k))
            rt, rt_up, rt_down = model._round_trip_specs(k)
            acts += list(rt_up) * rt + list(rt_down) * rt
        else:
            up, down = model._reverse_specs(k)
            acts = list(up) + list(down)
        out.append(frames + _cast_ms(acts, wire, speed.cast_gb_s))
    return tuple(out)


def measured_codec_ms(model: SplitModel, wire: WireConfig | str | None, *, repeats: int = 5) -> tuple[float, ...]:
    """Per cut index: encode + decode time of the frames (on ``camera.sample_frames``) and of the activations
    (``executor.wire`` codec on zero tensors of the cut's shapes), measured on this CPU, in ms. Edge-only: 0.
    The emulated pair charges half to each side (``priced_profiles``)."""
    import numpy as np

    from executor import wire as wire_fmt
    from executor.camera import measure_encoding, sample_frames

    wire = WireConfig.parse(wire)
    carries = image_crossings(model)
    shape = image_shape(model)
    frame_ms = 0.0
    if wire.frames_encoded:
        st = measure_encoding(wire.encoding, sample_frames(shape.cameras, shape.image_px), repeats=repeats)
        frame_ms = st.encode_ms + st.decode_ms
    n = model.num_blocks
    out = []
    for i in range(model.num_cuts):
        placement, k = model.placement(i)
        if placement == "edge_then_cloud" and k == n:
            out.append(0.0)
            continue
        specs = model._payload_specs(k) if placement == "edge_then_cloud" else model._reverse_specs(k)[0]
        acts = {s.name: np.zeros(s.shape, np.float32) for s in specs if s.activation}
        act_ms = 0.0
        if acts and wire.compression != "none":
            times = []
            for _ in range(repeats):
                t0 = _perf()
                wire_fmt.decode(wire_fmt.encode(acts, compression=wire.compression))
                times.append((_perf() - t0) * 1e3)
            act_ms = float(np.median(times))
        out.append((frame_ms if carries[i] else 0.0) + act_ms)
    return tuple(out)


def _perf() -> float:
    import time

    return time.perf_counter()


# ------------------------------------------------------------------------------------------------- Profiles


def _check_describes(profiles: Sequence[Profile], model: SplitModel) -> None:
    for p in profiles:
        if (p.model_id, p.preset, p.block_names) != (model.family, model.preset, model.block_names):
            raise ValueError(f"profile {p.model_id}/{p.preset} does not describe {model.family}/{model.preset}")


def _priced(p: Profile, cuts: tuple[CutSpec, ...], wire: WireConfig, ms: tuple[float, ...], how: str) -> Profile:
    notes = {"wire": wire.to_dict(), "image_encoding": wire.image, "codec_time": how}
    return replace(p, cuts=cuts, wire_dtype=wire.activation_dtype, codec_ms=ms, notes={**p.notes, **notes})


_CATALOGUE_CODEC = "catalogue codec model (executor.wire_config.codec_speed)"
_MEASURED_CODEC = "measured on this CPU (half encode side, half decode side)"


def priced_profiles(
    edge: Profile, cloud: Profile, model: SplitModel, wire: WireConfig | str | None, *, measured_codec: bool = False
) -> tuple[Profile, Profile]:
    """The (edge, cloud) Profile pair of ``model`` with its cuts priced under ``wire`` (``wire_cut_specs``) and the
    codec time charged per cut: the catalogue model for roofline Profiles of catalogue devices, this CPU's
    measurement otherwise (or with ``measured_codec``; half to each side). Notes record the wire configuration."""
    wire = WireConfig.parse(wire)
    _check_describes((edge, cloud), model)
    cuts = tuple(wire_cut_specs(model, wire))
    hw_e, hw_c = edge.notes.get("hardware"), cloud.notes.get("hardware")
    if not measured_codec and edge.source == "roofline" and cloud.source == "roofline" and hw_e and hw_c:
        e_ms, c_ms = codec_ms(model, wire, hw_e, "edge"), codec_ms(model, wire, hw_c, "cloud")
        how = _CATALOGUE_CODEC
    else:
        both = measured_codec_ms(model, wire)
        e_ms = c_ms = tuple(t / 2 for t in both)
        how = _MEASURED_CODEC
    return _priced(edge, cuts, wire, e_ms, how), _priced(cloud, cuts, wire, c_ms, how)


def priced_profile(profile: Profile, model: SplitModel, wire: WireConfig | str | None) -> Profile:
    """One Profile (``ecc profile``'s output) priced under ``wire``: the cuts' bytes of ``wire_cut_specs`` and this
    device's codec time, as ``priced_profiles`` prices a pair: a roofline Profile of a catalogue device by the
    catalogue model in the role of its kind (an ``edge`` device encodes, any other decodes), a measured one by half of
    this CPU's encode + decode time. A pair built from such files is re-priced under its run's wire configuration."""
    wire = WireConfig.parse(wire)
    _check_describes((profile,), model)
    cuts = tuple(wire_cut_specs(model, wire))
    hw = profile.notes.get("hardware")
    if profile.source == "roofline" and hw:
        from executor.catalog import hardware

        role = "edge" if hardware(str(hw)).kind == "edge" else "cloud"
        return _priced(profile, cuts, wire, codec_ms(model, wire, str(hw), role), f"{_CATALOGUE_CODEC}, {role} side")
    half = tuple(t / 2 for t in measured_codec_ms(model, wire))
    return _priced(profile, cuts, wire, half, _MEASURED_CODEC)


def roofline_pair(
    family: str,
    preset: str,
    edge: str,
    cloud: str,
    wire: WireConfig | str | None = None,
    *,
    check_memory: bool = True,
    **kw: Any,
) -> tuple[Profile, Profile]:
    """Roofline (edge, cloud) Profiles of a catalogue device pair priced under ``wire`` (default DEFAULT_WIRE)."""
    from executor.models import build_model
    from executor.roofline import roofline_profile_for

    model = build_model(family, preset, device="meta")
    e = roofline_profile_for(family, preset, edge, check_memory=check_memory, **kw)
    c = roofline_profile_for(family, preset, cloud, check_memory=check_memory, **kw)
    return priced_profiles(e, c, model, wire)


def profile_wire(profile: Profile) -> WireConfig | None:
    """The wire configuration a Profile was priced under (None: not recorded, i.e. priced before this module)."""
    w = profile.notes.get("wire")
    return WireConfig.from_dict(w) if isinstance(w, Mapping) else None


def priced_wire(profile: Profile) -> WireConfig:
    """The wire configuration payloads must travel in to cost what ``profile`` charges: the one it was priced under,
    or ``EXACT_WIRE`` for a Profile that records none (priced by the model's own ``cut_specs``: raw frames, its wire
    dtype, fp32 by default). The rule by which a transport inside a priced setting (the env's executor backend, the
    closed loop through the runtime) picks its wire configuration, so the simulator and the executor never charge
    different payloads."""
    return profile_wire(profile) or EXACT_WIRE


__all__ = [
    "ACTIVATION_DTYPES",
    "DEFAULT_WIRE",
    "EXACT_WIRE",
    "CodecSpeed",
    "WireConfig",
    "codec_ms",
    "codec_speed",
    "frames_meta",
    "measured_codec_ms",
    "message_bytes",
    "priced_profile",
    "priced_profiles",
    "priced_wire",
    "profile_wire",
    "roofline_pair",
    "wire_cut_specs",
    "wire_mismatch",
]
