"""A photo: its states and the record the images table holds."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from photopipe.models.classification import ClassificationSource


class ImageState(StrEnum):
    PENDING_UPLOAD = "pending_upload"
    PROCESSING = "processing"
    PROCESSED = "processed"
    CLASSIFIED = "classified"
    CLASSIFICATION_FAILED = "classification_failed"
    CLASSIFICATION_SKIPPED = "classification_skipped"
    REJECTED = "rejected"
    FAILED = "failed"


# Ends the reason of a failed classification attempt that the queue will deliver again (the classify dead-letter
# recorder replaces it when no delivery is left).
RETRY_NOTE = " It will be retried."

# Ingest is done with an image in any of these (the classification states come after `processed`).
TERMINAL_INGEST_STATES = frozenset(
    {
        ImageState.PROCESSED,
        ImageState.CLASSIFIED,
        ImageState.CLASSIFICATION_FAILED,
        ImageState.CLASSIFICATION_SKIPPED,
        ImageState.REJECTED,
    }
)
# States from which the classify function may (re)classify an image.
CLASSIFIABLE_STATES = frozenset(
    {ImageState.PROCESSED, ImageState.CLASSIFICATION_FAILED, ImageState.CLASSIFICATION_SKIPPED}
)
# Images whose original passed ingest (classification, done or not, does not matter).
ENHANCEABLE_STATES = frozenset(
    {
        ImageState.PROCESSED,
        ImageState.CLASSIFIED,
        ImageState.CLASSIFICATION_FAILED,
        ImageState.CLASSIFICATION_SKIPPED,
    }
)


class ImageClassification(BaseModel):
    """The category recorded on an image, and where it came from."""

    category: str
    label_zh: str
    label_en: str
    confidence: float
    reason: str
    source: ClassificationSource
    model: str
    prompt_version: str
    distance: int | None = Field(None, description="Hamming distance of the near duplicate it came from")
    classified_at: str


class ImageRecord(BaseModel):
    """What the images table holds for one photo (keys are relative to the media bucket)."""

    model_config = ConfigDict(extra="ignore")

    image_id: str
    user_id: str
    state: ImageState
    filename: str = Field(description="The name the user gave, sanitised, for display")
    original_key: str
    content_type: str = Field(description="Content-Type the client declared at upload time")
    declared_size: int | None = None
    reason: str | None = Field(None, description="Machine-readable reason when rejected or failed")
    reason_message: str | None = Field(None, description="The same reason, for a person")
    format: str | None = Field(None, description="Format identified from the content")
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    phash: str | None = None
    etag: str | None = None
    thumbnail_key: str | None = None
    preview_key: str | None = None
    classification: ImageClassification | None = None
    created_at: str
    updated_at: str
