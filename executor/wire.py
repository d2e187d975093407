"""Wire format for split-model payloads: a msgpack header + raw array bytes. Never pickle, never object arrays.

Layout of one message (all integers little-endian)::

    b"ECCW" | version u8 | flags u8 | header_len u32 | header (msgpack) | zero padding to 16 | data region

The header is a msgpack map ``{"meta": {...}, "tensors": [entry, ...], "data_bytes": int}``; each entry names a
tensor, its original dtype and shape, the codec used on the wire and the byte range(s) of its data (and of its
int8 scales) inside the data region. Decoding checks magic, version, header, dtypes, shapes, sizes and ranges
*before* allocating anything; every problem raises :class:`WireFormatError`.

Compression (floating tensors only; integer and bool tensors, e.g. token ids, are always sent raw):

- ``"fp16"``: IEEE half. Relative error <= 2**-11 for |x| >= 2**-14 (absolute <= 2**-25 below).
  A tensor with finite values beyond the fp16 range (|x| > 65504) is sent raw instead (logged), never clipped.
- ``"bf16"``: bfloat16 bits (round to nearest even). Relative error <= 2**-8; same range as float32.
- ``"int8"``: one float32 scale per tensor, ``scale = max|x| / 127``; absolute error <= scale / 2.
- ``"int8_token"``: one float32 scale per row of the last dimension (per token); absolute error <= row scale / 2.
  int8 codecs need finite values; a tensor with inf/nan is sent raw instead (logged).

Decoded arrays come back in their original dtype. numpy has no bfloat16, so a bfloat16 tensor decodes to float32
with the exact same values (bf16 -> f32 is a lossless widening); :func:`to_torch` / :func:`decode_torch` restore
``torch.bfloat16``. torch is only imported when a torch tensor is encoded or requested.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"ECCW"
WIRE_VERSION = 1
_PREFIX = struct.Struct("<4sBBI")  # magic, version, flags, header length
PREFIX_BYTES = _PREFIX.size  # 10
ALIGN_BYTES = 16

#: dtype name -> (numpy dtype used on the wire for the raw bits, itemsize). bfloat16 travels as its uint16 bits.
WIRE_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "uint8": np.dtype("<u1"),
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
COMPRESSIONS = ("none", "fp16", "bf16", "int8", "int8_token")
# wire bytes per element of the data region for each codec (int8 codecs add float32 scales)
_CODEC_ITEMSIZE = {"fp16": 2, "bf16": 2, "int8": 1, "int8_token": 1}
_SCALE_DTYPE = np.dtype("<f4")
_FP16_MAX = 65504.0
_BF16_MAX = 3.3895313892515355e38


class WireFormatError(ValueError):
    """A message that cannot be encoded or decoded: truncated, bad magic/version, unknown dtype, size mismatch,
    oversize or malformed header. Networking code treats it as a protocol error."""


@dataclass(frozen=True)
class WireLimits:
    """Bounds checked before any allocation when decoding (and when encoding)."""

    max_message_bytes: int = 512 * 1024 * 1024
    max_decoded_bytes: int = 2 * 1024 * 1024 * 1024  # sum of the decoded arrays (int8 -> float64 expands 8x)
    max_header_bytes: int = 1024 * 1024
    max_tensors: int = 4096
    max_ndim: int = 32
    max_meta_depth: int = 8

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_decoded_bytes", "max_header_bytes", "max_tensors", "max_ndim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WireLimits.{name} must be > 0, got {getattr(self, name)}")


DEFAULT_LIMITS = WireLimits()


@dataclass(frozen=True)
class TensorInfo:
    """Header entry of one tensor as decoded (before its data is read)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    codec: str
    offset: int
    nbytes: int
    scale_offset: int = 0
    scale_nbytes: int = 0


