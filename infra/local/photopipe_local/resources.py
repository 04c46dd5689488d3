"""Create the resources a `StackPlan` describes in moto (or any AWS endpoint) with boto3.

Order matters: queues first (dead-letter queues before the queues that redrive into them), then secrets and
SSM parameters, buckets (their notifications target queues that must exist), tables. Every step is
idempotent: running it again against a live endpoint updates what exists instead of failing.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from photopipe_local.template import (
    BucketSpec,
    GenerateSecretString,
    PhysicalRegistry,
    QueueSpec,
    SecretSpec,
    SsmParameterSpec,
    StackPlan,
    TableSpec,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

logger = logging.getLogger("photopipe_local.resources")

LOCAL_ACCESS_KEY = "testing"  # moto accepts anything; "testing" is what its documentation uses


class ResourceCreationError(Exception):
    """Creating a resource failed; the message names the resource and the call."""


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients the local stack uses to talk to its endpoint."""

    sqs: SQSClient
    s3: S3Client
    dynamodb: DynamoDBClient
    secretsmanager: SecretsManagerClient
    ssm: SSMClient

    @classmethod
    def for_endpoint(cls, endpoint: str, region: str) -> AwsClients:
        session = boto3.session.Session(
            aws_access_key_id=LOCAL_ACCESS_KEY, aws_secret_access_key=LOCAL_ACCESS_KEY, region_name=region
        )
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]

        return cls(
            sqs=client("sqs"),
            s3=client("s3"),
            dynamodb=client("dynamodb"),
            secretsmanager=client("secretsmanager"),
            ssm=client("ssm"),
        )


def create_resources(plan: StackPlan, clients: AwsClients, region: str) -> PhysicalRegistry:
    """Create (or update) everything in `plan`; return its registry with the values learnt on the way."""
    for queue in _dead_letter_queues_first(plan.queues):
        _create_queue(queue, clients.sqs, plan.physical)
    for secret in plan.secrets:
        _create_secret(secret, clients.secretsmanager, plan.physical)
    for parameter in plan.parameters:
        _create_ssm_parameter(parameter, clients.ssm)
    for bucket in plan.buckets:
        _create_bucket(bucket, clients.s3, region)
    for table in plan.tables:
        _create_table(table, clients.dynamodb, plan.physical)
    return plan.physical


def _dead_letter_queues_first(queues: tuple[QueueSpec, ...]) -> list[QueueSpec]:
    by_arn = {queue.arn: queue for queue in queues}
    ordered: list[QueueSpec] = []
    visiting: set[str] = set()

    def visit(queue: QueueSpec) -> None:
        if queue in ordered:
            return
        if queue.arn in visiting:
            raise ResourceCreationError(f"{queue.logical_id}: redrive policies form a cycle")
        visiting.add(queue.arn)
        if queue.redrive_policy is not None:
            visit(by_arn[queue.redrive_policy.dead_letter_target_arn])
        ordered.append(queue)

    for queue in queues:
        visit(queue)
    return ordered


def _create_queue(queue: QueueSpec, sqs: SQSClient, physical: PhysicalRegistry) -> None:
    try:
        created = sqs.create_queue(
            QueueName=queue.name, Attributes={"FifoQueue": "true"} if queue.fifo else {}
        )
        if queue.attributes:
            attributes: dict[Any, str] = dict(queue.attributes)  # keys are the template's property names
            sqs.set_queue_attributes(QueueUrl=created["QueueUrl"], Attributes=attributes)
        arn = sqs.get_queue_attributes(QueueUrl=created["QueueUrl"], AttributeNames=["QueueArn"])
    except ClientError as e:
        raise ResourceCreationError(f"{queue.logical_id}: creating queue {queue.name} failed: {e}") from e
    actual_arn = arn["Attributes"]["QueueArn"]
    if actual_arn != queue.arn:
        raise ResourceCreationError(
            f"{queue.logical_id}: the endpoint created {actual_arn}, the template resolved {queue.arn} "
            "(region or account mismatch)"
        )
    url = created["QueueUrl"]
    physical.record(queue.logical_id, ref=url, QueueUrl=url)
    logger.info("queue ready", extra={"resource": queue.logical_id, "url": url})


def generate_secret_value(spec: GenerateSecretString) -> str:
    """A random secret honouring the template's GenerateSecretString options (cryptographic randomness)."""
    alphabet = ""
    if not spec.exclude_lowercase:
        alphabet += string.ascii_lowercase
    if not spec.exclude_uppercase:
        alphabet += string.ascii_uppercase
    if not spec.exclude_numbers:
        alphabet += string.digits
    if not spec.exclude_punctuation:
        alphabet += string.punctuation
    if spec.include_space:
        alphabet += " "
    alphabet = "".join(c for c in alphabet if c not in spec.exclude_characters)
    if not alphabet:
        raise ResourceCreationError("GenerateSecretString excludes every character")
    value = "".join(secrets.choice(alphabet) for _ in range(spec.password_length))
    if spec.secret_string_template is None or spec.generate_string_key is None:
        return value
    document = json.loads(spec.secret_string_template)
    document[spec.generate_string_key] = value
    return json.dumps(document)


