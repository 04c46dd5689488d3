"""The ingest function against moto, driven by the SQS events in `events/`."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from PIL import Image

from photopipe import wiring
from tests.conftest import FakeContext, load_event
from tests.integration.conftest import Stack, jpeg_bytes

UPLOAD_EVENT = "ingest-upload.json"


def _object_of(event: dict[str, Any]) -> tuple[str, str]:
    s3 = json.loads(event["Records"][0]["body"])["Records"][0]["s3"]
    return s3["bucket"]["name"], s3["object"]["key"]


def _prepare(stack: Stack, data: bytes, image_id: str | None = None) -> tuple[dict[str, Any], str]:
    """Put `data` where the sample event says (or at another image id), with the matching pending record;
    fix the event's key, etag and size to match."""
    event = load_event(UPLOAD_EVENT)
    _, key = _object_of(event)
    if image_id:
        parts = key.split("/")
        key = "/".join([parts[0], parts[1], image_id, parts[3]])
    real_key = key.replace("+", " ")
    image_id = stack.seed_image(real_key)
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=real_key, Body=data)["ETag"].strip('"')
    for record in event["Records"]:
        body = json.loads(record["body"])
        body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=len(data))
        record["body"] = json.dumps(body)
    return event, image_id


def test_sample_event_processes_the_photo(stack: Stack, ingest_handler: Any) -> None:
    # GIVEN a landscape JPEG uploaded where the sample event points
    event, image_id = _prepare(stack, jpeg_bytes((3000, 2000)))
    # WHEN the ingest function gets the event
    result = ingest_handler(event, FakeContext())
    # THEN nothing failed and the record says what the photo is
    assert result == {"batchItemFailures": []}
    record = stack.image(image_id)
    assert record["state"] == "processed"
    assert (record["width"], record["height"], record["format"]) == (3000, 2000, "jpeg")
    assert len(record["sha256"]) == 64
    assert len(record["phash"]) == 16
    # and the renditions are in the bucket with the promised sizes
    # and the photo is queued for classification
    assert stack.queued(stack.classify_queue_url) == [{"image_id": image_id, "user_id": record["user_id"]}]
    prefix = f"derived/{record['user_id']}/{image_id}/"
    assert sorted(stack.keys(prefix)) == [prefix + "preview.jpg", prefix + "thumb.webp"]
    preview = Image.open(io.BytesIO(stack.read(prefix + "preview.jpg")))
    thumb = Image.open(io.BytesIO(stack.read(prefix + "thumb.webp")))
    assert (preview.format, preview.size) == ("JPEG", (1440, 960))
    assert (thumb.format, max(thumb.size)) == ("WEBP", 256)


def test_s3_test_event_is_accepted_and_does_nothing(stack: Stack, ingest_handler: Any) -> None:
    assert ingest_handler(load_event("ingest-test-event.json"), FakeContext()) == {"batchItemFailures": []}


def test_same_event_twice_gives_one_record_and_one_set_of_outputs(stack: Stack, ingest_handler: Any) -> None:
    event, image_id = _prepare(stack, jpeg_bytes((800, 600)))
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    first = stack.image(image_id)
    versions = stack.object_versions(f"derived/{first['user_id']}/{image_id}/")

    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id) == first, "the second delivery changed nothing"
    assert stack.object_versions(f"derived/{first['user_id']}/{image_id}/") == versions


