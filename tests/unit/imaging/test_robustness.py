"""Damaged files of every format are refused with `ImageRejected` or decoded; nothing else escapes."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from photopipe.errors import ImageRejected
from photopipe.imaging import TransformResult

Process = Callable[..., TransformResult]
KNOWN_CODES = {"corrupt", "unsupported_format", "too_many_pixels", "too_small", "empty"}


def damaged_copies(payload: bytes, seed: str, count: int) -> list[bytes]:
    """`count` copies of `payload` with random bytes overwritten, the header hit, or the tail cut."""
    rng = random.Random(seed)
    copies = []
    for _ in range(count):
        damaged = bytearray(payload)
        kind = rng.choice(["bytes", "header", "cut"])
        if kind == "cut":
            damaged = damaged[: rng.randrange(1, len(damaged))]
        else:
            span = len(damaged) if kind == "bytes" else min(256, len(damaged))
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(span)] = rng.randrange(256)
        copies.append(bytes(damaged))
    return copies


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif", "bmp", "tiff", "avif", "heic"])
def test_damaged_files_never_crash(fmt: str, format_samples: dict[str, bytes], process: Process) -> None:
    outcomes: set[str] = set()
    rejections: list[ImageRejected] = []
    for payload in damaged_copies(format_samples[fmt], seed=fmt, count=25):
        try:
            process(payload)
            outcomes.add("accepted")
        except ImageRejected as e:  # anything else fails the test
            rejections.append(e)
    outcomes |= {e.code for e in rejections}

    assert outcomes - {"accepted"} <= KNOWN_CODES
    assert all(e.message for e in rejections)
    assert "corrupt" in outcomes
