"""EXIF orientation: whatever way the camera stored the pixels, the renditions come out upright."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from photopipe.imaging import Rendition, TransformResult

Process = Callable[..., TransformResult]
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def open_rendition(rendition: Rendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def red_corners(image: Image.Image) -> list[str]:
    """The corners whose outer 8% x 8% patch is clearly red."""
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    h, w = pixels.shape[:2]
    ph, pw = max(2, h * 8 // 100), max(2, w * 8 // 100)
    patches = {
        "top-left": pixels[:ph, :pw],
        "top-right": pixels[:ph, -pw:],
        "bottom-left": pixels[-ph:, :pw],
        "bottom-right": pixels[-ph:, -pw:],
    }
    found = []
    for name in CORNERS:
        r, g, b = patches[name].reshape(-1, 3).mean(axis=0)
        if r > 180 and g < 80 and b < 80:
            found.append(name)
    return found


def test_the_mark_is_where_the_helper_looks(marked_photo: Image.Image) -> None:
    # The detector itself: the upright photo has its red mark top-left and nowhere else.
    assert red_corners(marked_photo) == ["top-left"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(
    orientation: int, oriented_jpegs: dict[int, bytes], process: Process
) -> None:
    # GIVEN a 480x320 photo with a red top-left mark, stored as a camera does for `orientation`
    payload = oriented_jpegs[orientation]

    # WHEN it is transformed
    result = process(payload)

    # THEN the size is reported upright
    assert (result.width, result.height) == (480, 320)
    # AND the mark is top-left in the preview and in the thumbnail, both landscape
    preview, thumb = open_rendition(result.preview), open_rendition(result.thumbnail)
    assert preview.size == (480, 320)
    assert thumb.size == (256, 171)
    assert red_corners(preview) == ["top-left"]
    assert red_corners(thumb) == ["top-left"]


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff", "avif", "heic"])
def test_orientation_is_honoured_in_every_format_that_carries_it(
    fmt: str, rotated_samples: dict[str, bytes], process: Process
) -> None:
    # GIVEN the marked photo stored turned a quarter, with EXIF orientation 6, as `fmt`
    result = process(rotated_samples[fmt])

    # THEN it comes out landscape with the mark top-left
    assert result.format == fmt
    assert (result.width, result.height) == (480, 320)
    assert red_corners(open_rendition(result.preview)) == ["top-left"]
    assert red_corners(open_rendition(result.thumbnail)) == ["top-left"]


def test_large_rotated_jpeg_is_reduced_and_turned(big_rotated_jpeg: bytes, process: Process) -> None:
    # GIVEN 2000x3000 stored pixels with orientation 6 (upright 3000x2000): the decoder reduces it
    # before turning it, so the draft box must be taken in the stored orientation
    result = process(big_rotated_jpeg)

    # THEN the preview is the full 1440x960 (not a smaller draft) and upright
    assert (result.width, result.height) == (3000, 2000)
    preview = open_rendition(result.preview)
    assert preview.size == (1440, 960)
    assert red_corners(preview) == ["top-left"]
    assert (result.thumbnail.width, result.thumbnail.height) == (256, 171)
