"""Create an image record and a presigned POST scoped to exactly that photo's key."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore, PresignedPost
from photopipe.errors import BadRequestError, PayloadTooLargeError
from photopipe.models import ImageRecord, ImageState, utcnow_iso
from photopipe.observability import logger, metrics
from photopipe.usecases.quotas import QuotaGuard

ACCEPTED_CONTENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "image/avif",
        "image/heic",
        "image/heif",
    }
)
MAX_DISPLAY_NAME = 200
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def display_name(filename: str) -> str:
    """The user's file name for display: last path component, no control characters, NFC, bounded."""
    name = unicodedata.normalize("NFC", filename)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    name = name.lstrip(".").strip()
    if len(name) > MAX_DISPLAY_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_DISPLAY_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:200]
    return name or "upload"


def key_name(filename: str) -> str:
    """An S3-safe name for the object key: ASCII letters, digits, '.', '_', '-' only."""
    ascii_name = unicodedata.normalize("NFKD", display_name(filename)).encode("ascii", "ignore").decode()
    safe = _UNSAFE_KEY_CHARS.sub("_", ascii_name).strip("._-")
    safe = re.sub(r"\.{2,}", ".", safe)
    return safe[:120] or "upload"


def original_key(user_id: str, image_id: str, safe_name: str) -> str:
    return f"originals/{user_id}/{image_id}/{safe_name}"


@dataclass(frozen=True)
class Upload:
    image: ImageRecord
    post: PresignedPost
    expires_in: int


@dataclass(frozen=True)
class Uploads:
    images: ImagesRepository
    media: MediaStore
    max_upload_bytes: int
    url_ttl_seconds: int
    quotas: QuotaGuard

    def create(self, *, user_id: str, filename: str, content_type: str, size: int) -> Upload:
        content_type = content_type.strip().lower()
        if content_type == "image/jpg":
            content_type = "image/jpeg"
        if content_type not in ACCEPTED_CONTENT_TYPES:
            raise BadRequestError(
                f"content_type {content_type!r} is not a supported image type; send one of "
                + ", ".join(sorted(ACCEPTED_CONTENT_TYPES)),
                code="unsupported_media_type",
            )
        if size > self.max_upload_bytes:
            raise PayloadTooLargeError(
                f"the file is {size} bytes; the limit is {self.max_upload_bytes} bytes", code="too_large"
            )
        image_id = uuid.uuid4().hex
        now = utcnow_iso()
        record = ImageRecord(
            image_id=image_id,
            user_id=user_id,
            state=ImageState.PENDING_UPLOAD,
            filename=display_name(filename),
            original_key=original_key(user_id, image_id, key_name(filename)),
            content_type=content_type,
            declared_size=size,
            charged_bytes=size,
            created_at=now,
            updated_at=now,
        )
        post = self.media.presigned_post(
            record.original_key,
            content_type=content_type,
            max_bytes=self.max_upload_bytes,
            expires_in=self.url_ttl_seconds,
        )
        day = self.quotas.admit_upload(user_id, size)
        try:
            self.images.create(record)
        except Exception:
            self.quotas.release_upload(user_id, day=day, size=size)
            raise
        logger.info("upload created", extra={"image_id": image_id, "user_id": user_id, "bytes": size})
        metrics.add_metric(name="UploadsCreated", unit=MetricUnit.Count, value=1)
        return Upload(image=record, post=post, expires_in=self.url_ttl_seconds)
