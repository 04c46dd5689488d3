"""Logs an operator can page on: an expected refusal (a 4xx, a 503 for no enhancement worker, a throttled
model call the queue retries) is one INFO/WARNING line without a stack trace; a fault is an ERROR with
one. Checked on the records the handlers write (captured from the `photopipe` logger and the tracer's)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from tests.conftest import FakeContext
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes
from tests.integration.enhance_support import processed_image
from tests.integration.test_classify import (  # noqa: F401 - fixtures
    classify_event,
    classify_handler,
    dashscope,
    ingest,
)

# ruff: noqa: F811 - the fixtures imported from test_classify are used as parameters


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="photopipe")
    caplog.set_level(logging.INFO, logger="aws_lambda_powertools")
    return caplog


def _user(api: ApiClient) -> tuple[str, str]:
    name = f"u{uuid.uuid4().hex[:10]}"
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": f"{name}@example.com", "password": "p" * 12},
    )
    assert status == 201
    return body["token"], body["user"]["user_id"]


def _the_answer(logs: pytest.LogCaptureFixture, status: int) -> list[logging.LogRecord]:
    """The records that logged a request's outcome with this status."""
    return [r for r in logs.records if getattr(r, "status", None) == status]


def _traced(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in logs.records if r.exc_info]


def test_refusals_are_info_or_warning_without_a_stack_trace(
    api: ApiClient, stack: Stack, logs: pytest.LogCaptureFixture
) -> None:
    token, user_id = _user(api)
    image_id, _ = processed_image(stack, user_id)  # and no enhancement worker: POST /enhance is a 503

    requests: list[tuple[int, tuple[str, str], dict[str, Any]]] = [
        (404, ("GET", f"/api/v1/images/{uuid.uuid4().hex}"), {"token": token}),
        (401, ("GET", "/api/v1/profile"), {}),
        (422, ("POST", "/api/v1/enhance"), {"token": token, "body": {"image_id": ""}}),
        (
            409,
            ("POST", "/api/v1/auth/register"),
            {"body": {"username": "taken", "email": "t@x.io", "password": "p" * 9}},
        ),
        (503, ("POST", "/api/v1/enhance"), {"token": token, "body": {"image_id": image_id}}),
    ]
    api.call(
        "POST", "/api/v1/auth/register", body={"username": "taken", "email": "t@x.io", "password": "p" * 9}
    )
    logs.clear()
    for status, (method, path), kwargs in requests:
        got, body = api.call(method, path, **kwargs)
        assert got == status, body

    expected_levels = {404: "INFO", 401: "INFO", 422: "INFO", 409: "INFO", 503: "WARNING"}
    for status, level in expected_levels.items():
        records = _the_answer(logs, status)
        assert [r.levelname for r in records] == [level], status
    assert _traced(logs) == [], "no stack trace for an expected refusal"
    assert not [r for r in logs.records if r.levelno >= logging.ERROR]


def test_a_limit_is_a_warning_without_a_stack_trace(
    api: ApiClient, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from photopipe import wiring

    monkeypatch.setenv("PHOTOPIPE_QUOTA_UPLOADS_PER_DAY", "1")
    wiring.reset()
    token, _ = _user(api)
    body = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 10}
    assert api.call("POST", "/api/v1/uploads", token=token, body=body)[0] == 201
    logs.clear()

    assert api.call("POST", "/api/v1/uploads", token=token, body=body)[0] == 429

    assert [r.levelname for r in _the_answer(logs, 429)] == ["WARNING"]
    assert _traced(logs) == []


def test_a_body_that_is_not_json_is_logged_as_a_refusal(
    api: ApiClient, logs: pytest.LogCaptureFixture
) -> None:
    resp = api.call_raw(
        "POST", "/api/v1/auth/login", body=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert resp["statusCode"] == 400
    assert [r.levelname for r in _the_answer(logs, 400)] == ["INFO"]
    assert _traced(logs) == []


def test_a_fault_is_an_error_with_its_stack_trace(
    api: ApiClient, stack: Stack, logs: pytest.LogCaptureFixture
) -> None:
    # GIVEN the images table is gone (a broken deployment)
    token, _ = _user(api)
    stack.dynamodb.Table(stack.images_table).delete()
    logs.clear()

    # WHEN a user lists their photos
    status, body = api.call("GET", "/api/v1/images", token=token)

    # THEN they get a 500 in the error shape, and the log has an ERROR with the trace to debug it
    assert (status, body["error"]["code"]) == (500, "internal_error")
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert errors
    assert all(r.exc_info for r in errors)
    assert "ResourceNotFoundException" in "".join(logs.text)


def test_a_bug_is_an_error_with_its_stack_trace(
    api: ApiClient, stack: Stack, logs: pytest.LogCaptureFixture
) -> None:
    token, user_id = _user(api)
    image_id = stack.seed_image(f"originals/{user_id}/{uuid.uuid4().hex}/a.jpg")
    stack.dynamodb.Table(stack.images_table).update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": "half-baked"},
    )
    logs.clear()
    assert api.call("GET", f"/api/v1/images/{image_id}", token=token)[0] == 500
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["request failed unexpectedly"]
    assert errors[0].exc_info is not None
    assert json.loads(json.dumps(getattr(errors[0], "error_type", ""))) == "ValidationError"


def test_a_throttled_model_call_is_a_warning_not_a_traced_error(
    stack: Stack,
    ingest_handler: Any,
    classify_handler: Any,
    dashscope: FakeDashScope,
    logs: pytest.LogCaptureFixture,
) -> None:
    dashscope.fail_next(4, status=429)
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    logs.clear()

    result = classify_handler(classify_event(image_id), FakeContext())

    assert len(result["batchItemFailures"]) == 1  # the queue retries it
    assert [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING] == [
        "vision model call failed"
    ] * 4 + ["classification failed"]
    assert _traced(logs) == []


def test_giving_up_on_a_photo_is_an_error_with_its_trace(
    stack: Stack,
    ingest_handler: Any,
    classify_handler: Any,
    dashscope: FakeDashScope,
    logs: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a processed photo whose preview has gone (a poison message for classify)
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    stack.s3.delete_object(Bucket=stack.bucket, Key=stack.image(image_id)["preview_key"])
    logs.clear()

    # WHEN its last delivery fails too
    result = classify_handler(classify_event(image_id, receive_count=3), FakeContext())

    # THEN the message goes to the DLQ, the photo says why, and the log has an ERROR with the trace
    assert len(result["batchItemFailures"]) == 1
    record = stack.image(image_id)
    assert (record["state"], record["reason"]) == ("classification_failed", "classification_gave_up")
    assert "dead-letter queue" in record["reason_message"]
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert errors
    assert all(r.exc_info for r in errors)
    assert len(dashscope.llm_requests) == 0
