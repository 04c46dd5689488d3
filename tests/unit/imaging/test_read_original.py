"""Reading the upload once from a stream: size, hash, spooling, and the size limit."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from photopipe.errors import ImageRejected
from photopipe.imaging import Limits, read_original
from photopipe.imaging.spool import SPOOL_IN_MEMORY_BYTES


class EndlessStream:
    """A stream that would never end (like a huge S3 object); counts what was asked of it."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        assert size > 0, "an unbounded read() of an endless stream"
        self.reads += 1
        self.bytes_read += size
        return b"\xab" * size


class TricklingStream(io.RawIOBase):
    """Returns at most 1000 bytes per read, as a network stream may."""

    def __init__(self, payload: bytes) -> None:
        self._data = io.BytesIO(payload)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, 1000) if size > 0 else 1000)


def test_size_and_hash_are_those_of_the_bytes() -> None:
    payload = os.urandom(300_000)

    with read_original(io.BytesIO(payload), Limits(), chunk_size=64 * 1024) as original:
        assert original.size == len(payload)
        assert original.sha256 == hashlib.sha256(payload).hexdigest()
        assert original.file.read() == payload


def test_short_reads_are_fine() -> None:
    payload = os.urandom(25_000)

    with read_original(TricklingStream(payload), Limits()) as original:
        assert original.file.read() == payload
        assert original.size == 25_000


def test_large_originals_spill_to_disk_and_stay_readable() -> None:
    payload = os.urandom(SPOOL_IN_MEMORY_BYTES + 1024)

    with read_original(io.BytesIO(payload), Limits()) as original:
        assert original.file._rolled  # type: ignore[attr-defined]  # SpooledTemporaryFile moved to disk
        assert original.file.read() == payload
        original.file.seek(0)
        assert hashlib.sha256(original.file.read()).hexdigest() == original.sha256


def test_exactly_max_bytes_is_accepted() -> None:
    with read_original(io.BytesIO(b"x" * 1000), Limits(max_bytes=1000)) as original:
        assert original.size == 1000


def test_over_max_bytes_stops_reading_early() -> None:
    # GIVEN a 1 MB limit and a stream that never ends
    stream = EndlessStream()

    # WHEN it is read
    with pytest.raises(ImageRejected) as caught:
        read_original(stream, Limits(max_bytes=1_000_000), chunk_size=64 * 1024)

    # THEN it is refused as too large after reading a single byte past the limit
    assert caught.value.code == "too_large"
    assert caught.value.message == "the file is larger than the 977 KB upload limit (1000000 bytes)"
    assert stream.bytes_read == 1_000_001


def test_default_limit_message_is_readable() -> None:
    with pytest.raises(ImageRejected) as caught:
        read_original(EndlessStream(), Limits())

    assert caught.value.message == "the file is larger than the 50 MB upload limit (52428800 bytes)"
    assert caught.value.status == 422


def test_empty_stream_is_rejected() -> None:
    with pytest.raises(ImageRejected) as caught:
        read_original(io.BytesIO(b""), Limits())

    assert caught.value.code == "empty"


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        read_original(io.BytesIO(b"abc"), Limits(), chunk_size=0)


@pytest.mark.parametrize("field", ["max_bytes", "max_pixels", "min_side", "thumb_side", "preview_side"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"Limits.{field} must be a positive integer"):
        Limits(**{field: 0})
