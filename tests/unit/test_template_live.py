"""Live updates in template.yaml, checked on the translated template with the helpers of `test_template`: the
WebSocket API's routes, its JWT authorizer, deployment and stage, the connections table, the notify
function's stream mappings, least privilege for each function, and the URL the stack and the API report."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from samtranslator.translator.transform import transform

from tests.unit.test_template import (
    REGION,
    TEMPLATE,
    _allowed,
    _BundledPolicies,
    _CfnLoader,
    _function_role_id,
    _logical_ids,
    _of_type,
    _props,
    _render,
    _role_statements,
)

STREAMED_TABLES = {"ImagesTable", "JobsTable", "CreditsTable", "OrdersTable"}
LAMBDA_URI = (
    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${%s.Arn}/invocations"
)


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    template = copy.deepcopy(template)
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://photopipe-artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        cfn = transform(template, {}, _BundledPolicies())
    return dict(cfn["Resources"]) | {"Outputs": {"Type": "Outputs", "Properties": cfn["Outputs"]}}


def _websocket_api(resources: dict[str, Any]) -> str:
    apis = _of_type(resources, "AWS::ApiGatewayV2::Api")
    (api,) = [lid for lid, a in apis.items() if a["Properties"].get("ProtocolType") == "WEBSOCKET"]
    return api


def _routes(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    api = _websocket_api(resources)
    routes = _of_type(resources, "AWS::ApiGatewayV2::Route").values()
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in routes
        if r["Properties"]["ApiId"] == {"Ref": api}
    }


def test_the_websocket_api_routes_connect_through_the_authorizer_and_disconnect(
    resources: dict[str, Any],
) -> None:
    api = _websocket_api(resources)
    routes = _routes(resources)

    assert set(routes) == {"$connect", "$disconnect"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert routes["$connect"]["AuthorizerId"] == {"Ref": "WebSocketAuthorizer"}
    assert routes["$disconnect"].get("AuthorizationType", "NONE") == "NONE", "only $connect can be authorized"
    for route in routes.values():
        (integration,) = _logical_ids(route["Target"])
        assert _render(route["Target"]) == f"integrations/${{{integration}}}"
        integration_props = _props(resources, integration)
        assert integration_props["ApiId"] == {"Ref": api}
        assert integration_props["IntegrationType"] == "AWS_PROXY"
        assert _render(integration_props["IntegrationUri"]) == LAMBDA_URI % "WebSocketConnectionsFunction"


def test_the_authorizer_reads_the_token_query_string_with_the_apis_secret(resources: dict[str, Any]) -> None:
    authorizer = _props(resources, "WebSocketAuthorizer")

    assert authorizer["ApiId"] == {"Ref": _websocket_api(resources)}
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert _render(authorizer["AuthorizerUri"]) == LAMBDA_URI % "WebSocketAuthorizerFunction"
    env = _props(resources, "WebSocketAuthorizerFunction")["Environment"]["Variables"]
    assert (
        env["JWT_SECRET_ID"] == _props(resources, "ApiFunction")["Environment"]["Variables"]["JWT_SECRET_ID"]
    )
    statements = _role_statements(resources, _function_role_id(resources, "WebSocketAuthorizerFunction"))
    assert _allowed(statements) == [("secretsmanager:GetSecretValue", "${JwtSecret}")]


@pytest.mark.parametrize(
    ("function", "source_arn"),
    [
        ("WebSocketAuthorizerFunction", "${WebSocketApi}/authorizers/${WebSocketAuthorizer}"),
        ("WebSocketConnectionsFunction", "${WebSocketApi}/${WebSocketStage}/*"),
    ],
)
def test_api_gateway_may_invoke_the_websocket_functions_for_this_api_only(
    resources: dict[str, Any], function: str, source_arn: str
) -> None:
    permissions = [
        p["Properties"]
        for p in _of_type(resources, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": function}
    ]

    assert len(permissions) == 1
    assert permissions[0]["Principal"] == "apigateway.amazonaws.com"
    prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    assert _render(permissions[0]["SourceArn"]) == prefix + source_arn


def test_the_stage_serves_a_deployment_of_both_routes(resources: dict[str, Any]) -> None:
    api = _websocket_api(resources)
    (stage,) = [
        s["Properties"]
        for s in _of_type(resources, "AWS::ApiGatewayV2::Stage").values()
        if s["Properties"]["ApiId"] == {"Ref": api}
    ]
    (deployment_id,) = _logical_ids(stage["DeploymentId"])
    deployment = resources[deployment_id]

    assert stage["StageName"] == "ws", "wss://.../ws, the same path as the local stack's"
    assert deployment["Type"] == "AWS::ApiGatewayV2::Deployment"
    assert set(deployment["DependsOn"]) == {"WebSocketConnectRoute", "WebSocketDisconnectRoute"}


def test_the_connections_table_finds_a_users_connections_and_expires_them(resources: dict[str, Any]) -> None:
    table = _props(resources, "ConnectionsTable")
    (index,) = table["GlobalSecondaryIndexes"]

    assert table["KeySchema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert (index["IndexName"], index["KeySchema"]) == (
        "by-user",
        [{"AttributeName": "user_id", "KeyType": "HASH"}],
    )
    assert "expires_at" in index["Projection"]["NonKeyAttributes"], "readers skip expired connections"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_the_connections_function_knows_its_table(resources: dict[str, Any]) -> None:
    # its grants (put and delete on the connections table, nothing else) are in tests/unit/test_least_privilege.py
    env = _props(resources, "WebSocketConnectionsFunction")["Environment"]["Variables"]
    assert env["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}


def test_only_the_notify_function_may_post_to_connections(resources: dict[str, Any]) -> None:
    # the notify function's own grants (this stage's POST @connections only) are in test_least_privilege.py
    others = [
        role
        for role in _of_type(resources, "AWS::IAM::Role")
        if role != _function_role_id(resources, "NotifyFunction")
        and any(a.startswith("execute-api:") for a, _ in _allowed(_role_statements(resources, role)))
    ]
    assert others == []


def test_the_notify_function_reads_each_stream_as_a_lambda_mapping_should(resources: dict[str, Any]) -> None:
    mappings = [
        m["Properties"]
        for m in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "NotifyFunction"}
    ]

    assert {m["EventSourceArn"]["Fn::GetAtt"][0] for m in mappings} == STREAMED_TABLES
    for mapping in mappings:
        assert [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]] == [
            {"eventName": ["INSERT", "MODIFY"]}
        ]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BisectBatchOnFunctionError"] is True
        assert 0 <= mapping["MaximumRetryAttempts"] <= 10, "a poison record must not block the shard forever"
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["NotifyDeadLetterQueue", "Arn"]
        }
        assert mapping["StartingPosition"] == "LATEST"
    for table in STREAMED_TABLES:  # "did the state change?" needs the item before and after
        assert _props(resources, table)["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    alarms = [
        a["Properties"]["Dimensions"][0]["Value"]
        for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if "Dimensions" in a["Properties"]  # the others are metric-math alarms
    ]
    assert {"Fn::GetAtt": ["NotifyDeadLetterQueue", "QueueName"]} in alarms


def test_the_stack_and_the_api_report_the_same_wss_url(resources: dict[str, Any]) -> None:
    outputs = resources["Outputs"]["Properties"]
    url = (
        "${WebSocketApi.ApiEndpoint}/${WebSocketStage}"  # ApiEndpoint is wss://<api>.execute-api.<region>...
    )

    assert _render(outputs["WebSocketUrl"]["Value"]) == url
    assert outputs["WebSocketUrl"]["Description"]
    for function in ("ApiFunction", "NotifyFunction"):
        assert _render(_props(resources, function)["Environment"]["Variables"]["WEBSOCKET_URL"]) == url
