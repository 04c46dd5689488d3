"""Read `template.yaml` into a typed model of what the local stack needs.

The template stays the single source of truth: nothing here repeats a name from it. The reader

* parses YAML with CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`, ...) into their long form
  (`{"Ref": ...}`, `{"Fn::GetAtt": [...]}`),
* applies the SAM `Globals` section (maps merge, lists append, scalars are overridden by the resource),
* resolves intrinsic functions against the parameters, pseudo parameters, mappings, conditions and the
  physical names/ARNs of the resources the local stack creates,
* turns the resources it supports into frozen dataclasses, and fails with a message naming the resource
  and property for anything it cannot emulate faithfully.

Secrets Manager ARNs and DynamoDB stream ARNs carry a random suffix chosen when the resource is created, so
resolution happens in two steps: `Template.plan()` names everything and describes the resources to create;
after `photopipe_local.resources.create_resources` has filled in the real ARNs, `Template.functions()` and
`Template.http_apis()` resolve what refers to them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Not under "photopipe.": Powertools names its logger after the service ("photopipe"), and the local stack's
# own records should not go through the handlers' JSON handler.
logger = logging.getLogger("photopipe_local.template")

DEFAULT_STACK_NAME = "photopipe-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account for any access key
LOCAL_API_ID = "local"

# Resource types the local stack deliberately does not create: the handlers run without them (IAM, alarms,
# logs, keys; layers: the package is installed in the virtual environment) or they are read elsewhere
# (HttpApi: routes come from the functions' events, CORS from the API's properties).
IGNORED_RESOURCE_TYPES = frozenset(
    {
        "AWS::Serverless::LayerVersion",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::LayerVersionPermission",
        "AWS::Lambda::Permission",
        "AWS::Serverless::HttpApi",
        "AWS::SQS::QueuePolicy",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::CompositeAlarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Logs::LogGroup",
        "AWS::Logs::MetricFilter",
        "AWS::Logs::SubscriptionFilter",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::ApplicationInsights::Application",
        "AWS::ResourceGroups::Group",
    }
)

# Resource types whose absence would silently change what the handlers see (an event that never fires, a
# route that is never served): the local stack refuses to start rather than pretend.
UNSUPPORTED_RESOURCE_TYPES = frozenset(
    {
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Serverless::Api",
        "AWS::Serverless::Application",
        "AWS::Serverless::StateMachine",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::Pipes::Pipe",
        "AWS::Scheduler::Schedule",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::Kinesis::Stream",
    }
)

SUPPORTED_RESOURCE_TYPES = frozenset(
    {
        "AWS::Serverless::Function",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::Serverless::SimpleTable",
        "AWS::SecretsManager::Secret",
        "AWS::SSM::Parameter",
    }
)

# Lambda refuses these in a function's environment; the runtime (here: the local stack) sets them.
RESERVED_ENVIRONMENT_KEYS = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
}


class TemplateError(Exception):
    """The template cannot be read or emulated locally; the message names the resource and property."""


class UnresolvedReferenceError(TemplateError):
    """A reference to a value only known once the resource exists (a secret's ARN, a stream's ARN)."""


# --------------------------------------------------------------------------------------------- YAML


class CfnYamlLoader(yaml.SafeLoader):
    """A safe YAML loader that turns CloudFormation short tags into their long (JSON) form."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")  # pragma: no cover - yaml has no other kinds


