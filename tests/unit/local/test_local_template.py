"""The template reader: samtranslator's parsing and translation, the intrinsics the local stack resolves (and
the message for any other), physical names, and the real template.yaml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from photopipe_local.template import (
    SUPPORTED_INTRINSICS,
    PhysicalRegistry,
    Template,
    TemplateError,
    UnresolvedReferenceError,
    kebab_case,
    load_template,
)

REPO = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"


def write_template(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_short_tags_load_as_long_form(tmp_path: Path) -> None:
    document = load_template(
        write_template(
            tmp_path,
            """
            Resources: {}
            a: !Ref Thing
            b: !GetAtt Queue.Arn
            c: !GetAtt [Queue, QueueName]
            d: !Sub "${AWS::Region}-x"
            e: !Sub ["${A}-${B}", {A: 1, B: !Ref Other}]
            f: !Join [",", [a, !Ref X]]
            g: !If [Cond, !Base64 hi, !Ref AWS::NoValue]
            h: !Not [!Equals [!Ref P, ""]]
            i: !FindInMap [M, K, V]
            j: !Select [0, !Split [",", "a,b"]]
            k: !GetAtt Endpoint.Address.Port
            """,
        )
    )
    assert document["a"] == {"Ref": "Thing"}
    assert document["b"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert document["c"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert document["d"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert document["e"] == {"Fn::Sub": ["${A}-${B}", {"A": 1, "B": {"Ref": "Other"}}]}
    assert document["f"] == {"Fn::Join": [",", ["a", {"Ref": "X"}]]}
    assert document["g"] == {"Fn::If": ["Cond", {"Fn::Base64": "hi"}, {"Ref": "AWS::NoValue"}]}
    assert document["h"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]}
    assert document["i"] == {"Fn::FindInMap": ["M", "K", "V"]}
    assert document["j"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert document["k"] == {"Fn::GetAtt": ["Endpoint", "Address.Port"]}


@pytest.mark.parametrize(
    ("logical_id", "expected"),
    [
        ("IngestDeadLetterQueue", "ingest-dead-letter-queue"),
        ("JWTSecret", "jwt-secret"),
        ("MediaBucket", "media-bucket"),
        ("S3Bucket2", "s3-bucket2"),
    ],
)
def test_kebab_case(logical_id: str, expected: str) -> None:
    assert kebab_case(logical_id) == expected


def test_globals_merge_maps_append_lists_and_let_the_resource_win(tmp_path: Path) -> None:
    # GIVEN Globals and a function that overrides a scalar, adds a layer and overrides one variable
    path = write_template(
        tmp_path,
        """
        Transform: AWS::Serverless-2016-10-31
        Parameters:
          X: {Type: String, Default: x-value}
        Globals:
          Function:
            Runtime: python3.12
            Timeout: 30
            Layers: [a]
            Environment: {Variables: {A: global, B: global}}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: f
              Handler: app.handler
              Timeout: 60
              Layers: [b]
              Environment: {Variables: {B: local, C: !Ref X}}
        """,
    )
    # WHEN samtranslator has merged them
    template = Template(path)
    merged = template.resources["Fn"]["Properties"]
    (function,) = template.functions(template.plan())

    # THEN maps merge, lists append, and the resource wins
    assert merged["Timeout"] == 60
    assert merged["Layers"] == ["a", "b"]
    assert merged["Environment"] == {"Variables": {"A": "global", "B": "local", "C": {"Ref": "X"}}}
    assert function.environment == {"A": "global", "B": "local", "C": "x-value"}


INTRINSICS = """
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
      Size: {Type: Number, Default: 42}
      Origins: {Type: CommaDelimitedList, Default: "https://a.test,https://b.test"}
      Email: {Type: String, Default: ""}
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      HasEmail: !Not [!Equals [!Ref Email, ""]]
    Mappings:
      Limits:
        Queue: {MaxReceiveCount: 3}
    Globals:
      Function:
        Runtime: python3.12
        Timeout: 30
        Environment:
          Variables:
            STAGE: !Ref Stage
            SHARED: global
    Resources:
      Media:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Sub "media-${Stage}-${AWS::AccountId}-${AWS::Region}"
          CorsConfiguration:
            CorsRules: [{AllowedMethods: [GET], AllowedOrigins: !Ref Origins}]
      Logs:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Sub "${Media}-logs"
      Jobs:
        Type: AWS::SQS::Queue
        Properties:
          RedrivePolicy:
            deadLetterTargetArn: !GetAtt JobsDLQ.Arn
            maxReceiveCount: !FindInMap [Limits, Queue, MaxReceiveCount]
      JobsDLQ:
        Type: AWS::SQS::Queue
        Properties:
          QueueName: !Sub "${AWS::StackName}-dlq"
      Secret:
        Type: AWS::SecretsManager::Secret
        Properties:
          GenerateSecretString: {PasswordLength: 16}
      Only:
        Type: AWS::SQS::Queue
        Condition: IsProd
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: src/fn
          Handler: app.handler
          Timeout: 5
          Environment:
            Variables:
              SHARED: local
              BUCKET: !Ref Media
              BUCKET_ARN: !GetAtt Media.Arn
              QUEUE_URL: !Ref Jobs
              QUEUE_NAME: !GetAtt Jobs.QueueName
              SECRET: !Ref Secret
              SIZE: !Ref Size
              PROD: !If [IsProd, "yes", "no"]
              EMAIL: !If [HasEmail, !Ref Email, !Ref "AWS::NoValue"]
              MAX: !FindInMap [Limits, Queue, MaxReceiveCount]
              LITERAL: !Sub "${!NotAVariable}-${Greeting}"
              VARS: !Sub ["${Prefix}/${Media.Arn}", {Prefix: !Ref Stage}]
              PARTITION: !Sub "${AWS::Partition}.${AWS::URLSuffix}"
              STACK_UUID: !Select [0, !Split ["-", !Select [2, !Split ["/", !Ref AWS::StackId]]]]
