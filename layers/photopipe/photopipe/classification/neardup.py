"""Near-duplicate lookup for the classification cache, by perceptual hash, without a scan.

A 64-bit pHash (16 hex characters, see `photopipe.imaging.phash`) is cut into `BAND_COUNT` bands of
`BAND_BITS` bits. The cache stores one item per band key (`bands()`) pointing at the cached photo; a
lookup fetches the items for the new photo's band keys (exact matches only) and `best_match()` keeps the
closest candidate within `MAX_DISTANCE` bits.

Pigeonhole: two hashes fewer than `BAND_COUNT` bits apart agree on at least one whole band, so every
pair within `BAND_COUNT - 1` bits is always found. Pairs further apart are found only when their
differing bits happen to miss a band; `benchmarks/near_duplicates.py` measures how often that happens
for real copies."""

from __future__ import annotations

import re
from collections.abc import Iterable

HASH_BITS = 64
_HEX_DIGITS = HASH_BITS // 4
_HASH = re.compile(r"[0-9a-f]{16}")

# Chosen from `benchmarks/near_duplicates.py` (20 photos bundled with scikit-image and matplotlib, 13 copies
# each, every hash through ingest's `transform`). A hash of a picture with any texture has exactly 32 bits
# set (median threshold), so distances are even.
# - Copies land 0-6 bits from their original (260 pairs: 198 at 0, 56 at 2, 5 at 4, 1 at 6, a
#   screenshot); two copies of one photo 0-8 (1820 pairs). Distinct photos are 18-42 apart (190 pairs;
#   37240 pairs of their copies: also >= 18); 25x25 face crops of different people, the hardest case
#   measured, come as close as 10.
# - MAX_DISTANCE = 8 accepts every copy and every pair of copies measured and rejects everything at 10 or
#   more: no false hit in any set.
# - 4 bands of 16 bits: a lookup reads 4 keys and meets ~61 unrelated photos in a cache of 1e6 (1e6 x 4 x
#   2^-16); it finds 257 of 260 copies (98.8 %; the 3 missed are 4-6 bits off with a flipped bit in every
#   band). 8 bands of 8 bits find all 260 but meet ~31 000 unrelated photos per lookup at 1e6.
BAND_COUNT = 4
BAND_BITS = HASH_BITS // BAND_COUNT
MAX_DISTANCE = 8

_BAND_DIGITS = BAND_BITS // 4


def bands(phash: str) -> list[str]:
    """The `BAND_COUNT` band keys of `phash`, `"<index>:<hex>"` in band order, e.g. `"0:ab12"`.

    Upper- and lowercase hex give the same keys. Raises `ValueError` for anything but 16 hex digits."""
    digits = _normalise(phash)
    return [f"{i}:{digits[i * _BAND_DIGITS : (i + 1) * _BAND_DIGITS]}" for i in range(BAND_COUNT)]


def distance(a: str, b: str) -> int:
    """Hamming distance (0-64) between two pHashes. Raises `ValueError` for a malformed hash."""
    return (int(_normalise(a), 16) ^ int(_normalise(b), 16)).bit_count()


def is_near(a: str, b: str, max_distance: int = MAX_DISTANCE) -> tuple[bool, int]:
    """(whether `a` and `b` are at most `max_distance` bits apart, their distance)."""
    _check_threshold(max_distance)
    d = distance(a, b)
    return d <= max_distance, d


def best_match(
    phash: str, candidates: Iterable[tuple[str, str]], max_distance: int = MAX_DISTANCE
) -> tuple[str, int] | None:
    """The (key, distance) of the candidate closest to `phash` within `max_distance`, else `None`.

    `candidates` are (key, phash) pairs, e.g. the cache items found through `bands(phash)`; the same key
    may appear more than once (one item per shared band). Ties go to the smallest key, so the answer does
    not depend on the order the items arrived in. A malformed candidate hash raises `ValueError`."""
    _check_threshold(max_distance)
    value = int(_normalise(phash), 16)
    best: tuple[int, str] | None = None
    for key, other in candidates:
        d = (value ^ int(_normalise(other), 16)).bit_count()
        if d <= max_distance and (best is None or (d, key) < best):
            best = (d, key)
    return None if best is None else (best[1], best[0])


def _normalise(phash: str) -> str:
    digits = phash.lower() if isinstance(phash, str) else ""
    if not _HASH.fullmatch(digits):
        raise ValueError(f"a phash is {_HEX_DIGITS} hex characters, got {phash!r}")
    return digits


def _check_threshold(max_distance: int) -> None:
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be between 0 and {HASH_BITS}, got {max_distance!r}")