@dataclass
class Message:
    """A decoded message: numpy arrays in their original dtype (bfloat16 widened to float32), metadata, sizes."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    dtypes: dict[str, str]  # original dtype names (e.g. "bfloat16" where the array is float32)
    codecs: dict[str, str]
    wire_bytes: int  # the whole message
    header_bytes: int  # prefix + msgpack header + alignment padding
    tensors: tuple[TensorInfo, ...] = field(default=())

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


# --------------------------------------------------------------------------------------------------------- sizes


def _num_elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def predict_wire_bytes(shape: tuple[int, ...] | list[int], dtype: str, compression: str = "none") -> int:
    """Bytes a tensor of this shape and dtype occupies in the data region under ``compression``, from shape alone.

    Excludes the header (names, shapes: roughly 40-60 bytes per tensor) and alignment padding (< 16 per tensor).
    Integer/bool tensors ignore ``compression``; compressing a 16-bit float to fp16/bf16 is a no-op.
    """
    dtype = _check_dtype_name(dtype)
    codec = _effective_codec(dtype, _check_compression(compression))
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    n = _num_elements(shape)
    if codec == "none":
        return n * WIRE_DTYPES[dtype].itemsize
    data = n * _CODEC_ITEMSIZE[codec]
    if codec == "int8":
        return data + _SCALE_DTYPE.itemsize
    if codec == "int8_token":
        return data + _num_elements(shape[:-1]) * _SCALE_DTYPE.itemsize if shape else data + _SCALE_DTYPE.itemsize
    return data


def _check_dtype_name(dtype: str) -> str:
    if dtype not in WIRE_DTYPES:
        raise WireFormatError(f"unsupported dtype {dtype!r}; expected one of {sorted(WIRE_DTYPES)}")
    return dtype


def _check_compression(compression: str) -> str:
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
    return compression


def _effective_codec(dtype: str, compression: str) -> str:
    """Integer/bool tensors are never compressed; 16-bit floats are not re-encoded to another 16-bit format."""
    if compression == "none" or dtype not in FLOAT_DTYPES:
        return "none"
    if compression in ("fp16", "bf16") and WIRE_DTYPES[dtype].itemsize <= 2:
        return "none"
    return compression


# ----------------------------------------------------------------------------------------------- array handling


def _to_numpy(name: str, value: Any) -> tuple[np.ndarray, str]:
    """(contiguous little-endian array of the raw bits, original dtype name). bfloat16 comes back as uint16 bits."""
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.name == "bfloat16":  # ml_dtypes / jax arrays
            return np.asarray(arr, order="C").view("<u2"), "bfloat16"
        if arr.dtype.kind not in "biuf":
            raise WireFormatError(f"tensor {name!r}: dtype {arr.dtype} is not allowed on the wire (object/str/void)")
        dname = arr.dtype.name
        _check_dtype_name(dname)
        return np.asarray(arr, dtype=WIRE_DTYPES[dname], order="C"), dname
    mod = type(value).__module__
    if mod.startswith("torch"):
        import torch

        if not isinstance(value, torch.Tensor):
            raise TypeError(f"tensor {name!r}: expected numpy array or torch.Tensor, got {type(value).__name__}")
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view("<u2"), "bfloat16"
        dname = str(t.dtype).removeprefix("torch.")
        if dname not in WIRE_DTYPES:
            raise WireFormatError(
                f"tensor {name!r}: torch dtype {t.dtype} is not allowed; expected {sorted(WIRE_DTYPES)}"
            )
        return np.asarray(t.numpy(), dtype=WIRE_DTYPES[dname], order="C"), dname
    raise TypeError(f"tensor {name!r}: expected numpy array or torch.Tensor, got {type(value).__name__}")


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bits; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = np.uint16(0x7FC0)
    return rounded


def _finite_absmax(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(np.max(np.abs(finite))) if finite.size else 0.0


def _as_float(bits: np.ndarray, dtype: str) -> np.ndarray:
    """Values of a raw-bits array as a numpy float array (bfloat16 widened to float32)."""
    return _bf16_bits_to_f32(bits) if dtype == "bfloat16" else bits


def _compress(name: str, bits: np.ndarray, dtype: str, codec: str) -> tuple[str, bytes | np.ndarray, np.ndarray | None]:
    """(codec actually used, data, scales or None). Falls back to raw where the codec would lose data."""
    if codec == "none":
        return "none", bits, None
    x = _as_float(bits, dtype)
    if codec == "fp16":
        if x.size and float(np.max(np.abs(x))) > _FP16_MAX and _finite_absmax(x) > _FP16_MAX:
            log.warning("tensor %r exceeds the fp16 range (|x| > %g); sent uncompressed", name, _FP16_MAX)
            return "none", bits, None
        return "fp16", x.astype("<f2"), None
    if codec == "bf16":
        if dtype == "float64" and x.size and _finite_absmax(x) > _BF16_MAX:
            log.warning("tensor %r exceeds the bfloat16 range; sent uncompressed", name)
            return "none", bits, None
        return "bf16", _f32_to_bf16_bits(x.astype(np.float32, copy=False)), None
    # int8 codecs
    if not np.isfinite(x).all():
        log.warning("tensor %r has inf/nan values; int8 needs finite values, sent uncompressed", name)
        return "none", bits, None
    # float32 arithmetic for float32/bfloat16/float16 inputs (fast), float64 for float64
    x64 = x.astype(np.float64 if dtype == "float64" else np.float32, copy=False)
    if codec == "int8" or x.ndim == 0:
        amax = np.max(np.abs(x64)) if x64.size else 0.0
        scale = np.asarray([float(amax) / 127.0], dtype=_SCALE_DTYPE)
        divisor = x64.dtype.type(scale[0]) if scale[0] > 0 else x64.dtype.type(1.0)
    else:
        amax = np.max(np.abs(x64), axis=-1, keepdims=True) if x64.shape[-1] else np.zeros(x64.shape[:-1] + (1,))
        scale = (amax.astype(np.float64) / 127.0).astype(_SCALE_DTYPE)
        divisor = np.where(scale > 0, scale, 1).astype(x64.dtype)
    if not np.isfinite(scale).all() or bool(np.any((scale == 0) & (np.reshape(amax, scale.shape) > 0))):
        log.warning("tensor %r: int8 scale not representable in float32; sent uncompressed", name)
        return "none", bits, None
    q = np.clip(np.rint(x64 / divisor), -127, 127).astype(np.int8)
    return codec, q, scale.reshape(-1)


# --------------------------------------------------------------------------------------------------------- encode


def _check_meta(meta: Any, limits: WireLimits, depth: int = 0, path: str = "meta") -> Any:
    """Only JSON-like values (dict with str keys, list/tuple, str, int, float, bool, None); tuples become lists."""
    if depth > limits.max_meta_depth:
        raise WireFormatError(f"{path}: metadata nested deeper than {limits.max_meta_depth}")
    if meta is None or isinstance(meta, bool | int | float | str):
        return meta
    if isinstance(meta, np.generic) and meta.dtype.kind in "biuf":
        return meta.item()
    if isinstance(meta, Mapping):
        out = {}
        for k, v in meta.items():
            if not isinstance(k, str):
                raise WireFormatError(f"{path}: metadata keys must be str, got {k!r}")
            out[k] = _check_meta(v, limits, depth + 1, f"{path}.{k}")
        return out
    if isinstance(meta, list | tuple):
        return [_check_meta(v, limits, depth + 1, f"{path}[{i}]") for i, v in enumerate(meta)]
    raise WireFormatError(f"{path}: metadata must be JSON-like, got {type(meta).__name__}")


def _split_payload(payload: Any, meta: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """Accept a mapping of tensors, or an object with ``tensors``/``arrays`` and ``meta``/``metadata`` attributes."""
    if isinstance(payload, Mapping):
        return payload, dict(meta or {})
    tensors = getattr(payload, "tensors", None)
    if tensors is None:
        tensors = getattr(payload, "arrays", None)
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"payload must be a mapping name -> array (or have a .tensors mapping), got {type(payload).__name__}"
        )
    own_meta = getattr(payload, "meta", None)
    if own_meta is None:
        own_meta = getattr(payload, "metadata", None)
    merged = dict(own_meta or {})
    merged.update(meta or {})
    return tensors, merged


def _pad(n: int) -> int:
    return (-n) % ALIGN_BYTES


def encode(
    payload: Mapping[str, Any] | Any,
    meta: Mapping[str, Any] | None = None,
    *,
    compression: str | Mapping[str, str] = "none",
    limits: WireLimits = DEFAULT_LIMITS,
) -> bytes:
    """Encode ``name -> numpy array / torch tensor`` plus JSON-like ``meta`` into one message.

    ``compression`` is one codec for every floating tensor, or a mapping name -> codec (missing names: "none").
    Raises WireFormatError for a disallowed dtype, non-JSON metadata or a message over ``limits``.
    """
    tensors, meta_d = _split_payload(payload, meta)
    meta_d = _check_meta(meta_d, limits)
    if len(tensors) > limits.max_tensors:
        raise WireFormatError(f"{len(tensors)} tensors exceed the limit of {limits.max_tensors}")
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    pos = 0

    def add(data: np.ndarray) -> tuple[int, int]:
        nonlocal pos
        mv = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        start = pos
        chunks.append(mv)
        pos += mv.nbytes
        pad = _pad(pos)
        if pad:
            chunks.append(b"\0" * pad)
            pos += pad
        return start, mv.nbytes

    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise WireFormatError(f"tensor names must be non-empty str, got {name!r}")
        bits, dtype = _to_numpy(name, value)
        if bits.ndim > limits.max_ndim:
            raise WireFormatError(f"tensor {name!r} has {bits.ndim} dims, limit {limits.max_ndim}")
        wanted = compression.get(name, "none") if isinstance(compression, Mapping) else compression
        codec = _effective_codec(dtype, _check_compression(wanted))
        codec, data, scales = _compress(name, bits, dtype, codec)
        offset, nbytes = add(data)
        entry: dict[str, Any] = {
            "name": name,
            "dtype": dtype,
            "shape": list(bits.shape),
            "codec": codec,
            "offset": offset,
            "nbytes": nbytes,
        }
        if scales is not None:
            entry["scale_offset"], entry["scale_nbytes"] = add(scales)
        entries.append(entry)
    header = msgpack.packb({"meta": meta_d, "tensors": entries, "data_bytes": pos}, use_bin_type=True)
    if len(header) > limits.max_header_bytes:
        raise WireFormatError(f"header of {len(header)} bytes exceeds the limit of {limits.max_header_bytes}")
    head_pad = _pad(PREFIX_BYTES + len(header))
    total = PREFIX_BYTES + len(header) + head_pad + pos
    if total > limits.max_message_bytes:
        raise WireFormatError(f"message of {total} bytes exceeds the limit of {limits.max_message_bytes}")
    prefix = _PREFIX.pack(MAGIC, WIRE_VERSION, 0, len(header))
    return b"".join([prefix, header, b"\0" * head_pad, *chunks])


def encoded_size(
    payload: Mapping[str, Any] | Any,
    meta: Mapping[str, Any] | None = None,
    *,
    compression: str | Mapping[str, str] = "none",
) -> int:
    """Exact wire bytes of ``encode(payload, meta, compression=...)`` (encodes to measure)."""
    return len(encode(payload, meta, compression=compression, limits=WireLimits(max_message_bytes=2**62)))


# --------------------------------------------------------------------------------------------------------- decode


def _int_field(entry: Mapping[str, Any], key: str, name: str, default: int | None = None) -> int:
    v = entry.get(key, default)
    if type(v) is not int or v < 0:
        raise WireFormatError(f"tensor {name!r}: field {key!r} must be a non-negative int, got {v!r}")
    return v


def _parse_header(buf: memoryview, limits: WireLimits) -> tuple[dict[str, Any], list[TensorInfo], int, int]:
    """(meta, tensor infos, data start, data length) after every structural check; allocates no array."""
    n = buf.nbytes
    if n > limits.max_message_bytes:
        raise WireFormatError(f"message of {n} bytes exceeds the limit of {limits.max_message_bytes}")
    if n < PREFIX_BYTES:
        raise WireFormatError(f"truncated message: {n} bytes, expected at least the {PREFIX_BYTES}-byte prefix")
    magic, version, flags, header_len = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != WIRE_VERSION:
        raise WireFormatError(f"wire version {version} is not supported, expected {WIRE_VERSION}")
    if flags != 0:
        raise WireFormatError(f"unknown flags {flags:#x}, expected 0")
    if header_len > limits.max_header_bytes:
        raise WireFormatError(f"header length {header_len} exceeds the limit of {limits.max_header_bytes}")
    head_end = PREFIX_BYTES + header_len
    if n < head_end:
        raise WireFormatError(f"truncated message: {n} bytes, header needs {head_end}")
    try:
        header = msgpack.unpackb(
            buf[PREFIX_BYTES:head_end],
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
        )
    except WireFormatError:
        raise
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, StackError, ValueError ...)
        raise WireFormatError(f"malformed msgpack header: {type(e).__name__}: {e}") from e
    if not isinstance(header, dict) or set(header) != {"meta", "tensors", "data_bytes"}:
        keys = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise WireFormatError(f"header must be a map with keys data_bytes, meta, tensors; got {keys}")
    meta, raw_tensors, data_bytes = header["meta"], header["tensors"], header["data_bytes"]
    if not isinstance(meta, dict):
        raise WireFormatError(f"header meta must be a map, got {type(meta).__name__}")
    if not isinstance(raw_tensors, list) or len(raw_tensors) > limits.max_tensors:
        raise WireFormatError(f"header tensors must be a list of at most {limits.max_tensors} entries")
    if type(data_bytes) is not int or data_bytes < 0:
        raise WireFormatError(f"header data_bytes must be a non-negative int, got {data_bytes!r}")
    data_start = head_end + _pad(head_end)
    expected_total = data_start + data_bytes
    if n < expected_total:
        raise WireFormatError(f"truncated message: {n} bytes, expected {expected_total}")
    if n > expected_total:
        raise WireFormatError(f"message has {n - expected_total} trailing bytes after the {expected_total} expected")
    infos: list[TensorInfo] = []
    names: set[str] = set()
    ranges: list[tuple[int, int, str]] = []
    decoded_total = 0
    for raw in raw_tensors:
        if not isinstance(raw, dict):
            raise WireFormatError(f"tensor entry must be a map, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise WireFormatError(f"tensor name must be a unique non-empty str, got {name!r}")
        names.add(name)
        dtype = raw.get("dtype")
        if dtype not in WIRE_DTYPES:
            raise WireFormatError(f"tensor {name!r}: unknown dtype {dtype!r}; expected one of {sorted(WIRE_DTYPES)}")
        codec = raw.get("codec")
        if codec not in COMPRESSIONS or (codec != "none" and _effective_codec(dtype, codec) != codec):
            raise WireFormatError(f"tensor {name!r}: codec {codec!r} is not valid for dtype {dtype}")
        shape = raw.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) > limits.max_ndim
            or any(type(s) is not int or s < 0 for s in shape)
        ):
            raise WireFormatError(
                f"tensor {name!r}: shape must be a list of at most {limits.max_ndim} non-negative ints, got {shape!r}"
            )
        shape_t = tuple(shape)
        if any(s > limits.max_decoded_bytes for s in shape_t):
            # a dimension no message could fill, even beside a zero one (a zero-size [0, 2**62] tensor passes the
            # byte checks but cannot be reshaped): rejected before any array is built
            raise WireFormatError(
                f"tensor {name!r}: a dimension of shape {shape_t} exceeds the limit of {limits.max_decoded_bytes}"
            )
        offset = _int_field(raw, "offset", name)
        nbytes = _int_field(raw, "nbytes", name)
        count = _num_elements(shape_t)
        per_item = WIRE_DTYPES[dtype].itemsize if codec == "none" else _CODEC_ITEMSIZE[codec]
        if nbytes != count * per_item:
            raise WireFormatError(
                f"tensor {name!r}: {nbytes} data bytes do not match shape {shape_t} x {per_item} B = {count * per_item}"
            )
        ranges.append((offset, nbytes, name))
        scale_offset = scale_nbytes = 0
        if codec in ("int8", "int8_token"):
            scale_offset = _int_field(raw, "scale_offset", name)
            scale_nbytes = _int_field(raw, "scale_nbytes", name)
            n_scales = 1 if codec == "int8" or not shape_t else _num_elements(shape_t[:-1])
            if scale_nbytes != n_scales * _SCALE_DTYPE.itemsize:
                raise WireFormatError(
                    f"tensor {name!r}: {scale_nbytes} scale bytes, expected {n_scales} float32 scales"
                )
            ranges.append((scale_offset, scale_nbytes, name + " scales"))
        elif "scale_offset" in raw or "scale_nbytes" in raw:
            raise WireFormatError(f"tensor {name!r}: scales given for codec {codec!r}")
        out_itemsize = 4 if dtype == "bfloat16" else WIRE_DTYPES[dtype].itemsize
        decoded_total += count * out_itemsize
        if decoded_total > limits.max_decoded_bytes:
            raise WireFormatError(f"decoded arrays would exceed the limit of {limits.max_decoded_bytes} bytes")
        infos.append(TensorInfo(name, dtype, shape_t, codec, offset, nbytes, scale_offset, scale_nbytes))
    end = 0
    for offset, nbytes, what in sorted(ranges):
        if offset < end:
            raise WireFormatError(f"{what}: byte range at {offset} overlaps the previous range ending at {end}")
        if offset + nbytes > data_bytes:
            raise WireFormatError(f"{what}: byte range {offset}..{offset + nbytes} exceeds the {data_bytes}-byte data")
        end = offset + nbytes
    return meta, infos, data_start, data_bytes


def _reject_ext(code: int, data: bytes) -> Any:
    raise WireFormatError(f"msgpack extension type {code} is not allowed in the header")


def _as_buffer(data: bytes | bytearray | memoryview) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def read_header(
    data: bytes | bytearray | memoryview, *, limits: WireLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], tuple[TensorInfo, ...]]:
    """Validate a message and return (meta, tensor infos) without decoding any array."""
    meta, infos, _, _ = _parse_header(_as_buffer(data), limits)
    return meta, tuple(infos)


def decoded_nbytes(infos: Iterable[TensorInfo]) -> int:
    """Bytes :func:`decode` allocates for these tensors at most (bfloat16 comes back as float32)."""
    return sum(_num_elements(i.shape) * (4 if i.dtype == "bfloat16" else WIRE_DTYPES[i.dtype].itemsize) for i in infos)


def _decode_one(buf: memoryview, base: int, info: TensorInfo) -> np.ndarray:
    count = _num_elements(info.shape)
    if info.codec == "none":
        arr = np.frombuffer(buf, dtype=WIRE_DTYPES[info.dtype], count=count, offset=base + info.offset)
        arr = arr.reshape(info.shape)
        if info.dtype == "bool" and count and int(arr.view(np.uint8).max()) > 1:
            raise WireFormatError(f"tensor {info.name!r}: bool data holds bytes other than 0 and 1")
        return _bf16_bits_to_f32(arr) if info.dtype == "bfloat16" else arr
    out_dtype = np.float32 if info.dtype == "bfloat16" else WIRE_DTYPES[info.dtype]
    if info.codec == "fp16":
        raw = np.frombuffer(buf, dtype="<f2", count=count, offset=base + info.offset)
        return raw.astype(out_dtype).reshape(info.shape)
    if info.codec == "bf16":
        raw = np.frombuffer(buf, dtype="<u2", count=count, offset=base + info.offset)
        return _bf16_bits_to_f32(raw).astype(out_dtype, copy=False).reshape(info.shape)
    q = np.frombuffer(buf, dtype=np.int8, count=count, offset=base + info.offset).reshape(info.shape)
    n_scales = info.scale_nbytes // _SCALE_DTYPE.itemsize
    scales = np.frombuffer(buf, dtype=_SCALE_DTYPE, count=n_scales, offset=base + info.scale_offset)
    if info.codec == "int8_token" and info.shape:
        scales = scales.reshape(info.shape[:-1] + (1,))
    else:
        scales = scales.reshape(())
    calc = np.float64 if out_dtype == np.float64 else np.float32
    return np.asarray(q.astype(calc) * scales.astype(calc)).astype(out_dtype, copy=False)


def decode(data: bytes | bytearray | memoryview, *, limits: WireLimits = DEFAULT_LIMITS, copy: bool = False) -> Message:
    """Decode a message into numpy arrays (original dtypes; bfloat16 -> float32 with identical values).

    Uncompressed arrays are read-only views into ``data`` unless ``copy=True``. Raises WireFormatError.
    """
    buf = _as_buffer(data)
    meta, infos, base, _ = _parse_header(buf, limits)
    arrays = {}
    for info in infos:
        try:
            arr = _decode_one(buf, base, info)
        except WireFormatError:
            raise
        except (ValueError, TypeError, OverflowError, MemoryError) as e:  # whatever numpy says about a hostile one
            raise WireFormatError(f"tensor {info.name!r}: cannot be decoded ({type(e).__name__})") from e
        arrays[info.name] = arr.copy() if copy and not arr.flags.owndata else arr
    return Message(
        arrays=arrays,
        meta=meta,
        dtypes={i.name: i.dtype for i in infos},
        codecs={i.name: i.codec for i in infos},
        wire_bytes=buf.nbytes,
        header_bytes=base,
        tensors=tuple(infos),
    )


def to_torch(message: Message, device: Any = "cpu") -> dict[str, Any]:
    """The decoded arrays as torch tensors on ``device`` in their original dtypes (bfloat16 restored)."""
    import torch

    out = {}
    for name, arr in message.arrays.items():
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if message.dtypes[name] == "bfloat16":
            t = t.to(torch.bfloat16)  # exact: the float32 values came from bfloat16
        out[name] = t.to(device)
    return out


def decode_torch(
    data: bytes | bytearray | memoryview, device: Any = "cpu", *, limits: WireLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode straight to torch tensors on ``device``; returns (tensors, meta)."""
    message = decode(data, limits=limits)
    return to_torch(message, device), message.meta


