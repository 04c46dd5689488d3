"""The full local stack over HTTP: the gateway (uvicorn, Starlette) in front of a tiny handler, API Gateway's
own answers on a real socket, the state file, `photopipe local invoke` against the running stack, and
`photopipe local run` as a user starts it."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from photopipe_cli.main import main
from photopipe_local.stack import LocalStack

pytestmark = pytest.mark.e2e

HTTP_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: test}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
    Environment:
      Variables:
        ECHO_STAGE: !Ref Stage
        NOTES_TABLE: !Ref NotesTable
  HttpApi:
    CorsConfiguration:
      AllowOrigins: [https://app.test]
      AllowHeaders: [authorization, content-type]
      AllowMethods: [GET, POST]
      MaxAge: 600
Resources:
  NotesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api
      Handler: app.handler
      Events:
        Health: {Type: HttpApi, Properties: {Path: /api/v1/health, Method: GET}}
        Note: {Type: HttpApi, Properties: {Path: "/api/v1/notes/{note_id}", Method: POST}}
        Echo: {Type: HttpApi, Properties: {Path: "/api/v1/echo/{proxy+}", Method: ANY}}
        Boom: {Type: HttpApi, Properties: {Path: /api/v1/boom, Method: GET}}
"""

API_HANDLER = """
import base64
import json
import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["NOTES_TABLE"])


def handler(event, context):
    route = event["routeKey"]
    if route == "GET /api/v1/health":
        return {"status": "ok", "stage": os.environ["ECHO_STAGE"], "function": context.function_name}
    if route == "GET /api/v1/boom":
        raise RuntimeError("boom")
    if route == "POST /api/v1/notes/{note_id}":
        note = json.loads(event["body"])
        TABLE.put_item(Item={"id": event["pathParameters"]["note_id"], **note})
        saved = TABLE.get_item(Key={"id": event["pathParameters"]["note_id"]})["Item"]
        return {
            "statusCode": 201,
            "headers": {"content-type": "application/json"},
            "cookies": ["last_note=" + saved["id"] + "; HttpOnly"],
            "body": json.dumps(saved),
        }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream", "x-route": route},
        "body": base64.b64encode(json.dumps(event).encode()).decode(),
        "isBase64Encoded": True,
    }
"""


@pytest.fixture(scope="module")
def http_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("http-project")
    (root / "functions" / "api").mkdir(parents=True)
    (root / "functions" / "api" / "app.py").write_text(API_HANDLER)
    path = root / "template.yaml"
    path.write_text(HTTP_TEMPLATE)
    return path


@pytest.fixture(scope="module")
def stack(http_template: Path, stack_name: str) -> Iterator[LocalStack]:
    def environment() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}

    before = environment()
    with LocalStack(http_template, port=0, stack_name=stack_name) as running:
        yield running
    # stopping restores the process environment and removes the state file
    assert environment() == before
    assert not running.state_file.exists()


def test_health_route_returns_the_handlers_dict_as_json(stack: LocalStack) -> None:
    response = requests.get(f"{stack.api_url}/api/v1/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok", "stage": "test", "function": stack.name("Api")}


def test_handler_reaches_moto_through_aws_endpoint_url(stack: LocalStack) -> None:
    response = requests.post(f"{stack.api_url}/api/v1/notes/n-1", json={"text": "hello"}, timeout=5)
    assert response.status_code == 201
    assert response.json() == {"id": "n-1", "text": "hello"}
    assert response.cookies["last_note"] == "n-1"
    assert stack.clients is not None
    item = stack.clients.dynamodb.get_item(TableName=stack.name("NotesTable"), Key={"id": {"S": "n-1"}})[
        "Item"
    ]
    assert item["text"] == {"S": "hello"}