"""


def test_intrinsics_resolve_against_parameters_pseudo_parameters_and_physical_names(tmp_path: Path) -> None:
    # GIVEN a template that uses every intrinsic the local stack supports
    body = INTRINSICS.replace("${Greeting}", "${Stage}")
    template = Template(write_template(tmp_path, body), stack_name="st", region="eu-west-1")

    # WHEN it is planned and the created queue's URL and secret's ARN are known
    physical = template.plan()
    physical.record("Jobs", ref=f"http://127.0.0.1:4566/{ACCOUNT}/st-jobs")
    physical.record("Secret", ref="arn:aws:secretsmanager:eu-west-1:123456789012:secret:st-secret-AbCdEf")
    (function,) = template.functions(physical)

    # THEN names come from the template where it sets them, else {stack}-{kebab id}
    assert physical["Media"].name == f"media-dev-{ACCOUNT}-eu-west-1"
    assert physical["Logs"].name == f"media-dev-{ACCOUNT}-eu-west-1-logs"
    assert physical["Jobs"].name == "st-jobs"
    assert physical["JobsDLQ"].name == "st-dlq"
    assert "Only" not in physical  # its condition is false
    env = function.environment
    assert env == {
        "STAGE": "dev",
        "SHARED": "local",
        "BUCKET": f"media-dev-{ACCOUNT}-eu-west-1",
        "BUCKET_ARN": f"arn:aws:s3:::media-dev-{ACCOUNT}-eu-west-1",
        "QUEUE_URL": f"http://127.0.0.1:4566/{ACCOUNT}/st-jobs",
        "QUEUE_NAME": "st-jobs",
        "SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:st-secret-AbCdEf",
        "SIZE": "42",
        "PROD": "no",
        "MAX": "3",
        "LITERAL": "${NotAVariable}-dev",
        "VARS": f"dev/arn:aws:s3:::media-dev-{ACCOUNT}-eu-west-1",
        "PARTITION": "aws.amazonaws.com",
        "STACK_UUID": "00000000",
    }
    assert function.timeout == 5
    assert function.memory_size == 128
    assert function.code_uri == (tmp_path / "src/fn").resolve()
    (cors_rule,) = template.properties("Media", physical)["CorsConfiguration"]["CorsRules"]
    assert cors_rule["AllowedOrigins"] == ["https://a.test", "https://b.test"]  # a CommaDelimitedList
    redrive = template.properties("Jobs", physical)["RedrivePolicy"]
    assert (
        redrive["deadLetterTargetArn"]
        == physical["JobsDLQ"].attributes["Arn"]
        == "arn:aws:sqs:eu-west-1:123456789012:st-dlq"
    )
    assert redrive["maxReceiveCount"] == 3


@pytest.mark.parametrize(
    ("expression", "intrinsic"),
    [
        ("!Base64 hi", "Fn::Base64"),
        ('!Join [" ", [a, b]]', "Fn::Join"),
        ('!Cidr ["10.0.0.0/16", 2, 8]', "Fn::Cidr"),
        ("!ImportValue other-stack-queue", "Fn::ImportValue"),
        ("!GetAZs ''", "Fn::GetAZs"),
    ],
)
def test_an_intrinsic_the_template_does_not_use_fails_naming_it(
    tmp_path: Path, expression: str, intrinsic: str
) -> None:
    # GIVEN a function variable set with an intrinsic function template.yaml does not use
    body = INTRINSICS.replace("${Greeting}", "x").replace(
        "              PARTITION:", f"              ODD: {expression}\n              PARTITION:"
    )
    template = Template(write_template(tmp_path, body))
    physical = template.plan()
    physical.record("Jobs", ref="http://127.0.0.1:4566/q")
    physical.record("Secret", ref="arn:secret")

    # WHEN the function is read THEN the message names the intrinsic, where it is, and what is supported
    with pytest.raises(TemplateError) as raised:
        template.functions(physical)
    message = str(raised.value)
    assert f"Fn.Environment.Variables.ODD: {intrinsic} is not supported by the local stack" in message
    assert all(name in message for name in SUPPORTED_INTRINSICS)


def test_parameter_overrides_and_conditions(tmp_path: Path) -> None:
    body = INTRINSICS.replace("${Greeting}", "x")
    template = Template(write_template(tmp_path, body), parameters={"Stage": "prod", "Email": "a@b.test"})
    physical = template.plan()
    physical.record("Jobs", ref="http://127.0.0.1:4566/q")
    physical.record("Secret", ref="arn:secret")
    (function,) = template.functions(physical)
    assert "Only" in physical
    assert function.environment["PROD"] == "yes"
    assert function.environment["EMAIL"] == "a@b.test"
    with pytest.raises(TemplateError, match="not one of"):
        Template(write_template(tmp_path, body), parameters={"Stage": "qa"}).plan()
    with pytest.raises(TemplateError, match="undeclared"):
        Template(write_template(tmp_path, body), parameters={"Nope": "1"})


def test_a_secret_arn_is_only_known_once_created(tmp_path: Path) -> None:
    template = Template(write_template(tmp_path, INTRINSICS.replace("${Greeting}", "x")))
    physical = template.plan()
    physical.record("Jobs", ref="http://127.0.0.1:4566/q")
    with pytest.raises(UnresolvedReferenceError, match=r"Fn\.Environment\.Variables\.SECRET: Ref Secret"):
        template.functions(physical)


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("Type: AWS::Lambda::EventSourceMapping\n        Properties: {}", "not emulated"),
        (
            "Type: AWS::S3::Bucket\n        Properties:\n          NotificationConfiguration:\n"
            "            LambdaConfigurations: [{Event: 's3:ObjectCreated:*', Function: arn}]",
            "LambdaConfigurations",
        ),
        (
            "Type: AWS::Serverless::Function\n        Properties:\n          CodeUri: f\n"
            "          Handler: app.handler\n          Runtime: python3.12\n          Events:\n"
            "            Nightly: {Type: Schedule, Properties: {Schedule: rate(1 day)}}",
            "Events.Nightly: event type Schedule",
        ),
        (
            "Type: AWS::Serverless::Function\n        Properties:\n          CodeUri: f\n"
            "          Handler: app.handler\n          Runtime: nodejs22.x",
            "only runs python",
        ),
        ("Type: AWS::SQS::Queue\n        Properties: {QueueName: !ImportValue other}", "ImportValue"),
    ],
)
def test_unsupported_things_that_matter_fail_loudly(tmp_path: Path, resource: str, message: str) -> None:
    path = write_template(
        tmp_path,
        f"Transform: AWS::Serverless-2016-10-31\nResources:\n  Thing:\n    {resource}\n".replace(
            "\n        ", "\n    "
        ),
    )

    def read() -> None:
        from moto import mock_aws

        from photopipe_local.resources import AwsClients, create_resources

        template = Template(path)
        with mock_aws():
            clients = AwsClients.for_endpoint(None, "us-east-1")
            template.functions(create_resources(template, clients))

    with pytest.raises(TemplateError, match=message) as raised:
        read()
    assert "Thing" in str(raised.value)


def test_ignored_and_unknown_types_do_not_stop_the_stack(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_template(
        tmp_path,
        """
        Resources:
          Alarm: {Type: AWS::CloudWatch::Alarm, Properties: {}}
          Topic: {Type: AWS::SNS::Topic}
          Mail: {Type: AWS::SNS::Subscription, Properties: {Protocol: email, TopicArn: !Ref Topic}}
          Odd: {Type: AWS::Foo::Bar}
        """,
    )
    physical = Template(path).plan()
    assert physical["Topic"].ref == "arn:aws:sns:us-east-1:123456789012:photopipe-local-topic"
    assert [(r.resource, r.type) for r in caplog.records] == [("Odd", "AWS::Foo::Bar")]  # type: ignore[attr-defined]


def test_globals_http_api_cors_applies_to_the_implicit_api(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          HttpApi:
            CorsConfiguration:
              AllowOrigins: [https://app.test]
              AllowHeaders: [Authorization]
              AllowMethods: [get, post]
              MaxAge: 60
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: f
              Handler: app.handler
              Runtime: python3.12
              Events:
                Any: {Type: HttpApi, Properties: {Path: "/files/{proxy+}", Method: any}}
                Default: {Type: HttpApi}
        """,
    )
    template = Template(path)
    physical = template.plan()
    (function,) = template.functions(physical)
    assert [(e.method, e.path, e.api, e.route_key) for e in function.http_events] == [
        ("ANY", "/files/{proxy+}", "ServerlessHttpApi", "ANY /files/{proxy+}"),
        ("ANY", "$default", "ServerlessHttpApi", "$default"),
    ]
    (cors,) = template.http_apis(physical).values()
    assert cors is not None
    assert cors.allow_origins == ("https://app.test",)
    assert cors.allow_headers == ("authorization",)
    assert cors.allow_methods == ("GET", "POST")
    assert cors.max_age == 60


