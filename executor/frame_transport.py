"""Camera frames on the wire in the configured encoding (``executor.wire_config.WireConfig.image``).

The edge replaces a payload's ``images`` tensor (uint8 cameras x H x W x 3) by one uint8 byte tensor per camera
(``images@0``, ``images@1``, ...) holding the encoded frame, and announces the encoding and the original shape in the
payload meta (``{"frames": {"encoding": "jpeg:90", "shape": [C, H, W, 3]}}``). The receiver (``decode_frames``, called
by ``executor.protocol.to_payload``) decodes them back into ``images`` before the model sees the payload. A payload
without the ``frames`` entry (raw frames, openpi clients' raw arrays) passes through unchanged.

Decoding is hostile-input safe: the encoding is re-parsed, the announced shape bounded, each frame's own header size
checked against it before its pixels are decoded (``executor.camera``), and every problem raises ``ImageCodecError``
(a ValueError: the server answers a bad request).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from executor.camera import IMAGE_TENSOR, EncodedImages, ImageCodecError, ImageEncoding
from executor.wire_config import FRAMES_META_KEY, WireConfig, frames_meta

MAX_CAMERAS = 16
MAX_FRAME_PX = 4096


def frame_tensor(i: int) -> str:
    return f"{IMAGE_TENSOR}@{i}"


def encode_frames(payload: Any, wire: WireConfig) -> Any:
    """``payload`` (an ``executor.models.Payload``) with its camera frames encoded under ``wire``; the same object
    when it carries no frames or the frames travel raw."""
    if IMAGE_TENSOR not in payload.tensors or not wire.frames_encoded:
        return payload
    enc = wire.encoding
    from executor.models.base import Payload

    images = payload.tensors[IMAGE_TENSOR]
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    encoded = enc.encode(np.ascontiguousarray(arr))
    tensors = {k: v for k, v in payload.tensors.items() if k != IMAGE_TENSOR}
    for i, data in enumerate(encoded.frames):
        tensors[frame_tensor(i)] = np.frombuffer(data, dtype=np.uint8)
    meta = {**payload.meta, **frames_meta(wire, arr.shape)}
    return Payload(
        kind=payload.kind,
        cut=payload.cut,
        tensors=tensors,
        step=payload.step,
        activations=payload.activations,
        meta=meta,
    )


def decode_frames(tensors: dict[str, Any], payload_meta: dict[str, Any]) -> dict[str, Any]:
    """``tensors`` with encoded camera frames (as announced by ``payload_meta["frames"]``) decoded into ``images``
    (uint8 numpy, cameras x H x W x 3). Unchanged when nothing is announced. Raises ImageCodecError."""
    spec = payload_meta.get(FRAMES_META_KEY)
    if spec is None:
        return tensors
    if not isinstance(spec, dict) or set(spec) != {"encoding", "shape"}:
        raise ImageCodecError(f"frames entry must be a map with encoding and shape, got {spec!r}")
    try:
        enc = ImageEncoding.parse(spec["encoding"])
    except (ValueError, TypeError) as e:
        raise ImageCodecError(f"frames: {e}") from e
    shape = spec["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or any(type(s) is not int for s in shape)
        or shape[3] != 3
        or not 1 <= shape[0] <= MAX_CAMERAS
        or not all(1 <= s <= MAX_FRAME_PX for s in shape[1:3])
    ):
        raise ImageCodecError(
            f"frames: shape must be [cameras<={MAX_CAMERAS}, H, W, 3] with H, W <= {MAX_FRAME_PX}, got {shape!r}"
        )
    names = [frame_tensor(i) for i in range(shape[0])]
    if IMAGE_TENSOR in tensors or any(n not in tensors for n in names):
        raise ImageCodecError(f"frames: expected tensors {names} (and no raw {IMAGE_TENSOR!r}), got {sorted(tensors)}")
    frames = []
    for n in names:
        t = tensors[n]
        a = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
        if a.dtype != np.uint8 or a.ndim != 1:
            raise ImageCodecError(f"frames: {n} must be a 1-D uint8 byte tensor, got {a.dtype} {a.shape}")
        frames.append(a.tobytes())
    images = EncodedImages(tuple(frames), tuple(shape), enc).decode()  # type: ignore[arg-type]
    out = {k: v for k, v in tensors.items() if k not in names}
    out[IMAGE_TENSOR] = images
    return out


__all__ = ["decode_frames", "encode_frames", "frame_tensor"]
