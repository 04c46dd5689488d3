"""The local API Gateway without sockets (Starlette's TestClient): routes, the event's shape, responses, CORS,
and API Gateway's own answers at the edge (404, 405 with Allow, 413, 500, JSON bodies)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from photopipe_local.gateway import (
    HttpApi,
    MalformedResponseError,
    Route,
    RouteTable,
    api_gateway_time,
    build_event,
    gateway_app,
    response_from_result,
)
from photopipe_local.runtime import LocalFunction
from photopipe_local.template import CorsConfig, FunctionSpec

ROUTES = RouteTable(
    [
        Route("GET", "/api/v1/images", "Api", "HttpApi"),
        Route("POST", "/api/v1/images/batch-delete", "Api", "HttpApi"),
        Route("GET", "/api/v1/images/{image_id}", "Api", "HttpApi"),
        Route("DELETE", "/api/v1/images/{image_id}", "Api", "HttpApi"),
        Route("ANY", "/files/{proxy+}", "Files", "HttpApi"),
        Route("GET", "/files/readme", "Files", "HttpApi"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/api/v1/images", "GET /api/v1/images", {}),
        ("GET", "/api/v1/images/img-1", "GET /api/v1/images/{image_id}", {"image_id": "img-1"}),
        ("DELETE", "/api/v1/images/a%20b", "DELETE /api/v1/images/{image_id}", {"image_id": "a b"}),
        ("POST", "/api/v1/images/batch-delete", "POST /api/v1/images/batch-delete", {}),
        # no POST route for {image_id}; GET batch-delete is an image id, as in API Gateway
        ("GET", "/api/v1/images/batch-delete", "GET /api/v1/images/{image_id}", {"image_id": "batch-delete"}),
        ("PUT", "/files/a/b/c.txt", "ANY /files/{proxy+}", {"proxy": "a/b/c.txt"}),
        ("GET", "/files/readme", "GET /files/readme", {}),
    ],
)
def test_routes_match_like_api_gateway(
    method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    match = ROUTES.match(method, path)
    assert match is not None
    assert match.route.route_key == route_key
    assert match.path_parameters == parameters


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/images/img-1"),  # path exists, method does not: no route (the gateway says 405)
        ("GET", "/api/v1/images/"),
        ("GET", "/api/v1/images/a/b"),
        ("GET", "/files"),
        ("GET", "/nope"),
    ],
)
def test_unknown_routes_do_not_match(method: str, path: str) -> None:
    assert ROUTES.match(method, path) is None


def test_the_same_route_in_two_functions_is_an_error() -> None:
    with pytest.raises(ValueError, match="declared by both"):
        RouteTable([Route("GET", "/a", "One", "Api"), Route("GET", "/a", "Two", "Api")])


NOW = datetime(2026, 3, 12, 19, 3, 58, 390000, tzinfo=UTC)


def test_event_has_the_payload_format_2_shape() -> None:
    event = build_event(
        method="POST",
        raw_path="/api/v1/images/img%201",
        raw_query="tag=a&tag=b&q=x%20y&empty=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "pytest"),
            ("Content-Type", "application/json"),
            ("X-Dup", "1"),
            ("x-dup", "2"),
            ("Cookie", "a=1; b=2"),
        ],
        body=b'{"hello": "world"}',
        route_key="POST /api/v1/images/{image_id}",
        path_parameters={"image_id": "img 1"},
        source_ip="127.0.0.2",
        server_port=3000,
        request_id="req-1",
        now=NOW,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /api/v1/images/{image_id}"
    assert event["rawPath"] == "/api/v1/images/img%201"
    assert event["rawQueryString"] == "tag=a&tag=b&q=x%20y&empty="
    assert event["cookies"] == ["a=1", "b=2"]
    headers = event["headers"]
    assert headers["x-dup"] == "1,2"
    assert headers["content-type"] == "application/json"
    assert headers["x-forwarded-for"] == "127.0.0.2"
    assert headers["x-forwarded-port"] == "3000"
    assert headers["x-forwarded-proto"] == "http"
    assert "cookie" not in headers
    assert all(name == name.lower() for name in headers)
    assert event["queryStringParameters"] == {"tag": "a,b", "q": "x y", "empty": ""}
    assert event["pathParameters"] == {"image_id": "img 1"}
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "127",
        "http": {
            "method": "POST",
            "path": "/api/v1/images/img%201",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.2",
            "userAgent": "pytest",
        },
        "requestId": "req-1",
        "routeKey": "POST /api/v1/images/{image_id}",
        "stage": "$default",
        "time": "12/Mar/2026:19:03:58 +0000",
        "timeEpoch": 1773342238390,
    }


def test_event_omits_empty_parts() -> None:
    event = build_event(
        method="GET",
        raw_path="/a",
        raw_query="",
        headers=[],
        body=b"",
        route_key="GET /a",
        path_parameters={},
    )
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0binary", True),
        ("multipart/form-data; boundary=x", b"--x\r\n", True),
        ("text/plain; charset=utf-8", "héllo".encode(), False),
        ("application/problem+json", b"{}", False),
        ("text/plain", b"\xff\xfe not utf-8", True),
    ],
)
def test_binary_bodies_are_base64_encoded(content_type: str, body: bytes, base64_encoded: bool) -> None:
    event = build_event(
        method="POST",
        raw_path="/a",
        raw_query="",
        headers=[("Content-Type", content_type)],
        body=body,
        route_key="POST /a",
        path_parameters={},
    )
    assert event["isBase64Encoded"] is base64_encoded
    decoded = base64.b64decode(event["body"]) if base64_encoded else event["body"].encode()
    assert decoded == body


def test_api_gateway_time_does_not_depend_on_the_locale() -> None:
    assert api_gateway_time(datetime(2026, 11, 3, 4, 5, 6, tzinfo=UTC)) == "03/Nov/2026:04:05:06 +0000"


def test_response_object_is_translated() -> None:
    response = response_from_result(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Count": 3},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "cookies": ["session=1; HttpOnly", "theme=dark"],
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status_code == 201
    assert response.body == b"\x00\x01"
    assert response.headers["X-Count"] == "3"
    assert response.headers.getlist("X-Multi") == ["a", "b"]
    assert response.headers.getlist("set-cookie") == ["session=1; HttpOnly", "theme=dark"]


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"message": "hi"}, b'{"message": "hi"}'),
        ("Hello from Lambda!", b"Hello from Lambda!"),
        ([1, 2], b"[1, 2]"),
    ],
)
def test_results_without_status_code_become_200_json(result: Any, body: bytes) -> None:
    response = response_from_result(result)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.body == body


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "200"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": {"x": ["list"]}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "body": object()},
        {"statusCode": 200, "body": "x" * (6 * 1024 * 1024)},  # over Lambda's response limit
    ],
    ids=["status-not-int", "body-not-str", "header-list", "bad-base64", "not-json", "over-6mb"],
)
def test_malformed_responses_are_rejected(result: Any) -> None:
    with pytest.raises(MalformedResponseError):
        response_from_result(result)


# ------------------------------------------------------------------------------------------ the app


def _function(logical_id: str, handler: Any) -> LocalFunction:
    spec = FunctionSpec(
        logical_id=logical_id,
        name=f"test-{logical_id.lower()}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:test-{logical_id.lower()}",
        code_uri=Path("."),
        handler="app.handler",
        runtime="python3.12",
        timeout=3,
        memory_size=128,
        environment={},
    )
    return LocalFunction(spec, handler)


def _echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["rawPath"] == "/boom":
        raise RuntimeError("boom")
    return {
        "statusCode": 200,
        "headers": {"access-control-allow-origin": "https://evil.test"},
        "body": json.dumps({"event": event, "function": context.function_name}),
    }


CORS = CorsConfig(
    allow_origins=("https://app.test",),
    allow_headers=("authorization",),
    allow_methods=("GET", "POST"),
    max_age=600,
)


@pytest.fixture
def client() -> TestClient:
    routes = RouteTable(
        [
            Route("POST", "/echo/{id}", "Echo", "HttpApi"),
            Route("PUT", "/echo/{id}", "Echo", "HttpApi"),
            Route("GET", "/boom", "Echo", "HttpApi"),
        ]
    )
    api = HttpApi(routes, {"Echo": _function("Echo", _echo)}, {"HttpApi": CORS}, max_body_bytes=1024)
    return TestClient(gateway_app([api]), base_url="http://127.0.0.1:3000")


def test_app_invokes_the_function_with_the_event_and_a_context(client: TestClient) -> None:
    response = client.post("/echo/42?a=1", content=b"{}", headers={"Origin": "https://app.test"})
    assert response.status_code == 200
    payload = response.json()
    assert payload["function"] == "test-echo"
    assert payload["event"]["pathParameters"] == {"id": "42"}
    assert payload["event"]["queryStringParameters"] == {"a": "1"}
    assert payload["event"]["requestContext"]["requestId"] == response.headers["apigw-requestid"]
    # API Gateway replaces the integration's CORS headers with its own
    assert response.headers["access-control-allow-origin"] == "https://app.test"


def test_app_answers_404_for_unknown_routes(client: TestClient) -> None:
    response = client.get("/nope/42")
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "TRACE", "HEAD"])
def test_a_known_path_with_another_method_is_405_with_allow(client: TestClient, method: str) -> None:
    response = client.request(method, "/echo/42")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, PUT"
    assert response.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert response.json() == {"message": "Method Not Allowed"}


def test_app_answers_413_for_a_body_over_the_limit(client: TestClient) -> None:
    declared = client.post("/echo/1", content=b"x" * 1025)
    assert (declared.status_code, declared.json()) == (413, {"message": "Request Entity Too Large"})

    def chunks() -> Any:  # no Content-Length: the body is counted as it arrives
        yield b"x" * 1000
        yield b"x" * 1000

    streamed = client.post("/echo/1", content=chunks())
    assert (streamed.status_code, streamed.json()) == (413, {"message": "Request Entity Too Large"})
    assert client.post("/echo/1", content=b"x" * 1024).status_code == 200


def test_app_answers_500_when_the_handler_raises(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/boom")
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    assert "RuntimeError: boom" in caplog.text


def test_app_answers_cors_preflight(client: TestClient) -> None:
    response = client.options(
        "/echo/1", headers={"Origin": "https://app.test", "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.test"
    assert response.headers["access-control-allow-methods"] == "GET,POST"
    assert response.headers["access-control-allow-headers"] == "authorization"
    assert response.headers["access-control-max-age"] == "600"
    other = client.options(
        "/echo/1", headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
    )
    assert other.status_code == 204
    assert "access-control-allow-origin" not in other.headers
