"""In-memory stand-ins for the gpu-jobs queue, the jobs table and the media bucket (no AWS, no sockets),
subclassing the real adapters: the worker's batching tests and the overlap benchmark run the real
`GpuWorker` on them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore, StoredObject
from photopipe.adapters.sqs import Queue, ReceivedMessage
from photopipe.errors import NotFoundError
from photopipe.models import Job, JobState, utcnow_iso


class MemoryQueue(Queue):
    def __init__(self) -> None:
        self.url = "memory://gpu-jobs"
        self.waiting: list[ReceivedMessage] = []
        self.in_flight: dict[str, ReceivedMessage] = {}
        self.deleted: list[str] = []
        self._n = 0

    def put(self, body: dict[str, Any]) -> None:
        self._n += 1
        self.waiting.append(ReceivedMessage(f"m{self._n}", f"r{self._n}", json.dumps(body), 1))

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[ReceivedMessage]:
        out, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        self.in_flight.update({m.message_id: m for m in out})
        return out

    def delete(self, message: ReceivedMessage) -> None:
        self.in_flight.pop(message.message_id, None)
        self.deleted.append(message.message_id)

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> bool:
        if seconds == 0 or seconds < 60:
            self.in_flight.pop(message.message_id, None)
            self.waiting.append(
                ReceivedMessage(
                    message.message_id, message.receipt_handle + "'", message.body, message.receive_count + 1
                )
            )
        return True


class MemoryJobs(JobsRepository):
    def __init__(self) -> None:
        self.items: dict[str, Job] = {}

    def create(self, job: Job) -> None:
        self.items[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        return self.items.get(job_id)

    def claim(self, job_id: str, *, worker_id: str, lease_until: float, now: float) -> Job | None:
        job = self.items.get(job_id)
        if job is None or job.state != JobState.QUEUED:
            return None
        return self._set(
            job,
            state=JobState.RUNNING,
            worker_id=worker_id,
            lease_expires_at=lease_until,
            attempts=job.attempts + 1,
        )

    def update(
        self,
        job_id: str,
        *,
        from_states: Any,
        to_state: JobState | None = None,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Any = (),
        held_by: str | None = None,
        owner: str | None = None,
        add_attempt: bool = False,
    ) -> Job | None:
        job = self.items.get(job_id)
        if job is None or job.state not in set(from_states) or (held_by and job.worker_id != held_by):
            return None
        changes = dict(set_fields or {})
        if to_state is not None:
            changes["state"] = to_state
        changes.update({f: None for f in remove_fields if f not in changes})
        return self._set(job, **changes)

    def _set(self, job: Job, **changes: Any) -> Job:
        data = {**job.model_dump(), **changes, "updated_at": utcnow_iso()}
        new = Job.model_validate(data)
        self.items[job.job_id] = new
        return new


@dataclass
class MemoryMedia(MediaStore):
    objects: dict[str, bytes] = field(default_factory=dict)
    bucket: str = "memory"

    def open(self, key: str) -> StoredObject:
        if key not in self.objects:
            raise NotFoundError(f"{key} does not exist", code="missing_object")
        data = self.objects[key]
        return StoredObject(
            key=key, body=io.BytesIO(data), size=len(data), etag="x", content_type="image/jpeg"
        )

    def put(self, key: str, data: bytes, *, content_type: str, cache_control: str | None = None) -> None:
        self.objects[key] = data

    def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self.objects if k.startswith(prefix)]
        for k in doomed:
            del self.objects[k]
        return len(doomed)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now
