"""Nothing stays stuck: a message put straight on a dead-letter queue (as SQS does after the last attempt,
whatever ended it) ends its image or job `failed` with a readable reason, and the message is kept - it moves
on to the redrive queue, from which an operator replays it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from photopipe.adapters.dynamo import to_item
from photopipe.models import RETRY_NOTE, RETRY_PREFIX, ImageState, Job, JobError, JobState, utcnow_iso
from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes
from tests.integration.enhance_support import job_item, processed_image, register_user


@pytest.fixture
def dead_letters(stack: Stack) -> Any:
    return load_handler("dead_letters").handler


def _queue(stack: Stack, env_arn: str) -> tuple[str, str]:
    """(url, arn) of the queue whose ARN the dead-letter function's environment names."""
    arn = stack.env[env_arn]
    return stack.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"], arn


def _url(stack: Stack, logical_name: str) -> str:
    return stack.sqs.get_queue_url(QueueName=f"photopipe-local-{logical_name}")["QueueUrl"]


def deliver(stack: Stack, handler: Any, queue_url: str, queue_arn: str) -> tuple[list[str], dict[str, Any]]:
    """Receive what waits in a DLQ and hand it to the function as Lambda's event source would (then give the
    reported failures back at once, as the local stack does). Returns (message ids, the function's answer)."""
    resp = stack.sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], VisibilityTimeout=30
    )
    messages = resp.get("Messages", [])
    if not messages:
        return [], {}  # Lambda does not invoke a function for nothing
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }
    answer = handler(event, FakeContext("photopipe-dead-letters"))
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] in failed:
            stack.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            stack.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return [m["MessageId"] for m in messages], answer


def _notification(stack: Stack, key: str, etag: str) -> str:
    body = json.loads(load_event("ingest-upload.json")["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = stack.bucket
    body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=1)
    return json.dumps(body)


# ------------------------------------------------------------------ ingest
def test_an_upload_whose_attempts_were_killed_ends_failed_and_can_be_replayed(
    stack: Stack, dead_letters: Any, ingest_handler: Any
) -> None:
    # GIVEN an image left `processing` by attempts the function's timeout killed: its notification was
    # received maxReceiveCount times and never deleted, so SQS moved it to the ingest DLQ
    key = "originals/u1/img1/photo.jpg"
    image_id = stack.seed_image(key, ImageState.PROCESSING)
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=jpeg_bytes((400, 300)))["ETag"].strip('"')
    body = _notification(stack, key, etag)
    ingest_url = _url(stack, "ingest-queue")
    stack.drain(ingest_url)  # what S3 sent on its own (the test event, the object's notification)
    stack.sqs.send_message(QueueUrl=ingest_url, MessageBody=body)
    for _ in range(3):
        (m,) = stack.sqs.receive_message(QueueUrl=ingest_url, VisibilityTimeout=0)["Messages"]
    assert stack.sqs.receive_message(QueueUrl=ingest_url).get("Messages", []) == []  # moved to the DLQ
    dlq_url, dlq_arn = _queue(stack, "INGEST_DEAD_LETTER_QUEUE_ARN")

    # WHEN the dead-letter function gets it
    ids, answer = deliver(stack, dead_letters, dlq_url, dlq_arn)

    # THEN the image says it failed and why, and the message is reported back, not consumed
    record = stack.image(image_id)
    assert record["state"] == "failed"
    assert record["reason"] == "processing_stopped"
    assert record["reason_message"].startswith("processing stopped after 3 attempts without finishing")
    assert "redrive queue" in record["reason_message"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": m["MessageId"]}]}
    assert ids == [m["MessageId"]]

    # AND its further deliveries change nothing; then SQS moves it, untouched, to the redrive queue
    updated_at = record["updated_at"]
    deliveries = 1
    while deliver(stack, dead_letters, dlq_url, dlq_arn)[0]:
        deliveries += 1
    assert deliveries == 3
    assert stack.image(image_id)["updated_at"] == updated_at
    redrive_url = _url(stack, "ingest-redrive-queue")
    assert stack.queued(redrive_url) == [json.loads(body)]

    # AND an operator's replay into the ingest queue (receive, send, delete: what a redrive does) processes it
    (kept,) = stack.sqs.receive_message(QueueUrl=redrive_url, MaxNumberOfMessages=1)["Messages"]
    event = load_event("ingest-upload.json")
    event["Records"][0]["body"] = kept["Body"]
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id)["state"] == "processed"