def _intrinsic(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {name: _construct_node(loader, node)}

    return construct


def _construct_getatt(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        logical_id, sep, attribute = value.partition(".")
        if not sep:
            raise TemplateError(f"!GetAtt {value!r} must look like LogicalId.Attribute")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {"Fn::GetAtt": value}


CfnYamlLoader.add_constructor("!Ref", _intrinsic("Ref"))
CfnYamlLoader.add_constructor("!Condition", _intrinsic("Condition"))
CfnYamlLoader.add_constructor("!GetAtt", _construct_getatt)
for _fn in (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
):
    CfnYamlLoader.add_constructor(f"!{_fn}", _intrinsic(f"Fn::{_fn}"))


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template file (YAML or JSON) into plain dicts."""
    try:
        with path.open(encoding="utf-8") as f:
            document = yaml.load(f, Loader=CfnYamlLoader)  # noqa: S506 - CfnYamlLoader is a SafeLoader
    except OSError as e:
        raise TemplateError(f"cannot read template {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise TemplateError(f"template {path} is not valid YAML: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources section")
    return document


# ------------------------------------------------------------------------------------------ Globals

_GLOBALS_TARGET = {
    "Function": "AWS::Serverless::Function",
    "Api": "AWS::Serverless::Api",
    "HttpApi": "AWS::Serverless::HttpApi",
    "SimpleTable": "AWS::Serverless::SimpleTable",
    "LayerVersion": "AWS::Serverless::LayerVersion",
    "StateMachine": "AWS::Serverless::StateMachine",
}


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSIC_NAMES


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rule: maps merge (the resource wins on conflicts), lists append, scalars are overridden."""
    if _is_intrinsic(global_value) or _is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def apply_globals(document: dict[str, Any]) -> dict[str, Any]:
    """Return the Resources with the `Globals` section merged into each SAM resource's Properties."""
    globals_section = document.get("Globals") or {}
    resources: dict[str, Any] = {}
    for logical_id, resource in document["Resources"].items():
        if not isinstance(resource, dict) or "Type" not in resource:
            raise TemplateError(f"resource {logical_id} has no Type")
        resource = dict(resource)
        for section, resource_type in _GLOBALS_TARGET.items():
            if resource["Type"] == resource_type and section in globals_section:
                resource["Properties"] = merge_globals(
                    globals_section[section], resource.get("Properties") or {}
                )
        resources[logical_id] = resource
    return resources


# ------------------------------------------------------------------------------------ physical names


def kebab_case(logical_id: str) -> str:
    """`IngestDeadLetterQueue` -> `ingest-dead-letter-queue`, `JWTSecret` -> `jwt-secret`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()


@dataclass
class PhysicalResource:
    """What `Ref` and `Fn::GetAtt` of one resource give. `ref` is None until the value is known."""

    logical_id: str
    type: str
    name: str
    ref: str | None
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "ref": self.ref, "attributes": dict(self.attributes)}


class PhysicalRegistry(Mapping[str, PhysicalResource]):
    """Logical id -> physical identity of every resource the template declares (created or not)."""

    def __init__(self, entries: Iterable[PhysicalResource] = ()) -> None:
        self._entries: dict[str, PhysicalResource] = {entry.logical_id: entry for entry in entries}

    def __getitem__(self, logical_id: str) -> PhysicalResource:
        return self._entries[logical_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, logical_id: str, *, ref: str | None = None, **attributes: str) -> None:
        """Store values learnt when the resource was created (a secret's ARN, a table's stream ARN)."""
        entry = self._entries[logical_id]
        if ref is not None:
            entry.ref = ref
        entry.attributes.update(attributes)

    def by_arn(self, arn: str) -> PhysicalResource | None:
        return next((e for e in self._entries.values() if e.attributes.get("Arn") == arn), None)

    def to_json(self) -> dict[str, Any]:
        return {logical_id: entry.to_json() for logical_id, entry in self._entries.items()}


# ------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class RedrivePolicy:
    dead_letter_target_arn: str
    max_receive_count: int


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    arn: str
    url: str
    attributes: Mapping[str, str]
    """SQS attributes as `SetQueueAttributes` takes them, RedrivePolicy included."""
    fifo: bool = False
    redrive_policy: RedrivePolicy | None = None

    @property
    def visibility_timeout(self) -> int:
        return int(self.attributes.get("VisibilityTimeout", "30"))


@dataclass(frozen=True)
class CorsRule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    exposed_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None

    def to_s3(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "AllowedMethods": list(self.allowed_methods),
            "AllowedOrigins": list(self.allowed_origins),
        }
        if self.allowed_headers:
            rule["AllowedHeaders"] = list(self.allowed_headers)
        if self.exposed_headers:
            rule["ExposeHeaders"] = list(self.exposed_headers)
        if self.max_age_seconds is not None:
            rule["MaxAgeSeconds"] = self.max_age_seconds
        return rule


@dataclass(frozen=True)
class QueueNotification:
    queue_arn: str
    event: str
    prefix: str | None = None
    suffix: str | None = None

    def to_s3(self) -> dict[str, Any]:
        config: dict[str, Any] = {"QueueArn": self.queue_arn, "Events": [self.event]}
        rules = [{"Name": "prefix", "Value": self.prefix}] if self.prefix is not None else []
        rules += [{"Name": "suffix", "Value": self.suffix}] if self.suffix is not None else []
        if rules:
            config["Filter"] = {"Key": {"FilterRules": rules}}
        return config


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str
    arn: str
    cors_rules: tuple[CorsRule, ...] = ()
    queue_notifications: tuple[QueueNotification, ...] = ()
    versioning: str | None = None


@dataclass(frozen=True)
class KeyElement:
    attribute_name: str
    key_type: str  # HASH | RANGE


@dataclass(frozen=True)
class SecondaryIndex:
    name: str
    key_schema: tuple[KeyElement, ...]
    projection: Mapping[str, Any]


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    arn: str
    key_schema: tuple[KeyElement, ...]
    attribute_definitions: Mapping[str, str]  # attribute name -> S | N | B
    global_secondary_indexes: tuple[SecondaryIndex, ...] = ()
    local_secondary_indexes: tuple[SecondaryIndex, ...] = ()
    stream_view_type: str | None = None
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class GenerateSecretString:
    password_length: int = 32
    exclude_characters: str = ""
    exclude_lowercase: bool = False
    exclude_uppercase: bool = False
    exclude_numbers: bool = False
    exclude_punctuation: bool = False
    include_space: bool = False
    secret_string_template: str | None = None
    generate_string_key: str | None = None


@dataclass(frozen=True)
class SecretSpec:
    logical_id: str
    name: str
    description: str | None = None
    secret_string: str | None = None
    generate: GenerateSecretString | None = None


@dataclass(frozen=True)
class SsmParameterSpec:
    logical_id: str
    name: str
    type: str
    value: str


@dataclass(frozen=True)
class SqsEventSpec:
    name: str
    queue_arn: str
    batch_size: int = 10
    maximum_batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class HttpApiEventSpec:
    name: str
    path: str  # "$default" for the default route
    method: str  # upper case; "ANY" matches every method
    api: str  # logical id of the AWS::Serverless::HttpApi ("ServerlessHttpApi" when implicit)

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, str]
    sqs_events: tuple[SqsEventSpec, ...] = ()
    http_events: tuple[HttpApiEventSpec, ...] = ()
    log_group: str = ""

    @property
    def module_path(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class HttpApiSpec:
    logical_id: str
    api_id: str
    cors: CorsConfig | None


@dataclass(frozen=True)
class StackPlan:
    """Everything to create in moto, resolved against the planned physical names."""

    physical: PhysicalRegistry
    queues: tuple[QueueSpec, ...]
    buckets: tuple[BucketSpec, ...]
    tables: tuple[TableSpec, ...]
    secrets: tuple[SecretSpec, ...]
    parameters: tuple[SsmParameterSpec, ...]


# ---------------------------------------------------------------------------------------- resolver

_INTRINSIC_NAMES = frozenset(
    {
        "Ref",
        "Condition",
        "Fn::GetAtt",
        "Fn::Sub",
        "Fn::Join",
        "Fn::If",
        "Fn::Not",
        "Fn::Equals",
        "Fn::And",
        "Fn::Or",
        "Fn::FindInMap",
        "Fn::Select",
        "Fn::Split",
        "Fn::Base64",
        "Fn::GetAZs",
        "Fn::ImportValue",
        "Fn::Cidr",
        "Fn::Length",
        "Fn::ToJsonString",
        "Fn::Transform",
    }
)


class _NoValue:
    """`AWS::NoValue`: the property it is assigned to disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _to_str(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


class Template:
    """A parsed template plus everything needed to resolve it locally."""

    def __init__(
        self,
        path: str | Path,
        *,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.stack_name = stack_name
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        self.account_id = account_id
        self.document = load_yaml(self.path)
        self.resources: dict[str, dict[str, Any]] = apply_globals(self.document)
        self._parameter_decls: dict[str, Any] = self.document.get("Parameters") or {}
        self._mappings: dict[str, Any] = self.document.get("Mappings") or {}
        self._condition_decls: dict[str, Any] = self.document.get("Conditions") or {}
        self._conditions: dict[str, bool] = {}
        self._evaluating_conditions: set[str] = set()
        unknown = set(parameters or {}) - set(self._parameter_decls)
        if unknown:
            raise TemplateError(f"parameter overrides for undeclared parameters: {sorted(unknown)}")
        self._parameter_overrides = dict(parameters or {})
        self._check_resource_types()

    # --------------------------------------------------------------------------- basic facts

    @property
    def partition(self) -> str:
        return "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com"

    def pseudo_parameters(self) -> dict[str, Any]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/"
                f"{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::URLSuffix": self.url_suffix,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }

    def _check_resource_types(self) -> None:
        for logical_id, resource in self.resources.items():
            resource_type = resource["Type"]
            if resource_type in SUPPORTED_RESOURCE_TYPES or resource_type in IGNORED_RESOURCE_TYPES:
                continue
            if resource_type == "AWS::SNS::Subscription":
                protocol = (resource.get("Properties") or {}).get("Protocol")
                if protocol not in ("sqs", "lambda"):
                    continue  # e-mail, SMS, HTTP subscribers: nothing local depends on them
            elif resource_type not in UNSUPPORTED_RESOURCE_TYPES:
                logger.warning(
                    "resource type not emulated by the local stack; ignored",
                    extra={"resource": logical_id, "type": resource_type},
                )
                continue
            raise TemplateError(
                f"resource {logical_id}: {resource_type} is not emulated by the local stack, and without it "
                "handlers would silently miss events or calls. Teach photopipe/local/template.py and "
                "resources.py to create it, or, if local runs do not need it, add the type to "
                "IGNORED_RESOURCE_TYPES there."
            )

    def active_resources(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Resources of the given types whose Condition (if any) holds."""
        for logical_id, resource in self.resources.items():
            if types and resource["Type"] not in types:
                continue
            condition = resource.get("Condition")
            if condition is not None and not self.condition(condition, f"resource {logical_id}"):
                continue
            yield logical_id, resource

    # ------------------------------------------------------------------------- parameters

    def parameter(self, name: str, where: str) -> Any:
        decl = self._parameter_decls[name] or {}
        param_type = str(decl.get("Type", "String"))
        if name in self._parameter_overrides:
            raw: Any = self._parameter_overrides[name]
        elif "Default" in decl:
            raw = decl["Default"]
        else:
            raise TemplateError(f"{where}: parameter {name} has no Default and no override was given")
        if param_type.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(
                f"{where}: parameter {name} has type {param_type}, which needs SSM in a real account; "
                "give it a value with a parameter override"
            )
        if param_type in ("CommaDelimitedList", "List<Number>") or param_type.startswith("List<"):
            values = raw if isinstance(raw, list) else str(raw).split(",")
            return [_to_str(v, where).strip() for v in values]
        value = _to_str(raw, where)
        allowed = decl.get("AllowedValues")
        if allowed is not None and value not in [_to_str(a, where) for a in allowed]:
            raise TemplateError(f"{where}: parameter {name}={value!r} is not one of {allowed}")
        if param_type == "Number":
            try:
                float(value)
            except ValueError as e:
                raise TemplateError(f"{where}: parameter {name}={value!r} is not a Number") from e
        return value

    # ------------------------------------------------------------------------- conditions

    def condition(self, name: str, where: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self._condition_decls:
            raise TemplateError(f"{where}: unknown condition {name}")
        if name in self._evaluating_conditions:
            raise TemplateError(f"{where}: condition {name} refers to itself")
        self._evaluating_conditions.add(name)
        try:
            value = self.resolve(self._condition_decls[name], PhysicalRegistry(), f"condition {name}")
        finally:
            self._evaluating_conditions.discard(name)
        if not isinstance(value, bool):
            raise TemplateError(f"condition {name} does not evaluate to true/false: {value!r}")
        self._conditions[name] = value
        return value

    # ------------------------------------------------------------------------- intrinsics

    def resolve(self, value: Any, physical: Mapping[str, PhysicalResource], where: str) -> Any:
        """Resolve every intrinsic function in `value`; `where` names the property for errors."""
        if isinstance(value, dict):
            if len(value) == 1:
                (key, arg), *_ = value.items()
                if key in _INTRINSIC_NAMES:
                    return self._intrinsic(key, arg, physical, where)
            resolved_map = {}
            for k, v in value.items():
                item = self.resolve(v, physical, f"{where}.{k}")
                if item is not NO_VALUE:
                    resolved_map[k] = item
            return resolved_map
        if isinstance(value, list):
            resolved_list = [self.resolve(v, physical, f"{where}[{i}]") for i, v in enumerate(value)]
            return [v for v in resolved_list if v is not NO_VALUE]
        return value

    def _intrinsic(self, name: str, arg: Any, physical: Mapping[str, PhysicalResource], where: str) -> Any:
        resolve = self.resolve
        if name == "Ref":
            return self._ref(resolve(arg, physical, where), physical, where)
        if name == "Condition":
            return self.condition(resolve(arg, physical, where), where)
        if name == "Fn::GetAtt":
            target = resolve(arg, physical, where)
            if isinstance(target, str):
                target = target.split(".", 1)
            if not isinstance(target, list) or len(target) != 2:
                raise TemplateError(f"{where}: Fn::GetAtt needs [LogicalId, Attribute], got {arg!r}")
            return self._getatt(str(target[0]), str(target[1]), physical, where)
        if name == "Fn::Sub":
            return self._sub(arg, physical, where)
        if name == "Fn::Join":
            delimiter, items = self._args(arg, 2, name, where)
            items = resolve(items, physical, where)
            if not isinstance(items, list):
                raise TemplateError(f"{where}: Fn::Join needs a list, got {items!r}")
            return _to_str(delimiter, where).join(_to_str(i, where) for i in items)
        if name == "Fn::If":
            condition, when_true, when_false = self._args(arg, 3, name, where)
            chosen = when_true if self.condition(condition, where) else when_false
            return resolve(chosen, physical, where)
        if name == "Fn::Not":
            (operand,) = self._args(arg, 1, name, where)
            return not self._bool(resolve(operand, physical, where), where)
        if name == "Fn::And":
            return all(self._bool(resolve(a, physical, where), where) for a in arg)
        if name == "Fn::Or":
            return any(self._bool(resolve(a, physical, where), where) for a in arg)
        if name == "Fn::Equals":
            left, right = (resolve(a, physical, where) for a in self._args(arg, 2, name, where))
            return self._comparable(left) == self._comparable(right)
        if name == "Fn::FindInMap":
            map_name, top, second = (
                _to_str(resolve(a, physical, where), where) for a in self._args(arg, 3, name, where)
            )
            try:
                return self._mappings[map_name][top][second]
            except (KeyError, TypeError) as e:
                raise TemplateError(f"{where}: Fn::FindInMap [{map_name}, {top}, {second}] not found") from e
        if name == "Fn::Select":
            index, items = (resolve(a, physical, where) for a in self._args(arg, 2, name, where))
            if not isinstance(items, list) or not 0 <= int(index) < len(items):
                raise TemplateError(f"{where}: Fn::Select index {index} out of range for {items!r}")
            return items[int(index)]
        if name == "Fn::Split":
            delimiter, text = (resolve(a, physical, where) for a in self._args(arg, 2, name, where))
            return _to_str(text, where).split(_to_str(delimiter, where))
        if name == "Fn::Base64":
            text = _to_str(resolve(arg, physical, where), where)
            return base64.b64encode(text.encode()).decode()
        if name == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if name == "Fn::Length":
            items = resolve(arg, physical, where)
            if not isinstance(items, list):
                raise TemplateError(f"{where}: Fn::Length needs a list, got {items!r}")
            return len(items)
        if name == "Fn::ToJsonString":
            return json.dumps(resolve(arg, physical, where), separators=(",", ":"))
        raise TemplateError(f"{where}: {name} is not supported by the local stack")

    @staticmethod
    def _args(arg: Any, count: int, name: str, where: str) -> list[Any]:
        if not isinstance(arg, list) or len(arg) != count:
            raise TemplateError(f"{where}: {name} needs a list of {count} arguments, got {arg!r}")
        return arg

    @staticmethod
    def _bool(value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TemplateError(f"{where}: expected a condition (true/false), got {value!r}")

    @staticmethod
    def _comparable(value: Any) -> Any:
        if isinstance(value, list):
            return [Template._comparable(v) for v in value]
        return _to_str(value, "Fn::Equals") if isinstance(value, bool | int | float) else value

    def _ref(self, name: Any, physical: Mapping[str, PhysicalResource], where: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref needs a name, got {name!r}")
        if name in self._parameter_decls:
            return self.parameter(name, where)
        pseudo = self.pseudo_parameters()
        if name in pseudo:
            return pseudo[name]
        if name in physical:
            ref = physical[name].ref
            if ref is None:
                raise UnresolvedReferenceError(
                    f"{where}: Ref {name} ({physical[name].type}) is only known after the resource is created"
                )
            return ref
        if name in self.resources:
            raise TemplateError(f"{where}: Ref {name}: that resource is not part of this plan")
        raise TemplateError(f"{where}: Ref {name}: no such parameter, pseudo parameter or resource")

    def _getatt(
        self, logical_id: str, attribute: str, physical: Mapping[str, PhysicalResource], where: str
    ) -> str:
        if logical_id not in physical:
            raise TemplateError(f"{where}: Fn::GetAtt {logical_id}.{attribute}: no such resource")
        entry = physical[logical_id]
        if attribute not in entry.attributes:
            if attribute in _LATE_ATTRIBUTES.get(entry.type, ()):
                raise UnresolvedReferenceError(
                    f"{where}: Fn::GetAtt {logical_id}.{attribute} is only known once the resource exists"
                )
            raise TemplateError(
                f"{where}: Fn::GetAtt {logical_id}.{attribute}: the local stack does not know that attribute "
                f"of {entry.type} (known: {sorted(entry.attributes)})"
            )
        return entry.attributes[attribute]

    def _sub(self, arg: Any, physical: Mapping[str, PhysicalResource], where: str) -> str:
        if isinstance(arg, list):
            text, variables = self._args(arg, 2, "Fn::Sub", where)
            variables = {k: self.resolve(v, physical, f"{where}.{k}") for k, v in (variables or {}).items()}
        else:
            text, variables = arg, {}
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {text!r}")

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return _to_str(variables[expression], where)
            if "." in expression and expression.split(".", 1)[0] not in self.pseudo_parameters():
                logical_id, attribute = expression.split(".", 1)
                return self._getatt(logical_id, attribute, physical, where)
            value = self._ref(expression, physical, where)
            if isinstance(value, list):
                raise TemplateError(f"{where}: Fn::Sub ${{{expression}}} is a list")
            return _to_str(value, where)

        return _SUB_VARIABLE.sub(replace, text)

    # --------------------------------------------------------------------------------- plan

    def _name_property(
        self, logical_id: str, resource: dict[str, Any], physical: Mapping[str, PhysicalResource]
    ) -> str:
        prop = _NAME_PROPERTY.get(resource["Type"])
        declared = (resource.get("Properties") or {}).get(prop) if prop else None
        if declared is not None:
            return _to_str(self.resolve(declared, physical, f"{logical_id}.{prop}"), f"{logical_id}.{prop}")
        name = f"{self.stack_name}-{kebab_case(logical_id)}"
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::SQS::Queue" and properties.get("FifoQueue") in (True, "true"):
            name += ".fifo"
        return name

    def plan_physical(self, endpoint: str) -> PhysicalRegistry:
        """Name every resource; `endpoint` is the AWS endpoint queue URLs are built on. A name may refer
        to another resource's name (`!Sub "${OtherBucket}-logs"`): names are computed on first use."""
        planning = _PlanningRegistry(self, dict(self.active_resources()), endpoint)
        return PhysicalRegistry(planning[logical_id] for logical_id in planning)

    def _identity(self, logical_id: str, resource_type: str, name: str, endpoint: str) -> PhysicalResource:
        region, account, partition = self.region, self.account_id, self.partition
        if resource_type == "AWS::SQS::Queue":
            arn = f"arn:{partition}:sqs:{region}:{account}:{name}"
            url = f"{endpoint.rstrip('/')}/{account}/{name}"
            return PhysicalResource(
                logical_id, resource_type, name, url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
            )
        if resource_type == "AWS::S3::Bucket":
            return PhysicalResource(
                logical_id,
                resource_type,
                name,
                name,
                {
                    "Arn": f"arn:{partition}:s3:::{name}",
                    "DomainName": f"{name}.s3.{self.url_suffix}",
                    "RegionalDomainName": f"{name}.s3.{region}.{self.url_suffix}",
                },
            )
        if resource_type in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            arn = f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"
            return PhysicalResource(logical_id, resource_type, name, name, {"Arn": arn})
        if resource_type == "AWS::SecretsManager::Secret":
            return PhysicalResource(logical_id, resource_type, name, None, {})
        if resource_type == "AWS::SSM::Parameter":
            return PhysicalResource(logical_id, resource_type, name, name, {})
        if resource_type == "AWS::Serverless::Function":
            arn = f"arn:{partition}:lambda:{region}:{account}:function:{name}"
            return PhysicalResource(logical_id, resource_type, name, name, {"Arn": arn})
        if resource_type == "AWS::Serverless::HttpApi":
            return PhysicalResource(logical_id, resource_type, name, LOCAL_API_ID, {"ApiId": LOCAL_API_ID})
        if resource_type in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            arn = f"arn:{partition}:lambda:{region}:{account}:layer:{name}:1"
            return PhysicalResource(logical_id, resource_type, name, arn, {"LayerVersionArn": arn})
        if resource_type == "AWS::SNS::Topic":
            arn = f"arn:{partition}:sns:{region}:{account}:{name}"
            return PhysicalResource(
                logical_id, resource_type, name, arn, {"TopicArn": arn, "TopicName": name}
            )
        if resource_type == "AWS::IAM::Role":
            arn = f"arn:{partition}:iam::{account}:role/{name}"
            return PhysicalResource(logical_id, resource_type, name, name, {"Arn": arn, "RoleId": name})
        return PhysicalResource(logical_id, resource_type, name, name, {})

    def plan(self, endpoint: str) -> StackPlan:
        physical = self.plan_physical(endpoint)
        return StackPlan(
            physical=physical,
            queues=tuple(
                self._queue(lid, r, physical) for lid, r in self.active_resources("AWS::SQS::Queue")
            ),
            buckets=tuple(
                self._bucket(lid, r, physical) for lid, r in self.active_resources("AWS::S3::Bucket")
            ),
            tables=tuple(
                self._table(lid, r, physical)
                for lid, r in self.active_resources("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")
            ),
            secrets=tuple(
                self._secret(lid, r, physical)
                for lid, r in self.active_resources("AWS::SecretsManager::Secret")
            ),
            parameters=tuple(
                self._ssm_parameter(lid, r, physical)
                for lid, r in self.active_resources("AWS::SSM::Parameter")
            ),
        )

    def _properties(
        self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry
    ) -> dict[str, Any]:
        resolved = self.resolve(resource.get("Properties") or {}, physical, logical_id)
        assert isinstance(resolved, dict)
        return resolved

    # ----------------------------------------------------------------------- resource specs

    _QUEUE_ATTRIBUTES = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "SqsManagedSseEnabled",
    )

    def _queue(self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry) -> QueueSpec:
        props = self._properties(logical_id, resource, physical)
        entry = physical[logical_id]
        attributes = {
            key: _to_str(props[key], f"{logical_id}.{key}") for key in self._QUEUE_ATTRIBUTES if key in props
        }
        for key in ("ContentBasedDeduplication", "SqsManagedSseEnabled"):
            if key in attributes:
                attributes[key] = attributes[key].lower()
        redrive = None
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            if isinstance(policy, str):
                policy = json.loads(policy)
            try:
                redrive = RedrivePolicy(
                    dead_letter_target_arn=str(policy["deadLetterTargetArn"]),
                    max_receive_count=int(policy["maxReceiveCount"]),
                )
            except (KeyError, TypeError, ValueError) as e:
                raise TemplateError(
                    f"{logical_id}.RedrivePolicy needs deadLetterTargetArn and a numeric maxReceiveCount"
                ) from e
            if physical.by_arn(redrive.dead_letter_target_arn) is None:
                raise TemplateError(
                    f"{logical_id}.RedrivePolicy.deadLetterTargetArn {redrive.dead_letter_target_arn} "
                    "is not a queue of this template"
                )
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": redrive.dead_letter_target_arn,
                    "maxReceiveCount": redrive.max_receive_count,
                }
            )
        return QueueSpec(
            logical_id=logical_id,
            name=entry.name,
            arn=entry.attributes["Arn"],
            url=str(entry.ref),
            attributes=attributes,
            fifo=str(props.get("FifoQueue", "false")).lower() == "true",
            redrive_policy=redrive,
        )

    def _bucket(self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry) -> BucketSpec:
        props = self._properties(logical_id, resource, physical)
        entry = physical[logical_id]
        cors_rules = tuple(
            CorsRule(
                allowed_methods=tuple(rule["AllowedMethods"]),
                allowed_origins=tuple(rule["AllowedOrigins"]),
                allowed_headers=tuple(rule.get("AllowedHeaders", ())),
                exposed_headers=tuple(rule.get("ExposedHeaders", ())),
                max_age_seconds=int(rule["MaxAge"]) if "MaxAge" in rule else None,
            )
            for rule in (props.get("CorsConfiguration") or {}).get("CorsRules", [])
        )
        notifications = props.get("NotificationConfiguration") or {}
        for unsupported in ("LambdaConfigurations", "TopicConfigurations", "EventBridgeConfiguration"):
            if notifications.get(unsupported):
                raise TemplateError(
                    f"{logical_id}.NotificationConfiguration.{unsupported} is not supported by the local "
                    "stack (only QueueConfigurations are wired)"
                )
        queue_notifications = []
        for i, config in enumerate(notifications.get("QueueConfigurations", [])):
            where = f"{logical_id}.NotificationConfiguration.QueueConfigurations[{i}]"
            queue_arn = str(config["Queue"])
            if physical.by_arn(queue_arn) is None:
                raise TemplateError(f"{where}.Queue {queue_arn} is not a queue of this template")
            filters = {
                str(rule["Name"]).lower(): str(rule["Value"])
                for rule in ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
            }
            if set(filters) - {"prefix", "suffix"}:
                raise TemplateError(
                    f"{where}.Filter: only prefix and suffix rules exist, got {sorted(filters)}"
                )
            queue_notifications.append(
                QueueNotification(
                    queue_arn=queue_arn,
                    event=str(config["Event"]),
                    prefix=filters.get("prefix"),
                    suffix=filters.get("suffix"),
                )
            )
        versioning = (props.get("VersioningConfiguration") or {}).get("Status")
        return BucketSpec(
            logical_id=logical_id,
            name=entry.name,
            arn=entry.attributes["Arn"],
            cors_rules=cors_rules,
            queue_notifications=tuple(queue_notifications),
            versioning=str(versioning) if versioning else None,
        )

    def _table(self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry) -> TableSpec:
        props = self._properties(logical_id, resource, physical)
        entry = physical[logical_id]
        if resource["Type"] == "AWS::Serverless::SimpleTable":
            primary = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
            attribute_type = {"String": "S", "Number": "N", "Binary": "B"}[str(primary["Type"])]
            return TableSpec(
                logical_id=logical_id,
                name=entry.name,
                arn=entry.attributes["Arn"],
                key_schema=(KeyElement(str(primary["Name"]), "HASH"),),
                attribute_definitions={str(primary["Name"]): attribute_type},
            )

        def keys(schema: list[dict[str, Any]]) -> tuple[KeyElement, ...]:
            return tuple(KeyElement(str(k["AttributeName"]), str(k["KeyType"])) for k in schema)

        def indexes(name: str) -> tuple[SecondaryIndex, ...]:
            return tuple(
                SecondaryIndex(
                    name=str(index["IndexName"]),
                    key_schema=keys(index["KeySchema"]),
                    projection=index.get("Projection") or {"ProjectionType": "ALL"},
                )
                for index in props.get(name, [])
            )

        if "KeySchema" not in props or "AttributeDefinitions" not in props:
            raise TemplateError(f"{logical_id}: a table needs KeySchema and AttributeDefinitions")
        stream = props.get("StreamSpecification") or {}
        ttl = props.get("TimeToLiveSpecification") or {}
        ttl_enabled = str(ttl.get("Enabled", "false")).lower() == "true"
        return TableSpec(
            logical_id=logical_id,
            name=entry.name,
            arn=entry.attributes["Arn"],
            key_schema=keys(props["KeySchema"]),
            attribute_definitions={
                str(a["AttributeName"]): str(a["AttributeType"]) for a in props["AttributeDefinitions"]
            },
            global_secondary_indexes=indexes("GlobalSecondaryIndexes"),
            local_secondary_indexes=indexes("LocalSecondaryIndexes"),
            stream_view_type=str(stream["StreamViewType"]) if stream.get("StreamViewType") else None,
            ttl_attribute=str(ttl["AttributeName"]) if ttl_enabled else None,
        )

    def _secret(self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry) -> SecretSpec:
        props = self._properties(logical_id, resource, physical)
        generate = None
        if "GenerateSecretString" in props:
            g = props["GenerateSecretString"]

            def flag(key: str) -> bool:
                return str(g.get(key, "false")).lower() == "true"

            if ("SecretStringTemplate" in g) != ("GenerateStringKey" in g):
                raise TemplateError(
                    f"{logical_id}.GenerateSecretString: SecretStringTemplate and GenerateStringKey "
                    "go together"
                )
            generate = GenerateSecretString(
                password_length=int(g.get("PasswordLength", 32)),
                exclude_characters=str(g.get("ExcludeCharacters", "")),
                exclude_lowercase=flag("ExcludeLowercase"),
                exclude_uppercase=flag("ExcludeUppercase"),
                exclude_numbers=flag("ExcludeNumbers"),
                exclude_punctuation=flag("ExcludePunctuation"),
                include_space=flag("IncludeSpace"),
                secret_string_template=g.get("SecretStringTemplate"),
                generate_string_key=g.get("GenerateStringKey"),
            )
        elif "SecretString" not in props:
            raise TemplateError(f"{logical_id}: a secret needs SecretString or GenerateSecretString")
        return SecretSpec(
            logical_id=logical_id,
            name=physical[logical_id].name,
            description=props.get("Description"),
            secret_string=props.get("SecretString"),
            generate=generate,
        )

    def _ssm_parameter(
        self, logical_id: str, resource: dict[str, Any], physical: PhysicalRegistry
    ) -> SsmParameterSpec:
        props = self._properties(logical_id, resource, physical)
        if "Value" not in props:
            raise TemplateError(f"{logical_id}.Value is required")
        return SsmParameterSpec(
            logical_id=logical_id,
            name=physical[logical_id].name,
            type=str(props.get("Type", "String")),
            value=_to_str(props["Value"], f"{logical_id}.Value"),
        )

    # ---------------------------------------------------------------------------- functions

    def functions(self, physical: Mapping[str, PhysicalResource]) -> tuple[FunctionSpec, ...]:
        """The functions, resolved against the physical identities of the created resources."""
        return tuple(
            self._function(logical_id, resource, physical)
            for logical_id, resource in self.active_resources("AWS::Serverless::Function")
        )

    def _function(
        self, logical_id: str, resource: dict[str, Any], physical: Mapping[str, PhysicalResource]
    ) -> FunctionSpec:
        props: dict[str, Any] = resource.get("Properties") or {}

        def prop(key: str, default: Any = None) -> Any:
            return self.resolve(props[key], physical, f"{logical_id}.{key}") if key in props else default

        if prop("PackageType", "Zip") != "Zip" or "InlineCode" in props:
            raise TemplateError(f"{logical_id}: only Zip functions with a CodeUri run in the local stack")
        runtime = str(prop("Runtime", ""))
        if not runtime.startswith("python"):
            raise TemplateError(
                f"{logical_id}.Runtime {runtime!r}: the local stack only runs python functions"
            )
        code_uri = prop("CodeUri")
        handler = prop("Handler")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise TemplateError(f"{logical_id}.CodeUri must be a local directory, got {code_uri!r}")
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{logical_id}.Handler must look like module.function, got {handler!r}")

        variables = (prop("Environment") or {}).get("Variables") or {}
        environment = {
            key: _to_str(value, f"{logical_id}.Environment.Variables.{key}")
            for key, value in variables.items()
        }
        reserved = sorted(set(environment) & RESERVED_ENVIRONMENT_KEYS)
        if reserved:
            raise TemplateError(
                f"{logical_id}.Environment.Variables sets reserved Lambda variables {reserved}"
            )

        sqs_events: list[SqsEventSpec] = []
        http_events: list[HttpApiEventSpec] = []
        for event_name, event in (props.get("Events") or {}).items():
            where = f"{logical_id}.Events.{event_name}"
            event_type = event.get("Type")
            event_props = self.resolve(event.get("Properties") or {}, physical, where)
            if event_type == "SQS":
                sqs_events.append(self._sqs_event(event_name, event_props, physical, where))
            elif event_type == "HttpApi":
                http_events.append(self._http_event(event_name, event, event_props, where))
            else:
                raise TemplateError(
                    f"{where}: event type {event_type} is not wired by the local stack (SQS and HttpApi are)"
                )
        entry = physical[logical_id]
        return FunctionSpec(
            logical_id=logical_id,
            name=entry.name,
            arn=entry.attributes["Arn"],
            code_uri=(self.root / code_uri).resolve(),
            handler=handler,
            runtime=runtime,
            timeout=int(prop("Timeout", 3)),
            memory_size=int(prop("MemorySize", 128)),
            environment=environment,
            sqs_events=tuple(sqs_events),
            http_events=tuple(http_events),
            log_group=str((prop("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{entry.name}"),
        )

    @staticmethod
    def _sqs_event(
        name: str, props: dict[str, Any], physical: Mapping[str, PhysicalResource], where: str
    ) -> SqsEventSpec:
        if "FilterCriteria" in props:
            raise TemplateError(f"{where}.FilterCriteria is not emulated by the local stack")
        queue_arn = str(props.get("Queue", ""))
        if not any(
            e.type == "AWS::SQS::Queue" and e.attributes.get("Arn") == queue_arn for e in physical.values()
        ):
            raise TemplateError(f"{where}.Queue {queue_arn!r} is not a queue of this template")
        response_types = props.get("FunctionResponseTypes") or []
        unknown = set(response_types) - {"ReportBatchItemFailures"}
        if unknown:
            raise TemplateError(f"{where}.FunctionResponseTypes: unknown {sorted(unknown)}")
        batch_size = int(props.get("BatchSize", 10))
        window = int(props.get("MaximumBatchingWindowInSeconds", 0))
        if batch_size > 10 and window == 0:
            raise TemplateError(
                f"{where}: BatchSize above 10 needs MaximumBatchingWindowInSeconds (as in AWS)"
            )
        return SqsEventSpec(
            name=name,
            queue_arn=queue_arn,
            batch_size=batch_size,
            maximum_batching_window_seconds=window,
            report_batch_item_failures="ReportBatchItemFailures" in response_types,
            enabled=str(props.get("Enabled", "true")).lower() == "true",
        )

    @staticmethod
    def _http_event(name: str, event: dict[str, Any], props: dict[str, Any], where: str) -> HttpApiEventSpec:
        if str(props.get("PayloadFormatVersion", "2.0")) != "2.0":
            raise TemplateError(
                f"{where}.PayloadFormatVersion: the local HTTP API speaks payload format 2.0 only"
            )
        raw_api = (event.get("Properties") or {}).get("ApiId")
        if raw_api is None:
            api = "ServerlessHttpApi"
        elif isinstance(raw_api, dict) and "Ref" in raw_api:
            api = str(raw_api["Ref"])
        else:
            raise TemplateError(
                f"{where}.ApiId must be a !Ref to an AWS::Serverless::HttpApi of this template"
            )
        path = props.get("Path")
        method = props.get("Method")
        if path is None and method is None:
            return HttpApiEventSpec(name=name, path="$default", method="ANY", api=api)
        if not isinstance(path, str) or not path.startswith("/") or not isinstance(method, str):
            raise TemplateError(f"{where}: an HttpApi event needs Path (starting with /) and Method")
        method = method.upper()
        return HttpApiEventSpec(
            name=name,
            path=path,
            method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
            api=api,
        )

    # ---------------------------------------------------------------------------- HTTP APIs

    def http_apis(self, physical: Mapping[str, PhysicalResource]) -> tuple[HttpApiSpec, ...]:
        """Every HTTP API the functions' events use, with its CORS configuration (Globals applied)."""
        apis: dict[str, HttpApiSpec] = {}
        globals_props = (self.document.get("Globals") or {}).get("HttpApi") or {}
        referenced = {event.api for function in self.functions(physical) for event in function.http_events}
        for api in sorted(referenced):
            if api == "ServerlessHttpApi" and api not in self.resources:
                props = self.resolve(globals_props, physical, "Globals.HttpApi")
            else:
                resource = self.resources.get(api)
                if resource is None or resource["Type"] != "AWS::Serverless::HttpApi":
                    raise TemplateError(
                        f"HttpApi events refer to {api}, which is not an AWS::Serverless::HttpApi"
                    )
                props = self.resolve(resource.get("Properties") or {}, physical, api)
            if "DefinitionBody" in props or "DefinitionUri" in props:
                raise TemplateError(
                    f"{api}: routes from an OpenAPI definition are not served locally; declare HttpApi events"
                )
            apis[api] = HttpApiSpec(
                logical_id=api, api_id=LOCAL_API_ID, cors=_cors_config(props.get("CorsConfiguration"), api)
            )
        return tuple(apis.values())


_LATE_ATTRIBUTES = {
    "AWS::DynamoDB::Table": ("StreamArn",),
    "AWS::SecretsManager::Secret": ("Id",),
}


def _cors_config(value: Any, where: str) -> CorsConfig | None:
    if value is None or value is False or value == "false":
        return None
    if value is True or value == "true":
        return CorsConfig(allow_origins=("*",), allow_headers=("*",), allow_methods=("*",))
    if isinstance(value, str):  # SAM also accepts a single origin string
        return CorsConfig(allow_origins=(value,), allow_headers=("*",), allow_methods=("*",))
    if not isinstance(value, dict):
        raise TemplateError(f"{where}.CorsConfiguration must be true or a map, got {value!r}")

    def strings(key: str) -> tuple[str, ...]:
        items = value.get(key) or []
        if isinstance(items, str):
            items = [items]
        return tuple(str(i) for i in items)

    return CorsConfig(
        allow_origins=strings("AllowOrigins"),
        allow_headers=tuple(h.lower() for h in strings("AllowHeaders")),
        allow_methods=tuple(m.upper() for m in strings("AllowMethods")),
        expose_headers=tuple(h.lower() for h in strings("ExposeHeaders")),
        max_age=int(value["MaxAge"]) if "MaxAge" in value else None,
        allow_credentials=str(value.get("AllowCredentials", "false")).lower() == "true",
    )


class _PlanningRegistry(PhysicalRegistry):
    """A registry that names each resource the first time something refers to it."""

    def __init__(self, template: Template, pending: dict[str, dict[str, Any]], endpoint: str) -> None:
        super().__init__()
        self._template = template
        self._pending = pending
        self._endpoint = endpoint
        self._in_progress: set[str] = set()

    def __getitem__(self, logical_id: str) -> PhysicalResource:
        if logical_id not in self._entries:
            if logical_id not in self._pending:
                raise KeyError(logical_id)
            if logical_id in self._in_progress:
                raise TemplateError(f"resource {logical_id}: its name depends on itself")
            self._in_progress.add(logical_id)
            resource = self._pending[logical_id]
            name = self._template._name_property(logical_id, resource, self)
            self._entries[logical_id] = self._template._identity(
                logical_id, resource["Type"], name, self._endpoint
            )
            self._in_progress.discard(logical_id)
        return self._entries[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self._pending

    def __iter__(self) -> Iterator[str]:
        return iter(self._pending)

    def __len__(self) -> int:
        return len(self._pending)
