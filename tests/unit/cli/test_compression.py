"""Compression to a budget (`photopipe compress`, `upload --compress`): the budget is met, the photo
is upright, it is never enlarged, and the quality is the highest that fits."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from photopipe_cli.compression import (
    KB,
    MAX_QUALITY,
    MIN_QUALITY,
    CompressionError,
    best_quality,
    compress,
)
from tests.unit.cli.pictures import (
    BLUE,
    GREEN,
    RED,
    WHITE,
    close,
    corner_colours,
    jpeg,
    photo,
    png,
    quadrants,
    stored_as,
)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    return jpeg(photo((4000, 3000), noise=30), quality=95)


@pytest.mark.parametrize("max_kb", [40, 150, 400])
def test_the_budget_is_met(big_photo: bytes, max_kb: int) -> None:
    result = compress(big_photo, max_side=1920, max_kb=max_kb)
    assert len(result.data) <= max_kb * KB
    out = opened(result.data)
    assert out.format == "JPEG"
    assert max(out.size) <= 1920
    assert (result.width, result.height) == out.size
    assert (result.source_width, result.source_height) == (4000, 3000)


def test_a_budget_below_what_quality_40_gives_shrinks_the_picture(big_photo: bytes) -> None:
    result = compress(big_photo, max_side=1920, max_kb=20)
    assert len(result.data) <= 20 * KB
    assert max(opened(result.data).size) < 1920
    assert opened(result.data).width / opened(result.data).height == pytest.approx(4 / 3, rel=0.02)


def test_the_quality_found_is_the_highest_that_fits() -> None:
    picture = photo((1200, 900), noise=25)

    def encode(q: int) -> bytes:
        buf = io.BytesIO()
        picture.save(buf, "JPEG", quality=q, optimize=True)
        return buf.getvalue()

    budget = (len(encode(60)) + len(encode(61))) // 2  # between two qualities
    found = best_quality(encode, budget)
    assert found is not None
    quality, data = found
    assert len(data) <= budget < len(encode(quality + 1))
    assert quality == 60
    assert best_quality(encode, len(encode(MIN_QUALITY)) - 1) is None
    assert best_quality(encode, 10**9) == (MAX_QUALITY, encode(MAX_QUALITY))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_result_is_upright(orientation: int) -> None:
    # GIVEN a 1600x1200 picture stored the way a camera held in each of the 8 ways stores it
    data = stored_as(quadrants(1600, 1200), orientation)
    # WHEN it is compressed to at most 800 px
    result = compress(data, max_side=800, max_kb=400)
    out = opened(result.data)
    # THEN it is upright: landscape, red top-left ... white bottom-right, with no orientation tag left
    assert out.size == (800, 600)
    expected = (RED, GREEN, BLUE, WHITE)
    assert all(close(got, want) for got, want in zip(corner_colours(out), expected, strict=True)), (
        corner_colours(out)
    )
    assert out.getexif().get(0x0112, 1) == 1


def test_a_photo_is_never_enlarged() -> None:
    small = png(photo((800, 600)))
    result = compress(small, max_side=1920, max_kb=400)
    assert opened(result.data).size == (800, 600)
    assert (result.width, result.height) == (800, 600)


def test_a_jpeg_already_within_the_limits_is_kept_byte_for_byte() -> None:
    data = jpeg(photo((1000, 750)), quality=80)
    result = compress(data, max_side=1920, max_kb=400)
    assert result.kept_original
    assert result.data == data


def test_a_fixed_quality_is_used_as_given_without_a_budget() -> None:
    data = jpeg(photo((1000, 750)), quality=95)
    result = compress(data, max_side=1920, max_kb=None, quality=30)
    assert result.quality == 30
    assert not result.kept_original
    assert len(result.data) < len(data)


def test_transparency_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    result = compress(png(clear), max_side=1920, max_kb=400)
    out = opened(result.data)
    assert out.mode == "RGB"
    assert close(tuple(out.getpixel((150, 100))), WHITE, tolerance=3)  # type: ignore[arg-type]


def test_what_is_not_a_photo_is_refused_with_what_it_looks_like() -> None:
    with pytest.raises(CompressionError, match="plain text"):
        compress(b"just some notes\n" * 10)