# ------------------------------------------------------------------------------ the real template


@pytest.fixture(scope="module")
def real() -> tuple[Template, PhysicalRegistry]:
    template = Template(REPO / "template.yaml", region="us-east-1")
    physical = template.plan()
    for logical_id, entry in physical.items():
        if entry.type == "AWS::SecretsManager::Secret":
            physical.record(
                logical_id, ref=f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{entry.name}-AbCdEf"
            )
        if entry.type == "AWS::SQS::Queue":
            physical.record(logical_id, ref=f"http://127.0.0.1:4566/{ACCOUNT}/{entry.name}")
    return template, physical


def test_real_template_ingest_function_is_fed_by_the_ingest_queue(
    real: tuple[Template, PhysicalRegistry],
) -> None:
    template, physical = real
    functions = {f.logical_id: f for f in template.functions(physical)}
    ingest = functions["IngestFunction"]
    (event,) = ingest.sqs_events
    assert event.queue_arn == physical["IngestQueue"].attributes["Arn"]
    assert event.queue_arn == f"arn:aws:sqs:us-east-1:{ACCOUNT}:photopipe-local-ingest-queue"
    assert event.batch_size == 10
    assert event.report_batch_item_failures is True
    assert ingest.code_uri == REPO / "functions" / "ingest"
    assert ingest.handler == "app.handler"


