"""DynamoDB stream event sources against a real moto server, with a tiny handler written for the test: the
filter criteria, the batch size, partial batch failures (retry from the failed record), bisecting a failing
batch down to the bad record, its retries and the OnFailure destination, and `wait_idle` waiting for streams."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from photopipe_local.stack import LocalStack
from photopipe_local.streams import StreamEventSource, stream_events
from tests.integration.local.conftest import write_project

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
    Environment:
      Variables:
        SEEN_TABLE: !Ref SeenTable
Resources:
  SeenTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  Batches:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Failures: {Type: AWS::SQS::Queue}
  Watcher:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/watcher
      Handler: app.handler
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Things.StreamArn
            StartingPosition: LATEST
            BatchSize: 10
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT", "MODIFY"]}'
            FunctionResponseTypes: [ReportBatchItemFailures]
        # driven by the tests themselves (poll_once), so each batch is known
        Manual:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Batches.StreamArn
            StartingPosition: LATEST
            Enabled: false
            BatchSize: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 1
            DestinationConfig:
              OnFailure: {Type: SQS, Destination: !GetAtt Failures.Arn}
"""

# Records every delivery of every item (attempts, event names, the size of the batch it came in). A key
# starting "partial" is reported failed on its first delivery; one starting "poison" fails its whole batch.
WATCHER = """
import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["SEEN_TABLE"])


def handler(event, context):
    failures, poison = [], False
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage") or record["dynamodb"]["Keys"]
        key = image["pk"]["S"]
        seen = TABLE.update_item(
            Key={"pk": key},
            UpdateExpression="ADD attempts :one, events :event SET batch_size = :size",
            ExpressionAttributeValues={":one": 1, ":event": {record["eventName"]}, ":size": len(event["Records"])},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        if key.startswith("partial") and seen["attempts"] == 1:
            failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
        poison = poison or key.startswith("poison")
    if poison:
        raise RuntimeError("a poison record in the batch")
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_name: str) -> Iterator[LocalStack]:
    template = write_project(tmp_path_factory.mktemp("streams-project"), TEMPLATE, {"watcher": WATCHER})
    with LocalStack(
        template, stack_name=stack_name, serve_http=False, write_state=False, retry_delay_seconds=0
    ) as running:
        yield running


def _seen(stack: LocalStack, key: str) -> dict[str, Any] | None:
    assert stack.clients is not None
    table, item = stack.name("SeenTable"), {"pk": {"S": key}}
    found = stack.clients.dynamodb.get_item(TableName=table, Key=item, ConsistentRead=True).get("Item")
    if found is None:
        return None
    attempts, size = int(found["attempts"]["N"]), int(found["batch_size"]["N"])
    return {"attempts": attempts, "events": set(found["events"]["SS"]), "batch_size": size}


def _write(stack: LocalStack, table: str, *keys: str) -> None:
    assert stack.clients is not None
    for key in keys:
        stack.clients.dynamodb.put_item(TableName=stack.name(table), Item={"pk": {"S": key}})


@pytest.fixture
def manual(stack: LocalStack) -> Callable[[], StreamEventSource]:
    """The disabled `Manual` mapping, primed where the stream ends now (LATEST), polled by the test."""
    (spec,) = [e for e in stream_events(stack.template, stack.physical) if e.name == "Manual"]
    assert stack.clients is not None
    streams, sqs = StreamEventSource.client(stack.endpoint, stack.region), stack.clients.sqs

    def make() -> StreamEventSource:
        source = StreamEventSource(stack.functions["Watcher"], spec, streams, sqs, retry_delay_seconds=0)
        source.prime()
        return source

    return make


def test_the_mappings_read_the_template(stack: LocalStack) -> None:
    specs = {e.name: e for e in stream_events(stack.template, stack.physical)}

    assert specs["Changes"].stream_arn == stack.resource("Things").attributes["StreamArn"]
    assert specs["Changes"].enabled
    assert not specs["Manual"].enabled
    assert (specs["Manual"].batch_size, specs["Manual"].maximum_retry_attempts) == (3, 1)
    assert specs["Manual"].bisect_on_error
    assert specs["Manual"].report_batch_item_failures
    assert specs["Manual"].on_failure_queue_url == stack.ref("Failures")
    assert [s.name for s in stack.stream_sources] == ["Watcher.Changes"], "a disabled mapping does not run"


def test_inserts_and_modifications_pass_the_filter_and_removals_do_not(stack: LocalStack) -> None:
    assert stack.clients is not None
    dynamodb, things = stack.clients.dynamodb, stack.name("Things")
    dynamodb.put_item(TableName=things, Item={"pk": {"S": "lamp"}, "on": {"BOOL": False}})
    dynamodb.put_item(TableName=things, Item={"pk": {"S": "lamp"}, "on": {"BOOL": True}})
    dynamodb.delete_item(TableName=things, Key={"pk": {"S": "lamp"}})

    stack.wait_idle(30)  # waits for the stream to be read to its end

    lamp = _seen(stack, "lamp")
    assert lamp is not None
    assert (lamp["attempts"], lamp["events"]) == (2, {"INSERT", "MODIFY"})
    assert stack.stream_sources[0].backlog() == 0


def test_a_partial_failure_is_retried_from_the_failed_record(
    stack: LocalStack, manual: Callable[[], StreamEventSource]
) -> None:
    source = manual()
    _write(stack, "Batches", "ok-1", "partial-2", "ok-3", "ok-4")
    assert source.backlog() == 1, "written and not yet read"

    # one batch of three (BatchSize), the record before the failure settled, the failure and after retried
    assert source.poll_once() == 3
    assert [_seen(stack, k) for k in ("ok-1", "partial-2", "ok-3")] == [
        {"attempts": 1, "events": {"INSERT"}, "batch_size": 3},
        {"attempts": 2, "events": {"INSERT"}, "batch_size": 2},
        {"attempts": 2, "events": {"INSERT"}, "batch_size": 2},
    ]
    assert _seen(stack, "ok-4") is None
    assert source.poll_once() == 1
    assert _seen(stack, "ok-4") == {"attempts": 1, "events": {"INSERT"}, "batch_size": 1}
    assert source.backlog() == 0


def test_a_failing_batch_is_bisected_to_the_bad_record_which_goes_to_the_destination(
    stack: LocalStack, manual: Callable[[], StreamEventSource]
) -> None:
    source = manual()
    _write(stack, "Batches", "good-a", "poison-b", "good-c")

    source.poll_once()

    # [a b c] fails -> [a] ok, [b c] fails -> [b] fails, once more (MaximumRetryAttempts: 1), then skipped;
    # [c] ok. The good records were delivered (more than once: at least once is the contract).
    assert [(_seen(stack, k) or {}).get("attempts") for k in ("good-a", "poison-b", "good-c")] == [2, 4, 3]
    assert (source.discarded_records, source.backlog()) == (1, 0)
    assert stack.clients is not None
    messages = stack.clients.sqs.receive_message(QueueUrl=stack.ref("Failures"), WaitTimeSeconds=1)[
        "Messages"
    ]
    (failure,) = [json.loads(m["Body"]) for m in messages]
    info = failure["DDBStreamBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"]) == (1, info["endSequenceNumber"])
    assert info["streamArn"] == stack.resource("Batches").attributes["StreamArn"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2


def test_records_written_after_a_cancelled_transaction_still_arrive(stack: LocalStack) -> None:
    # GIVEN a transaction whose condition fails (moto then puts a copy of its tables back in place)
    assert stack.clients is not None
    dynamodb, things = stack.clients.dynamodb, stack.name("Things")
    guarded: Any = {"TableName": things, "Item": {"pk": {"S": "guard"}}}
    dynamodb.put_item(**guarded)
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[{"Put": guarded | {"ConditionExpression": "attribute_not_exists(pk)"}}]
        )

    # WHEN something is written afterwards
    dynamodb.put_item(TableName=things, Item={"pk": {"S": "after-the-rollback"}})
    stack.wait_idle(30)

    # THEN the stream's function still gets it
    after = _seen(stack, "after-the-rollback")
    assert after is not None
    assert after["events"] == {"INSERT"}
