"""Create the template's queues, secrets, SSM parameters, buckets and tables with boto3, in dependency
order (`graphlib`). CloudFormation properties reach boto3 under their own names wherever the API has a
member of that name (botocore's service model says which); keys are renamed only where S3 names them
differently. Idempotent: run again against a live endpoint, it updates what exists.
"""

from __future__ import annotations

import graphlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from photopipe_local.template import CREATED_TYPES, PhysicalRegistry, Template, TemplateError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

logger = logging.getLogger("photopipe_local.resources")

LOCAL_ACCESS_KEY = "testing"  # moto accepts anything; "testing" is what its documentation uses
_S3_CORS_KEYS = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}


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
    def for_endpoint(cls, endpoint: str | None, region: str) -> AwsClients:
        """Clients for `endpoint` (None: boto3's own endpoints, which moto's `mock_aws()` intercepts)."""
        session: Any = boto3.session.Session(LOCAL_ACCESS_KEY, LOCAL_ACCESS_KEY, region_name=region)
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        names = ("sqs", "s3", "dynamodb", "secretsmanager", "ssm")
        return cls(*(session.client(name, endpoint_url=endpoint, config=config) for name in names))


def api_arguments(client: Any, operation: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The properties whose names are members of `operation`'s input (botocore's service model)."""
    members = client.meta.service_model.operation_model(operation).input_shape.members
    return {key: value for key, value in properties.items() if key in members}


def create_resources(template: Template, clients: AwsClients) -> PhysicalRegistry:
    """Create (or update) what the template declares; return the registry with the values learnt on the way
    (queue URLs, secret ARNs, stream ARNs)."""
    physical = template.plan()
    created = {logical_id for logical_id, _ in template.active_resources(*CREATED_TYPES)}
    graph = {logical_id: template.dependencies(logical_id) & created for logical_id in created}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        raise ResourceCreationError(f"resources refer to each other in a cycle: {e.args[1]}") from e
    creator = _Creator(physical, clients, template.region)
    for lid in order:
        kind, name = template.resources[lid]["Type"], physical[lid].name
        try:
            getattr(creator, kind.split("::")[1].lower())(lid, template.properties(lid, physical))
        except (ClientError, BotoCoreError) as e:
            raise ResourceCreationError(f"{lid}: creating {kind} {name} failed: {e}") from e
        logger.info("resource ready", extra={"resource": lid, "type": kind, "physical_name": name})
    return physical


class _Creator:
    """Creates resources, one method per service (named as the service: `sqs` creates a queue)."""

    def __init__(self, physical: PhysicalRegistry, aws: AwsClients, region: str) -> None:
        self.physical, self.aws, self.region = physical, aws, region

    def sqs(self, lid: str, props: dict[str, Any]) -> None:
        settable = cast(Any, self.aws.sqs.meta.service_model.shape_for("QueueAttributeName")).enum
        attributes: dict[Any, str] = {k: _attribute(v) for k, v in props.items() if k in settable}
        fifo: Any = {"FifoQueue": attributes.pop("FifoQueue")} if "FifoQueue" in attributes else {}
        url = self.aws.sqs.create_queue(QueueName=self.physical[lid].name, Attributes=fifo)["QueueUrl"]
        if attributes:  # set afterwards: create_queue refuses an existing queue with other attributes
            self.aws.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        self.physical.record(lid, ref=url, QueueUrl=url)

    def secretsmanager(self, lid: str, props: dict[str, Any]) -> None:
        client, name = self.aws.secretsmanager, self.physical[lid].name
        if (generate := props.get("GenerateSecretString")) is not None:
            # As CloudFormation does: Secrets Manager's own generator, with the template's options.
            value = client.get_random_password(**api_arguments(client, "GetRandomPassword", generate))
            secret = value["RandomPassword"]
            if "SecretStringTemplate" in generate:
                document = json.loads(generate["SecretStringTemplate"])
                secret = json.dumps({**document, generate["GenerateStringKey"]: secret})
        elif "SecretString" in props:
            secret = str(props["SecretString"])
        else:
            raise TemplateError(f"{lid}: a secret needs SecretString or GenerateSecretString")
        try:
            description = props.get("Description", "")
            arn = client.create_secret(Name=name, Description=description, SecretString=secret)["ARN"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceExistsException":
                raise
            arn = client.describe_secret(SecretId=name)["ARN"]  # kept: tokens signed with it stay valid
        self.physical.record(lid, ref=arn, Id=arn)

    def ssm(self, lid: str, props: dict[str, Any]) -> None:
        arguments = api_arguments(self.aws.ssm, "PutParameter", props)
        arguments.pop("Tags", None)  # a map in CloudFormation, a list in the API, and refused with Overwrite
        self.aws.ssm.put_parameter(**{**arguments, "Name": self.physical[lid].name, "Overwrite": True})

    def s3(self, lid: str, props: dict[str, Any]) -> None:
        s3, name = self.aws.s3, self.physical[lid].name
        notifications = props.get("NotificationConfiguration") or {}
        for unsupported in ("LambdaConfigurations", "TopicConfigurations", "EventBridgeConfiguration"):
            if notifications.get(unsupported):
                message = "is not supported by the local stack (only QueueConfigurations are wired)"
                raise TemplateError(f"{lid}.NotificationConfiguration.{unsupported} {message}")
        location: Any = {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            s3.create_bucket(Bucket=name, **({} if self.region == "us-east-1" else location))
        except ClientError as e:
            if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
        if rules := (props.get("CorsConfiguration") or {}).get("CorsRules"):
            cors: Any = [{_S3_CORS_KEYS.get(k, k): v for k, v in rule.items()} for rule in rules]
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors})
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
        queues: list[Any] = []
        for config in notifications.get("QueueConfigurations") or []:
            queues.append({"QueueArn": config["Queue"], "Events": [config["Event"]]})
            if rules := ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules"):
                filter_rules = [{**rule, "Name": rule["Name"].lower()} for rule in rules]
                queues[-1]["Filter"] = {"Key": {"FilterRules": filter_rules}}
        if queues:  # like S3 itself, moto then sends an s3:TestEvent message to each queue
            notification: Any = {"QueueConfigurations": queues}
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=notification)

    def dynamodb(self, lid: str, props: dict[str, Any]) -> None:
        dynamodb, name = self.aws.dynamodb, self.physical[lid].name
        request = {**api_arguments(dynamodb, "CreateTable", props), "TableName": name}
        request.pop("SSESpecification", None)  # keyed SSEEnabled here, Enabled in the API; moot locally
        if "StreamSpecification" in request:
            request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}
        if "ProvisionedThroughput" not in request:
            request.setdefault("BillingMode", "PAY_PER_REQUEST")
        try:
            description = dynamodb.create_table(**request)["TableDescription"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            description = dynamodb.describe_table(TableName=name)["Table"]
        if (ttl := props.get("TimeToLiveSpecification")) and str(ttl.get("Enabled")).lower() == "true":
            # moto records TTL but never deletes expired items; readers filter them out.
            current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            status = current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            if current.get("AttributeName") != ttl["AttributeName"] or not status:
                specification: Any = {"AttributeName": ttl["AttributeName"], "Enabled": True}
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=specification)
        if description.get("LatestStreamArn"):
            self.physical.record(lid, StreamArn=description["LatestStreamArn"])


def _attribute(value: Any) -> str:
    """An SQS attribute as the API takes it: a string, JSON for a map (RedrivePolicy), lower-case booleans."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict) else str(value)
