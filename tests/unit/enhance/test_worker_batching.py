"""The worker's batching, on in-memory stand-ins for the queue, the jobs table and the bucket (no AWS, no
sockets): when a batch is restored, how faces are chunked and split back, and what a failed restore does."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore, StoredObject
from photopipe.adapters.sqs import Queue, ReceivedMessage
from photopipe.errors import NotFoundError
from photopipe.models import Job, JobState, utcnow_iso
from photopipe.usecases.enhance_worker import GpuWorker, WorkerConfig
from tests.fakes.enhance import FakeEnhancer, InvertingRestorer


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


def _jpeg(width: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, 40), (200, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass
class Rig:
    queue: MemoryQueue
    jobs: MemoryJobs
    media: MemoryMedia
    restorer: InvertingRestorer
    worker: GpuWorker
    clock: Clock
    faces: dict[bytes, int]

    def submit(self, faces_by_photo: list[int], enhancer: FakeEnhancer) -> list[str]:
        ids = []
        for n, k in enumerate(faces_by_photo):
            data = _jpeg(40 + n)
            self.media.objects[f"originals/u/i{n}/p.jpg"] = data
            self.faces[data] = k
            now = utcnow_iso()
            job = Job(
                job_id=f"j{n}",
                image_id=f"i{n}",
                user_id="u",
                state=JobState.QUEUED,
                source_key=f"originals/u/i{n}/p.jpg",
                created_at=now,
                updated_at=now,
            )
            self.jobs.create(job)
            self.queue.put({"job_id": job.job_id, "user_id": "u"})
            ids.append(job.job_id)
        return ids


def rig(max_batch: int, **config: Any) -> tuple[Rig, FakeEnhancer]:
    faces: dict[bytes, int] = {}
    enhancer = FakeEnhancer(faces_for=faces.__getitem__)
    queue, jobs, media, clock = MemoryQueue(), MemoryJobs(), MemoryMedia(), Clock()
    restorer = InvertingRestorer(max_batch=max_batch)
    worker = GpuWorker(
        jobs=jobs,
        media=media,
        queue=queue,
        restorer=restorer,
        enhancer=enhancer,
        config=WorkerConfig(
            **{"worker_id": "w", "poll_wait_s": 0, "retry_delay_s": 0, "batch_wait_s": 0.0, **config}
        ),
        clock=clock,
    )
    return Rig(queue, jobs, media, restorer, worker, clock, faces), enhancer


def states(r: Rig) -> list[str]:
    return [r.jobs.items[j].state.value for j in sorted(r.jobs.items)]


def test_prepared_photos_wait_for_the_batch_window_then_share_one_restore() -> None:
    r, enhancer = rig(max_batch=8, batch_wait_s=5.0)
    r.submit([1, 1], enhancer)

    r.worker.poll_once()
    assert r.restorer.calls == []  # 2 faces < 8 and the window is still open
    assert states(r) == ["running", "running"]

    r.clock.now += 5.0
    r.worker.poll_once()  # nothing new arrives; the window has closed
    assert r.restorer.calls == [2]
    assert states(r) == ["completed", "completed"]
    assert sorted(r.queue.deleted) == ["m1", "m2"]


def test_a_full_batch_is_restored_at_once_and_the_rest_waits() -> None:
    r, enhancer = rig(max_batch=4, batch_wait_s=5.0)
    r.submit([2, 2, 1], enhancer)

    r.worker.poll_once()

    assert r.restorer.calls == [4]  # the first two photos filled the batch
    assert states(r) == ["completed", "completed", "running"]
    r.clock.now += 5.0
    r.worker.poll_once()
    assert r.restorer.calls == [4, 1]
    assert states(r) == ["completed", "completed", "completed"]


def test_each_job_gets_back_exactly_its_faces() -> None:
    # FakeEnhancer.finish asserts that the faces it receives are the negation of its own
    r, enhancer = rig(max_batch=16)
    r.submit([3, 0, 2, 1], enhancer)

    r.worker.poll_once()

    assert r.restorer.calls == [6]
    assert [r.jobs.items[j].faces for j in ("j0", "j1", "j2", "j3")] == [3, 0, 2, 1]
    assert sorted(r.media.objects) == sorted(
        [f"originals/u/i{n}/p.jpg" for n in range(4)] + [f"enhanced/u/j{n}.jpg" for n in range(4)]
    )


def test_a_failed_restore_sends_every_job_of_the_batch_back_for_a_retry() -> None:
    r, enhancer = rig(max_batch=8)
    r.submit([1, 1], enhancer)

    def broken(faces: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA error: out of memory")

    r.restorer.restore = broken  # type: ignore[method-assign]
    r.worker.poll_once()

    assert states(r) == ["queued", "queued"]
    errors = [r.jobs.items[j].error for j in ("j0", "j1")]
    assert all(e is not None and "out of memory" in e.message for e in errors)
    assert len(r.queue.waiting) == 2  # given back for another attempt
    assert not any(k.startswith("enhanced/") for k in r.media.objects)


def test_messages_received_after_stop_are_given_back_unstarted() -> None:
    r, enhancer = rig(max_batch=8)
    r.submit([1], enhancer)
    r.worker.stop()

    r.worker.poll_once()

    assert states(r) == ["queued"]
    assert [m.message_id for m in r.queue.waiting] == ["m1"]


@pytest.mark.parametrize("faces", [[0], [0, 0]])
def test_photos_without_faces_skip_the_restorer(faces: list[int]) -> None:
    r, enhancer = rig(max_batch=8)
    r.submit(faces, enhancer)

    r.worker.poll_once()

    assert r.restorer.calls == []
    assert set(states(r)) == {"completed"}