# ------------------------------------------------------------------------------------- executor.models.Payload


def encode_payload(payload: Any, *, compression: str = "none", limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """Encode an ``executor.models.Payload``: its header goes in ``meta["payload"]``; ``compression`` applies only
    to the tensors it lists as ``activations`` (images, token ids, state, noise and actions stay bit-exact)."""
    _check_compression(compression)
    codecs = {name: compression for name in payload.activations}
    return encode(payload.tensors, {"payload": payload.header()}, compression=codecs, limits=limits)


def decode_payload(
    data: bytes | bytearray | memoryview, *, device: Any = None, limits: WireLimits = DEFAULT_LIMITS
) -> Any:
    """Decode a message made by :func:`encode_payload` back into a ``Payload``.

    Tensors are numpy arrays (``device=None``) or torch tensors on ``device`` (bfloat16 restored).
    """
    from executor.models.base import Payload  # lazy: keeps the wire module free of the models package

    message = decode(data, limits=limits, copy=device is None)
    head = message.meta.get("payload")
    if not isinstance(head, dict):
        raise WireFormatError("message carries no payload header (meta['payload'] missing)")
    try:
        kind, cut, step = head["kind"], head["cut"], head["step"]
        activations = tuple(head["activations"])
        meta = head["meta"]
    except (KeyError, TypeError) as e:
        raise WireFormatError(f"payload header is missing fields: {e}") from e
    if type(cut) is not int or type(step) is not int or not isinstance(meta, dict):
        raise WireFormatError(f"payload header has bad field types: {head!r}")
    tensors = to_torch(message, device) if device is not None else dict(message.arrays)
    try:
        return Payload(kind=kind, cut=cut, tensors=tensors, step=step, activations=activations, meta=meta)
    except ValueError as e:
        raise WireFormatError(f"invalid payload: {e}") from e
