"""openpi-compatible msgpack codec for numpy arrays, with size and dtype validation.

Message format identical to openpi's ``openpi_client/msgpack_numpy.py`` (so its ``WebsocketClientPolicy`` can talk
to our server): a numpy array is packed as the map
``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": dtype.str, b"shape": shape}`` and a numpy scalar as
``{b"__npgeneric__": True, b"data": <python value>, b"dtype": dtype.str}``; object, void and complex dtypes are
rejected, pickle is never used. On top of openpi's behaviour, unpacking checks, before building any array, that the
dtype is a plain fixed-size kind (bool, int, uint, float, bytes, unicode), that the shape is a short list of
non-negative ints and that ``prod(shape) * itemsize`` equals the data length; violations raise
:class:`executor.wire.WireFormatError`. Arrays come back as read-only views of the message bytes (as in openpi).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import msgpack
import numpy as np

from executor.wire import WireFormatError

#: numpy dtype kinds accepted when unpacking: bool, signed/unsigned int, float, bytes, unicode.
ALLOWED_KINDS = frozenset("biufSU")
REJECTED_KINDS = frozenset("VOc")  # openpi rejects void, object and complex
MAX_NDIM = 32
MAX_ITEMSIZE = 1 << 16  # bound for S/U dtypes ("<U100000" would be a huge per-element allocation)
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024


def pack_array(obj: Any) -> Any:
    """msgpack ``default`` hook: numpy arrays and scalars to openpi's maps; other objects pass through."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in REJECTED_KINDS:
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {
            b"__ndarray__": True,
            b"data": obj.tobytes(),  # C order, like openpi
            b"dtype": obj.dtype.str,
            b"shape": obj.shape,
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _checked_dtype(spec: Any) -> np.dtype:
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", errors="replace")
    if not isinstance(spec, str) or len(spec) > 16:
        raise WireFormatError(f"array dtype must be a short numpy dtype string, got {spec!r}")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError) as e:
        raise WireFormatError(f"unknown array dtype {spec!r}") from e
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireFormatError(
            f"array dtype {spec!r} (kind {dtype.kind!r}) is not allowed; expected bool/int/uint/float/S/U"
        )
    if dtype.itemsize == 0 or dtype.itemsize > MAX_ITEMSIZE:
        raise WireFormatError(f"array dtype {spec!r} has itemsize {dtype.itemsize}, expected 1..{MAX_ITEMSIZE}")
    return dtype


def _get(obj: dict, key: str) -> Any:
    if key.encode() in obj:
        return obj[key.encode()]
    return obj.get(key)


def unpack_array(obj: dict) -> Any:
    """msgpack ``object_hook``: openpi's array/scalar maps (bytes or str keys) to numpy, validated."""
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        dtype = _checked_dtype(_get(obj, "dtype"))
        shape = _get(obj, "shape")
        data = _get(obj, "data")
        if (
            not isinstance(shape, list | tuple)
            or len(shape) > MAX_NDIM
            or any(type(s) is not int or s < 0 for s in shape)
        ):
            raise WireFormatError(f"array shape must be at most {MAX_NDIM} non-negative ints, got {shape!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise WireFormatError(f"array data must be bytes, got {type(data).__name__}")
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise WireFormatError(
                f"array data has {len(data)} bytes, expected {expected} for shape {tuple(shape)} dtype {dtype.str}"
            )
        arr = np.ndarray(buffer=data, dtype=dtype, shape=tuple(shape))
        if dtype.kind == "b" and arr.size and int(arr.view(np.uint8).max()) > 1:
            raise WireFormatError("bool array data holds bytes other than 0 and 1")
        return arr
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        dtype = _checked_dtype(_get(obj, "dtype"))
        value = _get(obj, "data")
        if not isinstance(value, bool | int | float | str | bytes):
            raise WireFormatError(f"numpy scalar data must be a plain value, got {type(value).__name__}")
        try:
            return dtype.type(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise WireFormatError(f"numpy scalar {value!r} does not fit dtype {dtype.str}") from e
    return obj


def _reject_ext(code: int, data: bytes) -> Any:
    raise WireFormatError(f"msgpack extension type {code} is not allowed")


def packb(obj: Any, **kwargs: Any) -> bytes:
    """Pack like ``openpi_client.msgpack_numpy.packb``."""
    return msgpack.packb(obj, default=pack_array, **kwargs)


def unpackb(data: bytes | bytearray | memoryview, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    """Unpack like ``openpi_client.msgpack_numpy.unpackb``, validating every array; raises WireFormatError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    n = memoryview(data).nbytes
    if n > max_message_bytes:
        raise WireFormatError(f"message of {n} bytes exceeds the limit of {max_message_bytes}")
    try:
        return msgpack.unpackb(data, object_hook=unpack_array, ext_hook=_reject_ext, strict_map_key=False)
    except WireFormatError:
        raise
    except Exception as e:  # ExtraData, FormatError, StackError, ValueError (truncated), UnicodeDecodeError ...
        raise WireFormatError(f"malformed msgpack message: {type(e).__name__}: {e}") from e


Packer = functools.partial(msgpack.Packer, default=pack_array)
