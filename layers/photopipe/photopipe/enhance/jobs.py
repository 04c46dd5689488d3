"""Enhancement jobs: the record the API creates, the GPU worker runs and the user polls.

States: `queued → running → completed | failed | cancelled`; every move is a conditional write in
`photopipe.adapters.jobs`. A running job carries the worker that holds it and a lease (`lease_expires_at`,
epoch seconds) the worker renews while it works: a redelivered message whose job is `running` under an
expired lease (the worker died) is taken over; one under a live lease is left to its holder.

Pure pydantic: the API function imports this module, so nothing here may pull in numpy or ONNX Runtime."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from photopipe.enhance.params import EnhanceParams

MAX_BATCH_IMAGES = 20


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


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


class JobMessage(BaseModel):
    """The body of a gpu-jobs message (the job record holds everything else)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    user_id: str


class ExportMessage(BaseModel):
    """The body of an exports message: write the batch's ZIP."""

    model_config = ConfigDict(extra="ignore")

    user_id: str
    batch_id: str
