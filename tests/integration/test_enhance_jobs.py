"""The enhancement jobs API against moto: submit (and the 503 with no worker), status, download, cancel and
delete, ownership, batches and the batch ZIP written by the exports function (streamed, multipart)."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from typing import Any
from urllib.parse import urlparse

import pytest
from PIL import Image

from photopipe import wiring
from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.s3 import MIN_PART_BYTES, MediaStore
from photopipe.models import Job, JobState, utcnow_iso
from photopipe.usecases.exports import Exporter
from tests.conftest import FakeContext, load_event, load_handler
from tests.fakes.enhance import FakeEnhancer
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import (
    fleet,
    job_item,
    make_worker,
    processed_image,
    register_user,
    visible_messages,
)


@pytest.fixture
def worker_up(stack: Stack) -> None:
    """One healthy GPU worker in the fleet."""
    fleet(stack).register("gpu-1", provider="CUDAExecutionProvider", max_batch=32)


@pytest.fixture
def exports_handler(stack: Stack) -> Any:
    return load_handler("exports").handler


def _submit(api: ApiClient, token: str, image_id: str, **params: Any) -> tuple[int, Any]:
    body: dict[str, Any] = {"image_id": image_id}
    if params:
        body["params"] = params
    return api.call("POST", "/api/v1/enhance", body=body, token=token)


def _object_key(url: str) -> str:
    """The object a presigned URL points at (virtual-hosted style: the bucket is in the host name)."""
    parsed = urlparse(url)
    path = parsed.path.lstrip("/")
    return path if parsed.netloc.startswith(stack_bucket_prefix) else path.split("/", 1)[-1]


stack_bucket_prefix = "photopipe-media-"


# ------------------------------------------------------------------ submit
def test_sample_event_submits_a_job(stack: Stack, api: ApiClient, worker_up: None) -> None:
    # GIVEN the user and photo the sample event names
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    event = load_event("api-enhance.json")
    event["headers"]["authorization"] = f"Bearer {token}"
    event["body"] = json.dumps({**json.loads(event["body"]), "image_id": image_id})

    # WHEN it is sent
    response = load_handler("api").handler(event, FakeContext("photopipe-api"))

    # THEN the job is accepted, recorded as queued and waiting in the gpu-jobs queue
    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    assert body["state"] == "queued"
    assert body["params"] == {"scale": 2, "tile_size": 400, "quality_level": "high"}
    assert body["status_url"] == f"/api/v1/enhance/{body['job_id']}"
    assert job_item(stack, body["job_id"])["state"] == "queued"
    assert stack.queued(stack.env["GPU_JOBS_QUEUE_URL"]) == [{"job_id": body["job_id"], "user_id": user_id}]


def test_no_healthy_worker_answers_503_naming_the_export_command(stack: Stack, api: ApiClient) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)

    status, body = _submit(api, token, image_id)

    assert status == 503
    assert body["error"]["code"] == "enhancement_unavailable"
    assert "photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan" in body["error"]["message"]
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0
    assert stack.dynamodb.Table(stack.env["JOBS_TABLE"]).scan()["Items"] == []


def test_deployment_configured_to_queue_accepts_with_no_worker(
    stack: Stack, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENHANCE_QUEUE_WHEN_NO_WORKERS", "true")
    wiring.reset()
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)

    status, body = _submit(api, token, image_id, scale=4, quality_level="fast")

    assert status == 202, body
    assert body["params"]["scale"] == 4
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 1


def test_invalid_params_are_a_422(stack: Stack, api: ApiClient, worker_up: None) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)

    status, body = _submit(api, token, image_id, scale=8)

    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    assert "scale" in body["error"]["message"]


def test_another_users_image_and_job_are_404(stack: Stack, api: ApiClient, worker_up: None) -> None:
    ada, ada_id = register_user(api, "ada")
    bob, _ = register_user(api, "bob")
    image_id, _ = processed_image(stack, ada_id)

    status, body = _submit(api, bob, image_id)
    assert (status, body["error"]["code"]) == (404, "image_not_found")

    status, job = _submit(api, ada, image_id)
    assert status == 202
    for method, path in [
        ("GET", f"/api/v1/enhance/{job['job_id']}"),
        ("GET", f"/api/v1/enhance/{job['job_id']}/download"),
        ("DELETE", f"/api/v1/enhance/{job['job_id']}"),
    ]:
        status, body = api.call(method, path, token=bob)
        assert (status, body["error"]["code"]) == (404, "job_not_found"), (method, path)
    assert job_item(stack, job["job_id"])["state"] == "queued"


def test_a_photo_not_yet_processed_cannot_be_enhanced(stack: Stack, api: ApiClient, worker_up: None) -> None:
    token, user_id = register_user(api, "ada")
    image_id = stack.seed_image(f"originals/{user_id}/{uuid.uuid4().hex}/photo.jpg")

    status, body = _submit(api, token, image_id)

    assert (status, body["error"]["code"]) == (409, "image_not_ready")


def test_requests_without_a_token_are_401(stack: Stack, api: ApiClient) -> None:
    status, body = api.call("POST", "/api/v1/enhance", body={"image_id": "x"})
    assert status == 401
    assert body["error"]["code"]


# ------------------------------------------------------------------ status, download, cancel, delete
def test_completed_job_has_result_url_and_download_redirects(
    stack: Stack, api: ApiClient, worker_up: None
) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id, size=(160, 120))
    _, job = _submit(api, token, image_id, scale=2)

    # before the worker ran: queued, no link, download not possible yet
    status, body = api.call("GET", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert (status, body["state"], body["result_url"]) == (200, "queued", None)
    status, body = api.call("GET", f"/api/v1/enhance/{job['job_id']}/download", token=token)
    assert (status, body["error"]["code"]) == (409, "job_not_completed")

    make_worker(stack).poll_once()

    status, body = api.call("GET", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert status == 200
    assert body["state"] == "completed"
    assert body["progress"] == 100
    assert body["faces"] == 1
    assert (body["width"], body["height"]) == (320, 240)
    assert {"download", "decode", "detect", "restore", "upscale", "encode", "total"} <= set(body["timings"])
    key = f"enhanced/{user_id}/{job['job_id']}.jpg"
    assert _object_key(body["result_url"]) == key

    response = load_handler("api").handler(
        _event("GET", f"/api/v1/enhance/{job['job_id']}/download", token), FakeContext()
    )
    assert response["statusCode"] == 302
    assert _object_key(response["headers"]["Location"]) == key
    assert Image.open(io.BytesIO(stack.read(key))).size == (320, 240)


def _event(method: str, path: str, token: str) -> dict[str, Any]:
    event = load_event("api-health.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["headers"]["authorization"] = f"Bearer {token}"
    return event


def test_delete_cancels_a_queued_job_then_removes_it(stack: Stack, api: ApiClient, worker_up: None) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    _, job = _submit(api, token, image_id)

    status, body = api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert (status, body["state"], body["error"]["code"]) == (200, "cancelled", "cancelled")

    # the worker drops the cancelled job's message without doing the work
    make_worker(stack).poll_once()
    assert job_item(stack, job["job_id"])["state"] == "cancelled"
    assert stack.keys("enhanced/") == []
    assert visible_messages(stack, stack.env["GPU_JOBS_QUEUE_URL"]) == 0

    # a finished (here: cancelled) job is deleted
    status, _ = api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert status == 204
    status, body = api.call("GET", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert (status, body["error"]["code"]) == (404, "job_not_found")


def test_delete_of_a_completed_job_removes_its_result(stack: Stack, api: ApiClient, worker_up: None) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    _, job = _submit(api, token, image_id)
    make_worker(stack).poll_once()
    assert stack.keys(f"enhanced/{user_id}/") == [f"enhanced/{user_id}/{job['job_id']}.jpg"]

    status, _ = api.call("DELETE", f"/api/v1/enhance/{job['job_id']}", token=token)

    assert status == 204
    assert stack.keys(f"enhanced/{user_id}/") == []
    assert (
        stack.dynamodb.Table(stack.env["JOBS_TABLE"]).get_item(Key={"job_id": job["job_id"]}).get("Item")
        is None
    )


# ------------------------------------------------------------------ batches and the ZIP
def test_batch_runs_and_downloads_as_a_streamed_zip(
    stack: Stack, api: ApiClient, worker_up: None, exports_handler: Any
) -> None:
    token, user_id = register_user(api, "ada")
    images = [processed_image(stack, user_id, size=(120 + 20 * n, 90)) for n in range(3)]

    status, batch = api.call(
        "POST",
        "/api/v1/enhance/batch",
        body={"image_ids": [i for i, _ in images], "params": {"scale": 1}},
        token=token,
    )
    assert status == 202, batch
    batch_id = batch["batch_id"]
    assert len(batch["jobs"]) == 3

    status, body = api.call("GET", f"/api/v1/enhance/batch/{batch_id}", token=token)
    assert (status, body["total"], body["done"], body["counts"]) == (200, 3, False, {"queued": 3})
    status, body = api.call("GET", f"/api/v1/enhance/batch/{batch_id}/download", token=token)
    assert (status, body["error"]["code"]) == (409, "batch_not_finished")

    make_worker(stack).poll_once()

    status, body = api.call("GET", f"/api/v1/enhance/batch/{batch_id}", token=token)
    assert (body["done"], body["counts"]) == (True, {"completed": 3})
    assert all(j["result_url"] for j in body["jobs"])

    # first download request: the ZIP does not exist yet -> 202 and an export request on the queue
    response = load_handler("api").handler(
        _event("GET", f"/api/v1/enhance/batch/{batch_id}/download", token), FakeContext()
    )
    assert response["statusCode"] == 202
    assert response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["status"] == "preparing"
    requests = stack.drain(stack.env["EXPORTS_QUEUE_URL"])
    assert requests == [{"user_id": user_id, "batch_id": batch_id}]

    # the exports function writes it (event shaped like the sample in events/)
    event = load_event("exports-batch.json")
    event["Records"][0]["body"] = json.dumps(requests[0])
    assert exports_handler(event, FakeContext("photopipe-exports")) == {"batchItemFailures": []}

    status, _ = api.call("GET", f"/api/v1/enhance/batch/{batch_id}/download", token=token)
    assert status == 302
    key = f"exports/{user_id}/{batch_id}.zip"
    archive = zipfile.ZipFile(io.BytesIO(stack.read(key)))
    assert archive.testzip() is None
    jpegs = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
    assert len(jpegs) == 3
    results = {stack.read(f"enhanced/{user_id}/{j['job_id']}.jpg") for j in batch["jobs"]}
    assert {archive.read(n) for n in jpegs} == results
    manifest = json.loads(archive.read("manifest.json"))
    assert {j["state"] for j in manifest["jobs"]} == {"completed"}


def test_batch_is_owner_only_and_bounded(stack: Stack, api: ApiClient, worker_up: None) -> None:
    ada, ada_id = register_user(api, "ada")
    bob, _ = register_user(api, "bob")
    mine, _ = processed_image(stack, ada_id)

    status, body = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": [mine]}, token=bob)
    assert (status, body["error"]["code"]) == (404, "image_not_found")
    status, body = api.call(
        "POST", "/api/v1/enhance/batch", body={"image_ids": [f"i{n}" for n in range(21)]}, token=ada
    )
    assert status == 422
    _, batch = api.call("POST", "/api/v1/enhance/batch", body={"image_ids": [mine]}, token=ada)
    status, body = api.call("GET", f"/api/v1/enhance/batch/{batch['batch_id']}", token=bob)
    assert (status, body["error"]["code"]) == (404, "batch_not_found")
    assert stack.dynamodb.Table(stack.env["JOBS_TABLE"]).scan()["Count"] == 1


def test_export_streams_through_multipart_parts(stack: Stack) -> None:
    # GIVEN a finished batch whose results add up to more than one part (random bytes stand in for JPEGs)
    jobs = JobsRepository(stack.env["JOBS_TABLE"])
    user_id, batch_id = uuid.uuid4().hex, uuid.uuid4().hex
    results: dict[str, bytes] = {}
    for _ in range(3):
        job_id = uuid.uuid4().hex
        key = f"enhanced/{user_id}/{job_id}.jpg"
        results[key] = os.urandom(2_500_000)
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=results[key])
        now = utcnow_iso()
        jobs.create(
            Job(
                job_id=job_id,
                image_id=uuid.uuid4().hex,
                user_id=user_id,
                state=JobState.COMPLETED,
                source_key="originals/x/y/z.jpg",
                result_key=key,
                batch_id=batch_id,
                created_at=now,
                updated_at=now,
            )
        )
    exporter = Exporter(jobs=jobs, media=MediaStore(stack.bucket), part_size=MIN_PART_BYTES)

    # WHEN it is exported
    outcome = exporter.export(user_id, batch_id)

    # THEN the ZIP was uploaded in parts (a multipart ETag ends in -<parts>) and holds every result
    key = f"exports/{user_id}/{batch_id}.zip"
    assert outcome["outcome"] == "written"
    assert outcome["parts"] == 2
    assert stack.s3.head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"').endswith("-2")
    archive = zipfile.ZipFile(io.BytesIO(stack.read(key)))
    assert archive.testzip() is None
    assert sorted(archive.read(n) for n in archive.namelist() if n.endswith(".jpg")) == sorted(
        results.values()
    )
    # a second request finds the ZIP and writes nothing
    assert exporter.export(user_id, batch_id)["outcome"] == "exists"


def test_failed_export_leaves_no_partial_zip(stack: Stack) -> None:
    jobs = JobsRepository(stack.env["JOBS_TABLE"])
    user_id, batch_id = uuid.uuid4().hex, uuid.uuid4().hex
    now = utcnow_iso()
    jobs.create(
        Job(
            job_id=uuid.uuid4().hex,
            image_id="img",
            user_id=user_id,
            state=JobState.COMPLETED,
            source_key="originals/x/y/z.jpg",
            result_key=f"enhanced/{user_id}/missing.jpg",  # the result object is gone
            batch_id=batch_id,
            created_at=now,
            updated_at=now,
        )
    )
    with pytest.raises(Exception, match="does not exist"):
        Exporter(jobs=jobs, media=MediaStore(stack.bucket)).export(user_id, batch_id)
    assert stack.keys("exports/") == []
    assert stack.s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []


def test_fake_enhancer_is_used_for_zero_face_photos(stack: Stack, api: ApiClient, worker_up: None) -> None:
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    _, job = _submit(api, token, image_id)

    make_worker(stack, enhancer=FakeEnhancer(faces_for=lambda _d: 0)).poll_once()

    _, body = api.call("GET", f"/api/v1/enhance/{job['job_id']}", token=token)
    assert (body["state"], body["faces"]) == ("completed", 0)
    assert body["notes"] == ["no face found; the photo was upscaled only"]
