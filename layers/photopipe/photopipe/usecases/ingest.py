"""Ingest: one S3 ObjectCreated notification (delivered through SQS) → a validated, upright photo with its
thumbnail, preview and hashes recorded - or a `rejected` record with a reason, the original kept.

At-least-once delivery is expected: the work for one object version (bucket, key, etag) runs once
through Powertools idempotency, and every record change is a conditional state transition. The SQS edge
(batch, partial failures, parsing the notification) is the handler's: this receives `ObjectRef`s."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.sqs import Queue
from photopipe.errors import ImageRejected, NotFoundError
from photopipe.imaging import Limits, read_original, transform
from photopipe.models import TERMINAL_INGEST_STATES, ImageRecord, ImageState, ObjectRef
from photopipe.observability import logger, metrics, tracer
from photopipe.usecases.quotas import QuotaGuard

_ORIGINAL_KEY = re.compile(r"^originals/(?P<user_id>[^/]+)/(?P<image_id>[^/]+)/(?P<name>[^/]+)$")
_CLAIMABLE = tuple(ImageState)  # any state; terminal ones only for a new version of the object (etag)


def idempotency_config() -> IdempotencyConfig:
    """One ingest per object version: (bucket, key, etag)."""
    return IdempotencyConfig(
        event_key_jmespath="[bucket, key, etag]", raise_on_no_idempotency_key=True, expires_after_seconds=3600
    )


@dataclass
class Ingestor:
    images: ImagesRepository
    media: MediaStore
    classify_queue: Queue
    limits: Limits
    max_receive_count: int
    persistence: BasePersistenceLayer
    idempotency: IdempotencyConfig
    # Charges the real size of an upload to its owner's storage quota (the upload reserved the declared one).
    quotas: QuotaGuard | None = None

    def __post_init__(self) -> None:
        self._ingest_once = idempotent_function(
            data_keyword_argument="ref", config=self.idempotency, persistence_store=self.persistence
        )(self._ingest)

    def bind(self, context: LambdaContext) -> None:
        """Tell idempotency the invocation's deadline (an in-progress record expires with it)."""
        self.idempotency.register_lambda_context(context)

    def ingest(self, refs: list[ObjectRef], *, receive_count: int = 1) -> None:
        """The objects of one notification. An exception fails the whole message: SQS retries it, then
        the DLQ keeps it; on the queue's last receive the image is marked `failed` first."""
        for ref in refs:
            try:
                self._ingest_once(ref=ref.model_dump())
            except Exception as e:
                if receive_count >= self.max_receive_count:
                    self._mark_failed(ref, e)
                raise

    @tracer.capture_method
    def _ingest(self, ref: dict[str, Any]) -> dict[str, Any]:
        obj = ObjectRef(**ref)
        match = _ORIGINAL_KEY.match(obj.key)
        if match is None or obj.bucket != self.media.bucket:
            logger.warning("not an original upload; ignored", extra=ref)
            return {"outcome": "ignored"}
        record = self.images.get(match["image_id"])
        if record is None or record.user_id != match["user_id"] or record.original_key != obj.key:
            logger.warning("no image record for this upload; original kept, nothing recorded", extra=ref)
            metrics.add_metric(name="OrphanUploads", unit=MetricUnit.Count, value=1)
            return {"outcome": "orphan"}
        if record.state in TERMINAL_INGEST_STATES and record.etag == obj.etag:
            logger.info("already ingested; duplicate event", extra={"image_id": record.image_id})
            if record.state == ImageState.PROCESSED:
                self._request_classification(record)  # in case the first delivery died before sending it
            return {"outcome": "duplicate", "state": record.state.value}
        claimed = self.images.transition(
            record.image_id,
            from_states=_CLAIMABLE,
            to_state=ImageState.PROCESSING,
            set_fields={"etag": obj.etag},
            remove_fields=("reason", "reason_message"),
        )
        if claimed is None:
            return {"outcome": "deleted"}
        try:
            return self._process(claimed, obj)
        except ImageRejected as e:
            return self._reject(claimed, e)

    def _process(self, record: ImageRecord, obj: ObjectRef) -> dict[str, Any]:
        try:
            stored = self.media.open(obj.key)
        except NotFoundError as e:
            raise ImageRejected(
                "the uploaded file was removed before it could be processed", code="missing_object"
            ) from e
        self._charge(record, stored.size)
        with stored.body:
            if stored.size > self.limits.max_bytes:
                raise ImageRejected(
                    f"the file is {stored.size} bytes; the limit is {self.limits.max_bytes} bytes",
                    code="too_large",
                )
            original = read_original(stored.body, self.limits)
        result = transform(original, self.limits)
        prefix = f"derived/{record.user_id}/{record.image_id}"
        thumb_key, preview_key = f"{prefix}/thumb.webp", f"{prefix}/preview.jpg"
        cache = "private, max-age=31536000, immutable"
        self.media.put(
            thumb_key, result.thumbnail.data, content_type=result.thumbnail.content_type, cache_control=cache
        )
        self.media.put(
            preview_key, result.preview.data, content_type=result.preview.content_type, cache_control=cache
        )
        updated = self.images.transition(
            record.image_id,
            from_states=(ImageState.PROCESSING,),
            to_state=ImageState.PROCESSED,
            set_fields={
                "format": result.format,
                "width": result.width,
                "height": result.height,
                "bytes": result.bytes,
                "sha256": result.sha256,
                "phash": result.phash,
                "thumbnail_key": thumb_key,
                "preview_key": preview_key,
            },
        )
        if updated is None:
            logger.info(
                "image deleted while processing; renditions left for the delete",
                extra={"image_id": record.image_id},
            )
            return {"outcome": "deleted"}
        logger.info(
            "image processed",
            extra={
                "image_id": record.image_id,
                "format": result.format,
                "width": result.width,
                "height": result.height,
            },
        )
        metrics.add_metric(name="ImagesProcessed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="IngestedBytes", unit=MetricUnit.Bytes, value=result.bytes)
        self._request_classification(updated)
        return {"outcome": "processed", "image_id": record.image_id}

    def _charge(self, record: ImageRecord, size: int) -> None:
        """Count the object's real size instead of the declared one, once per change (a conditional write
        on the record first, so a redelivery charges nothing more)."""
        if self.quotas is None or record.charged_bytes == size:
            return
        if self.images.charge(record.image_id, counted=record.charged_bytes, size=size):
            self.quotas.charge(record.user_id, size - (record.charged_bytes or 0))

    def _request_classification(self, record: ImageRecord) -> None:
        """Hand the photo to the classify queue (its consumer is idempotent, so a repeat is harmless)."""
        self.classify_queue.send({"image_id": record.image_id, "user_id": record.user_id})

    def _reject(self, record: ImageRecord, e: ImageRejected) -> dict[str, Any]:
        self.images.transition(
            record.image_id,
            from_states=(ImageState.PROCESSING,),
            to_state=ImageState.REJECTED,
            set_fields={"reason": e.code, "reason_message": e.message},
            remove_fields=("thumbnail_key", "preview_key"),
        )
        logger.info(
            "image rejected", extra={"image_id": record.image_id, "reason": e.code, "detail": e.message}
        )
        metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=1)
        return {"outcome": "rejected", "image_id": record.image_id, "reason": e.code}

    def _mark_failed(self, ref: ObjectRef, error: Exception) -> None:
        """Last delivery attempt failed: the message goes to the DLQ; say so on the image."""
        match = _ORIGINAL_KEY.match(ref.key)
        if match is None:
            return
        logger.error(
            "giving up on this upload; message goes to the DLQ", extra={"key": ref.key, "error": str(error)}
        )
        metrics.add_metric(name="IngestFailures", unit=MetricUnit.Count, value=1)
        self.images.transition(
            match["image_id"],
            from_states=(ImageState.PENDING_UPLOAD, ImageState.PROCESSING),
            to_state=ImageState.FAILED,
            set_fields={
                "reason": "processing_failed",
                "reason_message": f"processing failed after {self.max_receive_count} attempts: {error}. "
                "The original is kept; the message is in the ingest dead-letter queue for a redrive.",
            },
        )
