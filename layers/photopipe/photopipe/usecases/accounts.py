"""Register, log in, read a profile."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.users import UsersRepository
from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import Claims, TokenService
from photopipe.errors import UnauthorizedError
from photopipe.models import User, UserRecord, utcnow_iso
from photopipe.observability import logger, metrics


@dataclass(frozen=True)
class Session:
    user: User
    token: str
    expires_in: int


@dataclass(frozen=True)
class Accounts:
    users: UsersRepository
    hasher: PasswordHasher
    tokens: TokenService

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
        return self._session(record)

    def login(self, *, login: str, password: str) -> Session:
        record = self.users.find_by_login(login.strip())
        if record is None:
            self.hasher.burn(password)
        elif self.hasher.verify(password, record.password_hash):
            logger.info("user logged in", extra={"user_id": record.user_id})
            metrics.add_metric(name="LoginsSucceeded", unit=MetricUnit.Count, value=1)
            return self._session(record)
        logger.info("login refused")
        metrics.add_metric(name="LoginsRefused", unit=MetricUnit.Count, value=1)
        raise UnauthorizedError("wrong username/email or password", code="invalid_credentials")

    def authenticate(self, authorization: str | None) -> Claims:
        """Check an `Authorization: Bearer <token>` header value."""
        if not authorization:
            raise UnauthorizedError(
                "missing Authorization header; send 'Authorization: Bearer <token>' from /auth/login",
                code="missing_token",
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("the Authorization header must be 'Bearer <token>'", code="invalid_token")
        return self.tokens.verify(token.strip())

    def profile(self, user_id: str) -> User:
        record = self.users.get(user_id)
        if record is None:
            # A valid token for a user that no longer exists.
            raise UnauthorizedError("this account no longer exists", code="invalid_token")
        return User.model_validate(record.model_dump(exclude={"password_hash"}))

    def _session(self, record: UserRecord) -> Session:
        user = User.model_validate(record.model_dump(exclude={"password_hash"}))
        return Session(user=user, token=self.tokens.issue(user), expires_in=self.tokens.ttl_seconds)
