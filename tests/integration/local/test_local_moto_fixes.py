"""moto's SQS with the local stack's fixes (`photopipe_local.moto_server`): the same answers as moto's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from photopipe_local.moto_server import apply_fixes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSClient]:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    apply_fixes()
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def test_messages_past_the_retention_period_are_not_received(sqs: SQSClient) -> None:
    # GIVEN a queue keeping messages 60 s, with one message sent just now and one 61 s ago
    url = sqs.create_queue(QueueName="kept", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    for body in ("new", "old"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    old = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues["kept"]._messages[1]
    old.sent_timestamp = int(old.sent_timestamp or 0) - 61_000  # type: ignore[assignment]

    # WHEN both are asked for
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])

    # THEN only the one within the retention period comes
    assert [m["Body"] for m in received] == ["new"]


def test_queue_attributes_answer_as_before(sqs: SQSClient) -> None:
    url = sqs.create_queue(QueueName="counted", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"]
    asked = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
    assert asked == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "VisibilityTimeout": "30",
    }
    everything = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert everything["QueueArn"].endswith(":counted")
    assert everything["ApproximateNumberOfMessagesDelayed"] == "0"
    assert "RedrivePolicy" not in everything  # attributes without a value are left out, as before
    with pytest.raises(ClientError) as raised:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])  # type: ignore[list-item]
    assert raised.value.response["Error"]["Code"] == "InvalidAttributeName"


def test_the_dispatcher_finds_the_same_backend_for_each_host_as_moto() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.server import create_backend_app

    from photopipe_local import moto_server

    hosts: list[str | None] = [
        "photos.s3.us-east-1.amazonaws.com",
        "sqs.us-east-1.amazonaws.com",
        "dynamodb.us-east-1.amazonaws.com",
        "s3",
        "moto_api",
        "example.com",
        None,
    ]
    apply_fixes()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    answers = [dispatcher.get_backend_for_host(host) for host in hosts]
    assert answers == [moto_server._backend_for_host.__wrapped__(dispatcher, host) for host in hosts]
    assert answers == ["s3", "sqs", "dynamodb", "s3", "moto_api", None, None]
    assert [dispatcher.get_backend_for_host(host) for host in hosts] == answers  # remembered
