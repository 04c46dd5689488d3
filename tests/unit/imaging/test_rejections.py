"""Uploads that are refused: each with its code and a message a person can read."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from PIL import Image, ImageFile

from photopipe.errors import ImageRejected
from photopipe.imaging import Limits, TransformResult

Process = Callable[..., TransformResult]
Encode = Callable[..., bytes]
ACCEPTED = "Accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF, HEIC"


def rejection(process: Process, payload: bytes, limits: Limits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        process(payload, limits)
    return caught.value


def test_zero_bytes_is_empty(process: Process) -> None:
    error = rejection(process, b"")

    assert error.code == "empty"
    assert error.message == "the file is empty (0 bytes)"
    assert error.status == 422


@pytest.mark.parametrize(
    ("payload", "looks_like"),
    [
        pytest.param(b"Dear diary,\nToday I uploaded a text file.\n", "plain text", id="text"),
        pytest.param("Café crème — naïve résumé\n".encode(), "plain text", id="utf8-text"),
        pytest.param(
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            "an SVG drawing (vector graphics)",
            id="svg",
        ),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing (vector graphics)", id="bare-svg"
        ),
        pytest.param(
            b"<!DOCTYPE html>\n<html><head><title>Not a photo</title></head><body></body></html>",
            "an HTML page",
            id="html",
        ),
        pytest.param(
            b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
            "a PDF document",
            id="pdf",
        ),
        pytest.param(b'{"photo": "no"}', "JSON text", id="json"),
        pytest.param(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "an MP4/QuickTime video", id="mp4"),
        pytest.param(b"8BPS\x00\x01" + bytes(40), "a Photoshop document (PSD)", id="psd"),
    ],
)
def test_non_images_are_named_in_the_message(process: Process, payload: bytes, looks_like: str) -> None:
    error = rejection(process, payload)

    assert error.code == "unsupported_format"
    assert error.message == f"unsupported file type: it looks like {looks_like}. {ACCEPTED}"


def test_zip_archive_is_unsupported(coffee: Image.Image, encode: Encode, process: Process) -> None:
    # GIVEN a ZIP holding a perfectly good JPEG
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.jpg", encode(coffee, "JPEG"))

    error = rejection(process, buf.getvalue())

    assert error.code == "unsupported_format"
    assert "it looks like a ZIP archive" in error.message
    assert ACCEPTED in error.message


def test_random_binary_is_unsupported(process: Process) -> None:
    error = rejection(process, bytes(range(256)) * 8)

    assert error.code == "unsupported_format"
    assert error.message == f"unsupported file type: its content matches no image format we know. {ACCEPTED}"


def test_truncated_jpeg_is_rejected_not_grey_filled(
    format_samples: dict[str, bytes], process: Process
) -> None:
    # GIVEN a JPEG cut in half (an interrupted upload)
    jpeg = format_samples["jpeg"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

    error = rejection(process, jpeg[: len(jpeg) // 2])

    assert error.code == "corrupt"
    assert error.message.startswith("the JPEG image is damaged or truncated and cannot be decoded")


def test_truncated_jpeg_is_rejected_even_if_someone_allowed_truncated_images(
    format_samples: dict[str, bytes], process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    jpeg = format_samples["jpeg"]

    assert rejection(process, jpeg[: len(jpeg) // 2]).code == "corrupt"


@pytest.mark.parametrize("fmt", ["png", "webp", "gif", "tiff", "avif", "heic"])
def test_truncated_files_of_other_formats_are_corrupt(
    fmt: str, format_samples: dict[str, bytes], process: Process
) -> None:
    payload = format_samples[fmt]

    error = rejection(process, payload[: len(payload) * 2 // 3])

    assert error.code == "corrupt"


def _scan_data(jpeg: bytes) -> tuple[int, int]:
    """Start and end of the entropy-coded data of a baseline JPEG (after SOS's header, before EOI)."""
    sos = jpeg.index(b"\xff\xda")
    header_length = int.from_bytes(jpeg[sos + 2 : sos + 4], "big")
    return sos + 2 + header_length, jpeg.rindex(b"\xff\xd9")


def test_corrupt_scan_data_with_a_stray_marker_is_rejected(
    format_samples: dict[str, bytes], process: Process
) -> None:
    # GIVEN a JPEG whose entropy-coded data got bytes overwritten halfway through, forming a marker
    # that cannot appear there (0xFF 0x3A)
    jpeg = bytearray(format_samples["jpeg"])
    start, end = _scan_data(bytes(jpeg))
    middle = (start + end) // 2
    jpeg[middle : middle + 4] = b"\xff\x3a\xff\x3a"

    error = rejection(process, bytes(jpeg))

    assert error.code == "corrupt"


def test_decompression_bomb_is_rejected_before_decoding(
    bomb_png: bytes, process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a real 30000x30000 PNG (900 MP, ~2.7 GB as RGB) that is only ~110 KB on disk
    assert len(bomb_png) < 200_000

    # and a Pillow that fails loudly if anything starts decoding pixels
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)

    # WHEN it is transformed
    error = rejection(process, bomb_png)

    # THEN it is refused from its header alone
    assert error.code == "too_many_pixels"
    assert error.message == "image is 30000×30000 = 900 MP, over the 100 MP limit"  # noqa: RUF001


def test_image_over_a_configured_pixel_limit_is_rejected(
    coffee: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a 600x400 JPEG and a 0.2 MP limit
    error = rejection(process, encode(coffee, "JPEG"), Limits(max_pixels=200_000))

    assert error.code == "too_many_pixels"
    assert error.message == "image is 600×400 = 0.24 MP, over the 0.2 MP limit"  # noqa: RUF001


def test_limit_above_pillows_own_bomb_guard_still_rejects_with_our_message(
    bomb_png: bytes, process: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 400 MP limit, above Pillow's built-in hard limit (2 x MAX_IMAGE_PIXELS ≈ 179 MP)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test

    error = rejection(process, bomb_png, Limits(max_pixels=400_000_000))

    # THEN the 900 MP bomb is still refused, against the configured limit
    assert error.code == "too_many_pixels"
    assert error.message == "image is 30000×30000 = 900 MP, over the 400 MP limit"  # noqa: RUF001
    # AND Pillow's guard was raised so that it cannot refuse what the configured limit allows
    assert Image.MAX_IMAGE_PIXELS is not None
    assert 2 * Image.MAX_IMAGE_PIXELS >= 400_000_000


def test_too_small_image_is_rejected(coffee: Image.Image, encode: Encode, process: Process) -> None:
    error = rejection(process, encode(coffee.resize((8, 8)), "PNG"))

    assert error.code == "too_small"
    assert error.message == "image is 8×8 pixels; both sides must be at least 16 pixels"  # noqa: RUF001


def test_thin_strip_is_too_small(encode: Encode, process: Process) -> None:
    assert rejection(process, encode(Image.new("RGB", (4000, 10)), "PNG")).code == "too_small"


def test_png_with_a_broken_header_is_corrupt(format_samples: dict[str, bytes], process: Process) -> None:
    png = bytearray(format_samples["png"])
    png[16:24] = b"\xff" * 8  # width and height in IHDR, now with a bad CRC

    error = rejection(process, bytes(png))

    assert error.code == "corrupt"
    assert error.message.startswith("the file is marked as PNG but cannot be read")


def test_rejections_carry_the_api_body(process: Process) -> None:
    error = rejection(process, b"hello")

    assert error.to_body() == {"error": {"code": "unsupported_format", "message": error.message}}