def _create_secret(secret: SecretSpec, client: SecretsManagerClient, physical: PhysicalRegistry) -> None:
    value = secret.secret_string if secret.generate is None else generate_secret_value(secret.generate)
    try:
        arn = client.create_secret(
            Name=secret.name, Description=secret.description or "", SecretString=value or ""
        )["ARN"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceExistsException":
            raise ResourceCreationError(
                f"{secret.logical_id}: creating secret {secret.name} failed: {e}"
            ) from e
        # Keep the existing value: tokens signed with it stay valid across restarts of the stack.
        arn = client.describe_secret(SecretId=secret.name)["ARN"]
    physical.record(secret.logical_id, ref=arn, Id=arn)
    logger.info("secret ready", extra={"resource": secret.logical_id, "arn": arn})


def _create_ssm_parameter(parameter: SsmParameterSpec, ssm: SSMClient) -> None:
    try:
        ssm.put_parameter(
            Name=parameter.name,
            Value=parameter.value,
            Type=parameter.type,  # type: ignore[arg-type]
            Overwrite=True,
        )
    except ClientError as e:
        raise ResourceCreationError(
            f"{parameter.logical_id}: putting SSM parameter {parameter.name} failed: {e}"
        ) from e
    logger.info("ssm parameter ready", extra={"resource": parameter.logical_id, "name": parameter.name})


def _create_bucket(bucket: BucketSpec, s3: S3Client, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket.name)
        else:
            s3.create_bucket(
                Bucket=bucket.name,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except ClientError as e:
        if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise ResourceCreationError(
                f"{bucket.logical_id}: creating bucket {bucket.name} failed: {e}"
            ) from e
    try:
        if bucket.cors_rules:
            cors_rules: list[Any] = [rule.to_s3() for rule in bucket.cors_rules]
            s3.put_bucket_cors(Bucket=bucket.name, CORSConfiguration={"CORSRules": cors_rules})
        if bucket.versioning == "Enabled":
            s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
        if bucket.queue_notifications:
            # Like S3 itself, moto then sends an s3:TestEvent message to each queue.
            queue_configurations: list[Any] = [n.to_s3() for n in bucket.queue_notifications]
            s3.put_bucket_notification_configuration(
                Bucket=bucket.name, NotificationConfiguration={"QueueConfigurations": queue_configurations}
            )
    except ClientError as e:
        raise ResourceCreationError(
            f"{bucket.logical_id}: configuring bucket {bucket.name} failed: {e}"
        ) from e
    logger.info("bucket ready", extra={"resource": bucket.logical_id, "bucket": bucket.name})


def _create_table(table: TableSpec, dynamodb: DynamoDBClient, physical: PhysicalRegistry) -> None:
    def keys(schema: tuple[Any, ...]) -> list[dict[str, str]]:
        return [{"AttributeName": k.attribute_name, "KeyType": k.key_type} for k in schema]

    request: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": keys(table.key_schema),
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in table.attribute_definitions.items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.global_secondary_indexes:
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": i.name, "KeySchema": keys(i.key_schema), "Projection": dict(i.projection)}
            for i in table.global_secondary_indexes
        ]
    if table.local_secondary_indexes:
        request["LocalSecondaryIndexes"] = [
            {"IndexName": i.name, "KeySchema": keys(i.key_schema), "Projection": dict(i.projection)}
            for i in table.local_secondary_indexes
        ]
    if table.stream_view_type:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream_view_type}
    try:
        try:
            description = dynamodb.create_table(**request)["TableDescription"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            description = dynamodb.describe_table(TableName=table.name)["Table"]
        if table.ttl_attribute:
            # Note: moto records TTL but never deletes expired items; readers filter them out.
            current = dynamodb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
            if current.get("AttributeName") != table.ttl_attribute or current.get("TimeToLiveStatus") not in (
                "ENABLED",
                "ENABLING",
            ):
                dynamodb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"AttributeName": table.ttl_attribute, "Enabled": True},
                )
    except ClientError as e:
        raise ResourceCreationError(f"{table.logical_id}: creating table {table.name} failed: {e}") from e
    stream_arn = description.get("LatestStreamArn")
    if stream_arn:
        physical.record(table.logical_id, StreamArn=stream_arn)
    logger.info("table ready", extra={"resource": table.logical_id, "table": table.name})
