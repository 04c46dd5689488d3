"""Enhancement jobs as the API offers them: submit one photo or a batch, poll, download, cancel or delete,
and a batch's ZIP (written to S3 by the exports function, streamed).

Users only see their own jobs: another user's job or batch answers 404, as images do."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.sqs import Queue
from photopipe.errors import BadRequestError, ConflictError, NotFoundError, ServiceUnavailableError
from photopipe.models import (
    ACTIVE_JOB_STATES,
    ENHANCEABLE_STATES,
    MAX_BATCH_IMAGES,
    TERMINAL_JOB_STATES,
    EnhanceParams,
    ExportMessage,
    ImageRecord,
    Job,
    JobError,
    JobMessage,
    JobState,
    export_key,
    utcnow_iso,
)
from photopipe.observability import logger
from photopipe.usecases.credits import Credits
from photopipe.usecases.fleet import Fleet

EXPORT_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class JobView:
    job: Job
    result_url: str | None = None


@dataclass(frozen=True)
class BatchView:
    batch_id: str
    jobs: list[Job]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return all(j.state in TERMINAL_JOB_STATES for j in self.jobs)


@dataclass(frozen=True)
class ExportReady:
    url: str


@dataclass(frozen=True)
class ExportPending:
    retry_after: int
    message: str


@dataclass(frozen=True)
class EnhanceJobs:
    images: ImagesRepository
    jobs: JobsRepository
    media: MediaStore
    gpu_queue: Queue
    exports_queue: Queue
    fleet: Fleet
    queue_when_no_workers: bool
    url_ttl_seconds: int
    credits: Credits

    # ------------------------------------------------------------------ submit
    def submit(self, user_id: str, image_id: str, params: EnhanceParams) -> Job:
        image = self._enhanceable(user_id, image_id)
        self._check_capacity()
        job_id = uuid.uuid4().hex
        self.credits.reserve(user_id, [job_id])  # one credit per photo, refunded if the job fails
        return self._enqueue(image, params, batch_id=None, job_id=job_id)

    def submit_batch(
        self, user_id: str, image_ids: list[str], params: EnhanceParams
    ) -> tuple[str, list[Job]]:
        if not 1 <= len(image_ids) <= MAX_BATCH_IMAGES:
            raise BadRequestError(
                f"a batch holds 1 to {MAX_BATCH_IMAGES} images; got {len(image_ids)}", code="bad_batch"
            )
        if len(set(image_ids)) != len(image_ids):
            raise BadRequestError("the batch names an image more than once", code="bad_batch")
        images = [self._enhanceable(user_id, i) for i in image_ids]  # all checked before anything is queued
        self._check_capacity()
        batch_id = uuid.uuid4().hex
        job_ids = [uuid.uuid4().hex for _ in images]
        self.credits.reserve(user_id, job_ids, batch_id=batch_id)  # all of them, or 402 and none
        jobs: list[Job] = []
        try:
            for image, job_id in zip(images, job_ids, strict=True):
                jobs.append(self._enqueue(image, params, batch_id=batch_id, job_id=job_id))
        except Exception:
            for job_id in job_ids[len(jobs) + 1 :]:  # never created: give their credits back
                self.credits.release(user_id, job_id, "not queued: the batch could not be submitted")
            raise
        logger.info("batch submitted", extra={"batch_id": batch_id, "jobs": len(jobs)})
        return batch_id, jobs

    def _enhanceable(self, user_id: str, image_id: str) -> ImageRecord:
        image = self.images.get(image_id)
        if image is None or image.user_id != user_id:
            raise NotFoundError(f"no image {image_id!r} in your library", code="image_not_found")
        if image.state not in ENHANCEABLE_STATES:
            raise ConflictError(
                f"image {image_id!r} is {image.state.value}; only a processed photo can be enhanced",
                code="image_not_ready",
            )
        return image

    def _check_capacity(self) -> None:
        if self.queue_when_no_workers:
            return  # the deployment scales workers from zero on queue depth
        reason = self.fleet.unavailable_reason()
        if reason is not None:
            raise ServiceUnavailableError(reason, code="enhancement_unavailable")

    def _enqueue(
        self, image: ImageRecord, params: EnhanceParams, *, batch_id: str | None, job_id: str
    ) -> Job:
        now = utcnow_iso()
        job = Job(
            job_id=job_id,
            image_id=image.image_id,
            user_id=image.user_id,
            state=JobState.QUEUED,
            params=params,
            source_key=image.original_key,
            batch_id=batch_id,
            created_at=now,
            updated_at=now,
        )
        try:
            self.jobs.create(job)
        except Exception:
            self.credits.release(job.user_id, job_id, "not queued: the job could not be recorded")
            raise
        try:
            self.gpu_queue.send(JobMessage(job_id=job.job_id, user_id=job.user_id).model_dump())
        except Exception as e:
            # Not queued: say so on the job rather than leave it `queued` forever, then report the error.
            failed = self.jobs.update(
                job.job_id,
                from_states=(JobState.QUEUED,),
                to_state=JobState.FAILED,
                set_fields={
                    "error": JobError(
                        code="not_queued", message=f"the job could not be queued: {e}"
                    ).model_dump()
                },
            )
            if failed is not None:
                self.credits.refund_job(failed, "not queued: the job could not be sent to the GPU workers")
            raise
        logger.info("job queued", extra={"job_id": job.job_id, "image_id": image.image_id})
        return job

    # ------------------------------------------------------------------ read
    def get(self, user_id: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.user_id != user_id:
            raise NotFoundError(f"no enhancement job {job_id!r}", code="job_not_found")
        return job

    def status(self, user_id: str, job_id: str) -> JobView:
        job = self.get(user_id, job_id)
        return JobView(job=job, result_url=self._result_url(job))

    def _result_url(self, job: Job) -> str | None:
        if job.state != JobState.COMPLETED or not job.result_key:
            return None
        return self.media.presigned_get(
            job.result_key, expires_in=self.url_ttl_seconds, download_name=f"{job.job_id}.jpg"
        )

    def download_url(self, user_id: str, job_id: str) -> str:
        job = self.get(user_id, job_id)
        url = self._result_url(job)
        if url is None:
            raise ConflictError(
                f"job {job_id!r} is {job.state.value}; the result can be downloaded once it is completed",
                code="job_not_completed",
            )
        return url

    # ------------------------------------------------------------------ cancel / delete
    def cancel_or_delete(self, user_id: str, job_id: str) -> Job | None:
        """A queued or running job is cancelled (returned); a finished one is deleted with its result
        (None). The worker checks for cancellation before and after preparing the photo and only completes
        a job that is still running under it."""
        job = self.get(user_id, job_id)
        if job.state in ACTIVE_JOB_STATES:
            cancelled = self.jobs.update(
                job_id,
                from_states=ACTIVE_JOB_STATES,
                to_state=JobState.CANCELLED,
                owner=user_id,
                set_fields={
                    "error": JobError(code="cancelled", message="cancelled by the user").model_dump()
                },
                remove_fields=("lease_expires_at",),
            )
            if cancelled is not None:
                logger.info("job cancelled", extra={"job_id": job_id})
                self.credits.refund_job(cancelled, "cancelled by the user")
                return cancelled
            job = self.get(user_id, job_id)  # it finished meanwhile: delete it below
        if job.state in (JobState.FAILED, JobState.CANCELLED):
            # Its credit is back before its record goes (a no-op when it already is).
            self.credits.refund_job(job, f"job {job.state.value}")
        if self.jobs.delete(job_id, from_states=TERMINAL_JOB_STATES):
            if job.result_key:
                self.media.delete_prefix(job.result_key)
            logger.info("job deleted", extra={"job_id": job_id, "state": job.state.value})
            return None
        raise ConflictError(f"job {job_id!r} changed while it was being removed; try again", code="conflict")

    # ------------------------------------------------------------------ batches
    def batch(self, user_id: str, batch_id: str) -> BatchView:
        jobs = [j for j in self.jobs.list_by_batch(batch_id) if j.user_id == user_id]
        if not jobs:
            raise NotFoundError(f"no enhancement batch {batch_id!r}", code="batch_not_found")
        jobs.sort(key=lambda j: (j.created_at, j.job_id))
        counts = Counter(j.state.value for j in jobs)
        return BatchView(batch_id=batch_id, jobs=jobs, counts=dict(counts))

    def result_url(self, job: Job) -> str | None:
        return self._result_url(job)

    def batch_download(self, user_id: str, batch_id: str) -> ExportReady | ExportPending:
        """The batch's ZIP: a link when the exports function has written it, else ask for it (202)."""
        view = self.batch(user_id, batch_id)
        if not view.done:
            raise ConflictError(
                f"batch {batch_id!r} is still running ({view.counts}); download it when every job has finished",
                code="batch_not_finished",
            )
        if not view.counts.get(JobState.COMPLETED.value):
            raise ConflictError(
                f"no job of batch {batch_id!r} completed; nothing to download", code="empty_batch"
            )
        key = export_key(user_id, batch_id)
        if self.media.exists(key):
            return ExportReady(
                url=self.media.presigned_get(
                    key, expires_in=self.url_ttl_seconds, download_name=f"enhanced-{batch_id}.zip"
                )
            )
        failure = next((j.export_error for j in view.jobs if j.export_error), None)
        if failure is not None:
            # Recorded by the exports dead-letter consumer: say so once, then clear it so that asking again
            # tries again.
            for job in view.jobs:
                if job.export_error:
                    self.jobs.update(
                        job.job_id, from_states=TERMINAL_JOB_STATES, remove_fields=("export_error",)
                    )
            raise ConflictError(f"{failure.message} Ask again to try once more.", code="export_failed")
        # Repeated requests while it is being written send repeated messages; the exporter skips a ZIP
        # that already exists, so they cost one HEAD each.
        self.exports_queue.send(ExportMessage(user_id=user_id, batch_id=batch_id).model_dump())
        return ExportPending(
            retry_after=EXPORT_RETRY_AFTER_S,
            message=f"the ZIP of batch {batch_id} is being prepared; ask again in {EXPORT_RETRY_AFTER_S} seconds",
        )
