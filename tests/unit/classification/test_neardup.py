"""The classification cache finds a photo seen before through exact band lookups plus a distance check,
and keeps distinct photos apart."""

from __future__ import annotations

import io
import random
from collections import defaultdict
from collections.abc import Iterable

import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data

from photopipe.classification.neardup import (
    BAND_BITS,
    BAND_COUNT,
    HASH_BITS,
    MAX_DISTANCE,
    bands,
    best_match,
    distance,
    is_near,
)
from photopipe.imaging import Limits, read_original, transform

SEED = 20240917
PAIRS_PER_DISTANCE = 300


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(HASH_BITS):016x}"


def flip(phash: str, positions: Iterable[int]) -> str:
    value = int(phash, 16)
    for position in positions:
        value ^= 1 << position
    return f"{value:016x}"


def hash_of(image: Image.Image, fmt: str, **params: object) -> str:
    """The pHash ingest stores for `image` encoded as `fmt`."""
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    buf.seek(0)
    with read_original(buf, Limits()) as original:
        return transform(original).phash


# --- bands ------------------------------------------------------------------------------------------


def test_layout_covers_the_hash() -> None:
    assert BAND_COUNT * BAND_BITS == HASH_BITS
    assert BAND_BITS % 4 == 0  # each band is whole hex digits
    assert 0 <= MAX_DISTANCE < HASH_BITS


def test_band_keys_are_index_and_hex_value_in_order() -> None:
    phash = "0123456789abcdef"

    keys = bands(phash)

    assert len(keys) == BAND_COUNT
    assert [key.split(":")[0] for key in keys] == [str(i) for i in range(BAND_COUNT)]
    assert "".join(key.split(":")[1] for key in keys) == phash


def test_equal_hashes_have_equal_bands_whatever_the_case() -> None:
    rng = random.Random(SEED)
    for _ in range(50):
        phash = random_hash(rng)
        assert bands(phash) == bands(str(phash)) == bands(phash.upper())


@pytest.mark.parametrize("d", range(BAND_COUNT))
def test_pairs_closer_than_the_band_count_always_share_a_band(d: int) -> None:
    # GIVEN random hashes and, for each, a hash exactly `d` bits away (seeded: the same pairs every run)
    rng = random.Random(SEED + d)
    for _ in range(PAIRS_PER_DISTANCE):
        a = random_hash(rng)
        b = flip(a, rng.sample(range(HASH_BITS), d))
        assert distance(a, b) == d

        # WHEN both are cut into bands  THEN at least one band key is the same (pigeonhole)
        assert set(bands(a)) & set(bands(b)), (a, b)


def test_one_flipped_bit_per_band_defeats_the_lookup() -> None:
    """The bound is tight: at `BAND_COUNT` bits apart a pair may share no band (what the threshold sweep in
    benchmarks/near_duplicates.py measures for real copies)."""
    rng = random.Random(SEED)
    a = random_hash(rng)
    b = flip(a, (i * BAND_BITS + rng.randrange(BAND_BITS) for i in range(BAND_COUNT)))

    assert distance(a, b) == BAND_COUNT
    assert not set(bands(a)) & set(bands(b))


# --- distance and matching --------------------------------------------------------------------------


def test_is_near_includes_the_threshold() -> None:
    a = "00000000000000ff"
    b = flip(a, range(MAX_DISTANCE))
    c = flip(a, range(MAX_DISTANCE + 1))

    assert is_near(a, a) == (True, 0)
    assert is_near(a, b) == (True, MAX_DISTANCE)
    assert is_near(a, c) == (False, MAX_DISTANCE + 1)
    assert is_near(a, c, max_distance=MAX_DISTANCE + 1) == (True, MAX_DISTANCE + 1)


def test_best_match_picks_the_closest_candidate() -> None:
    query = "f0f0f0f0f0f0f0f0"
    candidates = [
        ("far", flip(query, range(MAX_DISTANCE))),
        ("closest", flip(query, [0, 9])),
        ("closer", flip(query, [1, 2, 3, 4])),
    ]

    assert best_match(query, candidates) == ("closest", 2)


