"""Streaming writes to S3: a small write-only file object over a multipart upload, so a large object (a batch
ZIP) is written part by part and never held whole in memory."""

from __future__ import annotations

import contextlib
import io
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import error_code, translate
from photopipe.errors import PhotopipeError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last


class ObjectProbe:
    """Does an object exist? (a HEAD; the API's read permission is enough)"""

    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.client: S3Client = client or make_client("s3")

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if error_code(e) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise translate(e, f"checking s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise translate(e, f"checking s3://{self.bucket}/{key}") from e
        return True


class MultipartWriter(io.RawIOBase):
    """`write()` buffers up to `part_size` bytes, then uploads a part; `close()` uploads the rest and
    completes the upload; leaving a `with` block on an exception aborts it (no partial object appears).

    Not seekable: `zipfile` then writes data descriptors after each member, which every reader handles."""

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        part_size: int = 8 * MIN_PART_BYTES // 5,
        client: S3Client | None = None,
    ) -> None:
        super().__init__()
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"part_size must be at least {MIN_PART_BYTES} bytes (S3's minimum)")
        self.bucket, self.key, self.part_size = bucket, key, part_size
        self._s3: S3Client = client or make_client("s3")
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        self._position = 0
        self._aborted = False
        try:
            resp = self._s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"starting the upload of s3://{bucket}/{key}") from e
        self._upload_id = resp["UploadId"]

    @property
    def parts(self) -> int:
        return len(self._parts)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed MultipartWriter")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._position += len(view)
        while len(self._buffer) >= self.part_size:
            chunk = bytes(self._buffer[: self.part_size])
            del self._buffer[: self.part_size]
            self._upload(chunk)
        return len(view)

    def _upload(self, chunk: bytes) -> None:
        number = len(self._parts) + 1
        try:
            resp = self._s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=chunk
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"uploading part {number} of s3://{self.bucket}/{self.key}") from e
        self._parts.append({"ETag": resp["ETag"], "PartNumber": number})

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._aborted:
                if self._buffer or not self._parts:
                    self._upload(bytes(self._buffer))
                    self._buffer.clear()
                try:
                    self._s3.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=self.key,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                    )
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, f"completing s3://{self.bucket}/{self.key}") from e
        finally:
            super().close()

    def abort(self) -> None:
        if self._aborted or self.closed:
            return
        self._aborted = True
        self._buffer.clear()
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"aborting the upload of s3://{self.bucket}/{self.key}") from e
        finally:
            super().close()

    def __del__(self) -> None:
        # Never complete an upload from the garbage collector: only an explicit close() does.
        if not self.closed:
            with contextlib.suppress(PhotopipeError):
                self.abort()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
