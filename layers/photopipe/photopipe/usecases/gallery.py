"""A user's own images: list, get with short-lived links, delete. Another user's image is NotFound."""

from __future__ import annotations

from dataclasses import dataclass

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.errors import NotFoundError, PhotopipeError
from photopipe.models import ImageRecord, ImageState
from photopipe.observability import logger
from photopipe.usecases.quotas import QuotaGuard


def rendition_keys(user_id: str, image_id: str) -> list[str]:
    """Every object ingest may write for a photo (whether or not its record still names them)."""
    return [f"derived/{user_id}/{image_id}/thumb.webp", f"derived/{user_id}/{image_id}/preview.jpg"]


@dataclass(frozen=True)
class ImageLinks:
    original: str | None
    thumbnail: str | None
    preview: str | None


@dataclass(frozen=True)
class DeleteFailure:
    image_id: str
    code: str
    message: str


@dataclass(frozen=True)
class BatchDeletion:
    deleted: list[str]
    not_found: list[str]
    failed: list[DeleteFailure]


@dataclass(frozen=True)
class Gallery:
    images: ImagesRepository
    media: MediaStore
    url_ttl_seconds: int
    quotas: QuotaGuard

    def list_images(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None,
        state: ImageState | None,
        category: str | None = None,
    ) -> tuple[list[ImageRecord], str | None]:
        return self.images.list_by_owner(user_id, limit=limit, cursor=cursor, state=state, category=category)

    def thumbnail_link(self, record: ImageRecord) -> str | None:
        """A short-lived link to the 256 px thumbnail (signed locally: no call to S3)."""
        if not record.thumbnail_key:
            return None
        return self.media.presigned_get(record.thumbnail_key, expires_in=self.url_ttl_seconds)

    def get(self, user_id: str, image_id: str) -> ImageRecord:
        record = self.images.get(image_id)
        if record is None or record.user_id != user_id:
            raise NotFoundError(f"no image {image_id!r} in your library", code="image_not_found")
        return record

    def links(self, record: ImageRecord) -> ImageLinks:
        uploaded = record.state != ImageState.PENDING_UPLOAD
        ttl = self.url_ttl_seconds
        return ImageLinks(
            original=self.media.presigned_get(record.original_key, expires_in=ttl, download_name=None)
            if uploaded
            else None,
            thumbnail=self.media.presigned_get(record.thumbnail_key, expires_in=ttl)
            if record.thumbnail_key
            else None,
            preview=self.media.presigned_get(record.preview_key, expires_in=ttl)
            if record.preview_key
            else None,
        )

    def delete(self, user_id: str, image_id: str) -> None:
        record = self.get(user_id, image_id)
        # Objects first: a record without objects is visible and can be deleted again; the reverse leaks.
        removed = self.media.delete_prefix(f"originals/{user_id}/{image_id}/")
        removed += self.media.delete_prefix(f"derived/{user_id}/{image_id}/")
        deleted = self.images.delete(record.image_id)
        if deleted is not None and deleted.charged_bytes:
            self.quotas.charge(user_id, -deleted.charged_bytes)  # once: only one delete gets the old record
        logger.info("image deleted", extra={"image_id": image_id, "objects": removed})

    def delete_many(self, user_id: str, image_ids: list[str]) -> BatchDeletion:
        """Delete up to 100 of the caller's photos in a handful of calls, whatever their number: one
        BatchGetItem, one DeleteObjects (three keys a photo, 1,000 a call), BatchWriteItem in 25s.

        A photo whose objects S3 did not all delete keeps its record (it stays listed and can be deleted
        again) and is reported in `failed` with S3's reason; so is one whose record could not be removed."""
        wanted = list(dict.fromkeys(image_ids))
        records = self.images.get_many(wanted)
        mine = [records[i] for i in wanted if i in records and records[i].user_id == user_id]
        missing = [i for i in wanted if i not in records or records[i].user_id != user_id]
        keys = {r.image_id: self._object_keys(r) for r in mine}
        errors = self.media.delete_keys([k for ks in keys.values() for k in ks])
        failed = [
            DeleteFailure(
                image_id=r.image_id,
                code="delete_failed",
                message="; ".join(f"{k}: {errors[k]}" for k in keys[r.image_id] if k in errors),
            )
            for r in mine
            if any(k in errors for k in keys[r.image_id])
        ]
        gone = [r.image_id for r in mine if not any(k in errors for k in keys[r.image_id])]
        try:
            self.images.delete_many(gone)
        except PhotopipeError as e:
            # The objects are gone but the records stay: each photo can be deleted again.
            failed += [DeleteFailure(image_id=i, code=e.code, message=e.message) for i in gone]
            gone = []
        # the bytes these photos held come off the owner's storage quota (BatchWriteItem returns no old
        # records, so the charges are the ones read just before)
        if freed := sum(records[i].charged_bytes or 0 for i in gone):
            self.quotas.charge(user_id, -freed)
        logger.info(
            "images deleted",
            extra={
                "deleted": len(gone),
                "not_found": len(missing),
                "failed": len(failed),
                "objects_not_deleted": len(errors),
            },
        )
        return BatchDeletion(deleted=gone, not_found=missing, failed=failed)

    @staticmethod
    def _object_keys(record: ImageRecord) -> list[str]:
        keys = [record.original_key, *rendition_keys(record.user_id, record.image_id)]
        keys += [k for k in (record.thumbnail_key, record.preview_key) if k and k not in keys]
        return keys
