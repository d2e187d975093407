"""Camera frames on the wire: spec parsing, round trips (exact for raw/png), JPEG sizes and error bounds, resized
frames, corrupt data, and the per-cut bytes of every family under an image encoding."""

from __future__ import annotations

import numpy as np
import pytest

from executor.camera import (
    ImageCodecError,
    ImageEncoding,
    encoded_cut_specs,
    encoded_image_bytes,
    image_crossings,
    image_shape,
    measure_encoding,
    profile_with_image_encoding,
    sample_frames,
)


@pytest.fixture(scope="module")
def frames():
    return sample_frames(2, 224, seed=0)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("raw", ImageEncoding()),
        ("png", ImageEncoding("png")),
        ("jpeg", ImageEncoding("jpeg", 90)),
        ("JPEG:75", ImageEncoding("jpeg", 75)),
        ("resize:128", ImageEncoding("raw", resize_px=128)),
        ("resize:128+jpeg:60", ImageEncoding("jpeg", 60, 128)),
    ],
)
def test_parse_and_label_round_trip(spec, expected):
    enc = ImageEncoding.parse(spec)
    assert enc == expected
    assert ImageEncoding.parse(enc.label) == enc


@pytest.mark.parametrize(
    "spec", ["", "jpeg:0", "jpeg:96", "gif", "png:3", "resize", "jpeg+png", "a+b+c", "resize:0", "raw:1"]
)
def test_bad_specs_name_the_problem(spec):
    with pytest.raises(ValueError, match="encoding|quality|resize"):
        ImageEncoding.parse(spec)


def test_bad_spec_types():
    with pytest.raises(TypeError):
        ImageEncoding.parse(90)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        ImageEncoding("jpeg", quality=True)  # type: ignore[arg-type]


def test_sample_frames_are_deterministic_photographs(frames):
    assert frames.shape == (2, 224, 224, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, sample_frames(2, 224, seed=0))
    assert not np.array_equal(frames, sample_frames(2, 224, seed=1))
    assert not np.array_equal(frames[0], frames[1])  # each camera sees a different crop
    # a photograph, not noise: neighbouring pixels are strongly correlated
    f = frames[0].astype(np.float64).mean(-1)
    assert np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1] > 0.8


@pytest.mark.parametrize("spec", ["raw", "png"])
def test_lossless_round_trip_is_exact(frames, spec):
    enc = ImageEncoding.parse(spec)
    encoded = enc.encode(frames)
    assert np.array_equal(encoded.decode(), frames)
    assert len(encoded.frames) == 2
    if spec == "raw":
        assert encoded.nbytes == frames.nbytes
    else:
        assert encoded.nbytes < frames.nbytes


def test_jpeg_sizes_shrink_with_quality_and_errors_grow(frames):
    stats = {q: measure_encoding(f"jpeg:{q}", frames, repeats=1) for q in (30, 60, 90, 95)}
    sizes = [stats[q].encoded_bytes for q in (30, 60, 90, 95)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert stats[90].ratio < 0.25  # JPEG of a photo: a fraction of the raw bytes (VLA-Perf assumes ~10%)
    psnr = [stats[q].psnr_db for q in (30, 60, 90, 95)]
    assert psnr == sorted(psnr)
    assert stats[90].psnr_db > 35 and stats[90].mean_abs_error < 3  # visually lossless at q90
    assert stats[30].max_abs_error > stats[95].max_abs_error
    for s in stats.values():
        assert s.raw_bytes == frames.nbytes and s.encode_ms > 0 and s.decode_ms > 0


def test_jpeg_decode_is_the_bytes_it_was_given(frames):
    enc = ImageEncoding.parse("jpeg:80")
    a, b = enc.encode(frames), enc.encode(frames)
    assert a.frames == b.frames  # Pillow's encoder is deterministic
    out = a.decode()
    assert out.shape == frames.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frames.astype(int))
    assert 0 < err.mean() < 4


