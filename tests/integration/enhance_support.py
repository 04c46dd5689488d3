"""Helpers shared by the enhancement tests (jobs API, GPU worker, fleet), on top of `conftest.Stack`."""

from __future__ import annotations

import uuid
from typing import Any

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.sqs import Queue
from photopipe.adapters.workers import WorkersRepository
from photopipe.models import ImageState
from photopipe.usecases.enhance_worker import DirectFleetLink, GpuWorker, WorkerConfig
from photopipe.usecases.fleet import Fleet
from tests.fakes.enhance import FakeEnhancer, InvertingRestorer
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes


def register_user(api: ApiClient, name: str) -> tuple[str, str]:
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": f"{name}@example.com", "password": "correct-horse-battery"},
    )
    assert status == 201, body
    return body["token"], body["user"]["user_id"]


def processed_image(stack: Stack, user_id: str, size: tuple[int, int] = (160, 120)) -> tuple[str, bytes]:
    """A photo that went through ingest: its original in the bucket and a `processed` record."""
    key = f"originals/{user_id}/{uuid.uuid4().hex}/photo.jpg"
    data = jpeg_bytes(size)
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    return stack.seed_image(key, ImageState.PROCESSED), data


def fleet(stack: Stack) -> Fleet:
    return Fleet(workers=WorkersRepository(stack.env["WORKERS_TABLE"]), secret=lambda: fleet_secret(stack))


def fleet_secret(stack: Stack) -> str:
    secret_id = stack.env["FLEET_SECRET_ID"]
    return str(stack.new_client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])


def job_item(stack: Stack, job_id: str) -> dict[str, Any]:
    item = stack.dynamodb.Table(stack.env["JOBS_TABLE"]).get_item(Key={"job_id": job_id}).get("Item")
    assert item is not None, f"no job {job_id}"
    return dict(item)


def make_worker(
    stack: Stack,
    *,
    restorer: InvertingRestorer | None = None,
    enhancer: FakeEnhancer | None = None,
    worker_id: str = "worker-test",
    **config: Any,
) -> GpuWorker:
    settings: dict[str, Any] = {"poll_wait_s": 0, "batch_wait_s": 0.0, "retry_delay_s": 0, **config}
    fleet_link = DirectFleetLink(fleet(stack), worker_id, provider="CPUExecutionProvider", max_batch=8)
    return GpuWorker(
        jobs=JobsRepository(stack.env["JOBS_TABLE"]),
        media=MediaStore(stack.bucket),
        queue=Queue(stack.env["GPU_JOBS_QUEUE_URL"]),
        restorer=restorer or InvertingRestorer(),
        enhancer=enhancer or FakeEnhancer(),
        config=WorkerConfig(worker_id=worker_id, **settings),
        fleet=fleet_link,
    )


def visible_messages(stack: Stack, queue_url: str) -> int:
    attrs = stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])