def test_the_sample_event_marks_a_pending_upload_failed(stack: Stack, dead_letters: Any) -> None:
    event = load_event("dead-letter-ingest.json")
    notification = json.loads(event["Records"][0]["body"])
    s3 = notification["Records"][0]["s3"]
    key = s3["object"]["key"].replace("+", " ")
    image_id = stack.seed_image(key)  # the upload's notification never got through: still pending_upload

    answer = dead_letters(event, FakeContext())

    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert stack.image(image_id)["state"] == "failed"
    assert stack.image(image_id)["reason"] == "processing_stopped"


def test_a_reason_the_last_attempt_recorded_is_kept(stack: Stack, dead_letters: Any) -> None:
    key = "originals/u1/img2/photo.jpg"
    image_id = stack.seed_image(key, ImageState.FAILED)
    table = stack.dynamodb.Table(stack.images_table)
    table.update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET reason = :r, reason_message = :m",
        ExpressionAttributeValues={
            ":r": "processing_failed",
            ":m": "processing failed after 3 attempts: S3 said no",
        },
    )
    dlq_url, dlq_arn = _queue(stack, "INGEST_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=_notification(stack, key, "e1"))

    deliver(stack, dead_letters, dlq_url, dlq_arn)

    record = stack.image(image_id)
    assert (record["state"], record["reason"]) == ("failed", "processing_failed")
    assert record["reason_message"] == "processing failed after 3 attempts: S3 said no"


def test_an_old_dead_letter_does_not_fail_a_newer_upload_being_processed(
    stack: Stack, dead_letters: Any
) -> None:
    key = "originals/u1/img3/photo.jpg"
    image_id = stack.seed_image(key, ImageState.PROCESSING)
    stack.dynamodb.Table(stack.images_table).update_item(
        Key={"image_id": image_id}, UpdateExpression="SET etag = :e", ExpressionAttributeValues={":e": "new"}
    )
    dlq_url, dlq_arn = _queue(stack, "INGEST_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=_notification(stack, key, "old"))

    deliver(stack, dead_letters, dlq_url, dlq_arn)

    assert stack.image(image_id)["state"] == "processing"


@pytest.mark.parametrize("body", ["not json at all", '{"Records": "nope"}', '{"image": 1}'])
def test_a_message_that_names_no_record_is_kept_without_an_error(
    stack: Stack, dead_letters: Any, body: str
) -> None:
    dlq_url, dlq_arn = _queue(stack, "INGEST_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=body)

    ids, answer = deliver(stack, dead_letters, dlq_url, dlq_arn)

    assert answer == {"batchItemFailures": [{"itemIdentifier": ids[0]}]}
    resp = stack.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in resp.get("Messages", [])] == [body]


# ------------------------------------------------------------------ classify
def _classify_dlq(stack: Stack, image_id: str) -> tuple[str, str]:
    dlq_url, dlq_arn = _queue(stack, "CLASSIFY_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"image_id": image_id, "user_id": "u1"}))
    return dlq_url, dlq_arn


def test_a_classification_whose_attempts_were_killed_ends_classification_failed(
    stack: Stack, dead_letters: Any
) -> None:
    image_id = stack.seed_image("originals/u1/img4/photo.jpg", ImageState.PROCESSED)

    deliver(stack, dead_letters, *_classify_dlq(stack, image_id))

    record = stack.image(image_id)
    # the photo itself is fine: only its classification failed
    assert (record["state"], record["reason"]) == ("classification_failed", "processing_stopped")
    assert "no attempt to classify this photo finished" in record["reason_message"]
    assert record["reason_message"].endswith(
        "Classification stopped after 3 attempts; the request is kept in the classify redrive queue."
    )


def test_a_classification_error_that_promised_a_retry_says_it_stopped(
    stack: Stack, dead_letters: Any
) -> None:
    image_id = stack.seed_image("originals/u1/img5/photo.jpg", ImageState.CLASSIFICATION_FAILED)
    stack.dynamodb.Table(stack.images_table).update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET reason = :r, reason_message = :m",
        ExpressionAttributeValues={
            ":r": "llm_rate_limited",
            ":m": "DashScope answered 429: Throttling." + RETRY_NOTE,
        },
    )
    dlq = _classify_dlq(stack, image_id)

    deliver(stack, dead_letters, *dlq)
    deliver(stack, dead_letters, *dlq)  # a repeat delivery changes nothing

    record = stack.image(image_id)
    assert record["reason"] == "llm_rate_limited"
    assert record["reason_message"] == (
        "DashScope answered 429: Throttling. Classification stopped after 3 attempts; "
        "the request is kept in the classify redrive queue."
    )


# ------------------------------------------------------------------ gpu jobs
def _job(stack: Stack, state: JobState, **fields: Any) -> str:
    now = utcnow_iso()
    job = Job(
        job_id=f"job-{state}",
        image_id="img",
        user_id="u1",
        state=state,
        source_key="originals/u1/img/p.jpg",
        created_at=now,
        updated_at=now,
        **fields,
    )
    stack.dynamodb.Table(stack.env["JOBS_TABLE"]).put_item(Item=to_item(job.item()))
    dlq_url, _ = _queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"job_id": job.job_id, "user_id": "u1"}))
    return job.job_id


