"""Test pictures for the imaging core, built once per session from photos bundled with scikit-image and
matplotlib (nothing is downloaded), plus a few helpers exposed as fixtures."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data

from photopipe.imaging import Limits, TransformResult, read_original, transform

ORIENTATION_TAG = 0x0112
RED = (255, 0, 0)
# For each EXIF orientation: what turns the upright picture into the stored pixels (the inverse of what a
# viewer applies when it reads the tag).
STORE_AS: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it back with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- helpers ----------------------------------------------------------------------------------------


def encode_image(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def process_bytes(payload: bytes, limits: Limits | None = None) -> TransformResult:
    """What ingest does: read the object once, then transform it."""
    limits = limits or Limits()
    with read_original(io.BytesIO(payload), limits) as original:
        return transform(original, limits)


def with_orientation(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    """The stored pixels and EXIF block of a camera file that shows `upright` once oriented."""
    method = STORE_AS[orientation]
    stored = upright.transpose(method) if method is not None else upright.copy()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return stored, exif.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(width: int, height: int, *, bit_depth: int, color_type: int, rows: Iterable[bytes]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB), each row with filter type 0."""
    compressor = zlib.compressobj(9)
    parts, pending, pending_bytes = [], [], 0
    for row in rows:
        pending.append(b"\x00" + row)
        pending_bytes += len(row) + 1
        if pending_bytes > 4 << 20:  # compress in ~4 MB slices: fast, and memory stays small
            parts.append(compressor.compress(b"".join(pending)))
            pending, pending_bytes = [], 0
    parts += [compressor.compress(b"".join(pending)), compressor.flush()]
    idat = b"".join(parts)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def icc_rgb_profile(description: str, red: tuple[float, ...], green: tuple[float, ...],
                    blue: tuple[float, ...], gamma: float = 2.2) -> bytes:  # fmt: skip
    """A minimal ICC v2 matrix/TRC display profile (colorants as D50 XYZ)."""

    def s15f16(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(*values: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15f16(*values)

    ascii_text = description.encode("ascii") + b"\x00"
    desc = (
        b"desc\x00\x00\x00\x00" + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)
    )
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256))
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*red)),
        (b"gXYZ", xyz(*green)),
        (b"bXYZ", xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\x00\x00\x00\x00public domain\x00"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, blob = b"", b""
    for signature, payload in tags:
        table += signature + struct.pack(">II", offset + len(blob), len(payload))
        blob += payload + bytes(-len(payload) % 4)
    body = struct.pack(">I", len(tags)) + table + blob
    header = (
        struct.pack(">I", 128 + len(body))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(24)  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # rendering intent
        + s15f16(0.9642, 1.0, 0.8249)
        + b"lcms"
        + bytes(44)
    )
    return header + body


# sRGB's colorants adapted to D50, as in every sRGB ICC profile.
SRGB_RED = (0.4361, 0.2225, 0.0139)
SRGB_GREEN = (0.3851, 0.7169, 0.0971)
SRGB_BLUE = (0.1431, 0.0606, 0.7141)


# --- fixtures: helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def process() -> Callable[..., TransformResult]:
    return process_bytes


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    return encode_image


# --- fixtures: photos -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    return Image.fromarray(data.coffee())  # 600x400 RGB


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())  # 512x512 RGB


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    return Image.fromarray(data.chelsea())  # 451x300 RGB


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        return image.convert("RGB")  # 512x600


@pytest.fixture(scope="session")
def rocket() -> Image.Image:
    return Image.fromarray(data.rocket())  # 640x427 RGB


@pytest.fixture(scope="session")
def format_samples(coffee: Image.Image, encode: Callable[..., bytes]) -> dict[str, bytes]:
    """The coffee photo (600x400) in every accepted format, keyed by our format name."""
    return {
        "jpeg": encode(coffee, "JPEG", quality=90),
        "png": encode(coffee, "PNG"),
        "webp": encode(coffee, "WEBP", quality=90),
        "gif": encode(coffee.quantize(256), "GIF"),
        "bmp": encode(coffee, "BMP"),
        "tiff": encode(coffee, "TIFF", compression="tiff_deflate"),
        "avif": encode(coffee, "AVIF", quality=70, speed=8),
        "heic": encode(coffee, "HEIF", quality=70),
    }


@pytest.fixture(scope="session")
def marked_photo(rocket: Image.Image) -> Image.Image:
    """A landscape 480x320 photo in muted colours with a pure red square in its top-left corner."""
    muted = rocket.convert("L").convert("RGB").resize((480, 320), Image.Resampling.LANCZOS)
    muted.paste(RED, (0, 0, 72, 72))
    return muted


@pytest.fixture(scope="session")
def oriented_jpegs(marked_photo: Image.Image, encode: Callable[..., bytes]) -> dict[int, bytes]:
    """`marked_photo` as a camera would store it under each of the 8 EXIF orientations."""
    samples = {}
    for orientation in STORE_AS:
        stored, exif = with_orientation(marked_photo, orientation)
        samples[orientation] = encode(stored, "JPEG", quality=92, exif=exif)
    return samples


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A real, valid 30000x30000 bilevel PNG (900 MP) that is ~110 KB on disk: all-black rows."""
    row = bytes(30000 // 8)
    return png_bytes(30000, 30000, bit_depth=1, color_type=0, rows=(row for _ in range(30000)))


@pytest.fixture(scope="session")
def rotated_samples(marked_photo: Image.Image, encode: Callable[..., bytes]) -> dict[str, bytes]:
    """`marked_photo` stored turned a quarter with EXIF orientation 6 (how phones store most shots),
    in each format that carries EXIF."""
    stored, exif = with_orientation(marked_photo, 6)
    return {
        "jpeg": encode(stored, "JPEG", quality=92, exif=exif),
        "png": encode(stored, "PNG", exif=exif),
        "webp": encode(stored, "WEBP", quality=92, exif=exif),
        "tiff": encode(stored, "TIFF", exif=exif),
        "avif": encode(stored, "AVIF", quality=80, speed=8, exif=exif),
        "heic": encode(stored, "HEIF", quality=80, exif=exif),
    }


@pytest.fixture(scope="session")
def big_rotated_jpeg(marked_photo: Image.Image, encode: Callable[..., bytes]) -> bytes:
    """A 3000x2000 (upright) photo stored as 2000x3000 pixels with EXIF orientation 6."""
    stored, exif = with_orientation(marked_photo.resize((3000, 2000), Image.Resampling.BICUBIC), 6)
    return encode(stored, "JPEG", quality=90, exif=exif)


@pytest.fixture(scope="session")
def rgb16_png(coffee: Image.Image) -> bytes:
    """The coffee photo as a 16-bit-per-channel RGB PNG (colour type 2, bit depth 16)."""
    pixels = np.asarray(coffee).astype(">u2") * 257
    return png_bytes(600, 400, bit_depth=16, color_type=2, rows=(row.tobytes() for row in pixels))


@pytest.fixture(scope="session")
def swapped_rb_profile() -> bytes:
    """An RGB profile whose red colorant is sRGB's blue and whose blue is sRGB's red."""
    return icc_rgb_profile("Swapped red and blue", SRGB_BLUE, SRGB_GREEN, SRGB_RED)
