"""Read an upload once from a stream (e.g. boto3's StreamingBody) into a seekable spool, hashing as it
goes, and stop as soon as it is over the size limit."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import BinaryIO, Protocol, cast

from photopipe.errors import ImageRejected
from photopipe.imaging.models import Limits, SpooledOriginal

logger = logging.getLogger(__name__)

SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # above this the spool moves to a temporary file


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_original(stream: Readable, limits: Limits, chunk_size: int = 1 << 20) -> SpooledOriginal:
    """Copy `stream` into a `SpooledOriginal`, reading at most `limits.max_bytes + 1` bytes.

    Raises `ImageRejected` with code `too_large` once more than `limits.max_bytes` have arrived (the
    rest of the stream is left unread) and `empty` for a zero-byte stream."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    digest = hashlib.sha256()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 (returned)
    size = 0
    try:
        while True:
            # Never ask for more than one byte past the limit: that byte is enough to reject.
            chunk = stream.read(min(chunk_size, limits.max_bytes + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            if size > limits.max_bytes:
                raise ImageRejected(too_large_message(limits.max_bytes), code="too_large")
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise ImageRejected("the file is empty (0 bytes)", code="empty")
    spool.seek(0)
    logger.debug("original spooled", extra={"bytes": size, "on_disk": size > SPOOL_IN_MEMORY_BYTES})
    return SpooledOriginal(file=cast(BinaryIO, spool), size=size, sha256=digest.hexdigest())


def too_large_message(max_bytes: int) -> str:
    return f"the file is larger than the {_human_bytes(max_bytes)} upload limit ({max_bytes} bytes)"


def _human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} bytes"
