"""HS256 access tokens (pyjwt) with expiry, issuer and audience. Anything else - `alg: none`, another
algorithm, a wrong key, expired, not yet valid, malformed - is an `UnauthorizedError`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from photopipe.errors import UnauthorizedError
from photopipe.models import User

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    user_id: str
    username: str
    expires_at: int
    session_id: str | None = None  # the sign-in session (refresh-token family) the token was issued for


@dataclass(frozen=True)
class TokenService:
    secret: str
    issuer: str
    audience: str
    ttl_seconds: int
    leeway_seconds: int = 30

    def issue(self, user: User, *, now: float | None = None, session_id: str | None = None) -> str:
        iat = int(now if now is not None else time.time())
        payload: dict[str, Any] = {
            "sub": user.user_id,
            "username": user.username,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.ttl_seconds,
            "jti": secrets.token_hex(8),
        }
        if session_id is not None:
            payload["sid"] = session_id
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise UnauthorizedError("the token has expired; log in again", code="token_expired") from e
        except jwt.InvalidTokenError as e:
            raise UnauthorizedError(
                "the token is not valid; log in to get a new one", code="invalid_token"
            ) from e
        return Claims(
            user_id=str(claims["sub"]),
            username=str(claims.get("username", "")),
            expires_at=claims["exp"],
            session_id=str(claims["sid"]) if claims.get("sid") else None,
        )
