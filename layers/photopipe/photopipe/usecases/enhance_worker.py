"""The GPU worker (a use case: composed in `photopipe.wiring.gpu_worker`): long-polls the gpu-jobs queue and runs enhancement jobs, batching faces across jobs.

One process holds one face restorer (its ONNX session created and warmed up at start) and loops:

1. receive up to 10 messages (long poll, `poll_wait_s` ≤ 20 s; shorter while it holds prepared work);
2. for each: skip a job that is gone or finished (a duplicate delivery: the message is deleted, no work),
   claim it with a conditional `queued → running` (or take over a `running` job whose lease ran out: its
   worker died), download the original, check for cancellation, `prepare` it (decode, detect, align),
   check again;
3. once the prepared photos hold `max_batch` faces, or the first of them has waited `batch_wait_s`,
   restore every face in one `restore()` call (chunks of `max_batch` only when more are held), split the
   output back, `finish` each photo (upscale, paste, encode), write `enhanced/{user_id}/{job_id}.jpg` and
   complete the job with a conditional `running (held by me) → completed`; then delete the message.

Overlap: the restorer (the GPU) has a thread of its own and the CPU halves run on `cpu_threads` threads, so
while the GPU restores one batch the next photos are downloaded, decoded, detected and aligned, and the
previous batch's photos are pasted back, encoded and uploaded (at most `max_batches_in_flight` batches
restored and not yet finished). `run()` overlaps across polls too: it receives again while a batch is in
flight. `poll_once()` on its own returns once what it dispatched is finished (`wait=True`), which keeps a
single poll's effects visible to its caller. `overlap=False` does everything on the calling thread, in turn
(the benchmark's baseline). `restore_busy_s` adds up the time spent inside `restore()`.

Exactly once: a job is completed only while it is still `running` under this worker, so a cancelled job
or one taken over by another worker is never overwritten. A failing job goes back to `queued` with its
error recorded and its message is given back for a retry; on the queue's last attempt it ends `failed`
with a readable reason and SQS moves the message to the dead-letter queue.

A keep-alive thread extends the visibility of every message held, renews the jobs' leases and sends the
fleet heartbeat. `stop()` (SIGTERM) makes the loop stop polling, finish what it holds, give back what it
had not started, and unregister."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import ValidationError

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.sqs import Queue, ReceivedMessage
from photopipe.errors import PhotopipeError
from photopipe.models import RETRY_PREFIX, EnhanceParams, Job, JobError, JobMessage, JobState, result_key
from photopipe.observability import logger

if TYPE_CHECKING:
    from photopipe.enhance.session import FaceRestorer
    from photopipe.usecases.fleet import Fleet


# ---------------------------------------------------------------------------------------- interfaces
class Prepared(Protocol):
    """What `PhotoEnhancer.prepare` gives back (`photopipe.enhance.pipeline.PreparedPhoto`)."""

    @property
    def faces(self) -> np.ndarray: ...  # float32 (k, 3, 512, 512) in [-1, 1]

    @property
    def timings(self) -> dict[str, float]: ...


class Enhanced(Protocol):
    """What `PhotoEnhancer.finish` gives back (`photopipe.enhance.pipeline.EnhancedPhoto`)."""

    @property
    def jpeg(self) -> bytes: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def faces(self) -> int: ...

    @property
    def timings(self) -> dict[str, float]: ...

    @property
    def notes(self) -> list[str]: ...


class PhotoEnhancer(Protocol):
    """The CPU halves of the pipeline around the batched restore."""

    def prepare(self, data: bytes, params: EnhanceParams) -> Prepared: ...

    def finish(self, prepared: Any, restored: np.ndarray) -> Enhanced: ...


class Refunder(Protocol):
    """Gives a failed job's credit back, once (`photopipe.usecases.credits.Credits`)."""

    def refund_job(self, job: Job, reason: str) -> object: ...


class FleetLink(Protocol):
    """How a worker tells the fleet it is alive."""

    def register(self) -> None: ...

    def heartbeat(self) -> None: ...

    def unregister(self) -> None: ...


@dataclass
class DirectFleetLink:
    """Writes the workers table through the same use case the webhook routes use (the default: the
    worker's IAM role allows it, no secret needed)."""

    fleet: Fleet
    worker_id: str
    provider: str | None = None
    max_batch: int | None = None
    version: str | None = None

    def register(self) -> None:
        self.fleet.register(
            self.worker_id, provider=self.provider, max_batch=self.max_batch, version=self.version
        )

    def heartbeat(self) -> None:
        if not self.fleet.heartbeat(self.worker_id):
            self.register()  # the item expired or was removed: register again

    def unregister(self) -> None:
        self.fleet.unregister(self.worker_id)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------------------------- the worker
