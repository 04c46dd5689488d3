"""A user's own images: list, get with short-lived links, delete. Another user's image is NotFound."""

from __future__ import annotations

from dataclasses import dataclass

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.errors import NotFoundError
from photopipe.models import ImageRecord, ImageState
from photopipe.observability import logger


@dataclass(frozen=True)
class ImageLinks:
    original: str | None
    thumbnail: str | None
    preview: str | None


@dataclass(frozen=True)
class Gallery:
    images: ImagesRepository
    media: MediaStore
    url_ttl_seconds: int

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
        self.images.delete(record.image_id)
        logger.info("image deleted", extra={"image_id": image_id, "objects": removed})

    def delete_many(self, user_id: str, image_ids: list[str]) -> tuple[list[str], list[str]]:
        """Returns (deleted, not_found)."""
        deleted: list[str] = []
        missing: list[str] = []
        for image_id in dict.fromkeys(image_ids):
            try:
                self.delete(user_id, image_id)
            except NotFoundError:
                missing.append(image_id)
            else:
                deleted.append(image_id)
        return deleted, missing
