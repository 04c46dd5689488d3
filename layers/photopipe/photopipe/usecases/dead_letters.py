"""Dead letters: whatever ended a message's last attempt - an error, the function's timeout, running out of
memory, a GPU worker that vanished - the message lands in its queue's DLQ, and here its image or job is
marked failed with a reason a person can read. Nothing else could: a timed-out or killed attempt runs no
code of ours after the fact, so without this the record would stay `processing` or `running` for ever.

The DLQ message is all there is to go on. When an earlier attempt recorded its error, the reason keeps it;
otherwise it says that processing stopped after N attempts without finishing, and what usually does that.

The messages are kept for a redrive, not consumed: the handler reports every message back as not done, so
each DLQ's own redrive policy moves it (after a few deliveries, each a no-op once recorded) into the
queue's *redrive queue*, where it rests with its body, attributes and original timestamps untouched until
an operator replays it into the source queue (SQS `StartMessageMoveTask` with the source queue as
destination, or `photopipe local dlq redrive`). Copying would lose the message id and timestamps and need
send rights; deleting would lose the message. Recording is idempotent (conditional writes that only move a
record that is still unfinished), so the repeated deliveries, and a replayed message that dies again, do no
harm. A replayed message is processed again: ingest and classify take `failed` / `classification_failed`
images back, and a `failed` job has to be put back to `queued` by whoever replays it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.jobs import JobsRepository
from photopipe.models import (
    ACTIVE_JOB_STATES,
    CLASSIFIABLE_STATES,
    RETRY_NOTE,
    RETRY_PREFIX,
    TERMINAL_JOB_STATES,
    ClassifyMessage,
    ExportMessage,
    ImageState,
    JobError,
    JobMessage,
    JobState,
    S3Notification,
)
from photopipe.observability import logger, metrics, tracer
from photopipe.usecases.credits import Credits

STOPPED = "processing_stopped"


class Source(StrEnum):
    """The queue a dead letter came from."""

    INGEST = "ingest"
    CLASSIFY = "classify"
    GPU_JOBS = "gpu-jobs"
    EXPORTS = "exports"


@dataclass(frozen=True)
class DeadLetterQueue:
    source: Source
    max_receive_count: int  # the source queue's: how many attempts the message had


@dataclass(frozen=True)
class DeadLetters:
    images: ImagesRepository
    jobs: JobsRepository
    queues: Mapping[str, DeadLetterQueue]  # by DLQ ARN
    refunds: Credits  # a job that failed for good gets its credit back (once, whoever marked it failed)

    @tracer.capture_method
    def record(self, queue_arn: str, body: str) -> str:
        """Mark what the dead letter was about as failed; returns what was done (for the logs and tests)."""
        queue = self.queues.get(queue_arn)
        if queue is None:
            logger.warning(
                "a message from a queue that is not a dead-letter queue; ignored", extra={"queue": queue_arn}
            )
            return "unknown_queue"
        try:
            payload = json.loads(body)
            outcome = {
                Source.INGEST: self._ingest,
                Source.CLASSIFY: self._classify,
                Source.GPU_JOBS: self._job,
                Source.EXPORTS: self._export,
            }[queue.source](payload, queue.max_receive_count)
        except (json.JSONDecodeError, ValidationError) as e:
            # A message that was never valid (why it died): there is no record to mark. It is kept all the same.
            logger.warning(
                "dead letter names no record; kept as it is", extra={"queue": queue.source, "error": str(e)}
            )
            outcome = "unreadable"
        logger.info("dead letter recorded", extra={"queue": queue.source, "outcome": outcome})
        metrics.add_metric(name="DeadLetters", unit=MetricUnit.Count, value=1)
        return outcome

    # ------------------------------------------------------------------ ingest: the image failed
    def _ingest(self, payload: Any, attempts: int) -> str:
        notification = S3Notification.model_validate(payload)
        outcomes = []
        for ref in notification.objects():
            parts = ref.key.split("/")
            if len(parts) != 4 or parts[0] != "originals":
                outcomes.append("not_an_original")
                continue
            image = self.images.get(parts[2])
            if image is None or image.original_key != ref.key:
                outcomes.append("no_record")
                continue
            if image.state not in (ImageState.PENDING_UPLOAD, ImageState.PROCESSING):
                outcomes.append("already_finished")  # processed, rejected, or failed by its last attempt
                continue
            if image.state == ImageState.PROCESSING and image.etag not in (None, ref.etag):
                outcomes.append("newer_upload")  # another version of the photo is being processed now
                continue
            failed = self.images.transition(
                image.image_id,
                from_states=(image.state,),
                to_state=ImageState.FAILED,
                set_fields={
                    "reason": STOPPED,
                    "reason_message": f"processing stopped after {attempts} attempts without finishing: the "
                    "last one ended without reporting an error, which is what running out of time or memory "
                    "does (a very large PNG or TIFF needs the most). The original is kept; the upload is kept "
                    "in the ingest redrive queue and can be replayed.",
                },
                expect={"etag": image.etag},
            )
            outcomes.append("failed" if failed else "already_finished")
        return ",".join(outcomes) or "test_event"

    # ------------------------------------------------------------------ classify: the classification failed
    def _classify(self, payload: Any, attempts: int) -> str:
        """The photo itself is fine (processed, viewable, enhanceable): its classification failed, so the image
        ends `classification_failed`, not `failed`."""
        message = ClassifyMessage.model_validate(payload)
        image = self.images.get(message.image_id)
        if image is None or image.state not in CLASSIFIABLE_STATES:
            return "already_finished"
        stopped = f"Classification stopped after {attempts} attempts; the request is kept in the classify redrive queue."
        if image.state == ImageState.CLASSIFICATION_FAILED:
            previous = image.reason_message or ""
            if not previous.endswith(RETRY_NOTE):
                return "already_final"  # the last attempt recorded its own, final, reason
            fields = {"reason_message": previous.removesuffix(RETRY_NOTE) + " " + stopped}
            expect: dict[str, Any] = {"reason_message": image.reason_message}
        else:
            fields = {
                "reason": STOPPED,
                "reason_message": "no attempt to classify this photo finished: each ended without reporting an "
                "error, which is what running out of time or memory does. " + stopped,
            }
            expect = {}
        done = self.images.transition(
            image.image_id,
            from_states=(image.state,),
            to_state=ImageState.CLASSIFICATION_FAILED,
            set_fields=fields,
            expect=expect,
        )
        return "classification_failed" if done else "already_finished"

    # ------------------------------------------------------------------ gpu-jobs: the job failed
    def _job(self, payload: Any, attempts: int) -> str:
        message = JobMessage.model_validate(payload)
        job = self.jobs.get(message.job_id)
        if job is None:
            return "already_finished"
        if job.state not in ACTIVE_JOB_STATES:
            # The worker marked it failed on its last attempt but may have died before refunding it.
            if job.state == JobState.FAILED:
                self.refunds.refund_job(job, "the enhancement failed")
            return "already_finished"
        if job.error is not None and job.error.message.startswith(RETRY_PREFIX):
            error = JobError(
                code=job.error.code,
                message=f"enhancement stopped after {attempts} attempts; the last error recorded was: "
                f"{job.error.message.removeprefix(RETRY_PREFIX)}",
            )
        else:
            error = JobError(
                code=STOPPED,
                message=f"enhancement stopped after {attempts} attempts without finishing: the last attempt "
                "ended without reporting an error, which is what a GPU worker that ran out of memory, was "
                "stopped or lost its instance does.",
            )
        done = self.jobs.update(
            job.job_id,
            from_states=(job.state,),
            to_state=JobState.FAILED,
            set_fields={"error": error.model_dump()},
            remove_fields=("lease_expires_at",),
        )
        if done is not None:
            self.refunds.refund_job(done, "the enhancement failed")
        return "failed" if done else "already_finished"

    # ------------------------------------------------------------------ exports: the batch's ZIP failed
    def _export(self, payload: Any, attempts: int) -> str:
        """The batch's jobs are finished (that is when a ZIP is asked for): each carries the export's error,
        which the next download request reports once and then clears, to try again."""
        message = ExportMessage.model_validate(payload)
        jobs = [j for j in self.jobs.list_by_batch(message.batch_id) if j.user_id == message.user_id]
        error = JobError(
            code="export_failed",
            message=f"the ZIP of batch {message.batch_id} could not be written: it stopped after {attempts} "
            "attempts.",
        )
        marked = [
            j.job_id
            for j in jobs
            if self.jobs.update(
                j.job_id, from_states=TERMINAL_JOB_STATES, set_fields={"export_error": error.model_dump()}
            )
        ]
        return f"export_failed:{len(marked)}" if marked else "no_batch"