def test_a_job_whose_worker_died_on_the_last_attempt_ends_failed(stack: Stack, dead_letters: Any) -> None:
    # GIVEN a job left `running` by a GPU worker that was killed (its lease ran out long ago)
    job_id = _job(
        stack, JobState.RUNNING, worker_id="gpu-gone", lease_expires_at=time.time() - 600, progress=40
    )

    deliver(stack, dead_letters, *_queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN"))

    item = job_item(stack, job_id)
    assert item["state"] == "failed"
    assert item["error"]["code"] == "processing_stopped"
    assert item["error"]["message"].startswith("enhancement stopped after 3 attempts without finishing")
    assert "lease_expires_at" not in item


def test_a_job_keeps_the_error_its_earlier_attempt_recorded(stack: Stack, dead_letters: Any) -> None:
    error = JobError(code="corrupt", message=f"{RETRY_PREFIX}the photo could not be decoded")
    job_id = _job(stack, JobState.QUEUED, error=error)

    deliver(stack, dead_letters, *_queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN"))

    item = job_item(stack, job_id)
    assert item["state"] == "failed"
    assert item["error"] == {
        "code": "corrupt",
        "message": "enhancement stopped after 3 attempts; the last error recorded was: the photo could not be decoded",
    }


def test_a_finished_job_is_left_alone(stack: Stack, dead_letters: Any) -> None:
    job_id = _job(stack, JobState.COMPLETED, result_key="enhanced/u1/x.jpg", progress=100)

    deliver(stack, dead_letters, *_queue(stack, "GPU_JOBS_DEAD_LETTER_QUEUE_ARN"))

    assert job_item(stack, job_id)["state"] == "completed"


# ------------------------------------------------------------------ exports
def test_a_batch_zip_that_failed_for_good_is_reported_once_then_retried(
    stack: Stack, api: ApiClient, dead_letters: Any
) -> None:
    # GIVEN a finished batch whose ZIP export died on every attempt
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    now = utcnow_iso()
    table = stack.dynamodb.Table(stack.env["JOBS_TABLE"])
    for n in range(2):
        job = Job(
            job_id=f"j{n}",
            image_id=image_id,
            user_id=user_id,
            state=JobState.COMPLETED,
            source_key="k",
            result_key=f"enhanced/{user_id}/j{n}.jpg",
            batch_id="b1",
            created_at=now,
            updated_at=now,
        )
        table.put_item(Item=to_item(job.item()))
    dlq_url, dlq_arn = _queue(stack, "EXPORTS_DEAD_LETTER_QUEUE_ARN")
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"user_id": user_id, "batch_id": "b1"}))

    # WHEN it is recorded and the user asks for the ZIP
    deliver(stack, dead_letters, dlq_url, dlq_arn)
    status, body = api.call("GET", "/api/v1/enhance/batch/b1/download", token=token)

    # THEN they are told it failed, once; asking again tries again
    assert (status, body["error"]["code"]) == (409, "export_failed")
    assert body["error"]["message"] == (
        "the ZIP of batch b1 could not be written: it stopped after 3 attempts. Ask again to try once more."
    )
    status, body = api.call("GET", "/api/v1/enhance/batch/b1/download", token=token)
    assert status == 202
    assert stack.queued(stack.env["EXPORTS_QUEUE_URL"]) == [{"user_id": user_id, "batch_id": "b1"}]
