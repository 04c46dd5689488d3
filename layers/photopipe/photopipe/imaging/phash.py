"""64-bit DCT perceptual hash (pHash), pure numpy.

Grayscale → 32x32 (LANCZOS) → 2-D DCT-II → the top-left 8x8 low frequencies → one bit per coefficient,
set when it is above their median. Same convention as `imagehash.phash` (unnormalised DCT-II), so hashes
are comparable with it. Re-encoded, resized and re-oriented copies of a photo land a few bits apart."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIZE = 8
_HIGHFREQ_FACTOR = 4
_SIDE = HASH_SIZE * _HIGHFREQ_FACTOR  # 32
_HEX_DIGITS = HASH_SIZE * HASH_SIZE // 4  # 16


@lru_cache(maxsize=1)
def _dct_matrix(n: int) -> np.ndarray:
    """C[k, i] = 2·cos(π·k·(2i + 1) / 2n): unnormalised DCT-II, so `C @ x` is scipy's `dct(x)`."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def phash(image: Image.Image) -> str:
    """The perceptual hash of `image` (any mode, upright) as 16 lowercase hex characters."""
    gray = image.convert("L") if image.mode != "L" else image
    small = gray.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(small, dtype=np.float64)
    c = _dct_matrix(_SIDE)
    low = (c @ pixels @ c.T)[:HASH_SIZE, :HASH_SIZE]
    bits = (low > np.median(low)).ravel()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return f"{value:0{_HEX_DIGITS}x}"


def phash_distance(a: str, b: str) -> int:
    """Hamming distance (0-64) between two hashes from `phash`."""
    return (_parse(a) ^ _parse(b)).bit_count()


def _parse(value: str) -> int:
    if len(value) != _HEX_DIGITS:
        raise ValueError(f"a phash is {_HEX_DIGITS} hex characters, got {value!r}")
    try:
        return int(value, 16)
    except ValueError as e:
        raise ValueError(f"a phash is {_HEX_DIGITS} hex characters, got {value!r}") from e