def test_resize_sends_fewer_pixels_and_restores_the_shape(frames):
    enc = ImageEncoding.parse("resize:112")
    encoded = enc.encode(frames)
    assert encoded.nbytes == 2 * 112 * 112 * 3
    out = encoded.decode()
    assert out.shape == frames.shape
    assert measure_encoding(enc, frames, repeats=1).psnr_db > 20
    both = ImageEncoding.parse("resize:112+jpeg:90").encode(frames)
    assert both.nbytes < encoded.nbytes and both.decode().shape == frames.shape


def test_corrupt_or_mismatched_frames_raise(frames):
    enc = ImageEncoding.parse("jpeg:90")
    good = enc.encode(frames)
    broken = type(good)((good.frames[0][: len(good.frames[0]) // 3], good.frames[1]), good.shape, enc)
    with pytest.raises(ImageCodecError):
        broken.decode()
    png = ImageEncoding("png").encode(frames)
    wrong_codec = type(good)(png.frames, good.shape, enc)
    with pytest.raises(ImageCodecError, match="PNG"):
        wrong_codec.decode()
    short = type(good)(good.frames[:1], good.shape, enc)
    with pytest.raises(ImageCodecError, match="cameras"):
        short.decode()
    raw = ImageEncoding().encode(frames)
    with pytest.raises(ImageCodecError, match="bytes"):
        type(raw)((raw.frames[0][:-1], raw.frames[1]), raw.shape, raw.encoding).decode()
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(frames.astype(np.float32))
    with pytest.raises(TypeError):
        enc.encode([1, 2, 3])  # type: ignore[arg-type]


def test_encoded_image_bytes(frames):
    assert encoded_image_bytes("raw", 3, 224) == 3 * 224 * 224 * 3
    assert encoded_image_bytes("resize:64", 3, 224) == 3 * 64 * 64 * 3
    jpeg = encoded_image_bytes("jpeg:90", 2, 224)
    assert jpeg == ImageEncoding.parse("jpeg:90").encode(sample_frames(2, 224, seed=0)).nbytes
    with pytest.raises(ValueError):
        encoded_image_bytes("raw", 0, 224)


@pytest.mark.parametrize("family", ["openvla", "pi0", "smolvla"])
def test_cut_bytes_under_an_image_encoding(family):
    from executor.models import build_model

    m = build_model(family, "full")
    shape = image_shape(m)
    raw = m.cut_specs("float16")
    jpeg = encoded_cut_specs(m, "float16", "jpeg:90")
    crossing = image_crossings(m)
    assert crossing[0] and not crossing[m.num_blocks]  # cloud-only uploads the frames, edge-only sends nothing
    delta = encoded_image_bytes("jpeg:90", shape.cameras, shape.image_px) - shape.raw_bytes
    assert delta < 0
    for r, j, carries in zip(raw, jpeg, crossing):
        assert j.up_bytes == r.up_bytes + (delta if carries else 0)
        assert (j.down_bytes, j.k, j.placement) == (r.down_bytes, r.k, r.placement)
    assert encoded_cut_specs(m, "float16", "raw") == raw
    if family != "openvla":  # pi0/smolvla: the reverse cut also uploads the frames; no forward middle cut does
        assert crossing[m.num_blocks + 1] and not any(crossing[1 : m.num_blocks])


def test_profile_with_image_encoding_records_it():
    from executor.models import build_model
    from executor.roofline import roofline_profile_for

    m = build_model("pi0", "full")
    prof = roofline_profile_for("pi0", "full", "orin", wire_dtype="int8")
    jp = profile_with_image_encoding(prof, m, "jpeg:75")
    assert jp.notes["image_encoding"] == "jpeg:75" and jp.block_ms == prof.block_ms
    assert jp.cuts[0].up_bytes < prof.cuts[0].up_bytes and jp.cuts[5] == prof.cuts[5]
    with pytest.raises(ValueError, match="already"):
        profile_with_image_encoding(jp, m, "jpeg:90")
    with pytest.raises(ValueError, match="does not describe"):
        profile_with_image_encoding(prof, build_model("smolvla", "full"), "jpeg:90")
