"""Compress a photo to a budget: upright, no larger than `max_side`, at most `max_kb` kilobytes.

The same code serves `photopipe compress` (offline) and `photopipe upload --compress`.

- Decoded with the imaging core's guarded decoder (`photopipe.imaging.decode`): the EXIF orientation is
  applied, colours are converted to sRGB, a JPEG is decoded at the smallest libjpeg scale that still
  covers `max_side`, and a photo is never upscaled.
- The JPEG quality is the highest in [MIN_QUALITY, MAX_QUALITY] whose file fits the budget, found by
  binary search (at most seven encodes). If even MIN_QUALITY does not fit, the picture is made smaller
  and searched again, so the budget is always met.
- A JPEG that is already upright, no larger than `max_side` and within the budget is kept byte for byte
  (re-encoding it would only lose quality).
- With a fixed `quality` there is no search and no budget: one encode at that quality.
Transparency is flattened on white; metadata other than a colour profile is not copied. 1 KB = 1000 bytes.

Imported by the commands that compress only (Pillow is not needed for `photopipe --help`)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from photopipe.errors import ImageRejected
from photopipe.imaging import Limits, identify
from photopipe.imaging.decode import ORIENTATION_TAG, decode
from photopipe.imaging.sniff import JPEG, SNIFF_BYTES
from photopipe_cli.errors import CliError

DEFAULT_MAX_SIDE = 1920
DEFAULT_MAX_KB = 400
MIN_QUALITY = 40
MAX_QUALITY = 92
MIN_SIDE = 64  # below this, shrinking further to meet a budget leaves no photo
KB = 1000


@dataclass(frozen=True)
class Compressed:
    data: bytes
    width: int
    height: int
    quality: int | None  # None: the original was kept as it is
    source_bytes: int
    source_width: int  # upright
    source_height: int

    @property
    def kept_original(self) -> bool:
        return self.quality is None

    def describe(self) -> dict[str, object]:
        return {
            "bytes": len(self.data),
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
            "kept_original": self.kept_original,
            "source_bytes": self.source_bytes,
            "source_width": self.source_width,
            "source_height": self.source_height,
        }


class CompressionError(CliError):
    pass


def compress(
    data: bytes,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    max_kb: int | None = DEFAULT_MAX_KB,
    quality: int | None = None,
) -> Compressed:
    """`data` (any accepted image format) as a JPEG within the budget. `CompressionError` when it is not
    an image the imaging core decodes, or the budget cannot be met."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    budget = max_kb * KB if (max_kb is not None and quality is None) else None
    limits = Limits(max_bytes=max(len(data), 1), preview_side=max_side, thumb_side=min(256, max_side))
    try:
        image_format = identify(data[:SNIFF_BYTES])
        if image_format is JPEG and budget is not None and len(data) <= budget:
            kept = _kept_as_is(data, max_side)
            if kept is not None:
                return kept
        decoded = decode(io.BytesIO(data), image_format, limits)
    except ImageRejected as e:
        raise CompressionError(e.message) from e
    picture = _flatten(decoded.image)
    extra = {"icc_profile": decoded.icc_profile} if decoded.icc_profile else {}

    def encode(q: int) -> bytes:
        buf = io.BytesIO()
        picture.save(buf, "JPEG", quality=q, optimize=True, **extra)
        return buf.getvalue()

    def result(q: int, out: bytes) -> Compressed:
        return Compressed(out, picture.width, picture.height, q, len(data), decoded.width, decoded.height)

    if budget is None:
        q = quality if quality is not None else MAX_QUALITY
        return result(q, encode(q))
    while True:
        found = best_quality(encode, budget)
        if found is not None:
            return result(*found)
        factor = math.sqrt(budget / len(encode(MIN_QUALITY))) * 0.95  # bytes grow about with the pixels
        size = (max(1, int(picture.width * factor)), max(1, int(picture.height * factor)))
        if max(size) < MIN_SIDE:
            raise CompressionError(
                f"this picture does not fit in {budget // KB} KB even at {MIN_SIDE} px; allow a larger --max-kb"
            )
        picture = picture.resize(size, Image.Resampling.LANCZOS)


def best_quality(encode: Callable[[int], bytes], budget: int) -> tuple[int, bytes] | None:
    """The highest quality in [MIN_QUALITY, MAX_QUALITY] whose encoding fits `budget`, and those bytes;
    None when even MIN_QUALITY does not fit. Binary search: file size grows with quality."""
    top = encode(MAX_QUALITY)
    if len(top) <= budget:
        return MAX_QUALITY, top
    bottom = encode(MIN_QUALITY)
    if len(bottom) > budget:
        return None
    fits_q, fits = MIN_QUALITY, bottom  # invariant: fits_q fits the budget, too_big_q does not
    too_big_q = MAX_QUALITY
    while too_big_q - fits_q > 1:
        mid = (fits_q + too_big_q) // 2
        out = encode(mid)
        if len(out) <= budget:
            fits_q, fits = mid, out
        else:
            too_big_q = mid
    return fits_q, fits


def _kept_as_is(data: bytes, max_side: int) -> Compressed | None:
    """The JPEG itself when it is upright and no larger than `max_side` (it is within the budget)."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "MPO"]) as im:
            upright = im.getexif().get(ORIENTATION_TAG, 1) == 1
            width, height = im.size
    except (OSError, SyntaxError, ValueError):
        return None  # let the guarded decoder word the problem
    if not upright or max(width, height) > max_side:
        return None
    return Compressed(data, width, height, None, len(data), width, height)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB (or L) for JPEG: transparent areas composited on white."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
