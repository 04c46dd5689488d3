"""Wiring of template.yaml, checked on the CloudFormation that SAM translates it into, offline.

The template is parsed with a small CloudFormation-tag-aware YAML loader, its CodeUri/ContentUri are
replaced with s3:// URIs, and samtranslator turns it into plain CloudFormation with the managed-policy
map bundled in the package (no AWS call). The assertions read the translated resources, so they check
what would be deployed: SAM's policy templates expanded into IAM statements, HttpApi events turned into
OpenAPI paths, SQS events into event source mappings, Globals merged into every function.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint
from cfnlint.config import ManualArgs
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
REGION = "us-east-1"


def _app_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every route the API function's app serves, from its own OpenAPI document."""
    from photopipe.api.app import app

    paths = json.loads(app.get_openapi_json_schema())["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items() for method in operations)


API_ROUTES = _app_routes()

# AWS managed policies SAM attaches on its own (basic logging, Tracing: Active, SQS event polling).
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


# ------------------------------------------------------------------------------ loading


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short-form tags into their long form (`!Ref X` -> {"Ref": X})."""


_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "GetAtt",
            "Sub",
            "FindInMap",
            "If",
            "Not",
            "Equals",
            "And",
            "Or",
            "Join",
            "Select",
            "Split",
            "Base64",
            "GetAZs",
            "ImportValue",
        )
    },
}


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = _SHORT_TAGS[tag_suffix]
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(
            None, None, f"unexpected node for !{tag_suffix}", node.start_mark
        )
    return {name: value}


for _suffix in _SHORT_TAGS:
    _CfnLoader.add_constructor(
        f"!{_suffix}", lambda loader, node, suffix=_suffix: _construct_intrinsic(loader, suffix, node)
    )


class _BundledPolicies:
    """Managed-policy loader for samtranslator that never calls IAM."""

    def load(self) -> dict[str, str]:
        return get_bundled_managed_policy_map(partition="aws")


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(source)
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://photopipe-artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # samtranslator reads the region from a boto3 session
        return transform(template, {}, _BundledPolicies())


@pytest.fixture(scope="module")
def resources(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return cfn["Resources"]


# ------------------------------------------------------------------------------ helpers


def _props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return resources[logical_id].get("Properties", {})


def _of_type(resources: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in resources.items() if res["Type"] == type_}


def _render(value: Any) -> Any:
    """Intrinsics as readable strings: Ref X -> ${X}, GetAtt X.Arn -> ${X.Arn}, Sub with variables inlined."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return f"${{{'.'.join(arg) if isinstance(arg, list) else arg}}}"
        if key == "Fn::Sub":
            if isinstance(arg, str):
                return arg
            text, variables = arg
            for name, var in variables.items():
                text = text.replace(f"${{{name}}}", str(_render(var)))
            return text
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(str(_render(p)) for p in parts)
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def _logical_ids(value: Any) -> set[str]:
    """Logical ids (and parameters) a value references, pseudo parameters left out."""
    found = re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}", str(_render(value)))
    return set(found)


