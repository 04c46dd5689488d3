import base64
import json
import time

import jwt
import pytest

from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import TokenService
from photopipe.errors import UnauthorizedError
from photopipe.models import User

SECRET = "s" * 64
USER = User(user_id="u1", username="alice", email="alice@example.com", created_at="2026-01-01T00:00:00Z")


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(secret=SECRET, issuer="photopipe", audience="photopipe-api", ttl_seconds=3600)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_issued_token_verifies_and_carries_the_user(tokens: TokenService) -> None:
    claims = tokens.verify(tokens.issue(USER))
    assert claims.user_id == "u1"
    assert claims.username == "alice"
    assert claims.expires_at - time.time() == pytest.approx(3600, abs=5)


def test_alg_none_is_refused(tokens: TokenService) -> None:
    # GIVEN a token that claims no signature is needed
    now = int(time.time())
    payload = {"sub": "u1", "iss": "photopipe", "aud": "photopipe-api", "iat": now, "exp": now + 60}
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."
    # THEN it is rejected as invalid
    with pytest.raises(UnauthorizedError) as e:
        tokens.verify(forged)
    assert e.value.code == "invalid_token"


def test_wrong_key_is_refused(tokens: TokenService) -> None:
    other = TokenService(secret="x" * 64, issuer="photopipe", audience="photopipe-api", ttl_seconds=3600)
    with pytest.raises(UnauthorizedError, match="not valid"):
        tokens.verify(other.issue(USER))


def test_expired_token_is_refused_with_its_own_code(tokens: TokenService) -> None:
    old = tokens.issue(USER, now=time.time() - 7200)
    with pytest.raises(UnauthorizedError) as e:
        tokens.verify(old)
    assert e.value.code == "token_expired"


@pytest.mark.parametrize("field", ["iss", "aud"])
def test_other_issuer_or_audience_is_refused(tokens: TokenService, field: str) -> None:
    now = int(time.time())
    payload = {"sub": "u1", "iss": "photopipe", "aud": "photopipe-api", "iat": now, "exp": now + 60}
    payload[field] = "someone-else"
    with pytest.raises(UnauthorizedError):
        tokens.verify(jwt.encode(payload, SECRET, algorithm="HS256"))


def test_hs512_token_with_the_right_key_is_refused(tokens: TokenService) -> None:
    now = int(time.time())
    payload = {"sub": "u1", "iss": "photopipe", "aud": "photopipe-api", "iat": now, "exp": now + 60}
    with pytest.raises(UnauthorizedError):
        tokens.verify(jwt.encode(payload, SECRET, algorithm="HS512"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJ.eyJ.sig", "Bearer x"])
def test_malformed_tokens_are_refused(tokens: TokenService, garbage: str) -> None:
    with pytest.raises(UnauthorizedError):
        tokens.verify(garbage)


def test_password_hash_round_trip_and_salting() -> None:
    hasher = PasswordHasher(log2_n=12)
    first, second = hasher.hash("correct horse"), hasher.hash("correct horse")
    assert first != second, "each hash is salted"
    assert first.startswith("scrypt$12$8$1$")
    assert "correct horse" not in first
    assert hasher.verify("correct horse", first)
    assert not hasher.verify("correct horsE", first)
    assert not hasher.verify("correct horse", "md5$abc")
    assert not hasher.verify("correct horse", "garbage")


def test_hash_keeps_its_own_parameters_when_defaults_change() -> None:
    stored = PasswordHasher(log2_n=12).hash("pw-12345678")
    assert PasswordHasher(log2_n=14).verify("pw-12345678", stored)
