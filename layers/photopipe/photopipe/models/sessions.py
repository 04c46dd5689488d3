"""Sign-in sessions: a short-lived access token (a JWT, never stored) plus a rotating refresh token.

A refresh token is 32 random bytes (opaque, base64url); only its SHA-256 is stored. Every token ever issued
in one sign-in belongs to one *family* (the session): refreshing spends the family's current token and
issues the next one. Presenting a token of the family that is no longer current means two parties hold
the family's tokens (one of them stole one), so the whole family is revoked: both must sign in again.
Logout revokes the family too. A token lives `REFRESH_TTL_SECONDS` from its issue (30 days): a session
used at least once a month stays signed in."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

REFRESH_TTL_SECONDS = 30 * 24 * 3600


class SessionEnd(StrEnum):
    """Why a session (refresh-token family) was revoked."""

    LOGOUT = "logout"
    REUSE = "reuse"


class SessionRecord(BaseModel):
    """One refresh-token family. `current` is the SHA-256 of the only token that may be spent."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: str
    user_id: str
    current: str
    created_at: str
    expires_at: int  # epoch seconds: the current token's end (sliding: each refresh moves it)
    revoked: SessionEnd | None = None


class IssuedToken(BaseModel):
    """What the sessions table holds per issued refresh token: which family it belongs to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    token_hash: str
    session_id: str
    user_id: str
    expires_at: int