@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    max_receive_count: int = 3  # the queue's redrive maxReceiveCount
    poll_wait_s: int = 20  # SQS long poll (≤ 20)
    batch_wait_s: float = 0.5  # the longest a prepared photo waits for others to fill a batch
    max_messages: int = 10
    visibility_s: int = 120  # set on receive and renewed by the keep-alive
    lease_s: float = 180.0  # a running job's lease; another worker may take it over after this
    keepalive_s: float = 30.0  # visibility, leases and fleet heartbeat are renewed this often
    retry_delay_s: int = 10  # a failed attempt's message becomes visible again after this
    cpu_threads: int = 2  # threads for the CPU halves (prepare, finish), beside the restorer's own
    overlap: bool = True  # False: everything on the polling thread, in turn
    max_batches_in_flight: int = 2  # restored batches still being finished, at most


@dataclass
class _Held:
    message: ReceivedMessage
    job: Job
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    prepared: Any = None

    @property
    def face_count(self) -> int:
        return 0 if self.prepared is None else int(self.prepared.faces.shape[0])


class InlineExecutor(Executor):
    """Runs what is submitted at once, on the caller's thread (`overlap=False`)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to whoever reads the future, as a pool would
            future.set_exception(e)
        return future


class GpuWorker:
    def __init__(
        self,
        *,
        jobs: JobsRepository,
        media: MediaStore,
        queue: Queue,
        restorer: FaceRestorer,
        enhancer: PhotoEnhancer,
        config: WorkerConfig,
        fleet: FleetLink | None = None,
        clock: Callable[[], float] = time.time,
        refunds: Refunder | None = None,
    ) -> None:
        self.jobs, self.media, self.queue = jobs, media, queue
        self.refunds = refunds
        self.restorer, self.enhancer, self.config = restorer, enhancer, config
        self.fleet = fleet
        self.clock = clock
        self.max_batch = max(1, int(restorer.max_batch))
        self._stop = threading.Event()
        self._keepalive_stop = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}  # by message id: everything received and not yet let go
        self._pending: list[_Held] = []  # prepared, waiting for the batched restore
        self._first_pending_at: float | None = None
        self._keepalive: threading.Thread | None = None
        self._cpu: Executor | None = None  # prepare / finish
        self._gpu: Executor | None = None  # restore, one batch at a time
        self._in_flight: list[Future[list[Future[None]]]] = []  # dispatched batches
        self.restore_busy_s = 0.0  # time spent inside restorer.restore()
        self.restored_faces = 0

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, *_: Any) -> None:
        """Ask the loop to stop (signal-handler safe): it stops polling, finishes what it holds, exits."""
        self._stop.set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.fleet is not None:
            self.fleet.register()
        self._keepalive_stop.clear()
        self._keepalive = threading.Thread(target=self._keepalive_loop, name="worker-keepalive", daemon=True)
        self._keepalive.start()
        logger.info("worker started", extra={"worker_id": self.worker_id, "max_batch": self.max_batch})

    def shutdown(self) -> None:
        self.flush()
        with self._lock:
            leftovers = list(self._held.values())
        for held in leftovers:  # received but never started: give them back at once
            self._release(held, delay=0)
        for executor in {self._cpu, self._gpu} - {None}:
            assert executor is not None
            executor.shutdown(wait=True)
        self._cpu = self._gpu = None
        self._keepalive_stop.set()
        if self._keepalive is not None:
            self._keepalive.join(timeout=10)
        if self.fleet is not None:
            self.fleet.unregister()
        logger.info("worker stopped", extra={"worker_id": self.worker_id})

    def run(self) -> None:
        """Poll until `stop()`; then finish the held work and unregister. Each poll receives while the
        previous polls' batches are still restoring or finishing."""
        self.start()
        try:
            while not self.stopping:
                self.poll_once(wait=False)
        finally:
            self.shutdown()

    def _executors(self) -> tuple[Executor, Executor]:
        if self._cpu is None or self._gpu is None:
            if self.config.overlap:
                self._cpu = ThreadPoolExecutor(
                    max(1, self.config.cpu_threads), thread_name_prefix="worker-cpu"
                )
                self._gpu = ThreadPoolExecutor(1, thread_name_prefix="worker-restore")
            else:
                self._cpu = self._gpu = InlineExecutor()
        return self._cpu, self._gpu

    # ------------------------------------------------------------------ one poll
    def poll_once(self, *, wait: bool = True) -> int:
        """Receive once, admit (claim, then prepare on the CPU threads) what came, dispatch a batch to the
        restorer whenever one is full or due. `wait`: return only once every dispatched batch is finished.
        Returns the number of messages received."""
        self._reap()
        wait_s = self.config.poll_wait_s
        if self._pending and self._first_pending_at is not None:
            left = self.config.batch_wait_s - (self.clock() - self._first_pending_at)
            wait_s = max(0, min(wait_s, math.ceil(left)))
        messages = self.queue.receive(
            max_messages=self.config.max_messages,
            wait_seconds=wait_s,
            visibility_seconds=self.config.visibility_s,
        )
        cpu, _ = self._executors()
        preparing: list[tuple[_Held, Future[bool]]] = []
        for message in messages:
            if self.stopping:  # received during shutdown: not started, give it back now
                self.queue.set_visibility(message, 0)
                continue
            held = self._admit(message)
            if held is not None:
                preparing.append((held, cpu.submit(self._prepare_guarded, held)))
            if not self.config.overlap:  # one photo at a time, a full batch restored at once
                self._collect(preparing)
        self._collect(preparing)
        if self._pending and (self.stopping or self._batch_due()):
            self._dispatch()
        if wait:
            self.wait_idle()
        return len(messages)

    def _batch_due(self) -> bool:
        return (
            self._first_pending_at is not None
            and self.clock() - self._first_pending_at >= self.config.batch_wait_s
        )

    # ------------------------------------------------------------------ admit: claim, download, prepare
    def _admit(self, message: ReceivedMessage) -> _Held | None:
        """Claim the message's job; the held job to prepare, or None when there is nothing to do."""
        try:
            job_id = JobMessage.model_validate(json.loads(message.body)).job_id
        except (json.JSONDecodeError, ValidationError) as e:
            # Never valid: let SQS count the receives and move it to the DLQ.
            logger.error("not a gpu-jobs message; left for the DLQ", extra={"error": str(e)})
            self.queue.set_visibility(message, 0)
            return None
        job = self.jobs.get(job_id)
        if job is None or job.terminal:
            logger.info(
                "job gone or already finished; duplicate delivery deleted",
                extra={"job_id": job_id, "state": job.state.value if job else None},
            )
            self.queue.delete(message)
            return None
        now = self.clock()
        claimed = self.jobs.claim(
            job_id, worker_id=self.worker_id, lease_until=now + self.config.lease_s, now=now
        )
        if claimed is None:
            current = self.jobs.get(job_id)
            if current is None or current.terminal:
                self.queue.delete(message)
                return None
            # Another worker holds it under a live lease: look again once that lease could have run out.
            left = (current.lease_expires_at or now) - now
            self.queue.set_visibility(message, int(min(43_000, max(1, left + 1))))
            logger.info("job held by another worker", extra={"job_id": job_id, "holder": current.worker_id})
            return None
        if job.state == JobState.RUNNING:
            logger.warning(
                "took over a job whose worker stopped renewing its lease",
                extra={"job_id": job_id, "previous_worker": job.worker_id},
            )
        held = _Held(message=message, job=claimed, started=time.perf_counter())
        with self._lock:
            self._held[message.message_id] = held
        return held

    def _prepare_guarded(self, held: _Held) -> bool:
        """On a CPU thread: download and prepare; True when the photo is ready for the batch."""
        try:
            return self._prepare(held)
        except Exception as e:  # any failure of this job is recorded on it; the loop goes on
            self._fail(held, e)
            return False

    def _prepare(self, held: _Held) -> bool:
        job = held.job
        t = time.perf_counter()
        stored = self.media.open(job.source_key)
        with stored.body:
            data = stored.body.read()
        held.timings["download"] = _ms(t)
        if not self._progress(held, 10):  # cancelled (or taken over) before the work starts
            return False
        prepared = self.enhancer.prepare(data, job.params)
        held.prepared = prepared
        held.timings.update(prepared.timings)
        # False when cancelled while it was being prepared
        return self._progress(held, 40)

    def _collect(self, preparing: list[tuple[_Held, Future[bool]]]) -> None:
        """Take the prepared photos in the order they were received (batches do not depend on thread
        timing), dispatching a batch whenever one is full."""
        while preparing:
            held, ready = preparing.pop(0)
            if ready.result():
                self._add_pending(held)
                if sum(h.face_count for h in self._pending) >= self.max_batch:
                    self._dispatch()

    def _add_pending(self, held: _Held) -> None:
        with self._lock:
            if not self._pending:
                self._first_pending_at = self.clock()
            self._pending.append(held)

    # ------------------------------------------------------------------ restore a batch, finish each
    def flush(self) -> None:
        """Dispatch what is prepared and wait until every dispatched batch is finished."""
        self._dispatch()
        self.wait_idle()

    def wait_idle(self) -> None:
        """Wait for every dispatched batch: restored, and each of its photos finished."""
        while self._in_flight:
            self._wait(self._in_flight.pop(0))

    def _reap(self) -> None:
        """Forget the batches already finished (from the oldest), raising what one of them raised."""
        while (
            self._in_flight
            and self._in_flight[0].done()
            and all(f.done() for f in self._in_flight[0].result())
        ):
            self._wait(self._in_flight.pop(0))

    @staticmethod
    def _wait(batch: Future[list[Future[None]]]) -> None:
        for finishing in batch.result():
            finishing.result()

    def _dispatch(self) -> None:
        """Hand the prepared photos to the restorer's thread (after the oldest batch when too many are in
        flight)."""
        with self._lock:
            pending, self._pending, self._first_pending_at = self._pending, [], None
        if not pending:
            return
        while len(self._in_flight) >= max(1, self.config.max_batches_in_flight):
            self._wait(self._in_flight.pop(0))
        _, gpu = self._executors()
        self._in_flight.append(gpu.submit(self._restore_batch, pending))

    def _restore_batch(self, pending: list[_Held]) -> list[Future[None]]:
        """On the restorer's thread: one batched restore, then each photo's finish handed to a CPU thread."""
        counts = [h.face_count for h in pending]
        total = sum(counts)
        restored_parts: list[np.ndarray] = []
        restore_ms = 0.0
        if total:
            faces = np.concatenate([h.prepared.faces for h in pending if h.face_count], axis=0)
            t = time.perf_counter()
            try:
                outputs = [
                    self.restorer.restore(faces[i : i + self.max_batch])
                    for i in range(0, total, self.max_batch)
                ]
            except Exception as e:  # the whole batch failed: each job is retried on its own terms
                for held in pending:
                    self._fail(held, e)
                return []
            finally:
                self.restore_busy_s += time.perf_counter() - t
            restore_ms = _ms(t)
            self.restored_faces += total
            restored = np.concatenate(outputs, axis=0)
            restored_parts = np.split(restored, np.cumsum(counts)[:-1])
        else:
            restored_parts = [np.zeros((0, 3, 512, 512), np.float32) for _ in pending]
        logger.info("restored a batch", extra={"photos": len(pending), "faces": total, "ms": restore_ms})
        cpu, _ = self._executors()
        finishing = []
        for held, part in zip(pending, restored_parts, strict=True):
            held.timings["restore"] = restore_ms
            finishing.append(cpu.submit(self._finish_guarded, held, part, total))
        return finishing

    def _finish_guarded(self, held: _Held, restored: np.ndarray, batch_faces: int) -> None:
        try:
            self._finish(held, restored, batch_faces=batch_faces)
        except Exception as e:
            self._fail(held, e)

    def _finish(self, held: _Held, restored: np.ndarray, *, batch_faces: int) -> None:
        job = held.job
        if not self._progress(held, 70):  # cancelled while waiting for the batch
            return
        enhanced = self.enhancer.finish(held.prepared, restored)
        key = result_key(job.user_id, job.job_id)
        t = time.perf_counter()
        self.media.put(key, enhanced.jpeg, content_type="image/jpeg", cache_control="private, max-age=86400")
        timings = {**held.timings, **enhanced.timings, "restore": held.timings.get("restore", 0.0)}
        timings["upload"] = _ms(t)
        timings["total"] = _ms(held.started)
        done = self.jobs.update(
            job.job_id,
            from_states=(JobState.RUNNING,),
            to_state=JobState.COMPLETED,
            held_by=self.worker_id,
            set_fields={
                "progress": 100,
                "faces": int(enhanced.faces),
                "timings": {k: round(float(v), 3) for k, v in timings.items()},
                "notes": list(enhanced.notes),
                "result_key": key,
                "width": int(enhanced.width),
                "height": int(enhanced.height),
                "restore_batch_faces": batch_faces,
            },
            remove_fields=("lease_expires_at", "error"),
        )
        if done is None:
            # Cancelled (or taken over) after the photo was written: the job's owner no longer wants it.
            current = self.jobs.get(job.job_id)
            if current is None or current.state == JobState.CANCELLED:
                self.media.delete_prefix(key)
            self._lost(held, current)
            return
        logger.info(
            "job completed",
            extra={"job_id": job.job_id, "faces": done.faces, "total_ms": timings["total"]},
        )
        self._let_go(held, delete=True)

    # ------------------------------------------------------------------ bookkeeping
    def _progress(self, held: _Held, progress: int) -> bool:
        """Record progress and timings and renew the lease; False when the job is no longer ours (then the
        message has been dealt with)."""
        updated = self.jobs.update(
            held.job.job_id,
            from_states=(JobState.RUNNING,),
            held_by=self.worker_id,
            set_fields={
                "progress": progress,
                "timings": {k: round(float(v), 3) for k, v in held.timings.items()},
                "lease_expires_at": self.clock() + self.config.lease_s,
            },
        )
        if updated is None:
            self._lost(held, self.jobs.get(held.job.job_id))
            return False
        held.job = updated
        return True

    def _lost(self, held: _Held, current: Job | None) -> None:
        if current is None or current.terminal:
            logger.info(
                "job cancelled or removed while running; dropped",
                extra={"job_id": held.job.job_id, "state": current.state.value if current else None},
            )
            self._let_go(held, delete=True)
        else:  # another worker took it over: its copy of the message is the live one
            logger.warning("job taken over by another worker", extra={"job_id": held.job.job_id})
            self._let_go(held, delete=False)

    def _fail(self, held: _Held, error: Exception) -> None:
        job = held.job
        code = error.code if isinstance(error, PhotopipeError) else "enhancement_failed"
        detail = error.message if isinstance(error, PhotopipeError) else f"{type(error).__name__}: {error}"
        last = held.message.receive_count >= self.config.max_receive_count
        logger.error(
            "job attempt failed",
            extra={
                "job_id": job.job_id,
                "attempt": held.message.receive_count,
                "last": last,
                "error": detail,
            },
        )
        if last:
            failed = self.jobs.update(
                job.job_id,
                from_states=(JobState.RUNNING,),
                to_state=JobState.FAILED,
                held_by=self.worker_id,
                set_fields={
                    "error": JobError(
                        code=code,
                        message=f"enhancement failed after {held.message.receive_count} attempts: {detail}. "
                        "The job's message is kept in the gpu-jobs dead-letter queue for a redrive.",
                    ).model_dump(),
                    "timings": {k: round(float(v), 3) for k, v in held.timings.items()},
                },
                remove_fields=("lease_expires_at",),
            )
            if failed is not None and self.refunds is not None:
                try:
                    self.refunds.refund_job(failed, f"enhancement failed: {code}")
                except PhotopipeError as e:  # the DLQ consumer refunds it again (refunds are idempotent)
                    logger.error("refund failed", extra={"job_id": job.job_id, "error": e.message})
            self._release(held, delay=0)  # its next receive moves it to the DLQ
        else:
            self.jobs.update(
                job.job_id,
                from_states=(JobState.RUNNING,),
                to_state=JobState.QUEUED,
                held_by=self.worker_id,
                set_fields={"error": JobError(code=code, message=f"{RETRY_PREFIX}{detail}").model_dump()},
                remove_fields=("lease_expires_at", "worker_id"),
            )
            self._release(held, delay=self.config.retry_delay_s)

    def _release(self, held: _Held, *, delay: int) -> None:
        self.queue.set_visibility(held.message, delay)
        self._let_go(held, delete=False)

    def _let_go(self, held: _Held, *, delete: bool) -> None:
        if delete:
            self.queue.delete(held.message)
        with self._lock:
            self._held.pop(held.message.message_id, None)
            if held in self._pending:
                self._pending.remove(held)

    # ------------------------------------------------------------------ keep-alive
    def _keepalive_loop(self) -> None:
        while not self._keepalive_stop.wait(self.config.keepalive_s):
            self.keepalive()

    def keepalive(self) -> None:
        """Extend every held message and job lease, and heartbeat the fleet. Errors are logged and retried
        next round (a missed round costs nothing while the visibility and lease last three rounds)."""
        with self._lock:
            held = list(self._held.values())
        try:
            for h in held:
                self.queue.set_visibility(h.message, self.config.visibility_s)
                self.jobs.update(
                    h.job.job_id,
                    from_states=(JobState.RUNNING,),
                    held_by=self.worker_id,
                    set_fields={"lease_expires_at": self.clock() + self.config.lease_s},
                )
            if self.fleet is not None:
                self.fleet.heartbeat()
        except (PhotopipeError, OSError) as e:
            logger.warning("keep-alive round failed; retrying next round", extra={"error": str(e)})


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def install_signal_handlers(worker: GpuWorker) -> None:
    """SIGTERM (ECS stopping the task, scale-in) and SIGINT stop the loop gracefully."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        logger.info("stop requested", extra={"signal": signal.Signals(signum).name})
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