def _find_in_map(cfn: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        mapping, top, second = value["Fn::FindInMap"]
        return cfn["Mappings"][mapping][top][second]
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(resources: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies; a conditional policy (`Fn::If`) counts with both of
    its branches, so least privilege is checked for whichever the deployment picks."""
    statements = []
    pending = list(_props(resources, role_id).get("Policies", []))
    while pending:
        policy = pending.pop(0)
        if "Fn::If" in policy:
            pending.extend(b for b in policy["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
            continue
        statements.extend(_as_list(policy["PolicyDocument"]["Statement"]))
    return statements


def _allowed(statements: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(action, rendered resource) for every Allow statement."""
    return [
        (action, str(_render(resource)))
        for st in statements
        if st["Effect"] == "Allow"
        for action in _as_list(st["Action"])
        for resource in _as_list(st["Resource"])
    ]


_READ_ONLY = re.compile(r"^[a-z0-9-]+:(Get|List|Describe|Head|BatchGet|Query|Scan)", re.IGNORECASE)


def _is_write(action: str) -> bool:
    return not _READ_ONLY.match(action)


def _function_role_id(resources: dict[str, Any], function_id: str) -> str:
    role = _props(resources, function_id)["Role"]
    assert isinstance(role, dict), f"{function_id} should use the role SAM generates from its Policies"
    return role["Fn::GetAtt"][0]


def _bucket_arn(cfn: dict[str, Any]) -> str:
    name = _props(cfn["Resources"], "MediaBucket").get("BucketName")
    return "arn:${AWS::Partition}:s3:::" + (_render(name) if name else "${MediaBucket}")


# ------------------------------------------------------------------------------ media bucket


def test_media_bucket_blocks_public_access_and_is_encrypted(resources: dict[str, Any]) -> None:
    bucket = _props(resources, "MediaBucket")

    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    sse_rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse_rules, "the media bucket needs default encryption"
    assert all(
        r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
        for r in sse_rules
    )
    assert {"ObjectOwnership": "BucketOwnerEnforced"} in bucket["OwnershipControls"]["Rules"]


def test_media_bucket_policy_denies_plain_http(resources: dict[str, Any]) -> None:
    policy = _props(resources, "MediaBucketPolicy")
    assert policy["Bucket"] == {"Ref": "MediaBucket"}

    denies = [
        st
        for st in policy["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies, "no statement denies requests made without TLS"
    assert {str(_render(r)) for r in _as_list(denies[0]["Resource"])} == {
        "arn:${AWS::Partition}:s3:::${MediaBucket}",
        "arn:${AWS::Partition}:s3:::${MediaBucket}/*",
    }


def test_media_bucket_cors_allows_browser_post_uploads(resources: dict[str, Any]) -> None:
    rules = _props(resources, "MediaBucket")["CorsConfiguration"]["CorsRules"]

    assert any("POST" in rule["AllowedMethods"] for rule in rules), "presigned POST uploads need CORS POST"
    assert all(rule["AllowedOrigins"] == {"Ref": "AllowedOrigins"} for rule in rules)


def test_media_bucket_aborts_incomplete_multipart_uploads(resources: dict[str, Any]) -> None:
    rules = _props(resources, "MediaBucket")["LifecycleConfiguration"]["Rules"]

    aborting = [r for r in rules if r["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in r]
    assert aborting, "abandoned multipart uploads would be billed forever"
    assert aborting[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert "Prefix" not in aborting[0], "the abort rule should cover the whole bucket"
    assert "Filter" not in aborting[0], "the abort rule should cover the whole bucket"


def test_only_new_originals_notify_the_ingest_queue(resources: dict[str, Any]) -> None:
    notifications = _props(resources, "MediaBucket")["NotificationConfiguration"]
    queue_configs = notifications["QueueConfigurations"]

    assert queue_configs == [
        {
            "Event": "s3:ObjectCreated:*",
            "Queue": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "originals/"}]}},
        }
    ], "ingest must see originals/ only: a notification on derived/ would feed its own thumbnails back to it"
    assert set(notifications) == {"QueueConfigurations"}


def test_ingest_queue_policy_lets_only_the_media_bucket_send(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    policy = _props(resources, "IngestQueuePolicy")
    assert policy["Queues"] == [{"Ref": "IngestQueue"}]

    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert _as_list(statement["Action"]) == ["sqs:SendMessage"]
    assert statement["Resource"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    condition = statement["Condition"]
    source_arn = condition.get("ArnEquals", condition.get("ArnLike", {}))["aws:SourceArn"]
    assert _render(source_arn) == _bucket_arn(cfn), "the condition must name the media bucket's own ARN"
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    # S3 checks that it may send to the queue when the notification is created.
    assert "IngestQueuePolicy" in _as_list(resources["MediaBucket"].get("DependsOn", []))


# ------------------------------------------------------------------------------ ingest queue


def test_ingest_queue_redrives_to_the_dlq_after_three_receives(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    queue = _props(resources, "IngestQueue")
    dlq = _props(resources, "IngestDeadLetterQueue")

    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert int(_find_in_map(cfn, redrive["maxReceiveCount"])) == 3
    # A message keeps its first enqueue time in the DLQ: the DLQ must keep messages longer.
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    env = _props(resources, "IngestFunction")["Environment"]["Variables"]
    assert _find_in_map(cfn, env["INGEST_MAX_RECEIVE_COUNT"]) == _find_in_map(cfn, redrive["maxReceiveCount"])


def test_ingest_queue_visibility_timeout_is_at_least_six_function_timeouts(resources: dict[str, Any]) -> None:
    timeout = _props(resources, "IngestFunction")["Timeout"]

    assert _props(resources, "IngestQueue")["VisibilityTimeout"] >= 6 * timeout


def test_ingest_function_consumes_the_queue_with_partial_batch_failures(resources: dict[str, Any]) -> None:
    mappings = [
        props
        for res in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if (props := res["Properties"])["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    ]

    assert len(mappings) == 1, "exactly one consumer of the ingest queue"
    (mapping,) = mappings
    assert mapping["FunctionName"] == {"Ref": "IngestFunction"}
    assert 1 <= mapping["BatchSize"] <= 10
    assert 0 <= mapping["MaximumBatchingWindowInSeconds"] <= 300
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping.get("Enabled", True) is True


def test_dlq_alarm_fires_on_any_visible_message(resources: dict[str, Any]) -> None:
    alarms = [
        props
        for res in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if (props := res["Properties"]).get("Namespace") == "AWS/SQS"
        and {"Name": "QueueName", "Value": {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}}
        in props.get("Dimensions", [])
    ]

    assert alarms, "no alarm watches the ingest DLQ"
    (alarm,) = alarms
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"]


def test_alarm_topic_encryption_lets_cloudwatch_publish(resources: dict[str, Any]) -> None:
    key_id = _props(resources, "AlarmTopic").get("KmsMasterKeyId")
    if key_id is None:
        return  # an unencrypted topic needs no key policy

    # The AWS managed alias/aws/sns key does not let CloudWatch alarms publish: they fail silently.
    assert key_id != "alias/aws/sns"
    assert isinstance(key_id, dict), "use a customer managed key declared in this template"
    key_logical_id = next(iter(_logical_ids(key_id)))
    statements = _props(resources, key_logical_id)["KeyPolicy"]["Statement"]
    cloudwatch_actions = {
        action
        for st in statements
        if st["Effect"] == "Allow"
        and "cloudwatch.amazonaws.com" in _as_list(st["Principal"].get("Service", []))
        for action in _as_list(st["Action"])
    }
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= cloudwatch_actions
    assert _props(resources, key_logical_id).get("EnableKeyRotation") is True


# ------------------------------------------------------------------------------ HTTP API


def _routes_to_api_function(resources: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) pairs integrated with ApiFunction, from OpenAPI bodies and ApiGatewayV2 routes."""
    found = set()
    for api in _of_type(resources, "AWS::ApiGatewayV2::Api").values():
        for path, operations in api["Properties"].get("Body", {}).get("paths", {}).items():
            for method, operation in operations.items():
                integration = operation.get("x-amazon-apigateway-integration", {})
                if "ApiFunction" in _logical_ids(integration.get("uri")):
                    found.add((method.upper(), path))
    integrations = _of_type(resources, "AWS::ApiGatewayV2::Integration")
    for route in _of_type(resources, "AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        target_ids = _logical_ids(props.get("Target")) & set(integrations)
        if any("ApiFunction" in _logical_ids(_props(resources, i).get("IntegrationUri")) for i in target_ids):
            method, path = props["RouteKey"].split(" ", 1)
            found.add((method, path))
    return found


def test_the_template_routes_exactly_what_the_app_serves(resources: dict[str, Any]) -> None:
    # One source of truth each way: a route in the app that the template does not route is unreachable in
    # AWS; a template route the app does not serve answers 404 from the function.
    assert sorted(_routes_to_api_function(resources)) == API_ROUTES
    assert len(API_ROUTES) >= 24


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_http_api_route_invokes_the_api_function(resources: dict[str, Any], method: str, path: str) -> None:
    assert (method, path) in _routes_to_api_function(resources)

    arn_path = re.sub(r"\{[^}]+\}", "*", path)  # path parameters are wildcards in the source ARN
    permissions = [
        props
        for res in _of_type(resources, "AWS::Lambda::Permission").values()
        if (props := res["Properties"])["FunctionName"] == {"Ref": "ApiFunction"}
        and props["Principal"] == "apigateway.amazonaws.com"
        and str(_render(props["SourceArn"])).endswith(f"/{method}{arn_path}")
    ]
    assert permissions, f"API Gateway may not invoke ApiFunction for {method} {path}"
    assert "HttpApi" in _logical_ids(permissions[0]["SourceArn"])


def test_http_api_is_served_on_the_default_stage(resources: dict[str, Any]) -> None:
    stages = _of_type(resources, "AWS::ApiGatewayV2::Stage")

    assert [s["Properties"]["StageName"] for s in stages.values()] == ["$default"]
    assert all(s["Properties"]["ApiId"] == {"Ref": "HttpApi"} for s in stages.values())


# ------------------------------------------------------------------------------ tables


TABLES = {
    "UsersTable": {"hash": ("pk", "S")},
    "ImagesTable": {"hash": ("image_id", "S")},
    "IdempotencyTable": {"hash": ("id", "S")},
}


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_table_is_on_demand_encrypted_and_keyed(resources: dict[str, Any], table_id: str) -> None:
    table = _props(resources, table_id)
    name, type_ = TABLES[table_id]["hash"]

    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["KeySchema"] == [{"AttributeName": name, "KeyType": "HASH"}]
    assert {"AttributeName": name, "AttributeType": type_} in table["AttributeDefinitions"]


def test_images_table_lists_by_owner_and_time(resources: dict[str, Any]) -> None:
    table = _props(resources, "ImagesTable")
    indexes = {gsi["IndexName"]: gsi for gsi in table["GlobalSecondaryIndexes"]}

    by_owner = indexes["by-owner"]
    assert by_owner["KeySchema"] == [
        {"AttributeName": "user_id", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert by_owner["Projection"] == {"ProjectionType": "ALL"}
    attributes = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert attributes == {"image_id": "S", "user_id": "S", "created_at": "S"}


def test_idempotency_table_expires_records(resources: dict[str, Any]) -> None:
    ttl = _props(resources, "IdempotencyTable")["TimeToLiveSpecification"]

    assert ttl == {"AttributeName": "expiration", "Enabled": True}


# Retained on delete and on replacement, except when the stack's first create fails (RetainExceptOnCreate):
# then nothing holds data yet, and a retained leftover would only block the next deploy.
@pytest.mark.parametrize("table_id", ["UsersTable", "ImagesTable"])
def test_tables_with_user_data_survive_stack_deletion(resources: dict[str, Any], table_id: str) -> None:
    assert resources[table_id]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resources[table_id]["UpdateReplacePolicy"] == "Retain"
    assert _props(resources, table_id)["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]


def test_media_bucket_survives_stack_deletion(resources: dict[str, Any]) -> None:
    assert resources["MediaBucket"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resources["MediaBucket"]["UpdateReplacePolicy"] == "Retain"


# ------------------------------------------------------------------------------ secrets


def test_jwt_secret_is_generated_never_literal(source: dict[str, Any], resources: dict[str, Any]) -> None:
    secret = resources["JwtSecret"]

    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert "SecretString" not in secret["Properties"]
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert "JwtSecret" not in source.get("Parameters", {})


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
_REFERENCE_NAME = re.compile(r"_(ID|ARN|NAME|PARAMETER|TTL_SECONDS|SECONDS)$", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"(AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|\{\{resolve:(secretsmanager|ssm-secure):"  # dynamic references put the plaintext in the env
    r"|^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9+/=_\-]{24,}$"  # long mixed-case token
)


def _secret_findings(name: str, value: Any) -> list[str]:
    findings = []
    rendered = str(_render(value))
    if _SECRET_VALUE.search(rendered):
        findings.append(f"{name} looks like a secret value")
    if _SECRET_NAME.search(name) and not _REFERENCE_NAME.search(name) and not _logical_ids(value):
        findings.append(f"{name} names a secret but holds the literal {rendered!r}")
    return findings


@pytest.mark.parametrize(
    ("name", "value", "leaks"),
    [
        ("JWT_SECRET", "c3VwZXItc2VjcmV0LXNpZ25pbmcta2V5MTIz", True),
        ("DB_PASSWORD", "hunter2", True),
        ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE", True),
        ("SIGNING", "{{resolve:secretsmanager:jwt:SecretString}}", True),
        ("JWT_SECRET_ID", {"Ref": "JwtSecret"}, False),
        ("JWT_TTL_SECONDS", {"Ref": "JwtTtlSeconds"}, False),
        ("POWERTOOLS_SERVICE_NAME", "photopipe", False),
    ],
)
def test_secret_scanner_tells_secrets_from_references(name: str, value: Any, leaks: bool) -> None:
    assert bool(_secret_findings(name, value)) is leaks


def test_no_function_environment_holds_a_literal_secret(resources: dict[str, Any]) -> None:
    functions = _of_type(resources, "AWS::Lambda::Function")
    assert functions

    findings = [
        f"{function_id}: {finding}"
        for function_id, function in functions.items()
        for name, value in function["Properties"].get("Environment", {}).get("Variables", {}).items()
        for finding in _secret_findings(name, value)
    ]
    assert findings == []
    api_env = _props(resources, "ApiFunction")["Environment"]["Variables"]
    assert api_env["JWT_SECRET_ID"] == {"Ref": "JwtSecret"}


@pytest.mark.parametrize(
    ("function_id", "expected"),
    [
        (
            "ApiFunction",
            {
                "USERS_TABLE": "UsersTable",
                "IMAGES_TABLE": "ImagesTable",
                "MEDIA_BUCKET": "MediaBucket",
                "JWT_SECRET_ID": "JwtSecret",
            },
        ),
        (
            "IngestFunction",
            {
                "IMAGES_TABLE": "ImagesTable",
                "IDEMPOTENCY_TABLE": "IdempotencyTable",
                "MEDIA_BUCKET": "MediaBucket",
            },
        ),
    ],
)
def test_function_environment_names_the_resources(
    resources: dict[str, Any], function_id: str, expected: dict[str, str]
) -> None:
    env = _props(resources, function_id)["Environment"]["Variables"]

    assert {name: env.get(name) for name in expected} == {
        name: {"Ref": lid} for name, lid in expected.items()
    }


# ------------------------------------------------------------------------------ least privilege


def test_api_function_reaches_only_its_tables_bucket_and_secret(resources: dict[str, Any]) -> None:
    statements = _role_statements(resources, _function_role_id(resources, "ApiFunction"))

    referenced = set().union(*(_logical_ids(st["Resource"]) for st in statements))
    assert referenced == {
        "UsersTable",
        "ImagesTable",
        "MediaBucket",
        "JwtSecret",
        "ClassificationCacheTable",
        "StatsTable",
        # enhancement jobs and the GPU fleet
        "JobsTable",
        "WorkersTable",
        "GpuJobsQueue",
        "ExportsQueue",
        "FleetSecret",
        # credits and payments
        "CreditsTable",
        "OrdersTable",
        "OrderChecksQueue",
        "WechatPaySecret",
    }
    allowed = _allowed(statements)
    # the cache pre-check and the statistics only read their tables
    for table in ("ClassificationCacheTable", "StatsTable"):
        actions = {a for a, r in allowed if f"table/${{{table}}}" in r}
        assert actions
        assert all(_READ_ONLY.match(a) or a == "dynamodb:ConditionCheckItem" for a in actions), actions
    assert ("secretsmanager:GetSecretValue", "${JwtSecret}") in allowed
    assert {a for a, r in allowed if "JwtSecret" in r} == {"secretsmanager:GetSecretValue"}
    s3_writes = {(a, r) for a, r in allowed if a.startswith("s3:") and _is_write(a)}
    bucket = "arn:${AWS::Partition}:s3:::${MediaBucket}"
    assert ("s3:PutObject", f"{bucket}/originals/*") in s3_writes, "uploads are presigned for originals/"
    assert ("s3:DeleteObject", f"{bucket}/originals/*") in s3_writes, "deleting a photo deletes its original"
    assert ("s3:DeleteObject", f"{bucket}/derived/*") in s3_writes, "... and its renditions"
    assert all(a in {"s3:PutObject", "s3:DeleteObject"} for a, _ in s3_writes), s3_writes
    assert all(r == f"{bucket}/originals/*" for a, r in s3_writes if a == "s3:PutObject"), s3_writes
    prefixes = re.compile(re.escape(bucket) + r"/(originals|derived|enhanced|exports)/\*$")
    assert all(prefixes.match(r) for _, r in s3_writes), f"writes beyond the media prefixes: {s3_writes}"


def test_ingest_function_reads_originals_writes_derived_and_its_tables(resources: dict[str, Any]) -> None:
    statements = _role_statements(resources, _function_role_id(resources, "IngestFunction"))
    allowed = _allowed(statements)
    bucket = "arn:${AWS::Partition}:s3:::${MediaBucket}"

    referenced = set().union(*(_logical_ids(st["Resource"]) for st in statements))
    assert referenced == {"MediaBucket", "ImagesTable", "IdempotencyTable", "ClassifyQueue"}
    # ingest only sends to the classify queue (SQSSendMessagePolicy: SendMessage and SendMessageBatch)
    assert {a for a, r in allowed if "ClassifyQueue" in r} == {"sqs:SendMessage*"}
    # originals only (narrowed from the whole bucket: ingest reads nothing else)
    assert ("s3:GetObject", f"{bucket}/originals/*") in allowed
    assert ("s3:GetObject", f"{bucket}/*") not in allowed
    s3_writes = {(a, r) for a, r in allowed if a.startswith("s3:") and _is_write(a)}
    assert s3_writes == {("s3:PutObject", f"{bucket}/derived/*")}
    dynamodb_tables = {lid for a, r in allowed if a.startswith("dynamodb:") for lid in _logical_ids(r)}
    assert dynamodb_tables == {"ImagesTable", "IdempotencyTable"}
    # the image is read and moved through its states; Powertools puts, reads, completes and deletes its record
    expected = {
        "ImagesTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        "IdempotencyTable": {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        },
    }
    for table, needed in expected.items():
        actions = {a for a, r in allowed if f"table/${{{table}}}" in r}
        assert needed <= actions


def test_no_policy_allows_wildcard_actions_or_writes_to_every_resource(resources: dict[str, Any]) -> None:
    roles = _of_type(resources, "AWS::IAM::Role")
    assert roles

    problems = []
    for role_id in roles:
        for action, resource in _allowed(_role_statements(resources, role_id)):
            if action == "*" or action.endswith(":*"):
                problems.append(f"{role_id}: wildcard action {action}")
            if resource == "*" and _is_write(action):
                problems.append(f"{role_id}: {action} on every resource")
        extra = set(_props(resources, role_id).get("ManagedPolicyArns", [])) - ALLOWED_MANAGED_POLICIES
        if extra:
            problems.append(f"{role_id}: unexpected managed policies {sorted(extra)}")
    assert problems == []


def test_lambda_roles_trust_only_lambda(resources: dict[str, Any]) -> None:
    for role_id in _of_type(resources, "AWS::IAM::Role"):
        statements = _props(resources, role_id)["AssumeRolePolicyDocument"]["Statement"]
        principals = [st["Principal"] for st in statements]
        assert principals == [{"Service": ["lambda.amazonaws.com"]}], role_id


# ------------------------------------------------------------------------------ functions, outputs


def test_every_function_runs_python312_with_the_shared_layer_and_tracing(resources: dict[str, Any]) -> None:
    functions = _of_type(resources, "AWS::Lambda::Function")
    layers = _of_type(resources, "AWS::Lambda::LayerVersion")
    shared = [lid for lid in layers if lid.startswith("SharedLayer")]
    assert len(functions) >= 2
    assert len(shared) == 1
    layer = layers[shared[0]]["Properties"]

    problems = []
    for function_id, function in functions.items():
        props = function["Properties"]
        if props.get("Runtime") != "python3.12":
            problems.append(f"{function_id}: runtime {props.get('Runtime')}")
        if {"Ref": shared[0]} not in props.get("Layers", []):
            problems.append(f"{function_id}: does not use SharedLayer")
        if props.get("TracingConfig") != {"Mode": "Active"}:
            problems.append(f"{function_id}: tracing {props.get('TracingConfig')}")
        if not set(props.get("Architectures", ["x86_64"])) <= set(layer["CompatibleArchitectures"]):
            problems.append(f"{function_id}: architecture the layer was not built for")
    assert problems == []
    assert "python3.12" in layer["CompatibleRuntimes"]


def test_every_function_logs_to_a_group_with_retention(resources: dict[str, Any]) -> None:
    problems = []
    for function_id, function in _of_type(resources, "AWS::Lambda::Function").items():
        log_group = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        group_ids = _logical_ids(log_group) if log_group else set()
        groups = [g for g in group_ids if resources.get(g, {}).get("Type") == "AWS::Logs::LogGroup"]
        if not groups or "RetentionInDays" not in _props(resources, groups[0]):
            problems.append(f"{function_id}: logs to {log_group!r}, not a group of this stack with retention")
    assert problems == []


def test_every_output_is_described(source: dict[str, Any], cfn: dict[str, Any]) -> None:
    for template in (source, cfn):
        assert template["Outputs"]
        undescribed = [name for name, output in template["Outputs"].items() if not output.get("Description")]
        assert undescribed == []


# ------------------------------------------------------------------------------ build inputs, config


def test_layer_requirements_mirror_the_package_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = (ROOT / "layers/photopipe/requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    assert sorted(requirements) == sorted(pyproject["project"]["dependencies"])


def test_every_code_directory_has_a_requirements_file(source: dict[str, Any]) -> None:
    code_dirs = [
        props.get("CodeUri") or props.get("ContentUri")
        for res in source["Resources"].values()
        if res["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion"}
        and (props := res["Properties"])
    ]
    assert code_dirs
    missing = [d for d in code_dirs if not (ROOT / d / "requirements.txt").is_file()]
    assert missing == [], "sam build needs a requirements.txt in each code directory"


@pytest.mark.parametrize(
    ("env", "stack", "stage", "confirm"),
    [("default", "photopipe-dev", "dev", False), ("prod", "photopipe-prod", "prod", True)],
)
def test_samconfig_profile(source: dict[str, Any], env: str, stack: str, stage: str, confirm: bool) -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    profile = config[env]
    deploy = profile["deploy"]["parameters"]
    settings = {**profile["global"]["parameters"], **deploy}

    assert settings["stack_name"] == stack
    assert settings["region"] == REGION
    assert deploy["resolve_s3"] is True
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert deploy["parameter_overrides"] == f"Stage={stage}"
    assert stage in source["Parameters"]["Stage"]["AllowedValues"]
    assert deploy["confirm_changeset"] is confirm
    assert profile["build"]["parameters"]["cached"] is True


# ------------------------------------------------------------------------------ cfn-lint


@pytest.fixture(scope="module")
def lint_matches() -> list[Any]:
    return lint(TEMPLATE.read_text(), config=ManualArgs(regions=[REGION]))


def _describe(matches: list[Any]) -> str:
    return "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


def test_cfn_lint_finds_no_errors(lint_matches: list[Any]) -> None:
    errors = [m for m in lint_matches if m.rule.id.startswith("E")]
    warnings = [m for m in lint_matches if m.rule.id.startswith("W")]

    assert errors == [], f"errors:\n{_describe(errors)}\nwarnings:\n{_describe(warnings)}"


def test_cfn_lint_finds_no_warnings(lint_matches: list[Any]) -> None:
    # `make template-lint` (the cfn-lint CLI) fails on warnings too.
    warnings = [m for m in lint_matches if m.rule.id.startswith("W")]

    assert warnings == [], f"warnings:\n{_describe(warnings)}"


def test_cfn_lint_api_reports_errors() -> None:
    # GIVEN a template with a route path YAML cannot parse (an unquoted {..} in a flow mapping) and a queue
    # whose visibility timeout is out of range: the two kinds of mistake the checks above must not miss
    broken_yaml = "Resources:\n  Api:\n    Properties: {Path: /images/{image_id}, Method: GET}\n"
    bad_value = (
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 99999\n"
    )

    # WHEN they are linted the way the tests above lint template.yaml THEN both are errors
    for text in (broken_yaml, bad_value):
        matches = lint(text, config=ManualArgs(regions=[REGION]))
        assert any(m.rule.id.startswith("E") for m in matches), text


# ------------------------------------------------------------------------------ classification


def test_classify_queue_feeds_the_classify_function_with_partial_failures_and_a_dlq(
    cfn: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = _props(resources, "ClassifyQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ClassifyDeadLetterQueue", "Arn"]}
    assert int(_find_in_map(cfn, redrive["maxReceiveCount"])) == 3
    function = _props(resources, "ClassifyFunction")
    env = function["Environment"]["Variables"]
    assert _find_in_map(cfn, env["CLASSIFY_MAX_RECEIVE_COUNT"]) == _find_in_map(
        cfn, redrive["maxReceiveCount"]
    )
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    mappings = [
        props
        for props in (
            r["Properties"] for r in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        )
        if props["EventSourceArn"] == {"Fn::GetAtt": ["ClassifyQueue", "Arn"]}
    ]
    assert len(mappings) == 1
    assert mappings[0]["FunctionName"] == {"Ref": "ClassifyFunction"}
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings[0]["ScalingConfig"]["MaximumConcurrency"] <= 10, "the LLM's rate limit bounds concurrency"
    alarms = [
        a["Properties"]
        for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Dimensions", [{}])[0].get("Value")  # metric-math alarms have none
        == {"Fn::GetAtt": ["ClassifyDeadLetterQueue", "QueueName"]}
    ]
    assert len(alarms) == 1


def test_cache_and_stats_tables_have_the_keys_the_code_uses(resources: dict[str, Any]) -> None:
    cache = _props(resources, "ClassificationCacheTable")
    assert cache["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    stats = _props(resources, "StatsTable")
    assert stats["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert stats["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    for table in (cache, stats):
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["SSESpecification"] == {"SSEEnabled": True}


def test_classify_function_reaches_only_its_tables_and_reads_the_bucket(resources: dict[str, Any]) -> None:
    statements = _role_statements(resources, _function_role_id(resources, "ClassifyFunction"))
    allowed = _allowed(statements)
    s3_writes = {(a, r) for a, r in allowed if a.startswith("s3:") and _is_write(a)}
    assert s3_writes == set(), "classify only reads previews"
    dynamodb_tables = {lid for a, r in allowed if a.startswith("dynamodb:") for lid in _logical_ids(r)}
    assert dynamodb_tables == {"ImagesTable", "ClassificationCacheTable", "StatsTable"}
    # the provider keys are read only when a secret name is given, and only that secret
    secrets = {r for a, r in allowed if a == "secretsmanager:GetSecretValue"}
    assert all(r.endswith("-??????") and "${" in r for r in secrets), secrets


def test_no_provider_key_is_ever_a_literal(resources: dict[str, Any]) -> None:
    env = _props(resources, "ClassifyFunction")["Environment"]["Variables"]
    assert "DASHSCOPE_API_KEY" not in env, "the key comes from Secrets Manager (DASHSCOPE_API_KEY_SECRET_ID)"
    assert "PHOTOPIPE_OPENAI_API_KEY" not in env


# ------------------------------------------------------------------------------ enhancement and the fleet


def test_jobs_table_indexes_by_owner_and_batch(resources: dict[str, Any]) -> None:
    table = _props(resources, "JobsTable")
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {"by-owner": ["user_id", "created_at"], "by-batch": ["batch_id"]}


def test_workers_table_expires_silent_workers(resources: dict[str, Any]) -> None:
    table = _props(resources, "WorkersTable")
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize(
    ("queue", "dlq"), [("GpuJobsQueue", "GpuJobsDeadLetterQueue"), ("ExportsQueue", "ExportsDeadLetterQueue")]
)
def test_enhancement_queues_redrive_to_their_dlq(cfn: dict[str, Any], queue: str, dlq: str) -> None:
    redrive = _props(cfn["Resources"], queue)["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
    assert int(_find_in_map(cfn, redrive["maxReceiveCount"])) == 3


def test_exports_function_consumes_its_queue_and_writes_only_exports(resources: dict[str, Any]) -> None:
    mappings = [
        props
        for res in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if (props := res["Properties"])["EventSourceArn"] == {"Fn::GetAtt": ["ExportsQueue", "Arn"]}
    ]
    assert len(mappings) == 1
    assert mappings[0]["FunctionName"] == {"Ref": "ExportsFunction"}
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    timeout = _props(resources, "ExportsFunction")["Timeout"]
    assert _props(resources, "ExportsQueue")["VisibilityTimeout"] >= 6 * timeout
    allowed = _allowed(_role_statements(resources, _function_role_id(resources, "ExportsFunction")))
    bucket = "arn:${AWS::Partition}:s3:::${MediaBucket}"
    s3_writes = {(a, r) for a, r in allowed if a.startswith("s3:") and _is_write(a)}
    assert s3_writes == {
        ("s3:PutObject", f"{bucket}/exports/*"),
        ("s3:AbortMultipartUpload", f"{bucket}/exports/*"),
    }


def test_api_function_reads_the_fleet_secret_only(resources: dict[str, Any]) -> None:
    allowed = _allowed(_role_statements(resources, _function_role_id(resources, "ApiFunction")))
    assert {a for a, r in allowed if "FleetSecret" in r} == {"secretsmanager:GetSecretValue"}
    env = _props(resources, "ApiFunction")["Environment"]["Variables"]
    assert env["FLEET_SECRET_ID"] == {"Ref": "FleetSecret"}
    assert env["ENHANCE_QUEUE_WHEN_NO_WORKERS"] == {"Ref": "EnhanceQueueWhenNoWorkers"}
