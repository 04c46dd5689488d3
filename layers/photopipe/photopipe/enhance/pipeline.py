"""Enhance one photo: decode upright → detect → align → restore (one batched ONNX call, elsewhere) →
upscale the background → paste the faces back → JPEG.

Split in two halves so a GPU worker can batch faces across jobs: `prepare` (CPU: decode, detect, align)
gives the model-ready faces, the worker restores any number of photos' faces in one call, and `finish`
(CPU: upscale, paste, encode) puts each photo back together. `enhance` is the single-photo path."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from photopipe.enhance.faces import (
    FACE_SIZE,
    Face,
    FaceDetector,
    align_face,
    estimate_alignment,
    faces_to_input,
    output_to_faces,
    paste_face,
)
from photopipe.enhance.session import FaceRestorer
from photopipe.enhance.upscale import LanczosUpscaler, TiledOnnxUpscaler, Upscaler
from photopipe.errors import ImageRejected
from photopipe.imaging import Limits, identify
from photopipe.imaging.decode import decode, fit
from photopipe.imaging.spool import too_large_message
from photopipe.models import EnhanceParams

__all__ = [
    "NO_FACE_NOTE",
    "EnhancedPhoto",
    "FaceRestorer",
    "PipelineEnhancer",
    "PreparedPhoto",
    "decode_upright",
    "detect_faces",
    "enhance",
    "finish",
    "prepare",
]

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95
NO_FACE_NOTE = "no face found; the photo was upscaled only"
# Output pixels allowed: the input limit x 16 (a x4 of a 100 MP photo would not fit in memory).
MAX_OUTPUT_PIXELS = 400_000_000


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo decoded upright, its faces found and aligned, ready for the face model."""

    image: np.ndarray  # HxWx3 uint8 RGB, upright
    params: EnhanceParams
    faces: np.ndarray  # float32 (k, 3, 512, 512) RGB in [-1, 1]: the face model's input
    affines: np.ndarray  # float64 (k, 2, 3): photo px → aligned-face px
    landmarks: np.ndarray  # float32 (k, 5, 2), photo px
    boxes: np.ndarray  # float32 (k, 4) x1, y1, x2, y2, photo px
    scores: np.ndarray  # float32 (k,)
    timings: dict[str, float]  # ms: decode, detect, align
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def face_count(self) -> int:
        return int(self.faces.shape[0])


@dataclass(frozen=True)
class EnhancedPhoto:
    jpeg: bytes
    width: int
    height: int
    faces: int
    timings: dict[str, float]  # ms: decode, detect, align, restore, paste, upscale, encode
    notes: list[str] = field(default_factory=list)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round((time.perf_counter() - started) * 1000, 2)


# --- prepare --------------------------------------------------------------------------------------


def decode_upright(data: bytes, limits: Limits | None = None) -> np.ndarray:
    """The photo as upright sRGB HxWx3 uint8 (transparency flattened on white). `ImageRejected` for
    anything that is not a decodable image within `limits`."""
    limits = limits or Limits()
    if not data:
        raise ImageRejected("the file is empty (0 bytes)", code="empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(too_large_message(limits.max_bytes), code="too_large")
    image_format = identify(data[:4096])
    # a preview side no photo reaches: the imaging core's guarded decode, at full size
    full = Limits(
        max_bytes=limits.max_bytes,
        max_pixels=limits.max_pixels,
        min_side=limits.min_side,
        thumb_side=limits.thumb_side,
        preview_side=1 << 30,
    )
    decoded = decode(io.BytesIO(data), image_format, full)
    image = decoded.image
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def detect_faces(image: np.ndarray, params: EnhanceParams, detector: FaceDetector) -> list[Face]:
    """Faces in `image` (photo px), detected on a copy no larger than the level's `detect_side`,
    smaller ones than its `min_face` dropped, best first."""
    level = params.level
    height, width = image.shape[:2]
    small_w, small_h = fit(width, height, level.detect_side)
    if (small_w, small_h) != (width, height):
        small = np.asarray(Image.fromarray(image).resize((small_w, small_h), Image.Resampling.BOX))
        factor = width / small_w
        found = [f.scaled(factor) for f in detector.detect(small)]
    else:
        found = detector.detect(image)
    return [f for f in found if f.size >= level.min_face]


def prepare(data: bytes, params: EnhanceParams, detector: FaceDetector) -> PreparedPhoto:
    """Decode, detect and align: everything before the face model. Raises `ImageRejected`."""
    timings: dict[str, float] = {}
    with _timed(timings, "decode"):
        image = decode_upright(data)
    output_pixels = image.shape[0] * image.shape[1] * params.scale**2
    if output_pixels > MAX_OUTPUT_PIXELS:
        raise ImageRejected(
            f"x{params.scale} would make {output_pixels / 1e6:.0f} MP, over the "
            f"{MAX_OUTPUT_PIXELS / 1e6:.0f} MP output limit; ask for a smaller scale",
            code="too_many_pixels",
        )
    with _timed(timings, "detect"):
        found = detect_faces(image, params, detector)
    with _timed(timings, "align"):
        affines, crops, kept = [], [], []
        for face in found:
            try:
                affine = estimate_alignment(face.landmarks, FACE_SIZE)
            except ValueError:
                logger.warning("face skipped: degenerate landmarks", extra={"box": face.box})
                continue
            affines.append(affine)
            crops.append(align_face(image, affine, FACE_SIZE))
            kept.append(face)
        faces = faces_to_input(crops, FACE_SIZE)
    return PreparedPhoto(
        image=image,
        params=params,
        faces=faces,
        affines=np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3),
        landmarks=np.asarray([f.landmarks for f in kept], dtype=np.float32).reshape(-1, 5, 2),
        boxes=np.asarray([f.box for f in kept], dtype=np.float32).reshape(-1, 4),
        scores=np.asarray([f.score for f in kept], dtype=np.float32),
        timings=timings,
        notes=() if kept else (NO_FACE_NOTE,),
    )


