"""Every domain model, in one place: photos, users, classifications, enhancement jobs and their
parameters, GPU workers, and the messages that cross the queues. Pure pydantic (and the Powertools parser
models for SQS records): nothing here imports an adapter, a use case or an inference library."""

from photopipe.models.classification import (
    CATEGORY_LABELS,
    CachedResult,
    Category,
    ClassificationSource,
)
from photopipe.models.common import utcnow_iso
from photopipe.models.fleet import HEALTHY_WITHIN_S, HEARTBEAT_INTERVAL_S, WorkerRecord
from photopipe.models.images import (
    CLASSIFIABLE_STATES,
    ENHANCEABLE_STATES,
    TERMINAL_INGEST_STATES,
    ImageClassification,
    ImageRecord,
    ImageState,
)
from photopipe.models.jobs import (
    ACTIVE_JOB_STATES,
    LEVELS,
    MAX_BATCH_IMAGES,
    TERMINAL_JOB_STATES,
    EnhanceParams,
    Job,
    JobError,
    JobState,
    LevelSettings,
    QualityLevel,
    export_key,
    result_key,
)
from photopipe.models.messages import (
    ClassifyMessage,
    ClassifyRecord,
    ExportMessage,
    ExportRecord,
    IngestRecord,
    JobMessage,
    ObjectRef,
    S3Notification,
)
from photopipe.models.quotas import GIB, JobSlots, Limit, LoginLimits, Quotas
from photopipe.models.sessions import REFRESH_TTL_SECONDS, IssuedToken, SessionEnd, SessionRecord
from photopipe.models.users import User, UserRecord

__all__ = [
    "ACTIVE_JOB_STATES",
    "CATEGORY_LABELS",
    "CLASSIFIABLE_STATES",
    "ENHANCEABLE_STATES",
    "GIB",
    "HEALTHY_WITHIN_S",
    "HEARTBEAT_INTERVAL_S",
    "LEVELS",
    "MAX_BATCH_IMAGES",
    "REFRESH_TTL_SECONDS",
    "TERMINAL_INGEST_STATES",
    "TERMINAL_JOB_STATES",
    "CachedResult",
    "Category",
    "ClassificationSource",
    "ClassifyMessage",
    "ClassifyRecord",
    "EnhanceParams",
    "ExportMessage",
    "ExportRecord",
    "ImageClassification",
    "ImageRecord",
    "ImageState",
    "IngestRecord",
    "IssuedToken",
    "Job",
    "JobError",
    "JobMessage",
    "JobSlots",
    "JobState",
    "LevelSettings",
    "Limit",
    "LoginLimits",
    "ObjectRef",
    "QualityLevel",
    "Quotas",
    "S3Notification",
    "SessionEnd",
    "SessionRecord",
    "User",
    "UserRecord",
    "WorkerRecord",
    "export_key",
    "result_key",
    "utcnow_iso",
]