def test_event_shape_as_the_handler_sees_it(stack: LocalStack) -> None:
    response = requests.put(
        f"{stack.api_url}/api/v1/echo/a/b%20c?tag=x&tag=y&q=1",
        data=b"\x89PNG\r\n",
        headers={"content-type": "image/png", "cookie": "session=abc; theme=dark", "x-multi": "1"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["x-route"] == "ANY /api/v1/echo/{proxy+}"
    event = json.loads(response.content)  # the handler's base64 body arrives decoded
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /api/v1/echo/{proxy+}"
    assert event["rawPath"] == "/api/v1/echo/a/b%20c"
    assert event["rawQueryString"] == "tag=x&tag=y&q=1"
    assert event["queryStringParameters"] == {"tag": "x,y", "q": "1"}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x89PNG\r\n"
    assert event["requestContext"]["http"]["method"] == "PUT"
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["requestId"] == response.headers["apigw-requestid"]
    assert event["headers"]["x-forwarded-port"] == str(stack.port)


def test_api_gateway_answers_of_its_own(stack: LocalStack) -> None:
    not_found = requests.get(f"{stack.api_url}/api/v1/nope", timeout=5)
    assert (not_found.status_code, not_found.json()) == (404, {"message": "Not Found"})
    wrong_method = requests.delete(f"{stack.api_url}/api/v1/health", timeout=5)
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"message": "Method Not Allowed"})
    assert wrong_method.headers["allow"] == "GET"
    failed = requests.get(f"{stack.api_url}/api/v1/boom", timeout=5)
    assert (failed.status_code, failed.json()) == (500, {"message": "Internal Server Error"})
    too_large = requests.post(
        f"{stack.api_url}/api/v1/notes/big", data=b"x" * (10 * 1024 * 1024 + 1), timeout=10
    )
    assert too_large.status_code == 413
    assert too_large.json() == {"message": "Request Entity Too Large"}


def _raw_exchange(stack: LocalStack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library tidies them up); the status, headers and body back."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"TRACE /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "Method Not Allowed"),
        (
            b"POST /api/v1/notes/n HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n{}",
            400,
            "Bad Request",
        ),
        (b"GET /api/v1/health HTTP/1.1\r\nno colon here\r\n\r\n", 400, "Bad Request"),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "Bad Request"),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "Not Found"),
    ],
    ids=["trace", "bad-content-length", "bad-header", "asterisk-target", "unknown-path"],
)
def test_edge_answers_are_json_never_html(
    stack: LocalStack, request_bytes: bytes, status: int, message: str
) -> None:
    # GIVEN a request as it comes off the wire, malformed or with a method the route does not take
    # WHEN the gateway answers it itself
    answered, headers, body = _raw_exchange(stack, request_bytes)

    # THEN it is API Gateway's JSON, with Allow on a 405
    assert answered == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": message}
    if status == 405:
        assert headers["allow"] == "GET"


def test_cors_preflight_and_headers(stack: LocalStack) -> None:
    preflight = requests.options(
        f"{stack.api_url}/api/v1/notes/n-2",
        headers={"origin": "https://app.test", "access-control-request-method": "POST"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.test"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    health = requests.get(f"{stack.api_url}/api/v1/health", headers={"origin": "https://app.test"}, timeout=5)
    assert health.headers["access-control-allow-origin"] == "https://app.test"


def test_state_file_says_where_everything_is(stack: LocalStack) -> None:
    state = json.loads(stack.state_file.read_text())
    assert state["endpoint"] == stack.endpoint
    assert state["api_url"] == stack.api_url
    assert state["environment"]["AWS_ENDPOINT_URL"] == stack.endpoint
    assert state["environment"]["NOTES_TABLE"] == stack.name("NotesTable")
    assert state["resources"]["NotesTable"]["name"] == stack.name("NotesTable")
    assert state["functions"]["Api"]["handler"] == "app.handler"


def test_local_invoke_runs_one_event_against_the_running_stack(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"routeKey": "GET /api/v1/health"}))
    code = main(["local", "invoke", "Api", "-e", str(event), "--template", str(stack.template.path)])
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out) == {"status": "ok", "stage": "test", "function": stack.name("Api")}

    event.write_text(json.dumps({"routeKey": "GET /api/v1/boom"}))
    code = main(["local", "invoke", "Api", "-e", str(event), "--template", str(stack.template.path)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert '"errorType": "RuntimeError"' in captured.err


def test_local_run_serves_until_sigterm_and_exits_cleanly(
    project_factory: Callable[[str, dict[str, str]], Path], stack_name: str
) -> None:
    # GIVEN `photopipe local run` started the way a user starts it
    template = project_factory(
        HTTP_TEMPLATE.replace("Default: test", f"Default: {stack_name}-run"), {"api": API_HANDLER}
    )
    state_file = template.parent / ".photopipe" / "local-stack.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOPIPE_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "photopipe_cli.main",
            "local",
            "run",
            "--template",
            str(template),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 30
        while not state_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the stack did not start in 30 s"
            time.sleep(0.1)
        api_url = json.loads(state_file.read_text())["api_url"]

        # WHEN it is used and then sent SIGTERM
        health = requests.get(f"{api_url}/api/v1/health", timeout=5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    # THEN it answered, printed one line to try, exited 0 and cleaned up
    assert health.json()["status"] == "ok"
    assert process.returncode == 0, err
    assert f"curl -s {api_url}/api/v1/health" in out
    assert "Stopped." in out
    assert not state_file.exists()