# --- finish ---------------------------------------------------------------------------------------


def background_upscaler(params: EnhanceParams, upscaler: Upscaler) -> tuple[Upscaler, list[str]]:
    """The upscaler the level allows (fast/medium: always Lanczos) at the request's tile size."""
    notes: list[str] = []
    if isinstance(upscaler, TiledOnnxUpscaler):
        if not params.level.neural_background:
            return LanczosUpscaler(), notes
        return upscaler.with_tile_size(params.tile_size), notes
    if params.level.neural_background and params.scale > 1 and isinstance(upscaler, LanczosUpscaler):
        notes.append("no neural background upscaler is configured; the background was upscaled with Lanczos")
    return upscaler, notes


def finish(prepared: PreparedPhoto, restored: np.ndarray, upscaler: Upscaler) -> EnhancedPhoto:
    """Upscale the photo xscale, paste the restored faces back (feathered), encode JPEG q95.

    `restored` is the face model's output for `prepared.faces`, in the same order."""
    expected = prepared.faces.shape
    if restored.shape != expected:
        raise ValueError(f"restored faces have shape {restored.shape}, expected {expected}")
    params = prepared.params
    timings = dict(prepared.timings)
    notes = list(prepared.notes)
    chosen, upscale_notes = background_upscaler(params, upscaler)
    notes.extend(upscale_notes)
    with _timed(timings, "upscale"):
        canvas = chosen.upscale(prepared.image, params.scale)
    want = (prepared.height * params.scale, prepared.width * params.scale, 3)
    if canvas.shape != want or canvas.dtype != np.uint8:
        raise ValueError(f"upscaler returned {canvas.dtype} {canvas.shape}, expected uint8 {want}")
    canvas = np.ascontiguousarray(canvas)
    with _timed(timings, "paste"):
        for face, affine in zip(output_to_faces(restored), prepared.affines, strict=True):
            paste_face(canvas, face, affine, params.scale, params.level.feather)
    with _timed(timings, "encode"):
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    timings.setdefault("restore", 0.0)
    return EnhancedPhoto(
        jpeg=buf.getvalue(),
        width=canvas.shape[1],
        height=canvas.shape[0],
        faces=prepared.face_count,
        timings=timings,
        notes=notes,
    )


def restore_timed(restorer: FaceRestorer, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """`restorer.restore` in batches of at most `max_batch`; (restored, ms). Nothing to do → no call."""
    started = time.perf_counter()
    if len(faces) == 0:
        return faces.copy(), 0.0
    step = max(1, restorer.max_batch)
    parts = [restorer.restore(faces[i : i + step]) for i in range(0, len(faces), step)]
    restored = np.concatenate(parts).astype(np.float32, copy=False)
    return restored, round((time.perf_counter() - started) * 1000, 2)


def enhance(
    data: bytes,
    params: EnhanceParams,
    detector: FaceDetector,
    restorer: FaceRestorer,
    upscaler: Upscaler,
) -> EnhancedPhoto:
    """The single-photo path: prepare → restore → finish."""
    if restorer.input_size != FACE_SIZE:
        raise ValueError(
            f"the face model takes {restorer.input_size} px faces; this pipeline aligns to {FACE_SIZE}"
        )
    prepared = prepare(data, params, detector)
    restored, ms = restore_timed(restorer, prepared.faces)
    result = finish(prepared, restored, upscaler)
    result.timings["restore"] = ms
    return result


class PipelineEnhancer:
    """`photopipe.enhance.pipeline.prepare/finish` with one detector and one upscaler, created once."""

    def __init__(self, detector: Any | None = None, upscaler: Any | None = None) -> None:
        from photopipe.enhance.faces import MtcnnDetector

        self._detector = detector if detector is not None else MtcnnDetector()
        self._upscaler = upscaler if upscaler is not None else LanczosUpscaler()

    def prepare(self, data: bytes, params: EnhanceParams) -> PreparedPhoto:
        return prepare(data, params, self._detector)

    def finish(self, prepared: PreparedPhoto, restored: np.ndarray) -> EnhancedPhoto:
        return finish(prepared, restored, self._upscaler)
