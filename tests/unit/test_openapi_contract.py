"""The OpenAPI document states every answer a route can give, with the one error schema: what a client (or
schemathesis, in tests/e2e/test_contract.py) holds the API to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from photopipe.api.app import app

ERROR_REF = "#/components/schemas/ErrorBody"


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    paths = json.loads(app.get_openapi_json_schema())["paths"]
    return [(method.upper(), path, op) for path, ops in paths.items() for method, op in ops.items()]


OPERATIONS = _operations()
IDS = [f"{m} {p}" for m, p, _ in OPERATIONS]


def _error_schema(response: dict[str, Any]) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=IDS)
def test_every_error_a_route_declares_uses_the_error_schema(
    method: str, path: str, op: dict[str, Any]
) -> None:
    errors = {status: r for status, r in op["responses"].items() if int(status) >= 400}
    assert "422" in errors, "Powertools validates every route: 422 is always possible"
    # WeChat Pay's notify is answered in WeChat Pay's own format ({code, message}), whatever the status
    notify = path == "/api/v1/payments/wechat/notify"
    expected = {s: NOTIFY_REF if notify and s != "422" else ERROR_REF for s in errors}
    assert {status: _error_schema(r) for status, r in errors.items()} == expected


NOTIFY_REF = "#/components/schemas/WechatNotifyAnswerOut"


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=IDS)
def test_no_route_promises_a_500(method: str, path: str, op: dict[str, Any]) -> None:
    assert not [s for s in op["responses"] if int(s) >= 500 and s != "503"], "a 500 is a bug, not a contract"


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=IDS)
def test_what_a_route_needs_it_declares_the_refusal_of(method: str, path: str, op: dict[str, Any]) -> None:
    declared = set(op["responses"])
    if op.get("security"):
        assert "401" in declared, "a route behind a token or secret can answer 401"
    if "requestBody" in op:
        assert {"400", "415"} <= declared, "a JSON body can be malformed (400) or not JSON at all (415)"
    for parameter in op.get("parameters", []):
        if parameter["in"] == "path":
            assert parameter["schema"].get("pattern"), f"{parameter['name']}: ids are validated by pattern"
            assert parameter["schema"].get("maxLength"), f"{parameter['name']}: and by length"


def test_quota_answers_declare_retry_after() -> None:
    by_name = {f"{m} {p}": op for m, p, op in OPERATIONS}
    for name in (
        "POST /api/v1/uploads",
        "POST /api/v1/enhance",
        "POST /api/v1/enhance/batch",
        "POST /api/v1/auth/login",
    ):
        assert "Retry-After" in by_name[name]["responses"]["429"]["headers"], name


def test_statistics_declare_the_admin_refusal() -> None:
    stats = {p: op for _, p, op in OPERATIONS if p.startswith("/api/v1/stats/")}
    assert "/api/v1/stats/payments" in stats
    assert len(stats) >= 4
    assert [p for p, op in stats.items() if "403" not in op["responses"]] == []


def test_a_batch_of_enhancements_names_each_image_once() -> None:
    schemas = json.loads(app.get_openapi_json_schema())["components"]["schemas"]
    assert schemas["EnhanceBatchRequest"]["properties"]["image_ids"]["uniqueItems"] is True
