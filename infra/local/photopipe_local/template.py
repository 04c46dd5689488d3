"""Read `template.yaml` the way CloudFormation sees it: after the SAM transform.

samtranslator parses it (its YAML helper) and translates it offline (its bundled managed-policy map; CodeUri
swapped for an s3:// URI, each function's directory kept in `Template.code_dirs`). Read from the result: the
functions, their event source mappings, each HTTP API's routes and CORS (its OpenAPI `Body`), and the
properties `resources.py` gives boto3. Only the intrinsics the translated template.yaml uses are resolved.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import yaml
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.model.exceptions import ExceptionWithMessage
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

# Not under "photopipe.": Powertools names its logger after the service ("photopipe"), and the local stack's
# own records should not go through the handlers' JSON handler.
logger = logging.getLogger("photopipe_local.template")

DEFAULT_STACK_NAME = "photopipe-local"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account for any access key
LOCAL_API_ID = "local"
_CODE_PLACEHOLDER = "s3://photopipe-local-code/code.zip"  # what SAM sees as CodeUri (never read)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


LOCAL_STACK_UUID = "00000000-0000-0000-0000-000000000000"
# Exactly the intrinsic functions template.yaml uses once translated: teach `_intrinsic` any new one.
SUPPORTED_INTRINSICS = _words(
    "Ref Fn::GetAtt Fn::Sub Fn::FindInMap Fn::If Fn::Not Fn::Equals Fn::Select Fn::Split"
)
CREATED_TYPES = _words(
    "AWS::SQS::Queue AWS::SecretsManager::Secret AWS::SSM::Parameter AWS::S3::Bucket AWS::DynamoDB::Table"
)
READ_TYPES = _words(
    """AWS::Lambda::Function AWS::Lambda::EventSourceMapping AWS::ApiGatewayV2::Api AWS::ApiGatewayV2::Route
    AWS::ApiGatewayV2::Integration AWS::ApiGatewayV2::Authorizer"""
)
# Not needed locally: IAM, logs, alarms, keys, stages, permissions, policies, layers (the package's installed)
IGNORED_TYPES = _words(
    """AWS::Lambda::LayerVersion AWS::Lambda::LayerVersionPermission AWS::Lambda::Permission
    AWS::ApiGatewayV2::Stage AWS::SQS::QueuePolicy AWS::S3::BucketPolicy AWS::SNS::Topic AWS::SNS::TopicPolicy
    AWS::ApiGatewayV2::Deployment
    AWS::ApplicationInsights::Application AWS::ResourceGroups::Group"""
)
# CloudFront: locally the gateway itself serves the web UI (photopipe_local.stack).
IGNORED_TYPE_PREFIXES = ("AWS::IAM::", "AWS::Logs::", "AWS::KMS::", "AWS::CloudWatch::", "AWS::CloudFront::")
# Without these, handlers would silently miss events or calls: the local stack refuses to start.
UNSUPPORTED_TYPES = _words(
    """AWS::ApiGateway::RestApi AWS::Events::Rule AWS::Pipes::Pipe AWS::Scheduler::Schedule
    AWS::StepFunctions::StateMachine AWS::Kinesis::Stream AWS::CloudFormation::Stack AWS::Lambda::Url"""
)
# Per type: the property naming it, and what Ref and Fn::GetAtt give before it exists ({p}artition, {r}egion,
# {a}ccount, {n}ame). A None Ref and the _LATE_ATTRIBUTES are learnt when it is created.
_IDENTITY: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "AWS::SQS::Queue": ("QueueName", None, {"Arn": "arn:{p}:sqs:{r}:{a}:{n}", "QueueName": "{n}"}),
    "AWS::S3::Bucket": ("BucketName", "{n}", {"Arn": "arn:{p}:s3:::{n}"}),
    "AWS::DynamoDB::Table": ("TableName", "{n}", {"Arn": "arn:{p}:dynamodb:{r}:{a}:table/{n}"}),
    "AWS::SecretsManager::Secret": ("Name", None, {}),
    "AWS::SSM::Parameter": ("Name", "{n}", {}),
    "AWS::Lambda::Function": ("FunctionName", "{n}", {"Arn": "arn:{p}:lambda:{r}:{a}:function:{n}"}),
    "AWS::SNS::Topic": ("TopicName", "arn:{p}:sns:{r}:{a}:{n}", {"TopicArn": "arn:{p}:sns:{r}:{a}:{n}"}),
    "AWS::Logs::LogGroup": ("LogGroupName", "{n}", {}),
    # ApiEndpoint until the local gateway serves the API ({s}: wss for a WebSocket API, else https)
    "AWS::ApiGatewayV2::Api": ("Name", "{n}", {"ApiEndpoint": "{s}://{n}.execute-api.{r}.amazonaws.com"}),
    "AWS::ApiGatewayV2::Stage": ("StageName", "{n}", {}),
}
_LATE_ATTRIBUTES = {"AWS::SQS::Queue": "QueueUrl", "AWS::DynamoDB::Table": "StreamArn"}
_LATE_ATTRIBUTES["AWS::SecretsManager::Secret"] = "Id"
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
NO_VALUE = object()  # `AWS::NoValue`: the property it is assigned to disappears


class TemplateError(Exception):
    """The template cannot be read or emulated locally; the message names the resource and property."""


class UnresolvedReferenceError(TemplateError):
    """A reference to a value only known once the resource exists (a secret's ARN, a stream's ARN)."""


def kebab_case(logical_id: str) -> str:
    """`IngestDeadLetterQueue` -> `ingest-dead-letter-queue`, `JWTSecret` -> `jwt-secret`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template (YAML or JSON) with samtranslator's YAML helper."""
    try:
        document = yaml_parse(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TemplateError(f"cannot read template {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise TemplateError(f"template {path} is not valid YAML: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources section")
    return document


@dataclass
class PhysicalResource:
    """What `Ref` and `Fn::GetAtt` of one resource give. `ref` is None until the value is known."""

    logical_id: str
    type: str
    name: str
    ref: str | None
    attributes: dict[str, str] = field(default_factory=dict)


class PhysicalRegistry(dict[str, PhysicalResource]):
    """Logical id -> physical identity. With a template, a resource is named when first looked up (a name
    may refer to another's: `!Sub "${OtherBucket}-logs"`)."""

    def __init__(self, template: Template | None = None) -> None:
        super().__init__()
        self._template = template

    def __missing__(self, logical_id: str) -> PhysicalResource:
        if self._template is None or logical_id not in self._template.active:
            raise KeyError(logical_id)
        entry = self[logical_id] = self._template.identity(logical_id, self)
        return entry

    def record(self, logical_id: str, *, ref: str | None = None, **attributes: str) -> None:
        """Store values learnt when the resource was created (a secret's ARN, a table's stream ARN)."""
        self[logical_id].ref = ref or self[logical_id].ref
        self[logical_id].attributes.update(attributes)

    def by_arn(self, arn: str) -> PhysicalResource | None:
        return next((e for e in self.values() if e.attributes.get("Arn") == arn), None)

    def to_json(self) -> dict[str, Any]:
        return {lid: {k: v for k, v in asdict(e).items() if k != "logical_id"} for lid, e in self.items()}


Physical = Mapping[str, PhysicalResource]


@dataclass(frozen=True)
class SqsEventSpec:
    name: str  # the SAM event's name
    queue_arn: str
    batch_size: int = 10
    maximum_batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None  # ScalingConfig: batches in flight at most
    enabled: bool = True


@dataclass(frozen=True)
class Route:
    """One route of an HTTP API: `GET /api/v1/images/{image_id}`, `ANY /files/{proxy+}` or `$default`."""

    method: str  # upper case; "ANY" matches every method
    path: str  # "$default" for the default route
    function: str  # logical id
    api: str  # logical id of the AWS::ApiGatewayV2::Api ("ServerlessHttpApi" when implicit)

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match_path(self, path: str) -> dict[str, str] | None:
        """Path parameters when the raw `path` fits this route, else None. A trailing slash is another path;
        parameter values are percent-decoded, as API Gateway passes them."""
        if self.path == "$default":
            return {}
        wanted, given, parameters = self.path[1:].split("/"), path[1:].split("/"), dict[str, str]()
        for i, segment in enumerate(wanted):
            if segment.startswith("{") and segment.endswith("+}"):  # greedy: the rest, not empty
                rest = given[i:]
                return {**parameters, segment[1:-2]: unquote("/".join(rest))} if rest and rest[0] else None
            if i >= len(given) or (segment.startswith("{") and not given[i]):
                return None
            if segment.startswith("{"):
                parameters[segment[1:-1]] = unquote(given[i])
            elif unquote(given[i]) != segment:
                return None
        return parameters if len(given) == len(wanted) else None

    def precedence(self) -> tuple[Any, ...]:
        """Sort key, as API Gateway chooses: literal segments beat parameters beat greedy ones, a named
        method beats ANY, `$default` comes last."""
        if self.path == "$default":
            return (2,)
        segments = self.path[1:].split("/")
        kinds = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in segments)
        return (1 if 2 in kinds else 0, kinds, self.method == "ANY")


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
    http_events: tuple[Route, ...] = ()
    log_group: str = ""

    @property
    def module_path(self) -> Path:
        return self.code_uri / (self.handler.rpartition(".")[0].replace(".", "/") + ".py")

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

    @classmethod
    def from_template(cls, value: Mapping[str, Any]) -> CorsConfig:
        value = {key[:1].upper() + key[1:]: item for key, item in value.items()}  # allowOrigins too

        def strings(key: str) -> tuple[str, ...]:
            items = value.get(key) or []  # SAM substitutes a CommaDelimitedList parameter as one string
            return tuple(str(i).strip() for i in (items.split(",") if isinstance(items, str) else items))

        return cls(
            allow_origins=strings("AllowOrigins"),
            allow_headers=tuple(h.lower() for h in strings("AllowHeaders")),
            allow_methods=tuple(m.upper() for m in strings("AllowMethods")),
            expose_headers=tuple(h.lower() for h in strings("ExposeHeaders")),
            max_age=int(value["MaxAge"]) if "MaxAge" in value else None,
            allow_credentials=str(value.get("AllowCredentials", "false")).lower() == "true",
        )


def _to_str(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise TemplateError(f"{where}: expected a string, got {value!r}")
    return str(value)


def _comparable(value: Any) -> Any:
    """Fn::Equals compares what CloudFormation would: numbers and booleans as their strings."""
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return _to_str(value, "Fn::Equals") if isinstance(value, bool | int | float) else value


def _args(arg: Any, count: int, name: str, where: str) -> list[Any]:
    if not isinstance(arg, list) or len(arg) != count:
        raise TemplateError(f"{where}: {name} needs a list of {count} arguments, got {arg!r}")
    return arg


class Template:
    """A SAM template as samtranslator translates it, plus what is needed to resolve it locally."""

    partition = "aws"

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
        self.root, self.stack_name, self.account_id = self.path.parent, stack_name, account_id
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        sam = load_template(self.path)
        self._parameter_decls: dict[str, Any] = sam.get("Parameters") or {}
        if unknown := set(parameters or {}) - set(self._parameter_decls):
            raise TemplateError(f"parameter overrides for undeclared parameters: {sorted(unknown)}")
        self._overrides = dict(parameters or {})
        self.pseudo_parameters = {
            "AWS::Region": self.region,
            "AWS::AccountId": account_id,
            "AWS::Partition": self.partition,
            "AWS::StackName": stack_name,
            # A stack id ends with a UUID (the template builds the media bucket's name from it).
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{account_id}:stack/{stack_name}/{LOCAL_STACK_UUID}",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        self.code_dirs = self._swap_code_uris(sam)
        self.document = self._translate(sam)
        self.resources: dict[str, dict[str, Any]] = self.document.get("Resources") or {}
        self._conditions: dict[str, bool] = {}
        self._check_resource_types()
        self.active = {lid for lid, _ in self.active_resources()}

    def _swap_code_uris(self, sam: dict[str, Any]) -> dict[str, Path]:
        """Point CodeUri/ContentUri at s3:// (SAM insists, offline); return each function's code directory.
        Events nothing local would deliver are refused here, named as the template names them."""
        function_globals = (sam.get("Globals") or {}).get("Function") or {}
        code_dirs: dict[str, Path] = {}
        for lid, resource in sam["Resources"].items():
            if not isinstance(resource, dict) or "Type" not in resource:
                raise TemplateError(f"resource {lid} has no Type")
            props = resource["Properties"] = resource.get("Properties") or {}
            if resource["Type"] == "AWS::Serverless::LayerVersion" and "ContentUri" in props:
                props["ContentUri"] = _CODE_PLACEHOLDER
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            code_uri = props.get("CodeUri", function_globals.get("CodeUri"))
            if not isinstance(code_uri, str) or code_uri.startswith("s3://") or "InlineCode" in props:
                raise TemplateError(f"{lid}: only Zip functions with a local CodeUri run in the local stack")
            code_dirs[lid], props["CodeUri"] = (self.root / code_uri).resolve(), _CODE_PLACEHOLDER
            for name, event in (props.get("Events") or {}).items():
                if (kind := event.get("Type")) not in ("SQS", "HttpApi", "DynamoDB"):
                    message = f"event type {kind} is not wired by the local stack (SQS, HttpApi, DynamoDB)"
                    raise TemplateError(f"{lid}.Events.{name}: {message}")
        if "CodeUri" in function_globals:
            function_globals["CodeUri"] = _CODE_PLACEHOLDER
        return code_dirs

    def _translate(self, sam: dict[str, Any]) -> dict[str, Any]:
        # samtranslator's Translator, not its transform() helper: it takes a boto session (the region comes
        # from here, not the environment) and a metrics sink (unpublished metrics make it warn). No AWS call.
        metrics = Metrics(metrics_publisher=DummyMetricsPublisher())
        session = boto3.session.Session(region_name=self.region)
        translator = Translator(None, Parser(), boto_session=session, metrics=metrics)
        policies = get_bundled_managed_policy_map(partition=self.partition)
        try:
            translated = translator.translate(sam, self._overrides, get_managed_policy_map=lambda: policies)
        except ExceptionWithMessage as e:  # an InvalidDocumentException lists its causes
            causes = "; ".join(cause.message for cause in getattr(e, "causes", [e]))
            raise TemplateError(f"samtranslator cannot translate {self.path}: {causes}") from e
        finally:
            metrics.publish()
        return dict(translated)

    def _check_resource_types(self) -> None:
        for lid, resource in self.resources.items():
            kind = resource["Type"]
            if kind in CREATED_TYPES | READ_TYPES | IGNORED_TYPES or kind.startswith(IGNORED_TYPE_PREFIXES):
                continue
            if kind == "AWS::SNS::Subscription":
                if (resource.get("Properties") or {}).get("Protocol") not in ("sqs", "lambda"):
                    continue  # e-mail, SMS, HTTP subscribers: nothing local depends on them
            elif kind not in UNSUPPORTED_TYPES:
                extra = {"resource": lid, "type": kind}
                logger.warning("resource type not emulated by the local stack; ignored", extra=extra)
                continue
            message = "is not emulated by the local stack: handlers would silently miss events or calls"
            raise TemplateError(f"resource {lid}: {kind} {message} (teach template.py, or IGNORED_TYPES)")

    def active_resources(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Resources of the given types (all without types) whose Condition, if any, holds."""
        for lid, resource in self.resources.items():
            if types and resource["Type"] not in types:
                continue
            if (condition := resource.get("Condition")) is None or self.condition(condition, lid):
                yield lid, resource

    # ---------------------------------------------------------------------------------- resolution

    def parameter(self, name: str, where: str) -> Any:
        decl = self._parameter_decls[name] or {}
        kind = str(decl.get("Type", "String"))
        if name not in self._overrides and "Default" not in decl:
            raise TemplateError(f"{where}: parameter {name} has no Default and no override was given")
        raw = self._overrides.get(name, decl.get("Default"))
        if kind.startswith("AWS::SSM::Parameter::Value"):
            raise TemplateError(f"{where}: parameter {name} has type {kind}, which needs SSM: override it")
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [_to_str(v, where).strip() for v in items]
        value, allowed = _to_str(raw, where), decl.get("AllowedValues")
        if allowed is not None and value not in [_to_str(a, where) for a in allowed]:
            raise TemplateError(f"{where}: parameter {name}={value!r} is not one of {allowed}")
        return value

    def condition(self, name: str, where: str) -> bool:
        if name not in self._conditions:
            if (declared := (self.document.get("Conditions") or {}).get(name)) is None:
                raise TemplateError(f"{where}: unknown condition {name}")
            if not isinstance(value := self.resolve(declared, {}, f"condition {name}"), bool):
                raise TemplateError(f"condition {name} does not evaluate to true/false: {value!r}")
            self._conditions[name] = value
        return self._conditions[name]

    def resolve(self, value: Any, physical: Physical, where: str) -> Any:
        """Resolve every intrinsic function in `value`; `where` names the property for errors."""
        if isinstance(value, dict) and len(value) == 1 and (key := next(iter(value)))[:4] in ("Ref", "Fn::"):
            return self._intrinsic(key, value[key], physical, where)
        if isinstance(value, dict):
            resolved = {k: self.resolve(v, physical, f"{where}.{k}") for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v, physical, f"{where}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not NO_VALUE]
        return value

    def _intrinsic(self, name: str, arg: Any, physical: Physical, where: str) -> Any:
        if name not in SUPPORTED_INTRINSICS:
            supported = f"it resolves those template.yaml uses: {', '.join(sorted(SUPPORTED_INTRINSICS))}"
            raise TemplateError(f"{where}: {name} is not supported by the local stack ({supported})")
        if name == "Fn::Sub":
            return self._sub(arg, physical, where)
        if name == "Fn::If":
            condition, when_true, when_false = _args(arg, 3, name, where)
            chosen = when_true if self.condition(condition, where) else when_false
            return self.resolve(chosen, physical, where)
        args = self.resolve(arg, physical, where)
        if name == "Ref":
            return self._ref(args, physical, where)
        if name == "Fn::GetAtt":
            target = args.split(".", 1) if isinstance(args, str) else args
            logical_id, attribute = _args(target, 2, name, where)
            return self._getatt(str(logical_id), str(attribute), physical, where)
        if name == "Fn::FindInMap":
            keys = [_to_str(a, where) for a in _args(args, 3, name, where)]
            try:
                return self.document["Mappings"][keys[0]][keys[1]][keys[2]]
            except (KeyError, TypeError) as e:
                raise TemplateError(f"{where}: Fn::FindInMap {keys} not found") from e
        if name == "Fn::Split":
            delimiter, text = (_to_str(a, where) for a in _args(args, 2, name, where))
            return text.split(delimiter)
        if name == "Fn::Select":
            index, items = _args(args, 2, name, where)
            if not isinstance(items, list) or not 0 <= int(index) < len(items):
                raise TemplateError(f"{where}: Fn::Select index {index!r} is not in {items!r}")
            return items[int(index)]
        if name == "Fn::Not":
            if not isinstance(operand := _args(args, 1, name, where)[0], bool):
                raise TemplateError(f"{where}: Fn::Not needs a condition (true/false), got {operand!r}")
            return not operand
        left, right = _args(args, 2, name, where)  # Fn::Equals
        return _comparable(left) == _comparable(right)

    def _ref(self, name: Any, physical: Physical, where: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref needs a name, got {name!r}")
        if name in self._parameter_decls:
            return self.parameter(name, where)
        if name in self.pseudo_parameters:
            return self.pseudo_parameters[name]
        if name not in self.active:
            reason = "its Condition is false" if name in self.resources else "no such parameter or resource"
            raise TemplateError(f"{where}: Ref {name}: {reason}")
        if (entry := physical[name]).ref is None:
            raise UnresolvedReferenceError(f"{where}: Ref {name} ({entry.type}) is only known once it exists")
        return entry.ref

    def _getatt(self, logical_id: str, attribute: str, physical: Physical, where: str) -> str:
        if logical_id not in self.active:
            raise TemplateError(f"{where}: Fn::GetAtt {logical_id}.{attribute}: no such resource")
        if attribute in (entry := physical[logical_id]).attributes:
            return entry.attributes[attribute]
        if _LATE_ATTRIBUTES.get(entry.type) == attribute:
            raise UnresolvedReferenceError(f"{where}: Fn::GetAtt {logical_id}.{attribute}: known later")
        raise TemplateError(
            f"{where}: Fn::GetAtt {logical_id}.{attribute}: the local stack does not know that attribute of "
            f"{entry.type} (known: {sorted(entry.attributes)})"
        )

    def _sub(self, arg: Any, physical: Physical, where: str) -> str:
        text, variables = _args(arg, 2, "Fn::Sub", where) if isinstance(arg, list) else (arg, {})
        variables = {k: self.resolve(v, physical, f"{where}.{k}") for k, v in (variables or {}).items()}
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {text!r}")

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return _to_str(variables[expression], where)
            if "." in expression and not expression.startswith("AWS::"):
                logical_id, attribute = expression.split(".", 1)
                return self._getatt(logical_id, attribute, physical, where)
            return _to_str(self._ref(expression, physical, where), f"{where}: ${{{expression}}}")

        return _SUB_VARIABLE.sub(replace, text)

    def dependencies(self, logical_id: str) -> set[str]:
        """The resources `logical_id` refers to (Ref, Fn::GetAtt, ${X} in Fn::Sub, DependsOn)."""
        resource, names = self.resources[logical_id], set[str]()
        depends_on = resource.get("DependsOn") or []
        text = json.dumps(resource.get("Properties"))  # as text: the three forms are easy to spot
        for group in re.findall(r'"Ref": "([^"]+)"|"Fn::GetAtt": \[?"([^".]+)|\$\{([A-Za-z0-9]+)', text):
            names.update(group)
        names |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        return names & set(self.resources)

    # ---------------------------------------------------------------------------- names, properties

    def identity(self, logical_id: str, physical: Physical) -> PhysicalResource:
        """Name a resource and say what Ref/GetAtt give before it exists."""
        kind, props = self.resources[logical_id]["Type"], self.resources[logical_id].get("Properties") or {}
        prop, ref, attributes = _IDENTITY.get(kind, ("", "{n}", {}))
        if prop in props:
            where = f"{logical_id}.{prop}"
            name = _to_str(self.resolve(props[prop], physical, where), where)
        else:
            fifo = kind == "AWS::SQS::Queue" and str(props.get("FifoQueue")).lower() == "true"
            name = f"{self.stack_name}-{kebab_case(logical_id)}{'.fifo' if fifo else ''}"
        values = {"p": self.partition, "r": self.region, "a": self.account_id, "n": name}
        values["s"] = "wss" if props.get("ProtocolType") == "WEBSOCKET" else "https"
        filled = {key: pattern.format(**values) for key, pattern in attributes.items()}
        return PhysicalResource(logical_id, kind, name, None if ref is None else ref.format(**values), filled)

    def plan(self) -> PhysicalRegistry:
        """Every active resource named, with what is known before anything is created."""
        physical = PhysicalRegistry(self)
        for logical_id in sorted(self.active):
            physical[logical_id]  # names it (PhysicalRegistry.__missing__)
        return physical

    def properties(self, logical_id: str, physical: Physical) -> dict[str, Any]:
        return dict(self.resolve(self.resources[logical_id].get("Properties") or {}, physical, logical_id))

    # ---------------------------------------------------------------------------------- functions

    def functions(self, physical: PhysicalRegistry) -> tuple[FunctionSpec, ...]:
        """The functions, resolved against the physical identities of the created resources."""
        functions = {lid: physical[lid] for lid, _ in self.active_resources("AWS::Lambda::Function")}
        sqs, http = self._sqs_events(physical, functions), self._http_events(physical, functions)
        return tuple(self._function(lid, physical, sqs.get(lid, []), http.get(lid, [])) for lid in functions)

    def _function(
        self, lid: str, physical: Physical, sqs: list[SqsEventSpec], http: list[Route]
    ) -> FunctionSpec:
        props: dict[str, Any] = self.resources[lid].get("Properties") or {}

        def prop(key: str, default: Any = None) -> Any:
            return self.resolve(props[key], physical, f"{lid}.{key}") if key in props else default

        if lid not in self.code_dirs:
            raise TemplateError(f"{lid}: only AWS::Serverless::Function resources run in the local stack")
        if not (runtime := str(prop("Runtime", ""))).startswith("python"):
            raise TemplateError(f"{lid}.Runtime {runtime!r}: the local stack only runs python functions")
        if not isinstance(handler := prop("Handler"), str) or "." not in handler:
            raise TemplateError(f"{lid}.Handler must look like module.function, got {handler!r}")
        variables = (prop("Environment") or {}).get("Variables") or {}
        entry = physical[lid]
        return FunctionSpec(
            logical_id=lid,
            name=entry.name,
            arn=entry.attributes["Arn"],
            code_uri=self.code_dirs[lid],
            handler=handler,
            runtime=runtime,
            timeout=int(prop("Timeout", 3)),
            memory_size=int(prop("MemorySize", 128)),
            environment={k: _to_str(v, f"{lid}.Environment.Variables.{k}") for k, v in variables.items()},
            sqs_events=tuple(sqs),
            http_events=tuple(sorted(http, key=lambda e: (e.path == "$default", e.path, e.method))),
            log_group=str((prop("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{entry.name}"),
        )

    def _sqs_events(self, physical: PhysicalRegistry, functions: Physical) -> dict[str, list[SqsEventSpec]]:
        events: dict[str, list[SqsEventSpec]] = {}
        for lid, resource in self.active_resources("AWS::Lambda::EventSourceMapping"):
            source = json.dumps((resource.get("Properties") or {}).get("EventSourceArn"))
            if "StreamArn" in source or (":dynamodb:" in source and "/stream/" in source):
                continue  # a table stream: photopipe_local.streams polls it
            props = self.properties(lid, physical)
            queue = physical.by_arn(arn := str(props.get("EventSourceArn", "")))
            if queue is None or queue.type != "AWS::SQS::Queue":
                raise TemplateError(f"{lid}: an event source mapping from {arn!r} is not emulated")
            target = str(props.get("FunctionName", ""))
            function = next((f for f, e in functions.items() if target in (e.name, e.attributes["Arn"])), "")
            if not function or "FilterCriteria" in props:
                raise TemplateError(f"{lid}: only mappings to the template's functions, without filters, run")
            batch_size = int(props.get("BatchSize", 10))
            window = int(props.get("MaximumBatchingWindowInSeconds", 0))
            concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
            partial = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
            event = SqsEventSpec(
                name=lid.removeprefix(function) or lid,  # SAM names the mapping {function}{event}
                queue_arn=arn,
                batch_size=batch_size,
                maximum_batching_window_seconds=window,
                report_batch_item_failures=partial,
                maximum_concurrency=None if concurrency is None else int(concurrency),
                enabled=str(props.get("Enabled", "true")).lower() == "true",
            )
            events.setdefault(function, []).append(event)
        return events

    def _http_apis(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(logical id, properties, OpenAPI body) of every HTTP API."""
        for lid, resource in self.active_resources("AWS::ApiGatewayV2::Api"):
            if (props := resource.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET":
                continue  # photopipe_local.websocket serves these
            if props.get("ProtocolType", "HTTP") != "HTTP":
                raise TemplateError(f"resource {lid}: {props['ProtocolType']} APIs are not served yet")
            if not isinstance(body := props.get("Body"), dict):
                raise TemplateError(f"resource {lid}: only APIs defined in the template (Body) are served")
            yield lid, props, body

    def _http_events(self, physical: Physical, functions: Physical) -> dict[str, list[Route]]:
        by_arn = {entry.attributes["Arn"]: lid for lid, entry in functions.items()}
        events: dict[str, list[Route]] = {}
        for api, _, body in self._http_apis():
            for path, operations in (body.get("paths") or {}).items():
                for method, operation in operations.items():
                    if not isinstance(operation, dict) or "x-amazon-apigateway-integration" not in operation:
                        continue  # path-level "parameters", "summary", ...
                    where = f"{api}.{path}.{method}"
                    integration = operation["x-amazon-apigateway-integration"]
                    if str(integration.get("payloadFormatVersion", "2.0")) != "2.0":
                        raise TemplateError(f"{where}: the local HTTP API speaks payload format 2.0 only")
                    uri = _to_str(self.resolve(integration.get("uri", ""), physical, where), where)
                    function = by_arn.get(uri.partition("/functions/")[2].removesuffix("/invocations"))
                    if integration.get("type") != "aws_proxy" or function is None:
                        raise TemplateError(f"{where}: only Lambda proxy integrations run locally")
                    method = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    events.setdefault(function, []).append(Route(method, path, function, api))
        return events

    def http_apis(self, physical: Physical) -> dict[str, CorsConfig | None]:
        """Each HTTP API's CORS configuration (SAM puts it in the body as x-amazon-apigateway-cors)."""
        apis: dict[str, CorsConfig | None] = {}
        for lid, props, body in self._http_apis():
            cors = body.get("x-amazon-apigateway-cors", props.get("CorsConfiguration"))
            cors = None if cors is None else self.resolve(cors, physical, f"{lid}.CorsConfiguration")
            apis[lid] = None if cors is None else CorsConfig.from_template(cors)
        return apis
