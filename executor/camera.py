"""Camera input on the wire: raw, PNG (lossless), JPEG at a quality (Pillow), optionally downscaled first.

The cut-0 upload (and any cut whose upload still carries the camera frames, e.g. pi0's "VLM on the cloud" cut) costs
the *encoded* frames, not the raw array. This module encodes and decodes frames, measures bytes, encode/decode time
and error, and rewrites a model's per-cut wire costs for an encoding (``encoded_cut_specs`` /
``apply_image_encoding``).

Encoding specs (``ImageEncoding.parse``): ``raw``, ``png``, ``jpeg`` (quality 90), ``jpeg:Q`` (Q in 1..95),
``resize:PX`` (square downscale before sending, bilinear upscale back to the model's size on the receiver), and
``resize:PX+jpeg:Q`` / ``resize:PX+png``.

Encoded sizes of lossy/lossless codecs depend on the content; for cost estimates they are measured on real
photographs (crops of matplotlib's bundled ``grace_hopper.jpg`` sample, deterministic per seed), see
``sample_frames``. That photo was itself JPEG-compressed once, so re-encoding it is slightly easier than encoding
a fresh sensor frame.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from executor.profile import CutSpec, Profile

if TYPE_CHECKING:  # pragma: no cover
    from executor.models.base import SplitModel

log = logging.getLogger(__name__)

Codec = Literal["raw", "png", "jpeg"]
CODECS: tuple[str, ...] = ("raw", "png", "jpeg")
DEFAULT_JPEG_QUALITY = 90
IMAGE_TENSOR = "images"  # name of the camera-frame tensor in every family's observation
_SAMPLE = "grace_hopper.jpg"


class ImageCodecError(ValueError):
    """Bytes that do not decode to the expected frame (corrupt data, wrong size or mode)."""


@dataclass(frozen=True)
class ImageEncoding:
    """How camera frames travel: ``codec`` after an optional square downscale to ``resize_px``."""

    codec: Codec = "raw"
    quality: int = DEFAULT_JPEG_QUALITY  # JPEG only (Pillow quality, 1..95)
    resize_px: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown image codec {self.codec!r}; valid: {', '.join(CODECS)}")
        if (
            isinstance(self.quality, bool)
            or not isinstance(self.quality, (int, np.integer))
            or not 1 <= self.quality <= 95
        ):
            raise ValueError(f"JPEG quality must be an int in 1..95, got {self.quality!r}")
        if self.resize_px is not None and (
            isinstance(self.resize_px, bool) or not isinstance(self.resize_px, int) or self.resize_px < 1
        ):
            raise ValueError(f"resize_px must be a positive int or None, got {self.resize_px!r}")

    @classmethod
    def parse(cls, spec: str | ImageEncoding | None) -> ImageEncoding:
        """``raw`` | ``png`` | ``jpeg[:Q]`` | ``resize:PX`` | ``resize:PX+jpeg[:Q]`` | ``resize:PX+png``."""
        if spec is None:
            return cls()
        if isinstance(spec, ImageEncoding):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"image encoding must be a string or ImageEncoding, got {type(spec).__name__}")
        codec: str = "raw"
        quality = DEFAULT_JPEG_QUALITY
        resize: int | None = None
        parts = [p.strip().lower() for p in spec.split("+")]
        if not spec.strip() or len(parts) > 2:
            raise ValueError(f"bad image encoding {spec!r}; expected e.g. raw, png, jpeg:90, resize:224+jpeg:80")
        for part in parts:
            m = re.fullmatch(r"(raw|png|jpeg|jpg|resize)(?::(\d+))?", part)
            if m is None:
                raise ValueError(
                    f"bad image encoding {spec!r} (part {part!r}); expected raw, png, jpeg[:Q] or "
                    "resize:PX, joined by '+'"
                )
            name, arg = m.group(1), m.group(2)
            if name == "resize":
                if arg is None or resize is not None:
                    raise ValueError(f"bad image encoding {spec!r}: use one resize:PX")
                resize = int(arg)
            else:
                if codec != "raw" or (name in ("raw", "png") and arg is not None):
                    raise ValueError(f"bad image encoding {spec!r}: one codec, only jpeg takes a quality")
                codec = "jpeg" if name in ("jpeg", "jpg") else name
                if arg is not None:
                    quality = int(arg)
        return cls(codec=codec, quality=quality, resize_px=resize)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """Canonical spec string (``parse(label) == self``)."""
        codec = f"jpeg:{self.quality}" if self.codec == "jpeg" else self.codec
        if self.resize_px is None:
            return codec
        return f"resize:{self.resize_px}" + ("" if self.codec == "raw" else f"+{codec}")

    @property
    def lossless(self) -> bool:
        return self.codec != "jpeg" and self.resize_px is None

    # ---- encode / decode ----------------------------------------------------------------------------------------
    def encode(self, images: np.ndarray) -> EncodedImages:
        """Encode uint8 frames (cameras, H, W, 3) into one byte string per camera."""
        images = _check_frames(images)
        frames = []
        for img in images:
            if self.resize_px is not None and self.resize_px != img.shape[0]:
                img = _resize(img, self.resize_px)
            frames.append(_encode_frame(np.ascontiguousarray(img), self))
        return EncodedImages(tuple(frames), tuple(images.shape), self)  # type: ignore[arg-type]

    def decode(self, encoded: EncodedImages) -> np.ndarray:
        """Frames back at their original shape (uint8); raw and png are bit-exact."""
        if not isinstance(encoded, EncodedImages):
            raise TypeError(f"expected EncodedImages, got {type(encoded).__name__}")
        cams, h, w, _ = encoded.shape
        sent = self.resize_px or h
        out = np.empty(encoded.shape, dtype=np.uint8)
        if len(encoded.frames) != cams:
            raise ImageCodecError(f"{len(encoded.frames)} encoded frames for {cams} cameras")
        for i, data in enumerate(encoded.frames):
            img = _decode_frame(data, self, (sent, sent if self.resize_px else w))
            if img.shape[:2] != (h, w):
                img = _resize(img, h, w)
            out[i] = img
        return out


@dataclass(frozen=True)
class EncodedImages:
    """Encoded camera frames: one byte string per camera, with the original (cameras, H, W, 3) shape."""

    frames: tuple[bytes, ...]
    shape: tuple[int, int, int, int]
    encoding: ImageEncoding

    @property
    def nbytes(self) -> int:
        return int(sum(len(f) for f in self.frames))

    def decode(self) -> np.ndarray:
        return self.encoding.decode(self)


@dataclass(frozen=True)
class EncodingStats:
    """Measured cost of one encoding on a batch of frames (times: median over repeats, on this machine)."""

    encoding: str
    cameras: int
    image_px: int
    raw_bytes: int
    encoded_bytes: int
    encode_ms: float
    decode_ms: float
    max_abs_error: int
    mean_abs_error: float
    psnr_db: float  # inf for lossless

    @property
    def ratio(self) -> float:
        """Encoded / raw bytes."""
        return self.encoded_bytes / self.raw_bytes


def _check_frames(images: np.ndarray) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"frames must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise ValueError(f"frames must be uint8 (cameras, H, W, 3), got {images.dtype} {images.shape}")
    return images


def _resize(img: np.ndarray, h: int, w: int | None = None) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w or h, h), Image.Resampling.BILINEAR))


def _encode_frame(img: np.ndarray, enc: ImageEncoding) -> bytes:
    if enc.codec == "raw":
        return img.tobytes()
    from PIL import Image

    buf = io.BytesIO()
    if enc.codec == "png":
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)  # fast setting, as a robot would use
    else:
        Image.fromarray(img).save(buf, format="JPEG", quality=int(enc.quality))
    return buf.getvalue()


def _decode_frame(data: bytes, enc: ImageEncoding, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if enc.codec == "raw":
        if len(data) != h * w * 3:
            raise ImageCodecError(f"raw frame has {len(data)} bytes, expected {h}x{w}x3 = {h * w * 3}")
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            if im.size != (w, h):  # before decoding any pixels: a hostile header cannot make us allocate
                raise ImageCodecError(f"{enc.codec} frame is {im.size[0]}x{im.size[1]}, expected {w}x{h}")
            im.load()
            arr = np.asarray(im.convert("RGB")) if im.mode != "RGB" else np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageCodecError(f"cannot decode {enc.codec} frame ({len(data)} bytes): {e}") from e
    if fmt != enc.codec.upper():
        raise ImageCodecError(f"frame is {fmt}, expected {enc.codec.upper()}")
    if arr.shape != (h, w, 3):
        raise ImageCodecError(f"decoded frame has shape {arr.shape}, expected {(h, w, 3)}")
    return arr


# ---- sample frames and measurement -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _sample_photo() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data(_SAMPLE, asfileobj=False)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def sample_frames(cameras: int, image_px: int, seed: int = 0) -> np.ndarray:
    """Real photographic frames (cameras, image_px, image_px, 3) uint8: seeded crops of a bundled photo, resized.

    Each camera gets a different square crop (side 60-100% of the photo's short side) and a random flip.
    """
    if cameras < 1 or image_px < 1:
        raise ValueError(f"cameras and image_px must be >= 1, got {cameras}, {image_px}")
    photo = _sample_photo()
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    out = np.empty((cameras, image_px, image_px, 3), dtype=np.uint8)
    for i in range(cameras):
        side = int(rng.integers(int(0.6 * min(h, w)), min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = _resize(np.ascontiguousarray(crop), image_px)
    return out


def measure_encoding(encoding: str | ImageEncoding, images: np.ndarray, *, repeats: int = 5) -> EncodingStats:
    """Bytes, median encode/decode time and round-trip error of ``encoding`` on ``images``."""
    enc = ImageEncoding.parse(encoding)
    images = _check_frames(images)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    enc_ms, dec_ms = [], []
    encoded = enc.encode(images)  # warm-up (Pillow plugin import); also the result measured below
    decoded = enc.decode(encoded)
    for _ in range(repeats):
        t0 = time.perf_counter()
        encoded = enc.encode(images)
        t1 = time.perf_counter()
        decoded = enc.decode(encoded)
        t2 = time.perf_counter()
        enc_ms.append((t1 - t0) * 1e3)
        dec_ms.append((t2 - t1) * 1e3)
    diff = np.abs(decoded.astype(np.int16) - images.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return EncodingStats(
        encoding=enc.label,
        cameras=images.shape[0],
        image_px=images.shape[1],
        raw_bytes=int(images.nbytes),
        encoded_bytes=encoded.nbytes,
        encode_ms=float(np.median(enc_ms)),
        decode_ms=float(np.median(dec_ms)),
        max_abs_error=int(diff.max()),
        mean_abs_error=float(diff.mean()),
        psnr_db=float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
    )


@functools.lru_cache(maxsize=256)
def _encoded_bytes(enc: ImageEncoding, cameras: int, image_px: int, seed: int) -> int:
    if enc.codec == "raw":
        px = enc.resize_px or image_px
        return cameras * px * px * 3
    return enc.encode(sample_frames(cameras, image_px, seed)).nbytes


def encoded_image_bytes(encoding: str | ImageEncoding, cameras: int, image_px: int, *, seed: int = 0) -> int:
    """Bytes of ``cameras`` encoded frames of ``image_px``: exact for raw (and resized raw), measured on
    ``sample_frames(cameras, image_px, seed)`` for png/jpeg (deterministic)."""
    if cameras < 1 or image_px < 1:
        raise ValueError(f"cameras and image_px must be >= 1, got {cameras}, {image_px}")
    return _encoded_bytes(ImageEncoding.parse(encoding), int(cameras), int(image_px), int(seed))


# ---- per-cut wire costs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageShape:
    """Camera frames of a model's observation: ``cameras`` frames of ``image_px`` x ``image_px`` x 3 uint8."""

    cameras: int
    image_px: int

    @property
    def raw_bytes(self) -> int:
        return self.cameras * self.image_px * self.image_px * 3


def image_shape(model: SplitModel) -> ImageShape:
    """The camera frames a model reads (from its observation at cut 0)."""
    specs = {s.name: s for s in model._payload_specs(0)}
    if IMAGE_TENSOR not in specs:
        raise ValueError(f"{model.family}/{model.preset} observation has no {IMAGE_TENSOR!r} tensor")
    cams, h, w, ch = specs[IMAGE_TENSOR].shape
    if h != w or ch != 3:
        raise ValueError(f"{model.family}: expected square RGB frames, got {specs[IMAGE_TENSOR].shape}")
    return ImageShape(cams, h)


def image_crossings(model: SplitModel) -> tuple[bool, ...]:
    """Per cut index (as ``model.cut_specs()``): does the upload carry the raw camera frames?"""
    out = []
    for i in range(model.num_cuts):
        placement, k = model.placement(i)
        if placement == "edge_then_cloud":
            specs = model._payload_specs(k) if k < model.num_blocks else []
        else:
            specs = model._reverse_specs(k)[0]
        out.append(any(s.name == IMAGE_TENSOR for s in specs))
    return tuple(out)


def apply_image_encoding(
    cuts: Sequence[CutSpec],
    crossings: Sequence[bool],
    shape: ImageShape,
    encoding: str | ImageEncoding | None,
    *,
    seed: int = 0,
) -> list[CutSpec]:
    """Cuts whose upload carries the frames pay the encoded frame bytes instead of the raw ones."""
    enc = ImageEncoding.parse(encoding)
    if len(cuts) != len(crossings):
        raise ValueError(f"{len(cuts)} cuts but {len(crossings)} image-crossing flags")
    delta = encoded_image_bytes(enc, shape.cameras, shape.image_px, seed=seed) - shape.raw_bytes
    out = []
    for cut, carries in zip(cuts, crossings):
        if carries:
            if cut.up_bytes < shape.raw_bytes:
                raise ValueError(
                    f"cut {cut.name or cut.k} uploads {cut.up_bytes} bytes, fewer than the raw frames "
                    f"({shape.raw_bytes}): cuts and image shape do not match"
                )
            cut = replace(cut, up_bytes=cut.up_bytes + delta)
        out.append(cut)
    return out


def encoded_cut_specs(
    model: SplitModel, wire_dtype: str = "float32", image_encoding: str | ImageEncoding | None = None
) -> list[CutSpec]:
    """``model.cut_specs(wire_dtype)`` with the camera frames priced in ``image_encoding`` (default raw)."""
    cuts = model.cut_specs(wire_dtype)
    if ImageEncoding.parse(image_encoding) == ImageEncoding():
        return cuts
    return apply_image_encoding(cuts, image_crossings(model), image_shape(model), image_encoding)


def profile_with_image_encoding(
    profile: Profile, model: SplitModel, image_encoding: str | ImageEncoding | None
) -> Profile:
    """A Profile of ``model`` whose cut costs use ``image_encoding`` for the camera frames (notes record it)."""
    if (profile.model_id, profile.preset, profile.block_names) != (model.family, model.preset, model.block_names):
        raise ValueError(f"profile {profile.model_id}/{profile.preset} does not describe {model.family}/{model.preset}")
    if profile.notes.get("image_encoding", "raw") != "raw":
        raise ValueError(f"profile already priced with image encoding {profile.notes['image_encoding']!r}")
    enc = ImageEncoding.parse(image_encoding)
    cuts = apply_image_encoding(profile.cuts, image_crossings(model), image_shape(model), enc)
    return replace(profile, cuts=tuple(cuts), notes={**profile.notes, "image_encoding": enc.label})


__all__ = [
    "CODECS",
    "EncodedImages",
    "EncodingStats",
    "ImageCodecError",
    "ImageEncoding",
    "ImageShape",
    "apply_image_encoding",
    "encoded_cut_specs",
    "encoded_image_bytes",
    "image_crossings",
    "image_shape",
    "measure_encoding",
    "profile_with_image_encoding",
    "sample_frames",
]