def test_best_match_ignores_candidates_beyond_the_threshold() -> None:
    query = "f0f0f0f0f0f0f0f0"
    beyond = [("a", flip(query, range(MAX_DISTANCE + 1))), ("b", flip(query, range(40)))]

    assert best_match(query, beyond) is None
    assert best_match(query, []) is None
    assert best_match(query, beyond, max_distance=MAX_DISTANCE + 1) == ("a", MAX_DISTANCE + 1)


def test_best_match_breaks_ties_by_smallest_key_in_any_order() -> None:
    query = "0123456789abcdef"
    tied = [("photo-b", flip(query, [3, 7])), ("photo-a", flip(query, [10, 60])), ("photo-c", query)]
    tied_only = tied[:2]

    # a key found through several bands comes back once per band
    assert best_match(query, tied_only + tied_only) == ("photo-a", 2)
    assert best_match(query, list(reversed(tied_only))) == ("photo-a", 2)
    assert best_match(query, tied) == ("photo-c", 0)


MALFORMED = [
    "",
    "0123456789abcde",  # 15 digits
    "0123456789abcdef0",  # 17
    "0x23456789abcdef",  # int(..., 16) would take these four
    "0123_56789abcdef",
    " 123456789abcdef",
    "+123456789abcdef",
    "0123456789abcdeg",
    "０123456789abcdef",  # a full-width digit  # noqa: RUF001
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_hashes_are_rejected(bad: str) -> None:
    good = "0123456789abcdef"
    with pytest.raises(ValueError, match="16 hex characters"):
        bands(bad)
    with pytest.raises(ValueError, match="16 hex characters"):
        is_near(good, bad)
    with pytest.raises(ValueError, match="16 hex characters"):
        best_match(bad, [("k", good)])
    with pytest.raises(ValueError, match="16 hex characters"):
        best_match(good, [("k", bad)])


@pytest.mark.parametrize("threshold", [-1, HASH_BITS + 1])
def test_thresholds_outside_the_hash_are_rejected(threshold: int) -> None:
    with pytest.raises(ValueError, match="max_distance"):
        is_near("0123456789abcdef", "0123456789abcdef", max_distance=threshold)
    with pytest.raises(ValueError, match="max_distance"):
        best_match("0123456789abcdef", [], max_distance=threshold)


# --- real photos ------------------------------------------------------------------------------------


class BandIndex:
    """The cache's lookup in memory: one entry per band key, pointing at the cached photo."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, str]] = defaultdict(dict)
        self.photos: dict[str, str] = {}

    def put(self, key: str, phash: str) -> None:
        self.photos[key] = phash
        for band in bands(phash):
            self._items[band][key] = phash

    def candidates(self, phash: str) -> list[tuple[str, str]]:
        return [item for band in bands(phash) for item in self._items.get(band, {}).items()]


def small(image: Image.Image, side: int = 320) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    return copy


@pytest.fixture(scope="module")
def grace_hopper() -> Image.Image:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return small(im)


@pytest.fixture(scope="module")
def cache(grace_hopper: Image.Image) -> BandIndex:
    """Two bundled photos, cached as ingest hashes them."""
    index = BandIndex()
    index.put("grace_hopper", hash_of(grace_hopper, "PNG"))
    index.put("coffee", hash_of(small(Image.fromarray(data.coffee())), "PNG"))
    return index


def test_a_recompressed_and_resized_copy_is_found(cache: BandIndex, grace_hopper: Image.Image) -> None:
    # GIVEN a copy of a cached photo, halved and recompressed the way a chat app would
    half = (grace_hopper.width // 2, grace_hopper.height // 2)
    phash = hash_of(grace_hopper.resize(half, Image.Resampling.BILINEAR), "JPEG", quality=50)

    # WHEN it is looked up through its bands
    match = best_match(phash, cache.candidates(phash))

    # THEN the original is found, within the threshold
    assert match is not None
    assert match[0] == "grace_hopper"
    assert match[1] <= MAX_DISTANCE


def test_a_different_photo_is_not_found(cache: BandIndex) -> None:
    # GIVEN a bundled photo the cache has not seen
    phash = hash_of(small(Image.fromarray(data.astronaut())), "JPEG", quality=85)

    # WHEN it is looked up through its bands  THEN nothing matches
    assert best_match(phash, cache.candidates(phash)) is None
    # ... and not because the bands hid it: no cached photo is within the threshold at all
    assert all(not is_near(phash, cached)[0] for cached in cache.photos.values())
