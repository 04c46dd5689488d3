"""The media bucket: presigned uploads and downloads, streamed reads, writes (whole, or streamed through a
multipart upload so a large object such as a batch ZIP is never held in memory), existence checks, deletes."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import error_code, translate
from photopipe.errors import NotFoundError, PhotopipeError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})
DELETE_OBJECTS_MAX = 1000  # keys per DeleteObjects call
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: BinaryIO
    size: int
    etag: str
    content_type: str | None


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


class MediaStore:
    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._s3: S3Client = client or make_client("s3")

    @property
    def client(self) -> S3Client:
        """The boto3 client (to register botocore event hooks, e.g. fault injection in tests)."""
        return self._s3

    def presigned_post(
        self, key: str, *, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost:
        """A browser-style POST scoped to exactly `key`, one content type and a size range.
        (S3 enforces the policy; moto does not, so ingest checks size and type again.)"""
        fields = {"Content-Type": content_type}
        # botocore adds {"bucket": ...} and {"key": key} (an exact match) itself.
        conditions: list[Any] = [
            {"Content-Type": content_type},
            ["content-length-range", 1, max_bytes],
        ]
        try:
            post = self._s3.generate_presigned_post(
                Bucket=self.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "signing the upload") from e
        return PresignedPost(url=post["url"], fields={k: str(v) for k, v in post["fields"].items()})

    def presigned_get(self, key: str, *, expires_in: int, download_name: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if download_name:
            params["ResponseContentDisposition"] = f'inline; filename="{download_name}"'
        return self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def open(self, key: str) -> StoredObject:
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if error_code(e) in _MISSING or (error_code(e) in _DENIED and self._listed_absent(key)):
                raise NotFoundError(f"s3://{self.bucket}/{key} does not exist", code="missing_object") from e
            raise translate(e, f"reading s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise translate(e, f"reading s3://{self.bucket}/{key}") from e
        return StoredObject(
            key=key,
            body=resp["Body"],  # type: ignore[arg-type]
            size=int(resp["ContentLength"]),
            etag=resp["ETag"].strip('"'),
            content_type=resp.get("ContentType"),
        )

    def put(self, key: str, data: bytes, *, content_type: str, cache_control: str | None = None) -> None:
        extra: dict[str, Any] = {}
        if cache_control:
            extra["CacheControl"] = cache_control
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **extra)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"writing s3://{self.bucket}/{key}") from e

    def exists(self, key: str) -> bool:
        """Does an object exist? (a HEAD; read permission is enough)"""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if error_code(e) in _MISSING or (error_code(e) in _DENIED and self._listed_absent(key)):
                return False
            raise translate(e, f"checking s3://{self.bucket}/{key}") from e
        except BotoCoreError as e:
            raise translate(e, f"checking s3://{self.bucket}/{key}") from e
        return True

    def _listed_absent(self, key: str) -> bool:
        """S3 answers 403, not 404, for a missing key unless the caller may list the bucket, and whether a
        grant scoped by `s3:prefix` counts is S3's call: so a 403 is confirmed with a list of exactly this
        key's prefix (which that grant allows). True only when the list works and the key is not in it."""
        try:
            resp = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except (ClientError, BotoCoreError):
            return False  # not allowed to list either: the 403 stands
        return not any(o["Key"] == key for o in resp.get("Contents", []))

    def writer(
        self, key: str, *, content_type: str, part_size: int = 8 * MIN_PART_BYTES // 5
    ) -> MultipartWriter:
        """A write-only file object that streams `key` through a multipart upload (use it in a `with`)."""
        return MultipartWriter(self._s3, self.bucket, key, content_type=content_type, part_size=part_size)

    def delete_keys(self, keys: list[str]) -> dict[str, str]:
        """Delete `keys` (DeleteObjects, 1,000 keys a call; a missing key counts as deleted). Returns the keys
        S3 did not delete, each with S3's reason; a call that fails as a whole fails its keys the same way,
        so one bad chunk never hides what the others did."""
        unique = list(dict.fromkeys(keys))
        failed: dict[str, str] = {}
        for start in range(0, len(unique), DELETE_OBJECTS_MAX):
            chunk = unique[start : start + DELETE_OBJECTS_MAX]
            objects: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in chunk]
            try:
                resp = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            except (ClientError, BotoCoreError) as e:
                reason = translate(e, f"deleting {len(chunk)} objects from s3://{self.bucket}").message
                failed.update(dict.fromkeys(chunk, reason))
                continue
            for error in resp.get("Errors", []):
                failed[error.get("Key", "")] = (
                    f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
                )
        return failed

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a photo's own folder); returns how many were deleted."""
        deleted = 0
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys: list[ObjectIdentifierTypeDef] = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"deleting s3://{self.bucket}/{prefix}") from e
        return deleted


class MultipartWriter(io.RawIOBase):
    """`write()` buffers up to `part_size` bytes, then uploads a part; `close()` uploads the rest and
    completes the upload; leaving a `with` block on an exception aborts it (no partial object appears).

    Not seekable: `zipfile` then writes data descriptors after each member, which every reader handles."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str,
        part_size: int = 8 * MIN_PART_BYTES // 5,
    ) -> None:
        super().__init__()
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"part_size must be at least {MIN_PART_BYTES} bytes (S3's minimum)")
        self.bucket, self.key, self.part_size = bucket, key, part_size
        self._s3 = client
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
