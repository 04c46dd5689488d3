"""Sessions that last and can end: a rotating refresh token (opaque, stored hashed) renews the short-lived
access token; logout ends the session; a refresh token presented twice ends it everywhere; login attempts
are limited per account and per source address; the admin flag opens the global statistics."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from photopipe import wiring
from photopipe.adapters.limits import LimitsRepository
from photopipe.adapters.sessions import SessionsRepository
from photopipe.adapters.users import UsersRepository
from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import TokenService
from photopipe.errors import NotFoundError, UnauthorizedError
from photopipe.models import REFRESH_TTL_SECONDS
from photopipe.usecases.accounts import Accounts, grant_admin
from tests.integration.conftest import ApiClient, Stack

PASSWORD = "correct-horse-battery"


def _register(api: ApiClient, name: str | None = None) -> dict[str, Any]:
    name = name or f"u{uuid.uuid4().hex[:10]}"
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert status == 201, body
    return dict(body)


def _refresh(api: ApiClient, token: str) -> tuple[int, Any]:
    return api.call("POST", "/api/v1/auth/refresh", body={"refresh_token": token})


def _login(api: ApiClient, username: str, password: str, source: str = "198.51.100.7") -> dict[str, Any]:
    return api.call_raw(
        "POST",
        "/api/v1/auth/login",
        body=json.dumps({"username": username, "password": password}),
        headers={"content-type": "application/json"},
        source_ip=source,
    )


# ------------------------------------------------------------------ refresh and logout
def test_register_and_login_return_a_refresh_token_that_renews_the_access_token(api: ApiClient) -> None:
    session = _register(api)
    assert session["refresh_expires_in"] == REFRESH_TTL_SECONDS == 30 * 24 * 3600
    assert session["expires_in"] == 3600

    status, renewed = _refresh(api, session["refresh_token"])
    assert status == 200, renewed
    assert renewed["refresh_token"] != session["refresh_token"]
    assert renewed["user"]["user_id"] == session["user"]["user_id"]
    assert api.call("GET", "/api/v1/profile", token=renewed["token"])[0] == 200
    # the next refresh spends the new token; the chain goes on
    status, again = _refresh(api, renewed["refresh_token"])
    assert status == 200
    assert again["refresh_token"] not in {session["refresh_token"], renewed["refresh_token"]}


def test_refresh_tokens_are_stored_hashed_only(api: ApiClient, stack: Stack) -> None:
    session = _register(api)
    _, renewed = _refresh(api, session["refresh_token"])
    items = json.dumps(stack.dynamodb.Table(stack.env["SESSIONS_TABLE"]).scan()["Items"], default=str)
    assert session["refresh_token"] not in items
    assert renewed["refresh_token"] not in items
    assert items.count("TOKEN#") == 2  # one item per token issued, keyed by its hash


def test_reusing_a_spent_refresh_token_ends_the_whole_session(api: ApiClient) -> None:
    # GIVEN a session refreshed once: its first token is spent, the second is current
    session = _register(api)
    _, renewed = _refresh(api, session["refresh_token"])

    # WHEN someone presents the spent token again (a thief who copied it, or the victim)
    status, body = _refresh(api, session["refresh_token"])

    # THEN it is refused as reuse, and the current token is dead too: both must log in again
    assert (status, body["error"]["code"]) == (401, "refresh_token_reused")
    status, body = _refresh(api, renewed["refresh_token"])
    assert (status, body["error"]["code"]) == (401, "session_revoked")
    # another session of the same user is not affected
    status, other = api.call(
        "POST", "/api/v1/auth/login", body={"username": session["user"]["username"], "password": PASSWORD}
    )
    assert status == 200
    assert _refresh(api, other["refresh_token"])[0] == 200


def test_logout_ends_the_session(api: ApiClient) -> None:
    session = _register(api)
    status, body = api.call("POST", "/api/v1/auth/logout", body={"refresh_token": session["refresh_token"]})
    assert (status, body) == (204, None)
    status, body = _refresh(api, session["refresh_token"])
    assert (status, body["error"]["code"]) == (401, "session_revoked")
    # logging out twice, or with a token that is not ours, is not an error
    assert api.call("POST", "/api/v1/auth/logout", body={"refresh_token": session["refresh_token"]})[0] == 204
    assert api.call("POST", "/api/v1/auth/logout", body={"refresh_token": "x" * 43})[0] == 204


def test_an_unknown_refresh_token_is_401(api: ApiClient) -> None:
    status, body = _refresh(api, "A" * 43)
    assert (status, body["error"]["code"]) == (401, "invalid_refresh_token")


def test_a_refresh_token_expires_30_days_after_it_was_issued(stack: Stack) -> None:
    # GIVEN the use case on a clock we move
    now = [1_800_000_000.0]
    accounts = Accounts(
        users=UsersRepository(stack.users_table),
        hasher=PasswordHasher(log2_n=4),
        tokens=TokenService(secret="s" * 64, issuer="photopipe", audience="photopipe-api", ttl_seconds=3600),
        sessions=SessionsRepository(stack.env["SESSIONS_TABLE"]),
        limits=LimitsRepository(stack.env["LIMITS_TABLE"]),
        clock=lambda: now[0],
    )
    session = accounts.register(username="clocky", email="clocky@example.com", password=PASSWORD)
    # WHEN it is used a day short of 30 days later, it works and the new one has 30 days again
    now[0] += REFRESH_TTL_SECONDS - 24 * 3600
    renewed = accounts.refresh(session.refresh_token)
    now[0] += REFRESH_TTL_SECONDS - 1
    renewed = accounts.refresh(renewed.refresh_token)
    # THEN a token left unused for 30 days is refused
    now[0] += REFRESH_TTL_SECONDS
    with pytest.raises(UnauthorizedError) as info:
        accounts.refresh(renewed.refresh_token)
    assert info.value.code == "refresh_token_expired"


# ------------------------------------------------------------------ login limits
def test_login_attempts_are_limited_per_account_with_retry_after(api: ApiClient) -> None:
    name = _register(api)["user"]["username"]
    # GIVEN 10 wrong passwords for one account, each from a different address
    for n in range(10):
        resp = _login(api, name, "wrong-password", source=f"203.0.113.{n}")
        assert resp["statusCode"] == 401
    # WHEN the right password comes next
    resp = _login(api, name, PASSWORD, source="203.0.113.99")
    # THEN it is refused until the window ends, saying which limit and when
    body = json.loads(resp["body"])
    assert (resp["statusCode"], body["error"]["code"]) == (429, "login_throttled")
    assert body["error"]["limit"] == "login_attempts_per_account"
    assert 0 < int(resp["headers"]["Retry-After"]) <= 900
    assert body["error"]["retry_after"] == int(resp["headers"]["Retry-After"])
    assert body["error"]["resets_at"].endswith("Z")
    # another account is not affected
    other = _register(api)["user"]["username"]
    assert _login(api, other, PASSWORD)["statusCode"] == 200


def test_successful_logins_do_not_count_against_the_limit(api: ApiClient) -> None:
    name = _register(api)["user"]["username"]
    for _ in range(12):
        assert _login(api, name, PASSWORD)["statusCode"] == 200


def test_login_attempts_are_limited_per_source_address(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOPIPE_LOGIN_MAX_FAILURES_PER_SOURCE", "5")
    wiring.reset()
    # GIVEN one address guessing at five different accounts (existing or not)
    for n in range(5):
        assert _login(api, f"victim{n}", "guess", source="192.0.2.1")["statusCode"] == 401
    # THEN a sixth account from that address is refused, and the same account from elsewhere is not
    resp = _login(api, "victim99", "guess", source="192.0.2.1")
    assert resp["statusCode"] == 429
    assert json.loads(resp["body"])["error"]["limit"] == "login_attempts_per_source"
    assert _login(api, "victim99", "guess", source="192.0.2.2")["statusCode"] == 401


# ------------------------------------------------------------------ admin
def test_global_statistics_are_for_admins(api: ApiClient) -> None:
    session = _register(api)
    token, name = session["token"], session["user"]["username"]
    assert session["user"]["admin"] is False
    for route in ("/api/v1/stats/today", "/api/v1/stats/cache", "/api/v1/stats/categories"):
        status, body = api.call("GET", route, token=token)
        assert (status, body["error"]["code"]) == (403, "admin_only"), route

    user = wiring.set_admin(name)  # what `photopipe admin grant NAME` runs

    assert user.admin is True
    assert api.call("GET", "/api/v1/profile", token=token)[1]["user"]["admin"] is True
    for route in ("/api/v1/stats/today", "/api/v1/stats/cache", "/api/v1/stats/categories"):
        assert api.call("GET", route, token=token)[0] == 200, route
    # revoking counts at once (the flag is read from the user record, not from the token)
    wiring.set_admin(name, admin=False)
    assert api.call("GET", "/api/v1/stats/today", token=token)[0] == 403


def test_granting_admin_to_nobody_names_the_username(stack: Stack) -> None:
    with pytest.raises(NotFoundError) as info:
        grant_admin(UsersRepository(stack.users_table), "nobody-here")
    assert (info.value.code, "nobody-here" in info.value.message) == ("user_not_found", True)
