"""Enhancement jobs: their parameters, the record the API creates, the GPU worker runs and the user follows.

Parameters keep the meaning the old GFPGAN service (PhotoEnhanceAI) gave them: `scale`, `tile_size` and
`quality_level`; `LevelSettings` spells out what a quality level does.

States: `queued → running → completed | failed | cancelled`; every move is a conditional write in
`photopipe.adapters.jobs`. A running job carries the worker that holds it and a lease (`lease_expires_at`,
epoch seconds) the worker renews while it works: a redelivered message whose job is `running` under an
expired lease (the worker died) is taken over; one under a live lease is left to its holder."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

QualityLevel = Literal["fast", "medium", "high"]


@dataclass(frozen=True)
class LevelSettings:
    """What a quality level does, concretely."""

    detect_side: int  # faces are detected on a copy whose long side is at most this many px
    min_face: int  # faces smaller than this (box side, px of the original photo) are left alone
    neural_background: bool  # use the configured Real-ESRGAN upscaler; False: always Lanczos
    feather: float  # paste-back feather width, as a fraction of the 512 px aligned face


LEVELS: dict[str, LevelSettings] = {
    "fast": LevelSettings(detect_side=640, min_face=48, neural_background=False, feather=0.05),
    "medium": LevelSettings(detect_side=1024, min_face=24, neural_background=False, feather=0.08),
    "high": LevelSettings(detect_side=2048, min_face=16, neural_background=True, feather=0.08),
}


class EnhanceParams(BaseModel):
    """How to enhance one photo.

    - `scale` (1-4, default 2): the output is `scale` times the upright input in each dimension. The
      old service accepted 1-16 but its background model was x4 only; above x4 nothing is gained.
      Faces are always restored at 512 px and pasted back at the output size.
    - `tile_size` (128-1024 px, default 400, as before): the edge of the tiles the neural background
      upscaler (Real-ESRGAN ONNX) is run on, so memory stays bounded whatever the photo's size; lower
      it on a small GPU. Lanczos ignores it (it needs no tiling).
    - `quality_level` (default "high", as before):
        - "fast": faces detected on a copy of at most 640 px (long side), only faces of at least 48 px
          in the original are restored, Lanczos background, a narrower paste-back feather (5 % of the
          aligned face).
        - "medium": detection on at most 1024 px, faces from 24 px, Lanczos background, 8 % feather.
        - "high": detection on at most 2048 px, faces from 16 px, the Real-ESRGAN background when one
          is configured (else Lanczos, and the result says so), 8 % feather.
      The old service mapped the levels onto GFPGAN's internal options; here the face model is the
      same at every level (one exported model, batched across jobs on the GPU) and the levels trade
      detection size and the background upscaler instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: int = Field(default=2, ge=1, le=4)
    tile_size: int = Field(default=400, ge=128, le=1024)
    quality_level: QualityLevel = "high"

    @property
    def level(self) -> LevelSettings:
        return LEVELS[self.quality_level]


MAX_BATCH_IMAGES = 20


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


# Starts the error of a failed attempt whose job goes back to `queued` for another (the gpu-jobs dead-letter
# recorder replaces it when no attempt is left).
RETRY_PREFIX = "attempt failed, will retry: "


class JobError(BaseModel):
    """Why a job failed, for a person: a snake_case code and a sentence."""

    code: str
    message: str


class Job(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str
    image_id: str
    user_id: str
    state: JobState
    progress: int = Field(0, ge=0, le=100)
    params: EnhanceParams = Field(default_factory=EnhanceParams)
    source_key: str = Field(description="The original photo in the media bucket")
    faces: int | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    error: JobError | None = None
    result_key: str | None = None
    width: int | None = None
    height: int | None = None
    batch_id: str | None = None
    attempts: int = 0
    worker_id: str | None = None
    lease_expires_at: float | None = None
    restore_batch_faces: int | None = Field(
        None, description="Faces in the restore call that served this job (cross-job batching)"
    )
    export_error: JobError | None = Field(
        None, description="Why the batch's ZIP could not be written (set on each job of the batch)"
    )
    created_at: str
    updated_at: str

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    def lease_expired(self, now: float) -> bool:
        return self.lease_expires_at is None or self.lease_expires_at <= now

    def item(self) -> dict[str, Any]:
        """The DynamoDB item (JSON types; the repository turns floats into Decimal)."""
        return self.model_dump(mode="json", exclude_none=True)


def result_key(user_id: str, job_id: str) -> str:
    return f"enhanced/{user_id}/{job_id}.jpg"


def export_key(user_id: str, batch_id: str) -> str:
    return f"exports/{user_id}/{batch_id}.zip"
