"""Pictures for the client's tests, made here: real photos (scikit-image's astronaut), pictures whose
corners say which way up they are, and files that only look like photos by name."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)

# Stored pixels for each EXIF orientation: the inverse of what a viewer applies to show it upright.
STORE_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@cache
def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def photo(size: tuple[int, int], *, seed: int = 0, noise: int = 12) -> Image.Image:
    """A real photo at `size`, with a little sensor-like noise so each seed gives different bytes."""
    base = np.asarray(_astronaut().resize(size), dtype=np.int16)
    grain = np.random.default_rng(seed).integers(-noise, noise + 1, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, *, quality: int = 90, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    image.save(buf, "JPEG", quality=quality, **extra)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def quadrants(width: int, height: int) -> Image.Image:
    """Upright: red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste(RED, (0, 0, half_w, half_h))
    image.paste(GREEN, (half_w, 0, width, half_h))
    image.paste(BLUE, (0, half_h, half_w, height))
    image.paste(WHITE, (half_w, half_h, width, height))
    return image


def stored_as(upright: Image.Image, orientation: int) -> bytes:
    """`upright` as a camera would store it with EXIF `orientation`."""
    op = STORE_FOR_ORIENTATION[orientation]
    stored = upright.transpose(op) if op is not None else upright
    return jpeg(stored, quality=95, orientation=orientation)


def corner_colours(image: Image.Image) -> tuple[tuple[int, ...], ...]:
    """The colours a quarter of the way in from each corner: top-left, top-right, bottom-left, bottom-right."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    points = ((w // 4, h // 4), (3 * w // 4, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4))
    return tuple(tuple(rgb.getpixel(p)) for p in points)  # type: ignore[arg-type]


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))
