"""The whole slice on the local stack, over HTTP: register → login → upload (presigned POST straight to
the emulated S3) → ingest via the S3 → SQS notification → processed → list → get → delete; a rejected
upload; and a duplicate notification."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from tests.e2e.conftest import LiveStack, photo_jpeg

pytestmark = pytest.mark.e2e


FINAL_STATES = {"classified", "classification_skipped", "classification_failed", "rejected", "failed"}


def wait_for_state(live: LiveStack, token: str, image_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the API until the image has gone as far through the pipeline as it will."""
    deadline = time.monotonic() + timeout
    while True:
        image = live.get(f"/api/v1/images/{image_id}", token=token).json()
        if image["state"] in FINAL_STATES or time.monotonic() > deadline:
            return image
        time.sleep(0.2)


def upload(live: LiveStack, token: str, name: str, data: bytes, content_type: str) -> dict[str, Any]:
    resp = live.post(
        "/api/v1/uploads",
        token=token,
        json={"filename": name, "content_type": content_type, "size": len(data)},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    post = requests.post(
        body["upload"]["url"],
        data=body["upload"]["fields"],
        files={"file": (name, data, content_type)},
        timeout=30,
    )
    assert post.status_code in (200, 201, 204), post.text
    return body


@pytest.fixture(scope="module")
def session(live: LiveStack) -> Iterator[str]:
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "e2e-user", "email": "e2e@example.com", "password": "an-e2e-password"},
    )
    assert reg.status_code == 201, reg.text
    login = live.post("/api/v1/auth/login", json={"username": "e2e-user", "password": "an-e2e-password"})
    assert login.status_code == 200
    return login.json()["token"]


def test_health_over_http(live: LiveStack) -> None:
    resp = live.get("/api/v1/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_upload_is_processed_listed_fetched_and_deleted(live: LiveStack, session: str) -> None:
    # GIVEN a 2000x1500 photo shot with the camera turned (EXIF orientation 6)
    data = photo_jpeg((2000, 1500), orientation=6)
    body = upload(live, session, "turned.jpg", data, "image/jpeg")

    # WHEN ingest has run
    image = wait_for_state(live, session, body["image_id"])

    # THEN it is processed, upright, with working links; with no vision model configured (the local
    # default), the image says so instead of inventing a category
    assert image["state"] == "classification_skipped", image
    assert "DASHSCOPE_API_KEY" in image["reason_message"]
    assert "classification" not in image or image["classification"] is None
    assert (image["width"], image["height"]) == (1500, 2000)
    thumb = Image.open(io.BytesIO(requests.get(image["urls"]["thumbnail"], timeout=10).content))
    preview = Image.open(io.BytesIO(requests.get(image["urls"]["preview"], timeout=10).content))
    assert (thumb.format, thumb.size) == ("WEBP", (192, 256))
    assert (preview.format, preview.size) == ("JPEG", (1080, 1440))
    assert requests.get(image["urls"]["original"], timeout=10).content == data

    listing = live.get("/api/v1/images", token=session).json()
    assert body["image_id"] in [i["image_id"] for i in listing["items"]]

    assert live.delete(f"/api/v1/images/{body['image_id']}", token=session).status_code == 204
    assert live.get(f"/api/v1/images/{body['image_id']}", token=session).status_code == 404
    assert requests.get(image["urls"]["original"], timeout=10).status_code == 404


def test_a_pdf_posing_as_a_jpeg_is_rejected_and_kept(live: LiveStack, session: str) -> None:
    data = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n" * 20
    body = upload(live, session, "invoice.jpg", data, "image/jpeg")
    image = wait_for_state(live, session, body["image_id"])
    assert image["state"] == "rejected"
    assert image["reason"] == "unsupported_format"
    assert "PDF" in image["reason_message"]
    assert requests.get(image["urls"]["original"], timeout=10).content == data


def test_a_duplicate_notification_changes_nothing(live: LiveStack, session: str) -> None:
    body = upload(live, session, "twice.jpg", photo_jpeg((900, 600)), "image/jpeg")
    first = wait_for_state(live, session, body["image_id"])
    assert first["state"] == "classification_skipped"

    # S3 delivers at least once: send the same ObjectCreated notification again
    s3 = boto3.client("s3", endpoint_url=live.endpoint_url)
    head = s3.head_object(Bucket=live.bucket, Key=body["key"])
    notification = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": live.bucket, "arn": f"arn:aws:s3:::{live.bucket}"},
                    "object": {
                        "key": body["key"],
                        "size": head["ContentLength"],
                        "eTag": head["ETag"].strip('"'),
                    },
                },
            }
        ]
    }
    sqs = boto3.client("sqs", endpoint_url=live.endpoint_url)
    sqs.send_message(QueueUrl=live.ingest_queue_url, MessageBody=json.dumps(notification))
    live.wait_idle()

    again = live.get(f"/api/v1/images/{body['image_id']}", token=session).json()
    assert again["state"] == "classification_skipped"
    assert again["updated_at"] == first["updated_at"]
    assert [i["image_id"] for i in live.get("/api/v1/images", token=session).json()["items"]].count(
        body["image_id"]
    ) == 1
    dlq = sqs.get_queue_attributes(
        QueueUrl=live.ingest_dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"
