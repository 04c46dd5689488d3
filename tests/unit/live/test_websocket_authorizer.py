"""The `$connect` authorizer decides with the HTTP API's own token rules: a good token becomes an Allow for
exactly this connection's route, with the user in the context; anything else fails with "Unauthorized",
which API Gateway turns into a 401 at the handshake."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from photopipe.auth.tokens import TokenService
from photopipe.models import User, WebSocketAuthorizerEvent
from photopipe.usecases.live import ConnectionRefused, WebSocketAuthorizer
from tests.conftest import load_event

SECRET = "k" * 64
USER = User(user_id="u-alice", username="alice", email="alice@example.com", created_at="2026-01-01T00:00:00Z")


def _service(secret: str = SECRET) -> TokenService:
    return TokenService(secret=secret, issuer="photopipe", audience="photopipe-api", ttl_seconds=3600)


@pytest.fixture
def authorizer() -> WebSocketAuthorizer:
    return WebSocketAuthorizer(tokens=_service)


def _event(token: str) -> WebSocketAuthorizerEvent:
    event = load_event("ws-authorizer-connect.json")
    event["queryStringParameters"]["token"] = token
    return WebSocketAuthorizerEvent.model_validate(event)


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": USER.user_id, "username": "alice", "iss": "photopipe", "aud": "photopipe-api"}
    return claims | {"iat": now, "nbf": now, "exp": now + 600} | overrides


def test_a_good_token_allows_this_connect_route_for_its_user(authorizer: WebSocketAuthorizer) -> None:
    event = _event(_service().issue(USER))

    answer = authorizer.authorize(event.token, event.method_arn)

    assert answer["principalId"] == "u-alice"
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event.method_arn}
    ]
    assert event.method_arn.endswith("/ws/$connect")
    assert answer["context"]["user_id"] == "u-alice"
    assert answer["context"]["username"] == "alice"
    assert all(isinstance(v, str | int) for v in answer["context"].values()), "API Gateway takes scalars only"


def _forged_alg_none() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: _service().issue(USER, now=time.time() - 7200), id="expired"),
        pytest.param(_forged_alg_none, id="alg-none"),
        pytest.param(lambda: _service(secret="x" * 64).issue(USER), id="other-key"),
        pytest.param(lambda: jwt.encode(_claims(), SECRET, algorithm="HS512"), id="other-algorithm"),
        pytest.param(
            lambda: jwt.encode(_claims(aud="someone-else"), SECRET, algorithm="HS256"), id="audience"
        ),
        pytest.param(lambda: jwt.encode(_claims(iss="evil"), SECRET, algorithm="HS256"), id="issuer"),
        pytest.param(lambda: _service().issue(USER) + "x", id="tampered"),
        pytest.param(lambda: "not-a-jwt", id="garbage"),
        pytest.param(lambda: "", id="empty"),
    ],
)
def test_any_other_token_fails_with_unauthorized(authorizer: WebSocketAuthorizer, token: Any) -> None:
    event = _event(token())

    with pytest.raises(ConnectionRefused) as refused:
        authorizer.authorize(event.token, event.method_arn)

    # exactly this message: API Gateway answers 401 for it (a Deny policy would be a 403)
    assert str(refused.value) == "Unauthorized"


def test_the_key_is_read_at_each_decision() -> None:
    # GIVEN the signing key rotates between two connections
    keys = iter(["a" * 64, "b" * 64])
    rotating = WebSocketAuthorizer(tokens=lambda: _service(secret=next(keys)))
    first, second = _service(secret="a" * 64).issue(USER), _service(secret="a" * 64).issue(USER)
    arn = _event(first).method_arn

    # THEN a token signed with the old key is refused once the new key is in use
    assert rotating.authorize(first, arn)["principalId"] == "u-alice"
    with pytest.raises(ConnectionRefused):
        rotating.authorize(second, arn)
