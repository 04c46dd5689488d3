"""Tiny templates and handlers for the local stack's own tests (the real functions are not used here)."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

SQS_TEMPLATE = """
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
      TimeToLiveSpecification: {AttributeName: expires, Enabled: true}
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 2}
  WorkDLQ: {Type: AWS::SQS::Queue}
  CrashQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt CrashDLQ.Arn, maxReceiveCount: 2}
  CrashDLQ: {Type: AWS::SQS::Queue}
  ManualQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt ManualDLQ.Arn, maxReceiveCount: 5}
  ManualDLQ: {Type: AWS::SQS::Queue}
  UploadQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt UploadDLQ.Arn, maxReceiveCount: 3}
  UploadDLQ: {Type: AWS::SQS::Queue}
  Uploads:
    Type: AWS::S3::Bucket
    Properties:
      CorsConfiguration:
        CorsRules: [{AllowedMethods: [POST], AllowedOrigins: ["*"], AllowedHeaders: ["*"]}]
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt UploadQueue.Arn
            Filter:
              S3Key:
                Rules: [{Name: prefix, Value: originals/}, {Name: suffix, Value: .jpg}]
  ApiKey:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString: {PasswordLength: 40, ExcludePunctuation: true}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker
      Handler: app.handler
      Environment:
        Variables:
          API_KEY_SECRET: !Ref ApiKey
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
        Manual:
          Type: SQS
          Properties:
            Queue: !GetAtt ManualQueue.Arn
            Enabled: false
            FunctionResponseTypes: [ReportBatchItemFailures]
  Crasher:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/crasher
      Handler: app.handler
      Events:
        Crash:
          Type: SQS
          Properties: {Queue: !GetAtt CrashQueue.Arn, BatchSize: 5}
  Uploader:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/uploader
      Handler: app.handler
      Events:
        Uploads:
          Type: SQS
          Properties:
            Queue: !GetAtt UploadQueue.Arn
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

# Each handler records what it saw in the table the template gives it (an outcome the test can read back).
RECORDER = """
import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["SEEN_TABLE"])


def seen(pk, **attributes):
    names = {f"#{k}": k for k in attributes}
    values = {f":{k}": v for k, v in attributes.items()}
    sets = ", ".join(f"#{k} = :{k}" for k in attributes)
    TABLE.update_item(
        Key={"pk": pk},
        UpdateExpression="ADD attempts :one" + (f" SET {sets}" if sets else ""),
        ExpressionAttributeValues={":one": 1, **values},
        **({"ExpressionAttributeNames": names} if names else {}),
    )
"""

HANDLERS = {
    "worker": RECORDER
    + """

def handler(event, context):
    failures = []
    for record in event["Records"]:
        seen("worker#" + record["body"], function=context.function_name, secret=os.environ["API_KEY_SECRET"])
        if record["body"].startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
""",
    "crasher": RECORDER
    + """

def handler(event, context):
    bodies = [record["body"] for record in event["Records"]]
    for body in bodies:
        seen("crasher#" + body)
    if any(body.startswith("boom") for body in bodies):
        raise RuntimeError("boom in the batch")
    return {"batchItemFailures": [{"itemIdentifier": "ignored without ReportBatchItemFailures"}]}
""",
    "uploader": RECORDER
    + """
import json
from urllib.parse import unquote_plus


def handler(event, context):
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("Event") == "s3:TestEvent":
            seen("uploader#test-event", bucket=body["Bucket"])
            continue
        for s3_record in body["Records"]:
            key = unquote_plus(s3_record["s3"]["object"]["key"])
            seen("uploader#" + key, event_name=s3_record["eventName"], source_arn=record["eventSourceARN"])
    return {"batchItemFailures": []}
""",
}


def write_project(root: Path, template: str, handlers: dict[str, str]) -> Path:
    """Write `template.yaml` and `functions/<name>/app.py` under `root`; return the template's path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "template.yaml"
    path.write_text(textwrap.dedent(template), encoding="utf-8")
    for name, code in handlers.items():
        directory = root / "functions" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "app.py").write_text(code, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sqs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("sqs-project"), SQS_TEMPLATE, HANDLERS)


@pytest.fixture(scope="module")
def stack_name() -> str:
    """moto keeps one global state per process: every stack in a test session gets its own names."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def project_factory(tmp_path: Path) -> Callable[[str, dict[str, str]], Path]:
    return lambda template, handlers: write_project(tmp_path, template, handlers)