def test_multipart_upload_put_and_complete_events_in_one_batch(stack: Stack, ingest_handler: Any) -> None:
    event, image_id = _prepare(stack, jpeg_bytes((640, 480)))
    twin = json.loads(json.dumps(event["Records"][0]))
    body = json.loads(twin["body"])
    body["Records"][0]["eventName"] = "ObjectCreated:CompleteMultipartUpload"
    twin.update(messageId="second-message", body=json.dumps(body))
    event["Records"].append(twin)

    result = ingest_handler(event, FakeContext())
    # the second is either a no-op or, if it raced the first, retried later - never a second record
    assert len(result["batchItemFailures"]) <= 1
    assert stack.image(image_id)["state"] == "processed"
    assert len(stack.table_items()) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text, not a picture\n" * 10, "unsupported_format"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 4, "unsupported_format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "unsupported_format"),
        ("truncated", "corrupt"),
        ("tiny", "too_small"),
    ],
)
def test_bad_uploads_are_rejected_with_a_reason_and_the_original_kept(
    stack: Stack, ingest_handler: Any, data: bytes | str, reason: str
) -> None:
    if data == "truncated":
        data = jpeg_bytes((800, 600))[:5000]
    elif data == "tiny":
        data = jpeg_bytes((8, 8))
    assert isinstance(data, bytes)
    event, image_id = _prepare(stack, data)
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    record = stack.image(image_id)
    assert record["state"] == "rejected"
    assert record["reason"] == reason
    assert len(record["reason_message"]) > 10
    assert stack.keys(record["original_key"]) == [record["original_key"]], "original kept"
    assert stack.keys(f"derived/{record['user_id']}/{image_id}/") == []


def test_a_bad_message_fails_alone_and_the_rest_of_the_batch_is_processed(
    stack: Stack, ingest_handler: Any
) -> None:
    good, good_id = _prepare(stack, jpeg_bytes((500, 400)))
    bad, bad_id = _prepare(stack, b"\x89PNG\r\n\x1a\n" + b"\0" * 200, image_id="b" * 32)
    poison = json.loads(json.dumps(good["Records"][0]))
    poison.update(messageId="poison", body="{not json")
    event = {"Records": [good["Records"][0], poison, bad["Records"][0]]}
    event["Records"][2]["messageId"] = "bad-picture"

    result = ingest_handler(event, FakeContext())

    assert result == {"batchItemFailures": [{"itemIdentifier": "poison"}]}
    assert stack.image(good_id)["state"] == "processed"
    assert stack.image(bad_id)["state"] == "rejected"


def test_upload_without_a_record_is_ignored_and_kept(stack: Stack, ingest_handler: Any) -> None:
    event = load_event(UPLOAD_EVENT)
    _, key = _object_of(event)
    stack.s3.put_object(Bucket=stack.bucket, Key=key.replace("+", " "), Body=jpeg_bytes((100, 100)))
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.table_items() == []
    assert stack.keys(key.replace("+", " ")) != []


def _drop_s3_writes() -> Callable[[], None]:
    """The deployed ingest function's S3 writes fail as if the network dropped (a transient failure);
    returns the function that mends the network."""
    s3 = wiring.ingestor().media.client

    def drop(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    s3.meta.events.register("before-call.s3.PutObject", drop)
    return lambda: s3.meta.events.unregister("before-call.s3.PutObject", drop)


def test_transient_failure_is_retried_then_marks_the_image_failed_on_the_last_attempt(
    stack: Stack, ingest_handler: Any
) -> None:
    event, image_id = _prepare(stack, jpeg_bytes((400, 300)))
    message_id = event["Records"][0]["messageId"]
    _drop_s3_writes()

    # first delivery: reported as failed, so SQS retries it; the image is not given up on
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert stack.image(image_id)["state"] == "processing"

    # last delivery (ApproximateReceiveCount == maxReceiveCount): fails again, goes to the DLQ, image says so
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    record = stack.image(image_id)
    assert record["state"] == "failed"
    assert record["reason"] == "processing_failed"
    assert "dead-letter" in record["reason_message"]
    assert stack.keys(record["original_key"]) == [record["original_key"]]


def test_a_redrive_after_failure_processes_the_image(stack: Stack, ingest_handler: Any) -> None:
    event, image_id = _prepare(stack, jpeg_bytes((400, 300)))
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    mend = _drop_s3_writes()
    assert ingest_handler(event, FakeContext())["batchItemFailures"]
    assert stack.image(image_id)["state"] == "failed"
    # the message comes back from the DLQ (redrive) and S3 works again
    mend()
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "1"
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id)["state"] == "processed"
