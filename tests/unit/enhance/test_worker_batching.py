"""The worker's batching, on in-memory stand-ins for the queue, the jobs table and the bucket (no AWS, no
sockets): when a batch is restored, how faces are chunked and split back, and what a failed restore does."""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from photopipe.models import EnhanceParams, Job, JobState, utcnow_iso
from photopipe.usecases.enhance_worker import GpuWorker, WorkerConfig
from tests.fakes.enhance import FakeEnhanced, FakeEnhancer, FakePrepared, InvertingRestorer
from tests.fakes.worker import Clock, MemoryJobs, MemoryMedia, MemoryQueue


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


# --- overlap: CPU halves on their threads while the restorer works --------------------------------------
GUARD_S = (
    10.0  # how long a stand-in waits for an event that overlap makes happen (never reached when it works)
)


class WaitingRestorer(InvertingRestorer):
    """Restore call i marks itself under way, then waits for `during[i]`: set by a CPU half that starts
    while the restore is under way. `saw[i]` records whether that happened (False: nothing else ran)."""

    def __init__(self, max_batch: int, guard_s: float) -> None:
        super().__init__(max_batch)
        self.guard_s = guard_s
        self.active = False
        self.started = [threading.Event(), threading.Event()]
        self.during = [threading.Event(), threading.Event()]
        self.saw: list[bool] = []

    def restore(self, faces: np.ndarray) -> np.ndarray:
        i = len(self.saw)
        self.active = True
        self.started[i].set()
        self.saw.append(self.during[i].wait(self.guard_s))
        try:
            return super().restore(faces)
        finally:
            self.active = False


class RecordingEnhancer(FakeEnhancer):
    """A photo of the second batch starts preparing, and a photo of the first starts finishing, only once
    the matching restore has begun (the guard aside), and tells the restorer when that happens while the
    restore is still under way. Also records how many prepares ran at once."""

    def __init__(self, faces_for: Any, restorer: WaitingRestorer, first_batch: int) -> None:
        super().__init__(faces_for=faces_for)
        self.restorer = restorer
        self.first_batch = first_batch
        self.lock = threading.Lock()
        self.prepares_started = 0
        self.active_prepares = 0
        self.most_prepares_at_once = 0
        self.barrier = threading.Barrier(2, timeout=restorer.guard_s)

    def prepare(self, data: bytes, params: EnhanceParams) -> FakePrepared:
        with self.lock:
            self.prepares_started += 1
            n = self.prepares_started
            self.active_prepares += 1
            self.most_prepares_at_once = max(self.most_prepares_at_once, self.active_prepares)
        try:
            if n <= self.first_batch:
                # the first two wait for each other: side by side when there are two threads
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.barrier.wait()
            else:
                self.restorer.started[0].wait(self.restorer.guard_s)
                if self.restorer.active:
                    self.restorer.during[0].set()
            return super().prepare(data, params)
        finally:
            with self.lock:
                self.active_prepares -= 1

    def finish(self, prepared: FakePrepared, restored: np.ndarray) -> FakeEnhanced:
        self.restorer.started[1].wait(self.restorer.guard_s)  # set already for the second batch's photos
        if self.restorer.active:
            self.restorer.during[1].set()
        return super().finish(prepared, restored)


def overlap_rig(overlap: bool, guard_s: float) -> tuple[Rig, RecordingEnhancer, WaitingRestorer]:
    r, _ = rig(max_batch=2, batch_wait_s=5.0, cpu_threads=2, overlap=overlap)
    restorer = WaitingRestorer(2, guard_s)
    enhancer = RecordingEnhancer(faces_for=r.faces.__getitem__, restorer=restorer, first_batch=2)
    r.worker.enhancer = enhancer
    r.worker.restorer = restorer
    r.restorer = restorer
    return r, enhancer, restorer


def test_the_next_batch_is_prepared_and_the_last_one_finished_while_the_restorer_works() -> None:
    # GIVEN four one-face photos, batches of two, the CPU halves on two threads
    r, enhancer, restorer = overlap_rig(overlap=True, guard_s=GUARD_S)
    r.submit([1, 1, 1, 1], enhancer)

    # WHEN one poll takes them all
    r.worker.poll_once()

    # THEN photos 3-4 were being prepared during restore 1, photo 1-2 being finished during restore 2
    assert restorer.saw == [True, True]
    assert restorer.calls == [2, 2]
    assert enhancer.most_prepares_at_once == 2  # and prepares ran side by side
    assert states(r) == ["completed"] * 4
    assert r.worker.restored_faces == 4
    assert r.worker.restore_busy_s > 0


def test_without_overlap_nothing_runs_during_a_restore() -> None:
    # the baseline the benchmark compares against: one thread does everything in turn
    r, enhancer, restorer = overlap_rig(overlap=False, guard_s=0.05)
    r.submit([1, 1, 1, 1], enhancer)

    r.worker.poll_once()

    assert restorer.saw == [False, False]  # no prepare or finish could run while a restore waited
    assert enhancer.most_prepares_at_once == 1
    assert states(r) == ["completed"] * 4


def test_run_overlaps_polls_and_finishes_everything_on_stop() -> None:
    # GIVEN photos arriving in two receives (max 2 messages each), batches of two
    r, enhancer, restorer = overlap_rig(overlap=True, guard_s=GUARD_S)
    r.worker = GpuWorker(
        jobs=r.jobs,
        media=r.media,
        queue=r.queue,
        restorer=restorer,
        enhancer=enhancer,
        config=WorkerConfig(worker_id="w", poll_wait_s=0, retry_delay_s=0, batch_wait_s=0.0, max_messages=2),
        clock=r.clock,
    )
    r.submit([1, 1, 1, 1], enhancer)

    # WHEN the loop runs until the queue is empty, then stops
    thread = threading.Thread(target=r.worker.run)
    thread.start()
    deadline = GUARD_S
    while r.queue.waiting and deadline > 0:
        threading.Event().wait(0.05)
        deadline -= 0.05
    r.worker.stop()
    thread.join(GUARD_S)

    # THEN the second receive's photos were prepared during the first restore, and all four completed
    assert not thread.is_alive()
    assert restorer.saw[0] is True
    assert states(r) == ["completed"] * 4
    assert sorted(r.queue.deleted) == ["m1", "m2", "m3", "m4"]
