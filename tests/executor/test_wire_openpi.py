"""openpi-compatible msgpack codec: byte-identical to openpi's format both ways, plus our validation."""

from __future__ import annotations

import functools

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor import msgpack_numpy as ours
from executor.wire import WireFormatError


# A faithful re-implementation of openpi_client/msgpack_numpy.py (Physical-Intelligence/openpi), used only as
# the reference peer in these tests (the real package pins numpy<2 and cannot live in this venv).
def _openpi_pack_array(obj):
    if (isinstance(obj, (np.ndarray, np.generic))) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _openpi_unpack_array(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


openpi_packb = functools.partial(msgpack.packb, default=_openpi_pack_array)
openpi_unpackb = functools.partial(msgpack.unpackb, object_hook=_openpi_unpack_array)


def _observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.standard_normal(8).astype(np.float32),
        "prompt": "pick up the red cup",
        "nested": {"ids": np.arange(5, dtype=np.int64), "mask": np.array([True, False]), "t": np.float32(0.25)},
        "server_timing": {"infer_ms": 12.5},
    }


def _assert_same(a, b) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray | np.generic):
        assert type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.array_equal(a, b)
    else:
        assert a == b


def test_packed_bytes_identical_to_openpi() -> None:
    obs = _observation(0)
    assert ours.packb(obs) == openpi_packb(obs)


def test_openpi_message_decodes_with_ours_and_back() -> None:
    obs = _observation(1)
    _assert_same(obs, ours.unpackb(openpi_packb(obs)))
    _assert_same(obs, openpi_unpackb(ours.packb(obs)))


def test_actions_reply_like_openpi_server() -> None:
    reply = {"actions": np.random.default_rng(2).standard_normal((50, 14)), "server_timing": {"infer_ms": 3.0}}
    out = ours.unpackb(ours.packb(reply))
    assert out["actions"].dtype == np.float64 and np.array_equal(out["actions"], reply["actions"])


def test_string_keys_variant_accepted() -> None:
    msg = msgpack.packb(
        {"__ndarray__": True, "data": np.arange(3, dtype="<i4").tobytes(), "dtype": "<i4", "shape": [3]}
    )
    assert ours.unpackb(msg).tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", [np.array([object()]), np.array([1 + 2j]), np.zeros(2, dtype="V4"), np.complex64(1)])
def test_pack_rejects_object_void_complex(bad) -> None:
    with pytest.raises(ValueError, match="Unsupported dtype"):
        ours.packb({"x": bad})


def _arr_msg(dtype: str, shape, data: bytes) -> bytes:
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape})


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (_arr_msg("|O", [1], b"\0" * 8), "not allowed"),
        (_arr_msg("<c8", [1], b"\0" * 8), "not allowed"),
        (_arr_msg("|V4", [1], b"\0" * 4), "not allowed"),
        (_arr_msg("[('a','<i4')]", [1], b"\0" * 4), "dtype"),
        (_arr_msg("<f4", [3], b"\0" * 8), "expected 12"),
        (_arr_msg("<f4", [1], b"\0" * 8), "expected 4"),
        (_arr_msg("<f4", [-1], b""), "shape"),
        (_arr_msg("<f4", [1] * 40, b"\0" * 4), "shape"),
        (_arr_msg("<U999999", [1], b""), "itemsize"),
        (_arr_msg("nonsense", [1], b"\0"), "unknown array dtype"),
        (_arr_msg("|b1", [2], b"\x01\x05"), "bool"),
        (msgpack.packb({b"__ndarray__": True, b"data": "text", b"dtype": "<f4", b"shape": [1]}), "must be bytes"),
        (msgpack.packb({b"__npgeneric__": True, b"data": [1], b"dtype": "<f4"}), "plain value"),
        (msgpack.packb({b"__npgeneric__": True, b"data": 300, b"dtype": "|i1"}), "does not fit"),
        (b"\x81\xa1", "malformed"),
        (msgpack.packb(msgpack.ExtType(3, b"abc")), "extension"),
    ],
)
def test_unpack_validation(msg: bytes, match: str) -> None:
    with pytest.raises(WireFormatError, match=match):
        ours.unpackb(msg)


def test_unpack_size_limit() -> None:
    data = ours.packb({"x": np.zeros(100)})
    with pytest.raises(WireFormatError, match="exceeds the limit"):
        ours.unpackb(data, max_message_bytes=len(data) - 1)


def test_truncated_openpi_message_always_wire_error() -> None:
    data = ours.packb({"img": np.arange(12, dtype=np.uint8).reshape(3, 4), "s": np.float32(1.0)})
    for n in range(len(data)):
        with pytest.raises(WireFormatError):
            ours.unpackb(data[:n])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_never_crashes(data: bytes) -> None:
    try:
        ours.unpackb(data)
    except WireFormatError:
        pass
