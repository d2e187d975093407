"""Wire format: exact round trips, compression tolerances, size prediction, and every malformed-input case."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor import wire
from executor.wire import WireFormatError, WireLimits

RNG_SEED = 1234


def _sample(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype in ("uint8", "int8", "int16", "int32", "int64"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _raw_message(header: dict, data: bytes, *, magic: bytes = wire.MAGIC, version: int = wire.WIRE_VERSION) -> bytes:
    """Hand-build a message with an arbitrary header (for malformed-input tests)."""
    head = msgpack.packb(header, use_bin_type=True)
    prefix = struct.pack("<4sBBI", magic, version, 0, len(head))
    pad = (-(len(prefix) + len(head))) % wire.ALIGN_BYTES
    return prefix + head + b"\0" * pad + data


def _entry(**kw) -> dict:
    e = {"name": "x", "dtype": "float32", "shape": [2, 2], "codec": "none", "offset": 0, "nbytes": 16}
    e.update(kw)
    return e


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", [d for d in wire.WIRE_DTYPES if d != "bfloat16"])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4, 5)])
def test_roundtrip_exact_every_dtype(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(RNG_SEED)
    x = _sample(dtype, shape, rng)
    msg = wire.decode(wire.encode({"x": x}, {"kind": "test"}))
    y = msg["x"]
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(y, x)
    assert msg.dtypes["x"] == dtype and msg.codecs["x"] == "none"
    assert msg.meta == {"kind": "test"}


def test_roundtrip_special_floats_exact() -> None:
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float32)
    y = wire.decode(wire.encode({"x": x}))["x"]
    assert np.array_equal(x.view(np.uint32), y.view(np.uint32))  # bit-exact, NaN payload and -0.0 included


def test_bfloat16_torch_roundtrip_exact() -> None:
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 5, generator=g).to(torch.bfloat16)
    data = wire.encode({"t": t, "ids": torch.arange(4)})
    msg = wire.decode(data)
    assert msg.dtypes["t"] == "bfloat16" and msg["t"].dtype == np.float32
    assert np.array_equal(msg["t"], t.float().numpy())  # widening is exact
    back, meta = wire.decode_torch(data)
    assert back["t"].dtype == torch.bfloat16 and torch.equal(back["t"], t)
    assert back["ids"].dtype == torch.int64 and torch.equal(back["ids"], torch.arange(4))
    assert meta == {}
    # bfloat16 travels as 2 bytes per element
    assert msg.tensors[0].nbytes == 15 * 2


def test_torch_float32_and_bool_roundtrip() -> None:
    torch = pytest.importorskip("torch")
    t = torch.randn(2, 3)
    b = torch.tensor([True, False, True])
    out = wire.to_torch(wire.decode(wire.encode({"t": t, "b": b})))
    assert torch.equal(out["t"], t) and torch.equal(out["b"], b)


def test_payload_object_with_tensors_and_meta() -> None:
    class Payload:
        def __init__(self) -> None:
            self.tensors = {"h": np.ones((2, 2), np.float32)}
            self.meta = {"kind": "activation", "cut": 3, "step": [1, 2]}

    msg = wire.decode(wire.encode(Payload(), {"extra": True}))
    assert msg.meta == {"kind": "activation", "cut": 3, "step": [1, 2], "extra": True}
    assert np.array_equal(msg["h"], np.ones((2, 2), np.float32))


# ------------------------------------------------------------------------------------------------- compression


def _rel_ok(x: np.ndarray, y: np.ndarray, rel: float, abs_floor: float) -> bool:
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    return bool(np.all(err <= rel * np.abs(x.astype(np.float64)) + abs_floor))


@pytest.mark.parametrize("src", ["float32", "float64"])
def test_fp16_tolerance(src: str) -> None:
    x = (np.random.default_rng(0).standard_normal((64, 33)) * 10).astype(src)
    msg = wire.decode(wire.encode({"x": x}, compression="fp16"))
    assert msg.codecs["x"] == "fp16" and msg["x"].dtype == x.dtype
    assert _rel_ok(x, msg["x"], 2.0**-11, 2.0**-25)
    assert not np.array_equal(msg["x"], x)  # it really is lossy


@pytest.mark.parametrize("src", ["float32", "float64"])
def test_bf16_tolerance(src: str) -> None:
    x = (np.random.default_rng(1).standard_normal((64, 33)) * 1e5).astype(src)
    msg = wire.decode(wire.encode({"x": x}, compression="bf16"))
    assert msg.codecs["x"] == "bf16" and msg["x"].dtype == x.dtype
    assert _rel_ok(x, msg["x"], 2.0**-8, 0.0)


def test_bf16_rounding_is_nearest_even_and_keeps_nan() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    x[:3] = [np.nan, np.inf, -np.inf]
    ours = wire.decode(wire.encode({"x": x}, compression="bf16"))["x"]
    ref = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert np.array_equal(ours, ref, equal_nan=True)


def test_int8_per_tensor_tolerance() -> None:
    x = np.random.default_rng(3).standard_normal((16, 40)).astype(np.float32)
    x[0, 0] = 25.0  # one outlier sets the scale
    msg = wire.decode(wire.encode({"x": x}, compression="int8"))
    scale = 25.0 / 127
    assert msg.codecs["x"] == "int8"
    assert np.max(np.abs(msg["x"] - x)) <= scale / 2 * (1 + 1e-5)
    assert msg.tensors[0].scale_nbytes == 4


def test_int8_token_tolerance_is_per_row() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 10, 40)).astype(np.float32) * np.arange(1, 31, dtype=np.float32).reshape(3, 10, 1)
    x[0, 0, 0] = 500.0
    per_token = wire.decode(wire.encode({"x": x}, compression="int8_token"))["x"]
    per_tensor = wire.decode(wire.encode({"x": x}, compression="int8"))["x"]
    row_scale = np.max(np.abs(x), axis=-1, keepdims=True) / 127
    assert np.all(np.abs(per_token - x) <= row_scale / 2 * (1 + 1e-5) + 1e-7)
    # per-token scales beat one per-tensor scale when rows differ in magnitude
    assert np.mean(np.abs(per_token - x)) < 0.2 * np.mean(np.abs(per_tensor - x))


def test_int8_zero_tensor_and_scalar() -> None:
    msg = wire.decode(wire.encode({"z": np.zeros((4, 3), np.float32), "s": np.float64(-2.5)}, compression="int8_token"))
    assert np.array_equal(msg["z"], np.zeros((4, 3), np.float32))
    assert msg["s"].shape == () and abs(float(msg["s"]) + 2.5) <= 2.5 / 254 + 1e-9


@pytest.mark.parametrize("compression", ["fp16", "bf16", "int8", "int8_token"])
def test_integer_and_bool_tensors_never_compressed(compression: str) -> None:
    ids = np.array([[1, 50_000, 2**40]], dtype=np.int64)
    mask = np.array([True, False])
    msg = wire.decode(wire.encode({"ids": ids, "mask": mask}, compression=compression))
    assert msg.codecs == {"ids": "none", "mask": "none"}
    assert np.array_equal(msg["ids"], ids) and np.array_equal(msg["mask"], mask)


def test_lossy_codecs_fall_back_instead_of_losing_data() -> None:
    big = np.array([1.0, 1e6], dtype=np.float32)  # beyond fp16 range
    msg = wire.decode(wire.encode({"big": big}, compression="fp16"))
    assert msg.codecs["big"] == "none" and np.array_equal(msg["big"], big)
    inf = np.array([1.0, np.inf], dtype=np.float32)
    msg = wire.decode(wire.encode({"inf": inf}, compression="int8"))
    assert msg.codecs["inf"] == "none" and np.array_equal(msg["inf"], inf)
    huge64 = np.array([1e300], dtype=np.float64)
    msg = wire.decode(wire.encode({"h": huge64}, compression="bf16"))
    assert msg.codecs["h"] == "none" and msg["h"][0] == 1e300


def test_per_tensor_compression_mapping() -> None:
    x = np.ones((4, 4), np.float32)
    msg = wire.decode(wire.encode({"a": x, "b": x}, compression={"a": "fp16"}))
    assert msg.codecs == {"a": "fp16", "b": "none"}


# ------------------------------------------------------------------------------------------------ size prediction


@pytest.mark.parametrize("compression", wire.COMPRESSIONS)
def test_predicted_bytes_match_encoded_payload(compression: str) -> None:
    rng = np.random.default_rng(5)
    payload = {
        "hidden": rng.standard_normal((1, 37, 64)).astype(np.float32),
        "kv": rng.standard_normal((2, 1, 3, 37, 16)).astype(np.float64),
        "ids": np.arange(37, dtype=np.int64),
        "pos": np.arange(37, dtype=np.int32),
        "scalar": np.float32(0.5),
    }
    data = wire.encode(payload, {"cut": 4}, compression=compression)
    msg = wire.decode(data)
    predicted = sum(wire.predict_wire_bytes(v.shape, np.asarray(v).dtype.name, compression) for v in payload.values())
    regions = sum(2 if c in ("int8", "int8_token") else 1 for c in msg.codecs.values())
    overhead = len(data) - predicted - msg.header_bytes
    assert 0 <= overhead < wire.ALIGN_BYTES * regions  # only alignment padding between regions
    assert wire.encoded_size(payload, {"cut": 4}, compression=compression) == len(data)


def test_predicted_sizes_by_codec() -> None:
    shape = (1, 800, 2048)
    n = 800 * 2048
    assert wire.predict_wire_bytes(shape, "float32") == 4 * n
    assert wire.predict_wire_bytes(shape, "float32", "fp16") == 2 * n
    assert wire.predict_wire_bytes(shape, "float32", "bf16") == 2 * n
    assert wire.predict_wire_bytes(shape, "float32", "int8") == n + 4
    assert wire.predict_wire_bytes(shape, "float32", "int8_token") == n + 800 * 4
    assert wire.predict_wire_bytes(shape, "bfloat16", "fp16") == 2 * n  # 16-bit floats are not re-encoded
    assert wire.predict_wire_bytes((7,), "int64", "int8") == 56
    with pytest.raises(WireFormatError, match="unsupported dtype"):
        wire.predict_wire_bytes((2,), "complex64")
    with pytest.raises(ValueError, match="unknown compression"):
        wire.predict_wire_bytes((2,), "float32", "zstd")


# ------------------------------------------------------------------------------------------------ encode errors


def test_encode_rejects_object_str_complex_and_bad_meta() -> None:
    for bad in (np.array([object()]), np.array(["a"]), np.array([1 + 2j]), np.zeros(2, dtype="V4")):
        with pytest.raises(WireFormatError, match="not allowed"):
            wire.encode({"x": bad})
    with pytest.raises(TypeError, match="expected numpy array"):
        wire.encode({"x": [1, 2, 3]})
    with pytest.raises(WireFormatError, match="JSON-like"):
        wire.encode({"x": np.ones(2)}, {"obj": object()})
    with pytest.raises(WireFormatError, match="keys must be str"):
        wire.encode({"x": np.ones(2)}, {1: "a"})
    with pytest.raises(ValueError, match="unknown compression"):
        wire.encode({"x": np.ones(2)}, compression="gzip")
    with pytest.raises(WireFormatError, match="exceeds the limit"):
        wire.encode({"x": np.ones(1000)}, limits=WireLimits(max_message_bytes=1000))


# ------------------------------------------------------------------------------------------------ decode errors


def _small_message() -> bytes:
    return wire.encode(
        {"h": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([3, 1], np.int64)},
        {"kind": "act"},
        compression={"h": "int8_token"},
    )


def test_truncated_at_every_byte_boundary_raises() -> None:
    data = _small_message()
    for n in range(len(data)):
        with pytest.raises(WireFormatError):
            wire.decode(data[:n])
    assert wire.decode(data)["ids"].tolist() == [3, 1]


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(WireFormatError, match="trailing bytes"):
        wire.decode(_small_message() + b"\0")


def test_bad_magic_version_flags() -> None:
    data = bytearray(_small_message())
    with pytest.raises(WireFormatError, match="bad magic"):
        wire.decode(b"XXXX" + bytes(data[4:]))
    data[4] = 99
    with pytest.raises(WireFormatError, match="version 99"):
        wire.decode(bytes(data))
    data = bytearray(_small_message())
    data[5] = 1
    with pytest.raises(WireFormatError, match="flags"):
        wire.decode(bytes(data))


@pytest.mark.parametrize(
    ("entry", "data_len", "match"),
    [
        (_entry(dtype="object"), 16, "unknown dtype"),
        (_entry(dtype="complex64"), 16, "unknown dtype"),
        (_entry(nbytes=12), 16, "do not match shape"),
        (_entry(shape=[2, -2]), 16, "shape must be"),
        (_entry(shape=[2, 2.0]), 16, "shape must be"),
        (_entry(shape="2x2"), 16, "shape must be"),
        (_entry(shape=[1] * 40, nbytes=4), 16, "shape must be"),
        (_entry(offset=8), 16, "exceeds"),
        (_entry(offset=-1), 16, "non-negative int"),
        (_entry(codec="zstd"), 16, "codec"),
        (_entry(dtype="int32", codec="fp16", nbytes=8), 16, "codec"),
        (_entry(codec="int8", nbytes=4, scale_offset=16, scale_nbytes=8), 32, "scale bytes"),
        (_entry(codec="int8", nbytes=4), 16, "scale_offset"),
        (_entry(name=""), 16, "name"),
        (_entry(scale_offset=0, scale_nbytes=4), 16, "scales given"),
        (_entry(shape=[2**30, 2**30], nbytes=4 * 2**60), 16, "exceed the limit"),
    ],
)
def test_malformed_entries(entry: dict, data_len: int, match: str) -> None:
    msg = _raw_message({"meta": {}, "tensors": [entry], "data_bytes": data_len}, b"\0" * data_len)
    with pytest.raises(WireFormatError, match=match):
        wire.decode(msg)


def test_malformed_headers() -> None:
    cases = [
        ({"meta": {}, "tensors": []}, "keys"),
        ({"meta": [], "tensors": [], "data_bytes": 0}, "meta must be a map"),
        ({"meta": {}, "tensors": {}, "data_bytes": 0}, "tensors must be a list"),
        ({"meta": {}, "tensors": [], "data_bytes": -1}, "data_bytes"),
        ({"meta": {}, "tensors": [_entry(), _entry()], "data_bytes": 32}, "unique"),
        ({"meta": {}, "tensors": [_entry(), _entry(name="y")], "data_bytes": 32}, "overlaps"),
    ]
    for header, match in cases:
        with pytest.raises(WireFormatError, match=match):
            wire.decode(_raw_message(header, b"\0" * max(0, header.get("data_bytes", 0))))
    with pytest.raises(WireFormatError, match="malformed msgpack"):
        wire.decode(struct.pack("<4sBBI", wire.MAGIC, 1, 0, 3) + b"\xc1\xc1\xc1")
    with pytest.raises(WireFormatError, match="extension type"):
        ext = msgpack.packb({"meta": msgpack.ExtType(5, b"x"), "tensors": [], "data_bytes": 0})
        wire.decode(struct.pack("<4sBBI", wire.MAGIC, 1, 0, len(ext)) + ext + b"\0" * ((-(10 + len(ext))) % 16))


def test_bool_bytes_must_be_0_or_1() -> None:
    msg = _raw_message(
        {"meta": {}, "tensors": [_entry(dtype="bool", shape=[2], nbytes=2)], "data_bytes": 16}, b"\x01\x07" + b"\0" * 14
    )
    with pytest.raises(WireFormatError, match="bool"):
        wire.decode(msg)


def test_oversize_checked_before_parsing() -> None:
    data = _small_message()
    with pytest.raises(WireFormatError, match="exceeds the limit"):
        wire.decode(data, limits=WireLimits(max_message_bytes=len(data) - 1))
    with pytest.raises(WireFormatError, match="header length"):
        wire.decode(data, limits=WireLimits(max_header_bytes=8))
    with pytest.raises(WireFormatError, match="decoded arrays"):
        wire.decode(data, limits=WireLimits(max_decoded_bytes=8))


def test_decoded_arrays_are_read_only_views_unless_copied() -> None:
    data = wire.encode({"x": np.ones(4, np.float32)})
    assert not wire.decode(data)["x"].flags.writeable
    y = wire.decode(data, copy=True)["x"]
    y[0] = 5.0
    assert y[0] == 5.0


def test_read_header_without_arrays() -> None:
    meta, infos = wire.read_header(_small_message())
    assert meta == {"kind": "act"}
    assert [(i.name, i.dtype, i.shape, i.codec) for i in infos] == [
        ("h", "float32", (2, 3), "int8_token"),
        ("ids", "int64", (2,), "none"),
    ]


# ------------------------------------------------------------------------------------------------ fuzzing

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    with pytest.raises(WireFormatError):
        wire.decode(data)


@_FUZZ
@given(st.binary(max_size=256))
def test_fuzz_random_bytes_after_valid_prefix(tail: bytes) -> None:
    data = struct.pack("<4sBBI", wire.MAGIC, wire.WIRE_VERSION, 0, len(tail)) + tail
    try:
        msg = wire.decode(data)
    except WireFormatError:
        return
    assert isinstance(msg.arrays, dict)  # a random header that happens to be valid must decode consistently


@_FUZZ
@given(st.data())
def test_fuzz_mutated_valid_messages(data: st.DataObject) -> None:
    base = bytearray(_small_message())
    n_mut = data.draw(st.integers(1, 8))
    for _ in range(n_mut):
        pos = data.draw(st.integers(0, len(base) - 1))
        base[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    try:
        msg = wire.decode(bytes(base[:cut]))
    except WireFormatError:
        return
    for name, arr in msg.arrays.items():  # anything that decodes is internally consistent
        info = next(i for i in msg.tensors if i.name == name)
        assert arr.shape == info.shape


# ------------------------------------------------------------------------------------------------ Payload


def test_payload_roundtrip_compresses_only_activations() -> None:
    torch = pytest.importorskip("torch")
    base = pytest.importorskip("executor.models.base")
    g = torch.Generator().manual_seed(0)
    p = base.Payload(
        kind="activations",
        cut=3,
        tensors={"hidden": torch.randn(1, 5, 8, generator=g), "ids": torch.arange(5), "state": torch.randn(1, 7)},
        step=2,
        activations=("hidden",),
        meta={"note": "x"},
    )
    q = wire.decode_payload(wire.encode_payload(p, compression="int8"), device="cpu")
    assert (q.kind, q.cut, q.step, q.activations, q.meta) == ("activations", 3, 2, ("hidden",), {"note": "x"})
    assert torch.equal(q.tensors["ids"], p.tensors["ids"]) and torch.equal(q.tensors["state"], p.tensors["state"])
    err = (q.tensors["hidden"] - p.tensors["hidden"]).abs().max().item()
    assert 0 < err <= p.tensors["hidden"].abs().max().item() / 254 * (1 + 1e-5)
    as_numpy = wire.decode_payload(wire.encode_payload(p))
    assert isinstance(as_numpy.tensors["hidden"], np.ndarray)
    assert np.array_equal(as_numpy.tensors["hidden"], p.tensors["hidden"].numpy())
    with pytest.raises(WireFormatError, match="payload header"):
        wire.decode_payload(wire.encode({"x": np.ones(2)}))
