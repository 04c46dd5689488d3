"""Every accepted format is identified from its content and rendered to a WebP thumbnail and a JPEG
preview of the right size."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photopipe.imaging import Limits, Rendition, TransformResult, read_original, transform

Process = Callable[..., TransformResult]
Encode = Callable[..., bytes]

MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heic": "image/heic",
}


def open_rendition(rendition: Rendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float)).mean())


@pytest.mark.parametrize("fmt", list(MIME))
def test_every_accepted_format_round_trips(
    fmt: str, format_samples: dict[str, bytes], coffee: Image.Image, process: Process
) -> None:
    # GIVEN the 600x400 coffee photo saved as `fmt`
    payload = format_samples[fmt]

    # WHEN it is transformed
    result = process(payload)

    # THEN the format comes from the content and the facts are those of the original
    assert (result.format, result.mime_type) == (fmt, MIME[fmt])
    assert (result.width, result.height) == (600, 400)
    assert result.bytes == len(payload)
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert len(result.phash) == 16
    assert int(result.phash, 16) >= 0

    # AND the thumbnail is a 256x171 WebP, the preview a JPEG at the original size (never upscaled)
    thumb, preview = open_rendition(result.thumbnail), open_rendition(result.preview)
    assert (result.thumbnail.content_type, thumb.format) == ("image/webp", "WEBP")
    assert thumb.size == (result.thumbnail.width, result.thumbnail.height) == (256, 171)
    assert (result.preview.content_type, preview.format, preview.mode) == ("image/jpeg", "JPEG", "RGB")
    assert preview.size == (result.preview.width, result.preview.height) == (600, 400)

    # AND the preview still shows the same photo
    assert mean_abs_diff(preview, coffee) < 12


def test_format_is_taken_from_the_content_not_the_file_name(
    format_samples: dict[str, bytes], tmp_path: Path
) -> None:
    # GIVEN a PNG that was uploaded as "holiday.jpg"
    path = tmp_path / "holiday.jpg"
    path.write_bytes(format_samples["png"])

    # WHEN it is read from disk and transformed
    with path.open("rb") as stream, read_original(stream, Limits()) as original:
        result = transform(original)

    # THEN it is a PNG
    assert (result.format, result.mime_type) == ("png", "image/png")


def test_large_photo_gets_a_1440_preview_and_256_thumbnail(
    coffee: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a 3000x2000 JPEG
    big = coffee.resize((3000, 2000), Image.Resampling.BICUBIC)

    # WHEN it is transformed
    result = process(encode(big, "JPEG", quality=90))

    # THEN the preview's long side is 1440 and the thumbnail's 256, proportions kept
    assert (result.width, result.height) == (3000, 2000)
    assert (result.preview.width, result.preview.height) == (1440, 960)
    assert (result.thumbnail.width, result.thumbnail.height) == (256, 171)
    assert open_rendition(result.preview).size == (1440, 960)
    # AND it is still the same picture
    assert mean_abs_diff(open_rendition(result.preview), coffee.resize((1440, 960))) < 10


def test_portrait_photo_keeps_its_proportions(coffee: Image.Image, encode: Encode, process: Process) -> None:
    # GIVEN a 1600x2400 portrait PNG
    tall = coffee.rotate(90, expand=True).resize((1600, 2400))

    # WHEN it is transformed
    result = process(encode(tall, "PNG"))

    # THEN both renditions are portrait with the long side at the limit
    assert (result.preview.width, result.preview.height) == (960, 1440)
    assert (result.thumbnail.width, result.thumbnail.height) == (171, 256)


def test_small_photo_is_never_upscaled(coffee: Image.Image, encode: Encode, process: Process) -> None:
    # GIVEN a 120x80 photo, smaller than the thumbnail size
    small = coffee.resize((120, 80))

    # WHEN it is transformed
    result = process(encode(small, "PNG"))

    # THEN both renditions keep its size
    assert (result.preview.width, result.preview.height) == (120, 80)
    assert (result.thumbnail.width, result.thumbnail.height) == (120, 80)


def test_custom_limits_set_the_rendition_sizes(coffee: Image.Image, encode: Encode, process: Process) -> None:
    limits = Limits(preview_side=300, thumb_side=64)

    result = process(encode(coffee, "JPEG"), limits)

    assert (result.preview.width, result.preview.height) == (300, 200)
    assert (result.thumbnail.width, result.thumbnail.height) == (64, 43)


def test_multi_picture_jpeg_uses_the_first_picture(
    coffee: Image.Image, astronaut: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN an MPO file (what some cameras write for stereo/bracketed shots): coffee, then astronaut
    payload = encode(coffee, "MPO", save_all=True, append_images=[astronaut.resize((600, 400))])

    # WHEN it is transformed
    result = process(payload)

    # THEN it is handled as a JPEG showing the first picture
    assert result.format == "jpeg"
    assert mean_abs_diff(open_rendition(result.preview), coffee) < 12


def test_spooled_original_can_be_transformed_twice(format_samples: dict[str, bytes]) -> None:
    # GIVEN one spooled original
    with read_original(io.BytesIO(format_samples["webp"]), Limits()) as original:
        # WHEN it is transformed twice (e.g. a retry)
        first, second = transform(original), transform(original)

    # THEN both runs agree
    assert first == second
