"""The local gateway's WebSocket API, with tiny handlers written for the test and a real client (websockets):
the handshake through the authorizer and `$connect` (each way of refusing it), `$disconnect`, answered pings,
the `@connections` management API through boto3 at the endpoint the template resolves, 410 once a
connection is gone, and API Gateway's 2-hour limit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from photopipe_local.stack import LocalStack
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
        LIVE_URL: !Sub "${Live.ApiEndpoint}/${LiveStage}"
Resources:
  SeenTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Live:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: live, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Gate:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Live
      Name: gate
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Gatekeeper.Arn}/invocations"
  Door:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Live
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Doorman.Arn}/invocations"
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Live, RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref Gate, Target: !Sub "integrations/${Door}"}
  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Live, RouteKey: $disconnect, Target: !Sub "integrations/${Door}"}
  LiveDeployment:
    Type: AWS::ApiGatewayV2::Deployment
    DependsOn: [ConnectRoute, DisconnectRoute]
    Properties: {ApiId: !Ref Live}
  LiveStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: !Ref Live, StageName: live, DeploymentId: !Ref LiveDeployment}
  Gatekeeper:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/gatekeeper, Handler: app.handler}
  Doorman:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/doorman, Handler: app.handler}
"""

RECORDER = """
import json
import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["SEEN_TABLE"])


def seen(key, value):
    TABLE.put_item(Item={"pk": key, "event": json.dumps(value)})
"""

# token good-<user>: allowed as <user> (good-nested: with an object in the context, which API Gateway refuses);
# deny: a Deny policy; boom: a crash; anything else: "Unauthorized".
GATEKEEPER = (
    RECORDER
    + """

def handler(event, context):
    token = event["queryStringParameters"]["token"]
    seen("gate#" + token, event)
    if token == "boom":
        raise ValueError("the authorizer is broken")
    if not token.startswith(("good-", "deny")):
        raise Exception("Unauthorized")
    effect = "Deny" if token == "deny" else "Allow"
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    context = {"user": token[5:]} if token != "good-nested" else {"user": {"name": "objects are refused"}}
    return {"principalId": token, "policyDocument": policy, "context": context}
"""
)

# Records each event by route and connection id; ?refuse=<status> makes $connect answer that status.
DOORMAN = (
    RECORDER
    + """

def handler(event, context):
    context_ = event["requestContext"]
    seen(context_["routeKey"] + "#" + context_["connectionId"], event)
    if context_["routeKey"] == "$connect" and "refuse" in (event.get("queryStringParameters") or {}):
        return {"statusCode": int(event["queryStringParameters"]["refuse"])}
    return {"statusCode": 200}
"""
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_name: str) -> Iterator[LocalStack]:
    handlers = {"gatekeeper": GATEKEEPER, "doorman": DOORMAN}
    template = write_project(tmp_path_factory.mktemp("websocket-project"), TEMPLATE, handlers)
    with LocalStack(template, stack_name=stack_name, port=0, write_state=False) as running:
        yield running


def _url(stack: LocalStack, query: str = "") -> str:
    return f"{stack.environment['LIVE_URL']}{'?' if query else ''}{query}"


