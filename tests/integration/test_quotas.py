"""Per-user quotas: uploads per day, stored bytes, concurrent enhancement jobs. Beyond one, 429
`quota_exceeded` naming the limit and when it resets; nothing is created; freeing what the limit counts
(a deleted photo, a finished job) lets the next request through."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from photopipe import wiring
from photopipe.adapters.jobs import JobsRepository
from photopipe.models import JobState
from tests.conftest import FakeContext
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes
from tests.integration.enhance_support import processed_image

MB = 1024 * 1024


@pytest.fixture
def limits(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOPIPE_QUOTA_UPLOADS_PER_DAY", "3")
    monkeypatch.setenv("PHOTOPIPE_QUOTA_STORED_BYTES", str(5 * MB))
    monkeypatch.setenv("PHOTOPIPE_QUOTA_ACTIVE_JOBS", "2")
    monkeypatch.setenv("ENHANCE_QUEUE_WHEN_NO_WORKERS", "true")
    wiring.reset()


def _user(api: ApiClient) -> tuple[str, str]:
    name = f"u{uuid.uuid4().hex[:10]}"
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": f"{name}@example.com", "password": "p" * 12},
    )
    assert status == 201, body
    return body["token"], body["user"]["user_id"]


def _upload(api: ApiClient, token: str, size: int) -> dict[str, Any]:
    return api.call_raw(
        "POST",
        "/api/v1/uploads",
        body=json.dumps({"filename": "p.jpg", "content_type": "image/jpeg", "size": size}),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )


def _usage(api: ApiClient, token: str) -> dict[str, Any]:
    status, body = api.call("GET", "/api/v1/profile", token=token)
    assert status == 200
    return dict(body["usage"])


def test_uploads_per_day_stop_at_the_limit_until_midnight_utc(
    api: ApiClient, stack: Stack, limits: None
) -> None:
    token, user_id = _user(api)
    assert [_upload(api, token, 1000)["statusCode"] for _ in range(3)] == [201, 201, 201]

    resp = _upload(api, token, 1000)

    error = json.loads(resp["body"])["error"]
    assert (resp["statusCode"], error["code"], error["limit"]) == (429, "quota_exceeded", "uploads_per_day")
    assert error["resets_at"].endswith("T00:00:00Z")
    assert 0 < int(resp["headers"]["Retry-After"]) <= 24 * 3600
    assert len(stack.owner_images(user_id)) == 3, "the refused upload created nothing"
    usage = _usage(api, token)
    assert (usage["uploads_today"], usage["limits"]["uploads_per_day"]) == (3, 3)
    # another user has a quota of their own
    other, _ = _user(api)
    assert _upload(api, other, 1000)["statusCode"] == 201


def test_stored_bytes_stop_at_the_limit_and_a_delete_frees_them(
    api: ApiClient, stack: Stack, limits: None
) -> None:
    token, _ = _user(api)
    first = json.loads(_upload(api, token, 3 * MB)["body"])["image_id"]

    resp = _upload(api, token, 3 * MB)

    error = json.loads(resp["body"])["error"]
    assert (resp["statusCode"], error["limit"]) == (429, "stored_bytes")
    assert "delete photos" in error["message"]
    assert "Retry-After" not in resp["headers"], "time does not free storage: no Retry-After"
    assert _usage(api, token)["stored_bytes"] == 3 * MB

    assert api.call("DELETE", f"/api/v1/images/{first}", token=token)[0] == 204
    assert _usage(api, token)["stored_bytes"] == 0
    assert _upload(api, token, 3 * MB)["statusCode"] == 201
    # deleting twice gives nothing back twice
    assert api.call("DELETE", f"/api/v1/images/{first}", token=token)[0] == 404
    assert _usage(api, token)["stored_bytes"] == 3 * MB


def test_ingest_charges_the_real_size_not_the_declared_one(
    api: ApiClient, stack: Stack, ingest_handler: Any, limits: None
) -> None:
    # GIVEN an upload that declared 10 bytes and sent a real photo (S3 in AWS would refuse a body outside
    # the policy's range; the declared size is not the only guard)
    token, _ = _user(api)
    upload = json.loads(_upload(api, token, 10)["body"])
    data = jpeg_bytes((1200, 900))
    stack.s3.put_object(Bucket=stack.bucket, Key=upload["key"], Body=data)
    etag = stack.s3.head_object(Bucket=stack.bucket, Key=upload["key"])["ETag"]
    event = _s3_event(stack.bucket, upload["key"], etag, len(data))

    # WHEN ingest has processed it (twice: a duplicate delivery charges nothing more)
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}

    # THEN the real size is what counts, and a delete gives exactly that back
    assert _usage(api, token)["stored_bytes"] == len(data)
    assert api.call("DELETE", f"/api/v1/images/{upload['image_id']}", token=token)[0] == 204
    assert _usage(api, token)["stored_bytes"] == 0


def _s3_event(bucket: str, key: str, etag: str, size: int) -> dict[str, Any]:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": key, "size": size, "eTag": etag.strip('"')},
                },
            }
        ]
    }
    return {
        "Records": [
            {
                "messageId": uuid.uuid4().hex,
                "receiptHandle": "rh",
                "body": json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1",
                    "SenderId": "s3",
                    "ApproximateFirstReceiveTimestamp": "1",
                },
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
                "awsRegion": "us-east-1",
            }
        ]
    }


def test_concurrent_enhancement_jobs_are_limited_and_a_finished_one_frees_its_slot(
    api: ApiClient, stack: Stack, limits: None
) -> None:
    token, user_id = _user(api)
    images = [processed_image(stack, user_id, size=(120 + i, 90))[0] for i in range(4)]
    jobs = []
    for image_id in images[:2]:
        status, body = api.call("POST", "/api/v1/enhance", token=token, body={"image_id": image_id})
        assert status == 202, body
        jobs.append(body["job_id"])

    status, body = api.call("POST", "/api/v1/enhance", token=token, body={"image_id": images[2]})
    assert (status, body["error"]["code"], body["error"]["limit"]) == (
        429,
        "quota_exceeded",
        "active_enhancement_jobs",
    )
    # a batch that would pass the limit is refused whole
    status, body = api.call("POST", "/api/v1/enhance/batch", token=token, body={"image_ids": images[2:]})
    assert status == 429
    assert {j.image_id for j in JobsRepository(stack.env["JOBS_TABLE"]).list_by_owner(user_id)} == set(
        images[:2]
    )

    # WHEN one job ends (cancelled here; completed or failed by a worker count the same)
    assert api.call("DELETE", f"/api/v1/enhance/{jobs[0]}", token=token)[1]["state"] == JobState.CANCELLED
    # THEN its slot is free
    status, body = api.call("POST", "/api/v1/enhance", token=token, body={"image_id": images[2]})
    assert status == 202, body
    assert _usage(api, token)["active_jobs"] == 2
