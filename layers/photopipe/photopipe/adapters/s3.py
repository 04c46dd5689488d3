"""The media bucket: presigned uploads and downloads, streamed reads, rendition writes, deletes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import error_code, translate
from photopipe.errors import NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef


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
            if error_code(e) in {"NoSuchKey", "404", "NotFound"}:
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
