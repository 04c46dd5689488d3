"""The GPU worker against moto, with a stand-in face model: batching across jobs, duplicate delivery, a
worker dying mid-job, cancellation, failures to the DLQ, and a graceful stop on SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from photopipe.adapters.jobs import JobsRepository
from photopipe.models import EnhanceParams, Job, JobState, utcnow_iso
from photopipe.usecases.enhance_worker import install_signal_handlers
from tests.conftest import EVENTS
from tests.fakes.enhance import FakeEnhancer, InvertingRestorer
from tests.integration.conftest import Stack
from tests.integration.enhance_support import job_item, make_worker, processed_image, visible_messages


def queue_job(stack: Stack, user_id: str, image_id: str, *, scale: int = 2, send: bool = True) -> str:
    """What `POST /enhance` does: a queued job record and its message."""
    job_id = uuid.uuid4().hex
    now = utcnow_iso()
    image = stack.image(image_id)
    JobsRepository(stack.env["JOBS_TABLE"]).create(
        Job(
            job_id=job_id,
            image_id=image_id,
            user_id=user_id,
            state=JobState.QUEUED,
            params=EnhanceParams(scale=scale),
            source_key=image["original_key"],
            created_at=now,
            updated_at=now,
        )
    )
    if send:
        send_message(stack, job_id, user_id)
    return job_id


def send_message(stack: Stack, job_id: str, user_id: str) -> None:
    stack.sqs.send_message(
        QueueUrl=stack.env["GPU_JOBS_QUEUE_URL"],
        MessageBody=json.dumps({"job_id": job_id, "user_id": user_id}),
    )


@pytest.fixture
def user(stack: Stack) -> str:
    return uuid.uuid4().hex


def photos_with_faces(stack: Stack, user: str, faces: list[int]) -> tuple[list[str], FakeEnhancer]:
    """Photos (distinct sizes) and an enhancer that finds `faces[n]` faces in photo n."""
    by_bytes: dict[bytes, int] = {}
    image_ids = []
    for n, k in enumerate(faces):
        image_id, data = processed_image(stack, user, size=(100 + 10 * n, 80))
        by_bytes[data] = k
        image_ids.append(image_id)
    return image_ids, FakeEnhancer(faces_for=lambda data: by_bytes[data])


def test_sample_message_shape_is_what_the_api_sends(stack: Stack, user: str) -> None:
    sample = json.loads((EVENTS / "enhance-job.json").read_text())
    body = json.loads(sample["Messages"][0]["Body"])
    assert set(body) == {"job_id", "user_id"}


def test_faces_of_several_jobs_are_restored_in_one_call(stack: Stack, user: str) -> None:
    # GIVEN three queued jobs whose photos hold 1, 2 and 1 faces, and a batch size of 8
    image_ids, enhancer = photos_with_faces(stack, user, [1, 2, 1])
    job_ids = [queue_job(stack, user, i) for i in image_ids]
    restorer = InvertingRestorer(max_batch=8)
    worker = make_worker(stack, restorer=restorer, enhancer=enhancer)

    # WHEN the worker polls once
    received = worker.poll_once()

    # THEN all four faces went through one restore call, and each job completed with its own faces
    assert received == 3
    assert restorer.calls == [4]
    for job_id, k in zip(job_ids, [1, 2, 1], strict=True):
        job = job_item(stack, job_id)
        assert (job["state"], job["progress"], job["faces"]) == ("completed", 100, k)
        assert job["restore_batch_faces"] == 4
        assert job["worker_id"] == "worker-test"
        assert job["attempts"] == 1
        result = Image.open(io.BytesIO(stack.read(f"enhanced/{user}/{job_id}.jpg")))
        assert result.format == "JPEG"
        assert result.size == (int(job["width"]), int(job["height"]))
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0


def test_more_faces_than_the_batch_are_restored_in_chunks(stack: Stack, user: str) -> None:
    image_ids, enhancer = photos_with_faces(stack, user, [3, 2])
    job_ids = [queue_job(stack, user, i) for i in image_ids]
    restorer = InvertingRestorer(max_batch=2)

    make_worker(stack, restorer=restorer, enhancer=enhancer).poll_once()

    # photo 1 alone fills the batch (3 >= 2): restored as 2 + 1; photo 2 then as 2
    assert restorer.calls == [2, 1, 2]
    assert [job_item(stack, j)["state"] for j in job_ids] == ["completed", "completed"]


def test_a_duplicate_delivery_of_a_finished_job_does_no_work(stack: Stack, user: str) -> None:
    (image_id,), enhancer = photos_with_faces(stack, user, [1])
    job_id = queue_job(stack, user, image_id)
    restorer = InvertingRestorer()
    worker = make_worker(stack, restorer=restorer, enhancer=enhancer)
    worker.poll_once()
    first = job_item(stack, job_id)
    result = stack.object_versions("enhanced/")

    # WHEN SQS delivers the same job again
    send_message(stack, job_id, user)
    worker.poll_once()

    # THEN the message is gone and nothing changed: no second restore, same record, same object
    assert restorer.calls == [1]
    assert job_item(stack, job_id) == first
    assert stack.object_versions("enhanced/") == result
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0


def test_a_job_left_running_by_a_dead_worker_is_taken_over_once(stack: Stack, user: str) -> None:
    # GIVEN a job a worker claimed before it died: running, its lease expired a minute ago
    (image_id,), enhancer = photos_with_faces(stack, user, [2])
    job_id = queue_job(stack, user, image_id)
    JobsRepository(stack.env["JOBS_TABLE"]).update(
        job_id,
        from_states=(JobState.QUEUED,),
        to_state=JobState.RUNNING,
        set_fields={"worker_id": "dead-worker", "lease_expires_at": time.time() - 60, "progress": 40},
        add_attempt=True,
    )
    restorer = InvertingRestorer()

    # WHEN its message is redelivered, to two workers in turn
    make_worker(stack, restorer=restorer, enhancer=enhancer, worker_id="rescuer").poll_once()
    send_message(stack, job_id, user)  # a duplicate copy as well
    make_worker(stack, restorer=restorer, enhancer=enhancer, worker_id="late").poll_once()

    # THEN it was completed exactly once, by the worker that took it over
    job = job_item(stack, job_id)
    assert (job["state"], job["worker_id"], job["attempts"]) == ("completed", "rescuer", 2)
    assert restorer.calls == [2]
    assert stack.keys("enhanced/") == [f"enhanced/{user}/{job_id}.jpg"]
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0


def test_a_job_held_under_a_live_lease_is_left_to_its_worker(stack: Stack, user: str) -> None:
    (image_id,), enhancer = photos_with_faces(stack, user, [1])
    job_id = queue_job(stack, user, image_id)
    JobsRepository(stack.env["JOBS_TABLE"]).update(
        job_id,
        from_states=(JobState.QUEUED,),
        to_state=JobState.RUNNING,
        set_fields={"worker_id": "busy-worker", "lease_expires_at": time.time() + 120},
    )
    restorer = InvertingRestorer()

    make_worker(stack, restorer=restorer, enhancer=enhancer).poll_once()

    job = job_item(stack, job_id)
    assert (job["state"], job["worker_id"]) == ("running", "busy-worker")
    assert restorer.calls == []
    # the message is hidden until the lease could have run out, not deleted
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.env["GPU_JOBS_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_a_job_cancelled_while_being_prepared_is_dropped(stack: Stack, user: str) -> None:
    image_ids, enhancer = photos_with_faces(stack, user, [1, 1])
    cancelled_id, kept_id = (queue_job(stack, user, i) for i in image_ids)
    cancelled_data = stack.read(stack.image(image_ids[0])["original_key"])
    jobs = JobsRepository(stack.env["JOBS_TABLE"])

    def cancel_during_prepare(data: bytes) -> None:  # the user presses cancel while the photo is prepared
        if data == cancelled_data:
            assert jobs.update(cancelled_id, from_states=(JobState.RUNNING,), to_state=JobState.CANCELLED)

    enhancer.after_prepare = cancel_during_prepare
    restorer = InvertingRestorer()

    make_worker(stack, restorer=restorer, enhancer=enhancer).poll_once()

    assert job_item(stack, cancelled_id)["state"] == "cancelled"
    assert job_item(stack, kept_id)["state"] == "completed"
    assert restorer.calls == [1]  # only the other job's face
    assert stack.keys("enhanced/") == [f"enhanced/{user}/{kept_id}.jpg"]
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0


def test_a_failing_job_is_retried_then_failed_with_a_reason_and_dead_lettered(
    stack: Stack, user: str
) -> None:
    (image_id,), enhancer = photos_with_faces(stack, user, [1])
    job_id = queue_job(stack, user, image_id)
    enhancer.fail_on = lambda _data: True
    worker = make_worker(stack, enhancer=enhancer)
    dlq_url = stack.sqs.get_queue_url(QueueName=_dlq_name(stack))["QueueUrl"]

    # attempts 1 and 2: back to queued with the error, message visible again
    for attempt in (1, 2):
        worker.poll_once()
        job = job_item(stack, job_id)
        assert (job["state"], job["attempts"]) == ("queued", attempt)
        assert "cannot be prepared" in job["error"]["message"]
    # attempt 3 (maxReceiveCount): failed for good, with a readable reason
    worker.poll_once()
    job = job_item(stack, job_id)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "enhancement_failed"
    assert "after 3 attempts" in job["error"]["message"]
    assert "dead-letter queue" in job["error"]["message"]
    # the next receive moves the message to the DLQ
    assert worker.poll_once() == 0
    assert [json.loads(b["Body"])["job_id"] for b in _all(stack, dlq_url)] == [job_id]
    assert stack.keys("enhanced/") == []


def _dlq_name(stack: Stack) -> str:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.env["GPU_JOBS_QUEUE_URL"], AttributeNames=["RedrivePolicy"]
    )
    return str(json.loads(attrs["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[-1])


def _all(stack: Stack, url: str) -> list[dict[str, Any]]:
    return list(stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))


def test_keepalive_renews_leases_and_heartbeats(stack: Stack, user: str) -> None:
    (image_id,), enhancer = photos_with_faces(stack, user, [1])
    job_id = queue_job(stack, user, image_id)
    worker = make_worker(stack, enhancer=enhancer, batch_wait_s=60.0)  # holds the prepared photo
    worker.start()
    try:
        worker.poll_once()
        held = job_item(stack, job_id)
        assert (held["state"], held["progress"]) == ("running", 40)
        stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).update_item(
            Key={"worker_id": "worker-test"},
            UpdateExpression="SET heartbeat_at = :old",
            ExpressionAttributeValues={":old": 1},
        )

        worker.keepalive()

        assert float(job_item(stack, job_id)["lease_expires_at"]) > float(held["lease_expires_at"])
        worker_item = stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).get_item(
            Key={"worker_id": "worker-test"}
        )["Item"]
        assert float(worker_item["heartbeat_at"]) > time.time() - 5
    finally:
        worker.shutdown()
    assert job_item(stack, job_id)["state"] == "completed"  # shutdown finished the held work


# ------------------------------------------------------------------ SIGTERM
@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_sigterm_finishes_held_work_stops_polling_and_unregisters(
    stack: Stack, user: str, restore_signal_handlers: None
) -> None:
    # GIVEN a running worker that holds two prepared photos, waiting (up to 60 s) for a fuller batch
    image_ids, enhancer = photos_with_faces(stack, user, [1, 1, 1])
    job_ids = [queue_job(stack, user, i) for i in image_ids[:2]]
    restorer = InvertingRestorer(max_batch=8)
    worker = make_worker(stack, restorer=restorer, enhancer=enhancer, poll_wait_s=1, batch_wait_s=60.0)
    install_signal_handlers(worker)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    workers_table = stack.dynamodb.Table(stack.env["WORKERS_TABLE"])
    _wait_for(lambda: all(job_item(stack, j)["progress"] == 40 for j in job_ids))
    assert workers_table.get_item(Key={"worker_id": "worker-test"}).get("Item") is not None

    # WHEN ECS stops the task
    os.kill(os.getpid(), signal.SIGTERM)
    thread.join(timeout=15)

    # THEN it finished what it held (one restore of both), stopped, and left the fleet
    assert not thread.is_alive()
    assert [job_item(stack, j)["state"] for j in job_ids] == ["completed", "completed"]
    assert restorer.calls == [2]
    assert workers_table.get_item(Key={"worker_id": "worker-test"}).get("Item") is None
    # and it no longer polls: a new job stays queued
    late = queue_job(stack, user, image_ids[2])
    time.sleep(1.5)
    assert job_item(stack, late)["state"] == "queued"
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 1


def _wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_worker_built_from_settings_registers_and_runs_a_job(stack: Stack, user: str) -> None:
    # GIVEN the worker process's settings, as the template and the GPU stack give them
    from photopipe.settings import WorkerSettings
    from photopipe.wiring import gpu_worker

    settings = WorkerSettings.from_env(
        {
            **stack.env,
            "PHOTOPIPE_MODEL_DIR": "/unused",
            "PHOTOPIPE_WORKER_ID": "from-settings",
            "PHOTOPIPE_POLL_WAIT_S": "0",
        }
    )
    (image_id,), enhancer = photos_with_faces(stack, user, [1])
    job_id = queue_job(stack, user, image_id)
    worker = gpu_worker(settings, restorer=InvertingRestorer(), enhancer=enhancer)

    worker.start()
    try:
        assert (
            stack.dynamodb.Table(stack.env["WORKERS_TABLE"])
            .get_item(Key={"worker_id": "from-settings"})
            .get("Item")
        )
        worker.poll_once()
    finally:
        worker.shutdown()

    assert job_item(stack, job_id)["state"] == "completed"
    assert stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).scan()["Items"] == []


class SessionLikeRestorer(InvertingRestorer):
    """A restorer that says which ONNX Runtime provider it runs on, as `GfpganSession` does."""

    provider = "TensorrtExecutionProvider"


def test_the_fleet_registration_reports_the_provider_the_session_uses(stack: Stack) -> None:
    # GIVEN a worker built from its settings around a restorer running on TensorRT
    from photopipe.settings import WorkerSettings
    from photopipe.wiring import gpu_worker

    settings = WorkerSettings.from_env(
        {
            **stack.env,
            "PHOTOPIPE_MODEL_DIR": "/unused",
            "PHOTOPIPE_WORKER_ID": "with-provider",
            "PHOTOPIPE_POLL_WAIT_S": "0",
        }
    )
    worker = gpu_worker(settings, restorer=SessionLikeRestorer(max_batch=16), enhancer=FakeEnhancer())

    # WHEN it starts, THEN its fleet entry names that provider and its batch size
    worker.start()
    try:
        item = stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).get_item(Key={"worker_id": "with-provider"})[
            "Item"
        ]
    finally:
        worker.shutdown()
    assert item["provider"] == "TensorrtExecutionProvider"
    assert int(item["max_batch"]) == 16