def test_real_template_media_bucket_notifies_the_ingest_queue_for_originals(
    real: tuple[Template, PhysicalRegistry],
) -> None:
    template, physical = real
    media = template.properties("MediaBucket", physical)
    # the name ends with the stack id's UUID (its first 8 characters): all zeros locally
    assert physical["MediaBucket"].name == f"photopipe-media-dev-{ACCOUNT}-us-east-1-00000000"
    (notification,) = media["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Queue"] == physical["IngestQueue"].attributes["Arn"]
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "originals/"}]
    assert notification["Event"].startswith("s3:ObjectCreated:")
    assert media["CorsConfiguration"]["CorsRules"], "browser uploads need the bucket's CORS rules"
    redrive = template.properties("IngestQueue", physical)["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == physical["IngestDeadLetterQueue"].attributes["Arn"]
    assert redrive["maxReceiveCount"] >= 1


def test_real_template_globals_reach_every_function_without_conflicts(
    real: tuple[Template, PhysicalRegistry],
) -> None:
    from photopipe_local.runtime import functions_environment

    template, physical = real
    functions = template.functions(physical)
    union = functions_environment(functions)  # raises if two functions disagree
    for function in functions:
        assert function.environment["MEDIA_BUCKET"] == physical["MediaBucket"].name
        assert function.environment["IMAGES_TABLE"] == physical["ImagesTable"].name
    api = next(f for f in functions if f.logical_id == "ApiFunction")
    assert api.environment["USERS_TABLE"] == physical["UsersTable"].name
    assert api.environment["JWT_SECRET_ID"] == physical["JwtSecret"].ref
    assert union["POWERTOOLS_SERVICE_NAME"]
    routes = {e.route_key for e in api.http_events}
    assert "GET /api/v1/health" in routes
    assert "GET /api/v1/images/{image_id}" in routes
