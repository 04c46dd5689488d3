"""What crosses the queues: the message bodies, and each queue's SQS record as the handlers parse it
(Powertools' `SqsRecordModel` with the body decoded into the message model, so a record that is not one
fails alone, before any use case runs).

The S3 notification model is deliberately lenient (moto's records lack `userIdentity`, `sequencer`, ...);
keys in S3 events are URL-encoded, `unquote_plus` gives the real key."""

from __future__ import annotations

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, model_validator

TEST_EVENT = "s3:TestEvent"


class ObjectRef(BaseModel):
    """One version of one uploaded object (what makes an ingest unique)."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    etag: str
    size: int


class _S3Bucket(BaseModel):
    name: str


class _S3Object(BaseModel):
    key: str
    size: int = 0
    e_tag: str | None = Field(None, alias="eTag")


class _S3Entity(BaseModel):
    bucket: _S3Bucket
    object_: _S3Object = Field(alias="object")


class _S3Record(BaseModel):
    event_name: str = Field(alias="eventName")
    s3: _S3Entity


class S3Notification(BaseModel):
    """An S3 event notification: `Records`, or S3's `s3:TestEvent` sent when notifications are set up."""

    records: list[_S3Record] = Field(default_factory=list, alias="Records")
    event: str | None = Field(None, alias="Event")

    @model_validator(mode="after")
    def _is_an_s3_event(self) -> S3Notification:
        if self.event != TEST_EVENT and "records" not in self.model_fields_set:
            raise ValueError("not an S3 event: it has no Records")
        return self

    def objects(self) -> list[ObjectRef]:
        """The objects created (a test event has none; other event types are ignored)."""
        return [
            ObjectRef(
                bucket=r.s3.bucket.name,
                key=unquote_plus(r.s3.object_.key),
                etag=(r.s3.object_.e_tag or "").strip('"'),
                size=r.s3.object_.size,
            )
            for r in self.records
            if r.event_name.startswith("ObjectCreated")
        ]


class ClassifyMessage(BaseModel):
    """What ingest sends to the classify queue for each processed photo."""

    model_config = ConfigDict(extra="ignore")

    image_id: str = Field(min_length=1)
    user_id: str | None = None


class JobMessage(BaseModel):
    """The body of a gpu-jobs message (the job record holds everything else)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str = Field(min_length=1)
    user_id: str


class ExportMessage(BaseModel):
    """The body of an exports message: write the batch's ZIP."""

    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(min_length=1)
    batch_id: str = Field(min_length=1)


class _Received(SqsRecordModel):
    @property
    def receive_count(self) -> int:
        """How many times SQS has delivered this message (1 on the first delivery)."""
        return int(self.attributes.ApproximateReceiveCount or 1)


class IngestRecord(_Received):
    body: Json[S3Notification]


class ClassifyRecord(_Received):
    body: Json[ClassifyMessage]


class ExportRecord(_Received):
    body: Json[ExportMessage]


class DeadLetterRecord(_Received):
    """A message from one of the dead-letter queues, its body as it was sent (it may not even be JSON: a
    message that could never be parsed is exactly what ends up there). `eventSourceARN` names the DLQ."""
