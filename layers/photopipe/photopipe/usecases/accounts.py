"""Register, log in, refresh and end sessions, read a profile, grant the admin flag.

A sign-in (register or login) starts a session: a short-lived access token plus a rotating refresh token
(`photopipe.models.sessions`). Login attempts are limited per account and per source address in fixed
windows (`photopipe.models.quotas.LoginLimits`): an attempt is counted before the password is checked (so
concurrent guesses cannot slip past the limit) and given back when it succeeds."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.limits import LimitsRepository
from photopipe.adapters.sessions import SessionsRepository
from photopipe.adapters.users import UsersRepository
from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import Claims, TokenService
from photopipe.errors import ForbiddenError, NotFoundError, TooManyRequestsError, UnauthorizedError
from photopipe.models import (
    REFRESH_TTL_SECONDS,
    IssuedToken,
    Limit,
    LoginLimits,
    SessionEnd,
    SessionRecord,
    User,
    UserRecord,
    utcnow_iso,
)
from photopipe.observability import logger, metrics

_REFRESH_BYTES = 32


def token_hash(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _public(record: UserRecord) -> User:
    return User.model_validate(record.model_dump(exclude={"password_hash"}))


@dataclass(frozen=True)
class Session:
    user: User
    token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


@dataclass(frozen=True)
class Accounts:
    users: UsersRepository
    hasher: PasswordHasher
    tokens: TokenService
    sessions: SessionsRepository
    limits: LimitsRepository
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    clock: Callable[[], float] = time.time

    def register(self, *, username: str, email: str, password: str) -> Session:
        record = UserRecord(
            user_id=uuid.uuid4().hex,
            username=username,
            email=email.strip().lower(),
            created_at=utcnow_iso(),
            password_hash=self.hasher.hash(password),
        )
        self.users.create(record)
        logger.info("user registered", extra={"user_id": record.user_id})
        metrics.add_metric(name="UsersRegistered", unit=MetricUnit.Count, value=1)
        return self._start(record)

    def login(self, *, login: str, password: str, source: str | None = None) -> Session:
        login = login.strip()
        window = self._count_attempt(login, source)
        record = self.users.find_by_login(login)
        if record is None:
            self.hasher.burn(password)
        elif self.hasher.verify(password, record.password_hash):
            self._refund_attempt(login, source, window)
            logger.info("user logged in", extra={"user_id": record.user_id})
            metrics.add_metric(name="LoginsSucceeded", unit=MetricUnit.Count, value=1)
            return self._start(record)
        logger.info("login refused")
        metrics.add_metric(name="LoginsRefused", unit=MetricUnit.Count, value=1)
        raise UnauthorizedError("wrong username/email or password", code="invalid_credentials")

    def refresh(self, refresh_token: str) -> Session:
        """Spend a refresh token for a new access token and the family's next refresh token. Replaying a
        token already spent revokes the whole family (someone else holds its tokens)."""
        spent = token_hash(refresh_token)
        issued = self.sessions.token(spent)
        now = int(self.clock())
        if issued is None:
            raise UnauthorizedError(
                "the refresh token is not valid; log in again", code="invalid_refresh_token"
            )
        session = self.sessions.session(issued.session_id)
        if session is None or session.revoked is not None:
            raise UnauthorizedError("this session has ended; log in again", code="session_revoked")
        if session.current != spent:
            self._revoke_reused(session)
        if issued.expires_at <= now:
            raise UnauthorizedError(
                "the refresh token has expired; log in again", code="refresh_token_expired"
            )
        record = self.users.get(session.user_id)
        if record is None:
            raise UnauthorizedError("this account no longer exists", code="invalid_refresh_token")
        refresh_token, new = self._new_token(session.session_id, session.user_id, now)
        if not self.sessions.rotate(session.session_id, spent=spent, new=new):
            # Spent meanwhile by another request: the same token presented twice.
            self._revoke_reused(session)
        logger.info("session refreshed", extra={"user_id": record.user_id, "session_id": session.session_id})
        return self._session(record, session.session_id, refresh_token, new)

    def logout(self, refresh_token: str) -> None:
        """End the session the token belongs to (any token of it, spent or current). A token that is not
        ours is ignored: logging out twice, or with garbage, is not an error worth telling apart."""
        issued = self.sessions.token(token_hash(refresh_token))
        if issued is None:
            logger.info("logout with an unknown refresh token")
            return
        if self.sessions.revoke(issued.session_id, SessionEnd.LOGOUT):
            logger.info("logged out", extra={"user_id": issued.user_id, "session_id": issued.session_id})

    def authenticate(self, authorization: str | None) -> Claims:
        """Check an `Authorization: Bearer <token>` header value."""
        return authenticate(self.tokens, authorization)

    def profile(self, user_id: str) -> User:
        record = self.users.get(user_id)
        if record is None:
            # A valid token for a user that no longer exists.
            raise UnauthorizedError("this account no longer exists", code="invalid_token")
        return _public(record)

    def require_admin(self, user_id: str) -> User:
        """The caller, if an admin (read from the user record on every call: a revoked flag counts at once)."""
        user = self.profile(user_id)
        if not user.admin:
            raise ForbiddenError(
                "global statistics are for admins; an operator grants the flag with "
                "`photopipe admin grant USERNAME`",
                code="admin_only",
            )
        return user

    # ------------------------------------------------------------------ sessions
    def _start(self, record: UserRecord) -> Session:
        now = int(self.clock())
        session_id = uuid.uuid4().hex
        refresh_token, issued = self._new_token(session_id, record.user_id, now)
        self.sessions.start(
            SessionRecord(
                session_id=session_id,
                user_id=record.user_id,
                current=issued.token_hash,
                created_at=utcnow_iso(),
                expires_at=issued.expires_at,
            ),
            issued,
        )
        return self._session(record, session_id, refresh_token, issued)

    def _session(
        self, record: UserRecord, session_id: str, refresh_token: str, issued: IssuedToken
    ) -> Session:
        user = _public(record)
        return Session(
            user=user,
            token=self.tokens.issue(user, session_id=session_id),
            expires_in=self.tokens.ttl_seconds,
            refresh_token=refresh_token,
            refresh_expires_in=REFRESH_TTL_SECONDS,
        )

    @staticmethod
    def _new_token(session_id: str, user_id: str, now: int) -> tuple[str, IssuedToken]:
        refresh_token = secrets.token_urlsafe(_REFRESH_BYTES)
        return refresh_token, IssuedToken(
            token_hash=token_hash(refresh_token),
            session_id=session_id,
            user_id=user_id,
            expires_at=now + REFRESH_TTL_SECONDS,
        )

    def _revoke_reused(self, session: SessionRecord) -> None:
        self.sessions.revoke(session.session_id, SessionEnd.REUSE)
        logger.warning(
            "a spent refresh token was presented again; the session is revoked",
            extra={"user_id": session.user_id, "session_id": session.session_id},
        )
        metrics.add_metric(name="RefreshTokenReuse", unit=MetricUnit.Count, value=1)
        raise UnauthorizedError(
            "this refresh token was already used, so the session may have been stolen: it has been "
            "ended everywhere; log in again",
            code="refresh_token_reused",
        )

    # ------------------------------------------------------------------ login attempts
    def _scopes(self, login: str, source: str | None) -> list[tuple[str, str, int, Limit]]:
        limits = self.login_limits
        scopes = [("account", token_hash(login.casefold()), limits.per_account, Limit.LOGIN_PER_ACCOUNT)]
        if source:
            scopes.append(("source", source, limits.per_source, Limit.LOGIN_PER_SOURCE))
        return scopes

    def _count_attempt(self, login: str, source: str | None) -> int:
        """Count this attempt in every scope (or in none: 429 `login_throttled`); returns the window."""
        window_s = self.login_limits.window_seconds
        now = self.clock()
        window = int(now // window_s * window_s)
        counted: list[tuple[str, str]] = []
        for scope, key, limit, name in self._scopes(login, source):
            if not self.limits.count_attempt(
                scope, key, window_start=window, limit=limit, expires_at=window + 2 * window_s
            ):
                for done_scope, done_key in counted:
                    self.limits.refund_attempt(done_scope, done_key, window_start=window)
                resets = window + window_s
                logger.warning("login attempts limited", extra={"limit": name.value})
                metrics.add_metric(name="LoginsThrottled", unit=MetricUnit.Count, value=1)
                raise TooManyRequestsError(
                    f"too many login attempts ({limit} per {window_s // 60} minutes "
                    f"{'for this account' if scope == 'account' else 'from this address'}); try again after "
                    f"{datetime.fromtimestamp(resets, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
                    code="login_throttled",
                    limit=name.value,
                    retry_after=max(1, int(resets - now) + 1),
                    resets_at=datetime.fromtimestamp(resets, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
            counted.append((scope, key))
        return window

    def _refund_attempt(self, login: str, source: str | None, window: int) -> None:
        for scope, key, _limit, _name in self._scopes(login, source):
            self.limits.refund_attempt(scope, key, window_start=window)


def grant_admin(users: UsersRepository, username: str, *, admin: bool = True) -> User:
    """Set (or, `admin=False`, clear) a user's admin flag: what `photopipe admin grant USERNAME` runs
    against the stack. Raises NotFoundError naming the username when there is no such user."""
    record = users.set_admin(username.strip(), admin)
    if record is None:
        raise NotFoundError(f"no user named {username!r}", code="user_not_found")
    logger.info("admin flag changed", extra={"user_id": record.user_id, "admin": admin})
    return _public(record)


def authenticate(tokens: TokenService, authorization: str | None) -> Claims:
    """Check an `Authorization: Bearer <token>` header value (every function that takes the API's tokens)."""
    if not authorization:
        raise UnauthorizedError(
            "missing Authorization header; send 'Authorization: Bearer <token>' from /auth/login",
            code="missing_token",
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'", code="invalid_token")
    return tokens.verify(token.strip())
