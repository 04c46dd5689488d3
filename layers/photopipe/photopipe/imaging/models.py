"""Value types of the imaging core: the limits it enforces and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO


@dataclass(frozen=True)
class Limits:
    """What an upload may be. Defaults mirror the PHOTOPIPE_* settings."""

    max_bytes: int = 50 * 1024 * 1024  # PHOTOPIPE_MAX_UPLOAD_BYTES
    max_pixels: int = 100_000_000  # PHOTOPIPE_MAX_PIXELS (decompression-bomb guard)
    min_side: int = 16
    thumb_side: int = 256  # thumb.webp long side
    preview_side: int = 1440  # preview.jpg long side, never upscaled

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "min_side", "thumb_side", "preview_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SpooledOriginal:
    """The original bytes, read once from a stream: in memory while small, on disk beyond that.

    The caller owns `file`; use the object as a context manager (or call `close()`) to release it."""

    file: BinaryIO
    size: int
    sha256: str  # hex digest of the original bytes

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SpooledOriginal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Rendition:
    """One encoded derivative (thumbnail or preview)."""

    data: bytes
    content_type: str  # "image/webp" / "image/jpeg"
    width: int
    height: int


@dataclass(frozen=True)
class TransformResult:
    """Everything ingest records about an accepted original, plus its two renditions."""

    format: str  # "jpeg", "png", "webp", "gif", "bmp", "tiff", "avif", "heic": from the content
    mime_type: str
    width: int  # upright dimensions of the original (after EXIF orientation)
    height: int
    bytes: int
    sha256: str
    phash: str  # 64-bit DCT perceptual hash of the upright picture, 16 lowercase hex chars
    thumbnail: Rendition  # WebP, long side `Limits.thumb_side`, never upscaled
    preview: Rendition  # JPEG, long side `Limits.preview_side`, never upscaled
