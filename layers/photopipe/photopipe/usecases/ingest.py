"""Ingest: one S3 ObjectCreated notification (delivered through SQS) → a validated, upright photo with its
thumbnail, preview and hashes recorded - or a `rejected` record with a reason, the original kept.

At-least-once delivery is expected: the work for one object version (bucket, key, etag) runs once
through Powertools idempotency, and every record change is a conditional state transition."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.queue import WorkQueue
from photopipe.adapters.s3 import MediaStore
from photopipe.errors import BadRequestError, ImageRejected, NotFoundError
from photopipe.imaging import Limits, read_original, transform
from photopipe.models import TERMINAL_INGEST_STATES, ImageRecord, ImageState
from photopipe.observability import logger, metrics, tracer

_ORIGINAL_KEY = re.compile(r"^originals/(?P<user_id>[^/]+)/(?P<image_id>[^/]+)/(?P<name>[^/]+)$")
_CLAIMABLE = tuple(ImageState)  # any state; terminal ones only for a new version of the object (etag)


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    etag: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "etag": self.etag, "size": self.size}


def parse_notification(body: str) -> list[ObjectRef]:
    """The S3 event in one SQS message body. S3's `s3:TestEvent` gives no objects; keys are URL-encoded."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise BadRequestError("the message body is not JSON (expected an S3 event)", code="bad_event") from e
    if not isinstance(data, dict):
        raise BadRequestError("the message body is not an S3 event", code="bad_event")
    if data.get("Event") == "s3:TestEvent":
        return []
    if "Records" not in data:
        raise BadRequestError("the message body has no Records (expected an S3 event)", code="bad_event")
    refs = []
    for record in S3Event(data).records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        obj = record.s3.get_object
        refs.append(
            ObjectRef(
                bucket=record.s3.bucket.name,
                key=unquote_plus(obj.key),
                etag=(obj.get("eTag") or "").strip('"'),
                size=int(obj.get("size") or 0),
            )
        )
    return refs


@dataclass
class Ingestor:
    images: ImagesRepository
    media: MediaStore
    limits: Limits
    max_receive_count: int
    idempotency_table: str
    classify_queue_url: str
    classify_queue: WorkQueue | None = None
    idempotency_config: IdempotencyConfig = field(
        default_factory=lambda: IdempotencyConfig(
            event_key_jmespath="[bucket, key, etag]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=3600,
        )
    )

    def __post_init__(self) -> None:
        if self.classify_queue is None:
            self.classify_queue = WorkQueue(self.classify_queue_url)
        persistence = DynamoDBPersistenceLayer(table_name=self.idempotency_table)
        self._ingest_once = idempotent_function(
            data_keyword_argument="ref", config=self.idempotency_config, persistence_store=persistence
        )(self._ingest)

    def handle_batch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.idempotency_config.register_lambda_context(context)
        # A batch where every record failed is still reported item by item (not raised), so the retry and
        # DLQ accounting is the same whatever the batch's mix.
        processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
        response = process_partial_response(
            event=event, record_handler=self.handle_record, processor=processor, context=context
        )
        return dict(response)

    def handle_record(self, record: SQSRecord) -> None:
        """One SQS message. An exception fails only this message: SQS retries it, then the DLQ keeps it."""
        refs = parse_notification(record.body)
        for ref in refs:
            try:
                self._ingest_once(ref=ref.as_dict())
            except Exception as e:
                if int(record.attributes.approximate_receive_count or 1) >= self.max_receive_count:
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

    def _request_classification(self, record: ImageRecord) -> None:
        """Hand the photo to the classify queue (its consumer is idempotent, so a repeat is harmless)."""
        assert self.classify_queue is not None
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
