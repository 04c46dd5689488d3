"""Fixtures for the credits and payments tests: the WeChat Pay sandbox (self-made merchant and platform RSA
keys) with the API pointed at it, its notifies delivered to the real API handler as API Gateway events,
and a DynamoDB that applies one request at a time for the tests that race threads."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from aws_lambda_powertools.utilities import parameters
from moto.dynamodb.responses import DynamoHandler

from photopipe import wiring
from photopipe_local.wechat_sandbox import WechatPaySandbox
from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import fleet, processed_image, register_user

NOTIFY_PATH = "/api/v1/payments/wechat/notify"


def notify_event(headers: Mapping[str, str], body: bytes, *, base64_encoded: bool = False) -> dict[str, Any]:
    """The API Gateway event a notify becomes (from `events/api-wechat-notify.json`): headers lowercased,
    the body as received - a UTF-8 string, or base64 when API Gateway encodes it."""
    event = load_event("api-wechat-notify.json")
    event["headers"] = {
        **{k: v for k, v in event["headers"].items() if not k.startswith("wechatpay-")},
        **{k.lower(): v for k, v in headers.items()},
    }
    event["body"] = base64.b64encode(body).decode() if base64_encoded else body.decode("utf-8")
    event["isBase64Encoded"] = base64_encoded
    return event


@dataclass
class Wechat:
    """The sandbox, the API it answers, and what reached the notify route."""

    sandbox: WechatPaySandbox
    api: ApiClient
    stack: Stack
    base64_bodies: bool = False
    drop_notifies: bool = False  # True: the notify never reaches us (lost on the way)
    answers: list[tuple[int, Any]] = field(default_factory=list)

    def deliver(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        assert urlsplit(url).path == NOTIFY_PATH, url
        if self.drop_notifies:
            return 599, b""
        return self.post_notify(headers, body, base64_encoded=self.base64_bodies)

    def post_notify(
        self, headers: Mapping[str, str], body: bytes, *, base64_encoded: bool = False
    ) -> tuple[int, bytes]:
        resp = load_handler("api").handler(
            notify_event(headers, body, base64_encoded=base64_encoded), FakeContext("photopipe-api")
        )
        self.answers.append((resp["statusCode"], json.loads(resp["body"])))
        return int(resp["statusCode"]), str(resp["body"]).encode()

    def buy(self, token: str, package_id: str = "credits-10", **extra: Any) -> dict[str, Any]:
        status, body = self.api.call(
            "POST", "/api/v1/payments/orders", body={"package_id": package_id, **extra}, token=token
        )
        assert status == 201, body
        return dict(body)

    def order(self, token: str, order_id: str) -> dict[str, Any]:
        status, body = self.api.call("GET", f"/api/v1/payments/orders/{order_id}", token=token)
        assert status == 200, body
        return dict(body)


def credits_of(api: ApiClient, token: str) -> dict[str, Any]:
    status, body = api.call("GET", "/api/v1/credits", token=token)
    assert status == 200, body
    return dict(body)


def balance(api: ApiClient, token: str) -> int:
    return int(credits_of(api, token)["balance"])


@pytest.fixture
def wechat(stack: Stack, api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wechat]:
    """WeChat Pay on loopback: the API's settings and its credentials secret point at the sandbox."""
    holder: dict[str, Wechat] = {}
    sandbox = WechatPaySandbox(deliver=lambda url, headers, body: holder["w"].deliver(url, headers, body))
    with sandbox:
        for name, value in sandbox.environment().items():
            monkeypatch.setenv(name, value)
        stack.new_client("secretsmanager").put_secret_value(
            SecretId=stack.env["WECHAT_PAY_SECRET_ID"], SecretString=sandbox.keys.secret_document()
        )
        wiring.reset()
        parameters.clear_caches()
        holder["w"] = Wechat(sandbox=sandbox, api=api, stack=stack)
        yield holder["w"]
    wiring.reset()


@pytest.fixture
def one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto applies a conditional write as an unlocked check-then-write, and a transaction by snapshotting
    and restoring whole tables, so threads race inside moto itself (lost writes, "dictionary changed size
    during iteration"). DynamoDB applies each request atomically; this lock gives moto that property and
    nothing more: which thread's request wins is still decided by the conditions in the requests."""
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


@pytest.fixture
def worker_up(stack: Stack) -> None:
    fleet(stack).register("gpu-1", provider="CUDAExecutionProvider", max_batch=32)


@pytest.fixture
def ada(api: ApiClient) -> tuple[str, str]:
    """A new user: (token, user_id)."""
    return register_user(api, "ada")


def photos(stack: Stack, user_id: str, n: int) -> list[str]:
    return [processed_image(stack, user_id, size=(64 + i, 48))[0] for i in range(n)]