def _seen(stack: LocalStack, key: str) -> dict[str, Any] | None:
    assert stack.clients is not None
    found = stack.clients.dynamodb.get_item(
        TableName=stack.name("SeenTable"), Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return json.loads(found["Item"]["event"]["S"]) if "Item" in found else None


def _eventually_seen(stack: LocalStack, key: str) -> dict[str, Any] | None:
    """`$disconnect` runs after the close handshake, so after the client sees the socket closed."""
    deadline = time.monotonic() + 10
    while (event := _seen(stack, key)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return event


def _management(stack: LocalStack) -> Any:
    """A boto3 client for the @connections API, configured as the notify function configures its own."""
    endpoint = "http" + stack.environment["LIVE_URL"].removeprefix("ws")
    return boto3.session.Session(region_name="us-east-1").client(
        "apigatewaymanagementapi", endpoint_url=endpoint
    )


def _open(stack: LocalStack, user: str) -> tuple[str, ClientConnection]:
    before = set(stack.websockets[0].connections)
    client = connect(_url(stack, f"token=good-{user}"), open_timeout=10)
    (connection_id,) = set(stack.websockets[0].connections) - before
    return connection_id, client


def test_the_template_resolves_the_api_endpoint_to_the_gateway(stack: LocalStack) -> None:
    assert stack.environment["LIVE_URL"] == f"ws://127.0.0.1:{stack.port}/live"


@pytest.mark.parametrize(
    ("query", "status", "authorizer_called"),
    [
        ("", 401, False),  # no identity source: API Gateway answers itself
        ("token=", 401, False),
        ("token=stranger", 401, True),  # the function failed with "Unauthorized"
        ("token=deny", 403, True),
        ("token=boom", 500, True),
        ("token=good-nested", 500, True),  # a context value that is not a string, number or boolean
        ("token=good-ada&refuse=403", 403, True),  # $connect answered 403
    ],
)
def test_a_refused_handshake_gets_the_status_api_gateway_answers(
    stack: LocalStack, query: str, status: int, authorizer_called: bool
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(_url(stack, query), open_timeout=10)

    assert refused.value.response.status_code == status
    token = dict(p.split("=") for p in query.split("&") if p).get("token")
    assert (_seen(stack, f"gate#{token}") is not None) is authorizer_called
    assert stack.websockets[0].connections == {}


def test_connect_and_disconnect_reach_the_handler_with_the_authorizers_context(stack: LocalStack) -> None:
    connection_id, client = _open(stack, "ada")
    with client:
        client.close()

    connected = _seen(stack, f"$connect#{connection_id}")
    assert connected is not None
    assert connected["requestContext"]["authorizer"] == {"principalId": "good-ada", "user": "ada"}
    assert connected["requestContext"]["eventType"] == "CONNECT"
    assert connected["queryStringParameters"] == {"token": "good-ada"}
    authorized = _seen(stack, "gate#good-ada")
    assert authorized is not None
    assert authorized["methodArn"].endswith(f":{stack.resource('Live').ref}/live/$connect")
    assert authorized["type"] == "REQUEST"
    disconnected = _eventually_seen(stack, f"$disconnect#{connection_id}")
    assert disconnected is not None
    assert disconnected["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnected["requestContext"]["authorizer"] == {"principalId": "good-ada", "user": "ada"}
    assert connection_id not in stack.websockets[0].connections


def test_disconnect_carries_the_close_code(stack: LocalStack) -> None:
    connection_id, client = _open(stack, "bo")
    with client:
        client.close(code=4000, reason="bye")

    event = _eventually_seen(stack, f"$disconnect#{connection_id}")

    assert event is not None
    context = event["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "bye")


def test_the_management_api_sends_describes_and_closes_then_says_gone(stack: LocalStack) -> None:
    management = _management(stack)
    connection_id, client = _open(stack, "cy")
    with client:
        management.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": "cy"}')
        assert json.loads(client.recv(timeout=10)) == {"hello": "cy"}

        described = management.get_connection(ConnectionId=connection_id)
        assert described["Identity"]["SourceIp"] == "127.0.0.1"
        assert described["ConnectedAt"] <= described["LastActiveAt"]

        management.delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=10)

    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
    with pytest.raises(management.exceptions.GoneException):
        management.get_connection(ConnectionId="NeverOpened1234=")


def test_pings_are_answered_and_messages_get_api_gateways_no_route_answer(stack: LocalStack) -> None:
    connection_id, client = _open(stack, "di")
    with client:
        assert client.ping().wait(timeout=10), "a pong"
        client.send(json.dumps({"action": "subscribe"}))
        answer = json.loads(client.recv(timeout=10))
        assert (answer["message"], answer["connectionId"]) == ("Forbidden", connection_id)


def test_a_connection_is_closed_at_api_gateways_time_limit(stack: LocalStack) -> None:
    gateway = stack.websockets[0]
    gateway.max_connection_seconds = 0.5  # instead of 2 hours
    try:
        _, client = _open(stack, "ed")
        with client, pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=30)
    finally:
        gateway.max_connection_seconds = 7200
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "Going away")
