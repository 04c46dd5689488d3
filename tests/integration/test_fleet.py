"""The GPU fleet registry through the API: register / unregister / list with the shared secret, health from
heartbeats (silent for 90 s → unhealthy and not counted), the health endpoint, and the 503 it drives."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from photopipe.adapters.fleet_http import HttpFleetLink
from photopipe.adapters.workers import RETAIN_S
from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import fleet_secret, processed_image, register_user


def call(api: ApiClient, method: str, path: str, *, secret: str | None, body: Any = None) -> tuple[int, Any]:
    """A webhook call: the secret travels in the X-Fleet-Secret header."""
    event = load_event("api-webhook-register.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["headers"].pop("x-fleet-secret")
    if secret is not None:
        event["headers"]["x-fleet-secret"] = secret
    if body is None:
        event.pop("body", None)
    else:
        event["body"] = json.dumps(body)
    return api._send(event)


def age_heartbeat(stack: Stack, worker_id: str, seconds: float) -> None:
    """As if the worker had been silent for `seconds`."""
    stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).update_item(
        Key={"worker_id": worker_id},
        UpdateExpression="SET heartbeat_at = :t",
        ExpressionAttributeValues={":t": int(time.time() - seconds)},
    )


def test_sample_event_registers_a_worker(stack: Stack, api: ApiClient) -> None:
    event = load_event("api-webhook-register.json")
    event["headers"]["x-fleet-secret"] = fleet_secret(stack)

    status, body = api._send(event)

    assert status == 200, body
    assert body["success"] is True
    assert body["worker"]["worker_id"] == "gpu-worker-1"
    assert body["worker"]["healthy"] is True


def test_register_list_unregister_with_the_secret(stack: Stack, api: ApiClient) -> None:
    secret = fleet_secret(stack)
    status, _ = call(
        api,
        "POST",
        "/webhook/register",
        secret=secret,
        body={"worker_id": "w1", "provider": "CUDAExecutionProvider"},
    )
    assert status == 200
    # the old gateway's body form, secret inside it
    status, body = call(
        api, "POST", "/webhook/register", secret=None, body={"ip": "10.0.0.7", "port": 8000, "secret": secret}
    )
    assert (status, body["worker"]["worker_id"], body["worker"]["url"]) == (
        200,
        "10.0.0.7:8000",
        "http://10.0.0.7:8000",
    )

    status, body = call(api, "GET", "/webhook/servers", secret=secret)
    assert status == 200
    assert (body["healthy"], body["unhealthy"]) == (2, 0)
    assert {s["worker_id"] for s in body["servers"]} == {"w1", "10.0.0.7:8000"}

    status, body = call(api, "POST", "/webhook/unregister", secret=secret, body={"worker_id": "w1"})
    assert (status, body["removed"]) == (200, True)
    _, body = call(api, "GET", "/webhook/servers", secret=secret)
    assert [s["worker_id"] for s in body["servers"]] == ["10.0.0.7:8000"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/webhook/register", {"worker_id": "w1"}),
        ("POST", "/webhook/unregister", {"worker_id": "w1"}),
        ("GET", "/webhook/servers", None),
    ],
)
def test_a_wrong_or_missing_secret_is_a_json_401(
    stack: Stack, api: ApiClient, method: str, path: str, body: Any
) -> None:
    status, answer = call(api, method, path, secret="not-the-secret", body=body)
    assert (status, answer["error"]["code"]) == (401, "invalid_fleet_secret")
    status, answer = call(api, method, path, secret=None, body=body)
    assert (status, answer["error"]["code"]) == (401, "fleet_secret_required")
    assert stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).scan()["Items"] == []


def test_the_secret_is_never_logged(stack: Stack, api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    secret = fleet_secret(stack)
    call(api, "POST", "/webhook/register", secret=secret, body={"worker_id": "w1"})
    call(api, "GET", "/webhook/servers", secret=secret[:-1] + "x")
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    assert secret[:-1] not in out.out + out.err


def test_a_worker_silent_for_90_s_is_unhealthy_and_drives_the_503(stack: Stack, api: ApiClient) -> None:
    secret = fleet_secret(stack)
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    call(api, "POST", "/webhook/register", secret=secret, body={"worker_id": "w1"})

    # healthy: the health endpoint counts it and enhancement is accepted
    status, health = api.invoke_file("api-health.json")
    assert (status, health["fleet"]) == (200, {"healthy": 1, "unhealthy": 0})
    assert api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)[0] == 202

    # 85 s without a heartbeat: still healthy (within three 30 s intervals)
    age_heartbeat(stack, "w1", 85)
    assert api.invoke_file("api-health.json")[1]["fleet"] == {"healthy": 1, "unhealthy": 0}

    # 91 s: unhealthy, listed as such, and no longer enough to accept a job
    age_heartbeat(stack, "w1", 91)
    _, health = api.invoke_file("api-health.json")
    assert health["fleet"] == {"healthy": 0, "unhealthy": 1}
    _, servers = call(api, "GET", "/webhook/servers", secret=secret)
    assert [(s["worker_id"], s["healthy"]) for s in servers["servers"]] == [("w1", False)]
    status, body = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    assert (status, body["error"]["code"]) == (503, "enhancement_unavailable")

    # a heartbeat (registering again) brings it back
    call(api, "POST", "/webhook/register", secret=secret, body={"worker_id": "w1"})
    assert api.invoke_file("api-health.json")[1]["fleet"] == {"healthy": 1, "unhealthy": 0}


def test_expired_items_are_ignored_even_though_ttl_has_not_deleted_them(stack: Stack, api: ApiClient) -> None:
    secret = fleet_secret(stack)
    call(api, "POST", "/webhook/register", secret=secret, body={"worker_id": "gone"})
    stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).update_item(
        Key={"worker_id": "gone"},
        UpdateExpression="SET heartbeat_at = :h, expires_at = :e",
        ExpressionAttributeValues={":h": int(time.time() - RETAIN_S - 10), ":e": int(time.time() - 10)},
    )

    _, servers = call(api, "GET", "/webhook/servers", secret=secret)
    assert servers == {"healthy": 0, "unhealthy": 0, "servers": []}
    assert api.invoke_file("api-health.json")[1]["fleet"] == {"healthy": 0, "unhealthy": 0}
    assert len(stack.dynamodb.Table(stack.env["WORKERS_TABLE"]).scan()["Items"]) == 1  # still stored


def test_openapi_lists_the_enhancement_and_fleet_routes(stack: Stack) -> None:
    response = load_handler("api").handler(
        {**load_event("api-health.json"), "rawPath": "/api/v1/openapi.json"}, FakeContext()
    )
    paths = json.loads(response["body"])["paths"]
    assert {"/api/v1/enhance", "/api/v1/enhance/{job_id}", "/webhook/register"} <= set(paths)


def test_a_worker_can_register_over_http_with_the_secret(stack: Stack, api: ApiClient) -> None:
    """`PHOTOPIPE_FLEET_MODE=http`: the worker calls the webhook routes (served here on loopback by the
    API function, as API Gateway would)."""
    handler = load_handler("api").handler

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            event = load_event("api-webhook-register.json")
            event["rawPath"] = event["requestContext"]["http"]["path"] = self.path
            event["routeKey"] = event["requestContext"]["routeKey"] = f"POST {self.path}"
            event["headers"] = {k.lower(): v for k, v in self.headers.items()}
            event["body"] = self.rfile.read(int(self.headers["content-length"])).decode()
            resp = handler(event, FakeContext())
            self.send_response(resp["statusCode"])
            self.end_headers()
            self.wfile.write((resp.get("body") or "").encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        link = HttpFleetLink(
            api_url=url,
            secret=fleet_secret(stack),
            worker_id="remote-1",
            provider="CUDAExecutionProvider",
            max_batch=16,
        )
        link.register()
        _, servers = call(api, "GET", "/webhook/servers", secret=fleet_secret(stack))
        assert [(s["worker_id"], s["max_batch"], s["healthy"]) for s in servers["servers"]] == [
            ("remote-1", 16, True)
        ]
        link.unregister()
        assert call(api, "GET", "/webhook/servers", secret=fleet_secret(stack))[1]["servers"] == []

        wrong = HttpFleetLink(api_url=url, secret="wrong", worker_id="remote-2")
        with pytest.raises(Exception, match="401"):
            wrong.register()
    finally:
        server.shutdown()
