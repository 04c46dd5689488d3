"""The SQS event source emulation against a real moto server, with tiny handlers written for the test."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from photopipe_local.resources import AwsClients, create_resources
from photopipe_local.runtime import LocalFunction, SqsEventSource
from photopipe_local.stack import LocalStack
from photopipe_local.template import SqsEventSpec


@pytest.fixture(scope="module")
def stack(sqs_template: Path, stack_name: str) -> Iterator[LocalStack]:
    with LocalStack(
        sqs_template, stack_name=stack_name, serve_http=False, write_state=False, retry_delay_seconds=0
    ) as running:
        running.wait_idle(20)  # the bucket's s3:TestEvent
        yield running


def clients(stack: LocalStack) -> AwsClients:
    assert stack.clients is not None
    return stack.clients


def seen(stack: LocalStack, pk: str) -> dict[str, Any] | None:
    item = (
        clients(stack).dynamodb.get_item(TableName=stack.name("SeenTable"), Key={"pk": {"S": pk}}).get("Item")
    )
    if item is None:
        return None
    return {k: next(iter(v.values())) for k, v in item.items()}


def drain(stack: LocalStack, logical_id: str) -> list[str]:
    sqs = clients(stack).sqs
    bodies = []
    while messages := sqs.receive_message(QueueUrl=stack.ref(logical_id), MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=stack.ref(logical_id), ReceiptHandle=message["ReceiptHandle"])
    return bodies


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_resources_exist_with_the_template_settings(stack: LocalStack) -> None:
    aws = clients(stack)
    attributes = aws.sqs.get_queue_attributes(QueueUrl=stack.ref("WorkQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["VisibilityTimeout"] == "60"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": stack.resource("WorkDLQ").attributes["Arn"],
        "maxReceiveCount": 2,
    }
    table = aws.dynamodb.describe_table(TableName=stack.name("SeenTable"))["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert stack.resource("SeenTable").attributes["StreamArn"] == table["LatestStreamArn"]
    ttl = aws.dynamodb.describe_time_to_live(TableName=stack.name("SeenTable"))["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires"
    secret = aws.secretsmanager.get_secret_value(SecretId=stack.ref("ApiKey"))
    assert len(secret["SecretString"]) == 40
    assert secret["ARN"] == stack.ref("ApiKey")
    cors = aws.s3.get_bucket_cors(Bucket=stack.name("Uploads"))["CORSRules"]
    assert cors[0]["AllowedMethods"] == ["POST"]


def test_creating_resources_again_against_a_live_moto_is_harmless(stack: LocalStack) -> None:
    secret_before = stack.ref("ApiKey")
    again = create_resources(stack.template, clients(stack))
    assert stack.ref("ApiKey") == secret_before
    assert again["ApiKey"].ref == secret_before
    assert again["WorkQueue"].ref == stack.ref("WorkQueue")
    stack.wait_idle(20)  # re-putting the notification configuration sends another s3:TestEvent


def test_the_function_environment_carries_resolved_names(stack: LocalStack) -> None:
    body = unique("env")
    clients(stack).sqs.send_message(QueueUrl=stack.ref("WorkQueue"), MessageBody=body)
    stack.wait_idle(20)
    record = seen(stack, f"worker#{body}")
    assert record is not None
    assert record["function"] == stack.name("Worker")
    assert record["secret"] == stack.ref("ApiKey")


def test_partial_batch_failure_deletes_only_the_successes(stack: LocalStack) -> None:
    # GIVEN three messages in a queue whose event source is disabled in the template, polled by hand
    aws = clients(stack)
    queue_url = stack.ref("ManualQueue")
    bodies = [unique("ok"), unique("fail"), unique("ok")]
    aws.sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
    )
    worker = stack.functions["Worker"]
    (manual,) = [e for e in worker.spec.sqs_events if e.name == "Manual"]
    source = SqsEventSource(
        worker, manual, queue_url=queue_url, sqs=aws.sqs, region=stack.region, retry_delay_seconds=0
    )

    # WHEN one batch is processed
    assert source.poll_once() == 3

    # THEN every message was seen once, and only the failed one is back in the queue
    for body in bodies:
        record = seen(stack, f"worker#{body}")
        assert record is not None
        assert record["attempts"] == "1"
    assert drain(stack, "ManualQueue") == [bodies[1]]


def test_a_raising_handler_fails_the_whole_batch(stack: LocalStack) -> None:
    aws = clients(stack)
    queue_url = stack.ref("ManualQueue")
    bodies = sorted([unique("a"), unique("b")])
    for body in bodies:
        aws.sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    def crash(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("handler bug")

    crasher = LocalFunction(stack.functions["Worker"].spec, crash)
    event = SqsEventSpec(
        name="Manual",
        queue_arn=stack.resource("ManualQueue").attributes["Arn"],
        batch_size=10,
        report_batch_item_failures=True,
    )
    source = SqsEventSource(
        crasher, event, queue_url=queue_url, sqs=aws.sqs, region=stack.region, retry_delay_seconds=0
    )
    assert source.poll_once() == 2
    assert source.failed_records == 2
    assert sorted(drain(stack, "ManualQueue")) == bodies


def test_a_message_failing_every_time_ends_in_the_dlq_after_max_receive_count(stack: LocalStack) -> None:
    aws = clients(stack)
    ok, poison = unique("ok"), unique("fail")
    aws.sqs.send_message_batch(
        QueueUrl=stack.ref("WorkQueue"),
        Entries=[{"Id": "ok", "MessageBody": ok}, {"Id": "poison", "MessageBody": poison}],
    )
    stack.wait_idle(20)
    poison_record = seen(stack, f"worker#{poison}")
    ok_record = seen(stack, f"worker#{ok}")
    assert poison_record is not None
    assert ok_record is not None
    assert poison_record["attempts"] == "2"  # the queue's maxReceiveCount
    assert ok_record["attempts"] == "1"
    assert drain(stack, "WorkDLQ") == [poison]


def test_the_poller_survives_a_raising_handler(stack: LocalStack) -> None:
    aws = clients(stack)
    boom = unique("boom")
    aws.sqs.send_message(QueueUrl=stack.ref("CrashQueue"), MessageBody=boom)
    stack.wait_idle(20)
    boom_record = seen(stack, f"crasher#{boom}")
    assert boom_record is not None
    assert boom_record["attempts"] == "2"
    assert drain(stack, "CrashDLQ") == [boom]

    # the same event source still delivers, and without ReportBatchItemFailures success deletes everything
    fine = unique("fine")
    aws.sqs.send_message(QueueUrl=stack.ref("CrashQueue"), MessageBody=fine)
    stack.wait_idle(20)
    fine_record = seen(stack, f"crasher#{fine}")
    assert fine_record is not None
    assert fine_record["attempts"] == "1"
    assert drain(stack, "CrashDLQ") == []


def test_s3_uploads_reach_the_handler_through_the_bucket_notification(stack: LocalStack) -> None:
    # GIVEN uploads with put_object and with a presigned POST (the browser's way), some outside the filter
    aws = clients(stack)
    bucket = stack.name("Uploads")
    folder = unique("originals/user")
    aws.s3.put_object(Bucket=bucket, Key=f"{folder}/my photo.jpg", Body=b"jpeg bytes")
    post = aws.s3.generate_presigned_post(bucket, f"{folder}/posted.jpg")
    response = requests.post(
        post["url"], data=post["fields"], files={"file": ("posted.jpg", b"jpeg")}, timeout=10
    )
    assert response.status_code == 204
    aws.s3.put_object(Bucket=bucket, Key=f"{folder}/not-a-jpeg.png", Body=b"png")
    aws.s3.put_object(Bucket=bucket, Key=f"elsewhere/{folder}.jpg", Body=b"jpeg")

    # WHEN the event source has delivered everything
    stack.wait_idle(20)

    # THEN the handler saw the S3 events for the matching keys only
    put = seen(stack, f"uploader#{folder}/my photo.jpg")
    posted = seen(stack, f"uploader#{folder}/posted.jpg")
    assert put is not None
    assert posted is not None
    assert put["event_name"] == "ObjectCreated:Put"
    assert posted["event_name"] == "ObjectCreated:Post"
    assert put["source_arn"] == stack.resource("UploadQueue").attributes["Arn"]
    assert seen(stack, f"uploader#{folder}/not-a-jpeg.png") is None
    assert seen(stack, f"uploader#elsewhere/{folder}.jpg") is None
    test_event = seen(stack, "uploader#test-event")
    assert test_event is not None
    assert test_event["bucket"] == bucket


def test_maximum_concurrency_puts_several_batches_in_flight_one_per_environment(stack: LocalStack) -> None:
    # GIVEN two messages, and a handler that returns only once two batches are being handled together
    aws = clients(stack)
    queue_url = stack.ref("ManualQueue")
    bodies = sorted([unique("left"), unique("right")])
    aws.sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
    )
    together, handled, environments = threading.Barrier(2), list[str](), set[int]()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        together.wait(timeout=30)
        handled.extend(record["body"] for record in event["Records"])
        return {"batchItemFailures": []}

    def environment(number: int) -> Callable[[dict[str, Any], Any], Any]:
        environments.add(number)
        return handler

    function = LocalFunction(stack.functions["Worker"].spec, handler, concurrency=2, loader=environment)
    event = SqsEventSpec(
        name="Manual",
        queue_arn=stack.resource("ManualQueue").attributes["Arn"],
        batch_size=1,
        report_batch_item_failures=True,
        maximum_concurrency=2,
    )
    source = SqsEventSource(
        function,
        event,
        queue_url=queue_url,
        sqs=aws.sqs,
        region=stack.region,
        retry_delay_seconds=0,
        concurrency=2,
    )

    # WHEN the event source runs until the queue is empty
    source.start()
    try:
        deadline = time.monotonic() + 60
        while (source.backlog() or source.busy.is_set()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        source.stop()
        source.join(30)

    # THEN both batches were in the function at once, each in its own environment, and both were deleted
    assert not together.broken
    assert sorted(handled) == bodies
    assert environments == {1}
    assert source.failed_records == 0
    assert drain(stack, "ManualQueue") == []
