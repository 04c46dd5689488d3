"""The API function end to end against moto: auth, uploads, listing, ownership, errors."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import jwt
import pytest

from photopipe.observability import logger
from tests.integration.conftest import ApiClient, Stack


def _register(api: ApiClient, name: str = "ada", email: str | None = None) -> dict[str, Any]:
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": email or f"{name}@example.com", "password": "correct-horse-battery"},
    )
    assert status == 201, body
    return body


# ------------------------------------------------------------------ ops
def test_health_event_from_events_dir(api: ApiClient) -> None:
    status, body = api.invoke_file("api-health.json")
    assert status == 200
    assert body["status"] == "ok"


def test_info_reports_limits(api: ApiClient) -> None:
    status, body = api.invoke_file("api-info.json")
    assert status == 200
    assert body["limits"]["max_upload_bytes"] == 52428800
    assert "image/heic" in body["accepted_content_types"]


def test_openapi_document_lists_routes_and_bearer_auth(api: ApiClient) -> None:
    status, body = api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    assert body["openapi"].startswith("3.")
    assert "/api/v1/uploads" in body["paths"]
    assert "/api/v1/images/{image_id}" in body["paths"]
    assert body["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_unknown_route_is_a_json_404(api: ApiClient) -> None:
    status, body = api.call("GET", "/api/v1/nope")
    assert status == 404
    assert body["error"]["code"] == "no_such_route"


# ------------------------------------------------------------------ auth
def test_register_event_from_events_dir_then_login_with_username_or_email(api: ApiClient) -> None:
    status, body = api.invoke_file("api-register.json")
    assert status == 201
    assert body["user"]["username"] == "ada"
    assert body["token_type"] == "Bearer"
    assert "password" not in json.dumps(body)

    status, by_name = api.invoke_file("api-login.json")
    assert status == 200
    assert by_name["user"]["user_id"] == body["user"]["user_id"]

    status, by_email = api.call(
        "POST", "/api/v1/auth/login", body={"email": "ADA@example.com", "password": "correct-horse-battery"}
    )
    assert status == 200
    assert by_email["expires_in"] == 3600

    status, profile = api.call("GET", "/api/v1/profile", token=by_email["token"])
    assert status == 200
    assert profile["user"]["email"] == "ada@example.com"


def test_duplicate_username_and_email_are_409_with_distinct_codes(api: ApiClient) -> None:
    _register(api, "ada")
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": "ADA", "email": "x@example.com", "password": "p" * 10},
    )
    assert (status, body["error"]["code"]) == (409, "username_taken")
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": "bob", "email": "Ada@Example.com", "password": "p" * 10},
    )
    assert (status, body["error"]["code"]) == (409, "email_taken")
    # the failed attempts left nothing behind: "bob" can still register with his own address
    assert (
        api.call(
            "POST",
            "/api/v1/auth/register",
            body={"username": "bob", "email": "bob@example.com", "password": "p" * 10},
        )[0]
        == 201
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ab", "email": "a@example.com", "password": "p" * 10}, "username"),
        ({"username": "abc", "email": "not-an-email", "password": "p" * 10}, "email"),
        ({"username": "abc", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "a/../b", "email": "a@example.com", "password": "p" * 10}, "username"),
    ],
)
def test_register_rejects_invalid_fields_naming_them(api: ApiClient, payload: dict, field: str) -> None:
    status, body = api.call("POST", "/api/v1/auth/register", body=payload)
    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    assert field in body["error"]["message"]


def test_wrong_password_and_unknown_user_look_the_same(api: ApiClient) -> None:
    _register(api, "ada")
    wrong = api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": "nope-nope-nope"})
    unknown = api.call("POST", "/api/v1/auth/login", body={"username": "zed", "password": "nope-nope-nope"})
    assert wrong == unknown
    assert wrong[0] == 401
    assert wrong[1]["error"]["code"] == "invalid_credentials"


def _forge(payload: dict[str, Any], key: str, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def test_bad_tokens_are_401_json(api: ApiClient, stack: Stack) -> None:
    user = _register(api)["user"]
    now = int(time.time())
    claims = {"sub": user["user_id"], "iss": "photopipe", "aud": "photopipe-api", "iat": now, "exp": now + 60}
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    cases = {
        "missing_token": None,
        "alg none": f"{header}.{body}.",
        "wrong key": _forge(claims, "k" * 64),
        "expired": _forge({**claims, "iat": now - 7200, "exp": now - 3600}, stack.jwt_secret),
        "malformed": "not.a.jwt",
    }
    for name, token in cases.items():
        status, resp = api.call("GET", "/api/v1/profile", token=token)
        assert status == 401, name
        assert resp["error"]["code"] in {"missing_token", "invalid_token", "token_expired"}, name
    # and the real secret does work, so the failures above are about the tokens
    assert api.call("GET", "/api/v1/profile", token=_forge(claims, stack.jwt_secret))[0] == 200


def test_no_password_or_secret_in_logs(
    api: ApiClient, stack: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Our own logs at their most verbose (botocore's wire dumps are off in Lambda, as here by default).
    caplog.set_level(logging.DEBUG, logger="photopipe")
    logger.setLevel("DEBUG")
    try:
        token = _register(api)["token"]
        api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": "correct-horse-battery"})
        api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": "wrong-horse-battery"})
        api.call("GET", "/api/v1/profile", token=token)
    finally:
        logger.setLevel("WARNING")
    out = capsys.readouterr()
    assert "user logged in" in out.out + caplog.text, "the logs were captured"
    logs = out.out + out.err + caplog.text
    assert "horse-battery" not in logs
    assert stack.jwt_secret not in logs
    assert "scrypt$" not in logs


# ------------------------------------------------------------------ uploads and images
def test_upload_creates_a_pending_record_and_a_scoped_post(api: ApiClient, stack: Stack) -> None:
    token = _register(api)["token"]
    status, body = api.call(
        "POST",
        "/api/v1/uploads",
        token=token,
        body={"filename": "../../Holiday Photo.JPG", "content_type": "image/jpeg", "size": 123456},
    )
    assert status == 201, body
    user_id = api.call("GET", "/api/v1/profile", token=token)[1]["user"]["user_id"]
    assert body["key"] == f"originals/{user_id}/{body['image_id']}/Holiday_Photo.JPG"
    assert body["upload"]["fields"]["key"] == body["key"]
    policy = json.loads(base64.b64decode(body["upload"]["fields"]["policy"]))
    assert ["content-length-range", 1, 52428800] in policy["conditions"]

    status, image = api.call("GET", f"/api/v1/images/{body['image_id']}", token=token)
    assert status == 200
    assert image["state"] == "pending_upload"
    assert image["filename"] == "Holiday Photo.JPG"
    assert image["urls"]["original"] is None


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (
            {"filename": "doc.pdf", "content_type": "application/pdf", "size": 10},
            400,
            "unsupported_media_type",
        ),
        ({"filename": "big.jpg", "content_type": "image/jpeg", "size": 52428801}, 413, "too_large"),
        ({"filename": "x.jpg", "content_type": "image/jpeg", "size": 0}, 422, "invalid_request"),
    ],
)
def test_upload_refuses_what_ingest_would_reject(
    api: ApiClient, payload: dict, status: int, code: str
) -> None:
    token = _register(api)["token"]
    got_status, body = api.call("POST", "/api/v1/uploads", token=token, body=payload)
    assert (got_status, body["error"]["code"]) == (status, code)


def test_uploads_need_a_token(api: ApiClient) -> None:
    status, body = api.call(
        "POST", "/api/v1/uploads", body={"filename": "a.jpg", "content_type": "image/jpeg", "size": 10}
    )
    assert (status, body["error"]["code"]) == (401, "missing_token")


def _new_upload(api: ApiClient, token: str, name: str) -> str:
    status, body = api.call(
        "POST",
        "/api/v1/uploads",
        token=token,
        body={"filename": name, "content_type": "image/png", "size": 10},
    )
    assert status == 201
    return str(body["image_id"])


def test_listing_is_newest_first_paginated_and_filtered(api: ApiClient) -> None:
    token = _register(api)["token"]
    ids = [_new_upload(api, token, f"p{i}.png") for i in range(5)]
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, page = api.call("GET", "/api/v1/images", token=token, query=query)
        assert status == 200
        assert len(page["items"]) <= 2
        seen += [i["image_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))

    status, page = api.call("GET", "/api/v1/images", token=token, query={"state": "processed"})
    assert (status, page["items"]) == (200, [])
    status, page = api.call(
        "GET", "/api/v1/images", token=token, query={"state": "pending_upload", "limit": "3"}
    )
    assert [i["image_id"] for i in page["items"]] == list(reversed(ids))[:3]

    status, body = api.call("GET", "/api/v1/images", token=token, query={"state": "bogus"})
    assert status == 422
    status, body = api.call("GET", "/api/v1/images", token=token, query={"cursor": "garbage!"})
    assert (status, body["error"]["code"]) == (400, "invalid_cursor")


def test_another_users_image_is_404_for_get_delete_and_absent_from_lists(api: ApiClient) -> None:
    alice = _register(api, "alice")["token"]
    mallory = _register(api, "mallory")["token"]
    image_id = _new_upload(api, alice, "mine.png")

    assert api.call("GET", f"/api/v1/images/{image_id}", token=mallory)[0] == 404
    status, body = api.call("DELETE", f"/api/v1/images/{image_id}", token=mallory)
    assert (status, body["error"]["code"]) == (404, "image_not_found")
    assert api.call("GET", "/api/v1/images", token=mallory)[1]["items"] == []
    status, body = api.call(
        "POST", "/api/v1/images/batch-delete", token=mallory, body={"image_ids": [image_id]}
    )
    assert body == {"deleted": [], "not_found": [image_id], "failed": []}
    # still there for its owner
    assert api.call("GET", f"/api/v1/images/{image_id}", token=alice)[0] == 200


def test_delete_removes_objects_and_record(api: ApiClient, stack: Stack) -> None:
    token = _register(api)["token"]
    image_id = _new_upload(api, token, "x.png")
    record = stack.image(image_id)
    stack.s3.put_object(Bucket=stack.bucket, Key=record["original_key"], Body=b"original")
    stack.s3.put_object(
        Bucket=stack.bucket, Key=f"derived/{record['user_id']}/{image_id}/thumb.webp", Body=b"t"
    )

    status, _ = api.call("DELETE", f"/api/v1/images/{image_id}", token=token)
    assert status == 204
    assert stack.keys(f"originals/{record['user_id']}/{image_id}/") == []
    assert stack.keys(f"derived/{record['user_id']}/{image_id}/") == []
    assert api.call("GET", f"/api/v1/images/{image_id}", token=token)[0] == 404


def test_batch_delete_reports_what_it_did(api: ApiClient) -> None:
    token = _register(api)["token"]
    a, b = _new_upload(api, token, "a.png"), _new_upload(api, token, "b.png")
    status, body = api.call(
        "POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": [a, "nope", b, a]}
    )
    assert status == 200
    assert body == {"deleted": [a, b], "not_found": ["nope"], "failed": []}
    assert api.call("GET", "/api/v1/images", token=token)[1]["items"] == []
