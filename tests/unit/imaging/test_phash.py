"""The perceptual hash finds copies of one photo (re-encoded, resized, other format, rotated by EXIF)
and tells different photos apart."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from photopipe.imaging import TransformResult, phash, phash_distance

Process = Callable[..., TransformResult]
Encode = Callable[..., bytes]


@pytest.fixture(scope="module")
def original(grace_hopper: Image.Image) -> Image.Image:
    return grace_hopper  # 512x600 portrait


def test_copies_of_one_photo_are_within_10_bits(
    original: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a photo and copies of it a user might upload again
    stored, exif = original.transpose(Image.Transpose.ROTATE_90), Image.Exif()
    exif[0x0112] = 6  # stored turned, shown upright by the tag
    copies = {
        "jpeg q=40": encode(original, "JPEG", quality=40),
        "resized to 50%": encode(original.resize((256, 300), Image.Resampling.LANCZOS), "JPEG", quality=90),
        "webp": encode(original, "WEBP", quality=75),
        "exif-rotated": encode(stored, "JPEG", quality=90, exif=exif.tobytes()),
    }
    reference = process(encode(original, "PNG")).phash

    # WHEN they are hashed through transform()
    distances = {name: phash_distance(reference, process(payload).phash) for name, payload in copies.items()}

    # THEN every copy is within 10 bits of the original
    assert all(d <= 10 for d in distances.values()), distances


def test_different_photos_are_more_than_20_bits_apart(
    astronaut: Image.Image,
    chelsea: Image.Image,
    coffee: Image.Image,
    grace_hopper: Image.Image,
    rocket: Image.Image,
    encode: Encode,
    process: Process,
) -> None:
    photos = {"astronaut": astronaut, "chelsea": chelsea, "coffee": coffee, "grace_hopper": grace_hopper}
    photos["rocket"] = rocket
    hashes = {name: process(encode(photo, "JPEG", quality=90)).phash for name, photo in photos.items()}

    distances = {(a, b): phash_distance(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2)}

    assert all(d > 20 for d in distances.values()), distances


def test_a_rotated_photo_is_a_different_picture(original: Image.Image) -> None:
    # The hash is of what a viewer sees: turning the pixels (without a tag) changes it.
    assert phash_distance(phash(original), phash(original.transpose(Image.Transpose.ROTATE_90))) > 20


def test_hash_format_and_determinism(original: Image.Image) -> None:
    value = phash(original)

    assert len(value) == 16
    assert value == value.lower()
    int(value, 16)
    assert phash(original.copy()) == value


def test_hash_matches_the_textbook_dct_definition(original: Image.Image) -> None:
    # GIVEN the 32x32 grayscale picture the hash is computed from
    pixels = np.asarray(
        original.convert("L").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=2.0), dtype=float
    )
    # WHEN its 2-D DCT-II is computed term by term (scipy.fftpack.dct convention, as imagehash uses)
    n = np.arange(32)
    basis = 2 * np.cos(np.pi * np.outer(np.arange(8), 2 * n + 1) / 64)  # 8x32: the 8 lowest frequencies
    low = basis @ pixels @ basis.T
    expected = "".join("1" if v else "0" for v in (low > np.median(low)).ravel())

    # THEN the hash is those 64 bits, row by row, most significant first
    assert phash(original) == f"{int(expected, 2):016x}"


def test_distance_is_the_hamming_distance() -> None:
    assert phash_distance("0000000000000000", "0000000000000000") == 0
    assert phash_distance("0000000000000000", "ffffffffffffffff") == 64
    assert phash_distance("8000000000000001", "0000000000000000") == 2
    assert phash_distance("ABCDEF0123456789", "abcdef0123456789") == 0


@pytest.mark.parametrize("bad", ["", "abc", "zzzzzzzzzzzzzzzz", "0" * 17])
def test_distance_refuses_malformed_hashes(bad: str) -> None:
    with pytest.raises(ValueError, match="a phash is 16 hex characters"):
        phash_distance(bad, "0" * 16)
