"""Live updates over the WebSocket API: who may connect (the `$connect` authorizer), which connections a user
has open (`$connect` / `$disconnect`), and what the notify function tells them when a table stream shows a
change they would see.

Which table a stream record comes from is read from its key: `image_id` (images), `job_id` (jobs),
`user_id` + `sk` (the credits ledger: only its BALANCE item speaks), `order_id` (orders: only real orders,
not the DAY#<date> counters). A record produces a message only when something a user sees changed: a
photo's state, a job's state or progress, a balance, an order's state; a write that only renews a lease or
touches `updated_at` produces nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.connections import ConnectionsRepository
from photopipe.adapters.websocket import ConnectionsApi
from photopipe.auth.tokens import TokenService
from photopipe.errors import ConfigurationError, UnauthorizedError
from photopipe.models import (
    ConnectionRecord,
    LiveMessage,
    TableChangeRecord,
    WebSocketConnectionEvent,
)
from photopipe.observability import logger, metrics

OK = {"statusCode": 200}


class ConnectionRefused(Exception):
    """Raised by the authorizer to refuse a connection: API Gateway answers the handshake 401 exactly when
    the function fails with the message "Unauthorized" (a Deny policy would be a 403)."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


@dataclass(frozen=True)
class WebSocketAuthorizer:
    """Checks the JWT with the HTTP API's own `TokenService` (issuer, audience, expiry, HS256 only)."""

    tokens: Callable[[], TokenService]  # the key is re-read through the secrets cache (rotation)

    def authorize(self, token: str, method_arn: str) -> dict[str, Any]:
        try:
            claims = self.tokens().verify(token)
        except UnauthorizedError as e:
            logger.info("websocket connection refused", extra={"code": e.code})
            raise ConnectionRefused from e
        context = {"user_id": claims.user_id, "username": claims.username, "expires_at": claims.expires_at}
        return {
            "principalId": claims.user_id,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
            },
            "context": context,
        }


@dataclass(frozen=True)
class Connections:
    """`$connect` records the connection under its user; `$disconnect` forgets it."""

    connections: ConnectionsRepository
    ttl_seconds: int = 7200  # API Gateway's limit on a connection's life

    def handle(self, event: WebSocketConnectionEvent) -> dict[str, Any]:
        context = event.request_context
        if context.route_key == "$disconnect":
            self.connections.delete(context.connection_id)
            extra: dict[str, Any] = {"connection_id": context.connection_id}
            extra |= {"code": context.disconnect_status_code, "reason": context.disconnect_reason}
            logger.info("websocket disconnected", extra=extra)
            return OK
        if context.authorizer is None:
            raise ConfigurationError("$connect reached the connections function without the authorizer")
        connected = context.connected_at / 1000
        self.connections.put(
            ConnectionRecord(
                connection_id=context.connection_id,
                user_id=context.authorizer.user_id,
                username=context.authorizer.username,
                connected_at=datetime.fromtimestamp(connected, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                expires_at=int(connected) + self.ttl_seconds,
                source_ip=context.identity.source_ip,
            )
        )
        logger.info("websocket connected", extra={"connection_id": context.connection_id})
        return OK


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float | Decimal) else None


def _changed(old: dict[str, Any] | None, new: dict[str, Any], *fields: str) -> bool:
    return old is None or any(old.get(f) != new.get(f) for f in fields)


def change_message(record: TableChangeRecord) -> tuple[str, LiveMessage] | None:
    """The owner and the message a stream record produces, or None when nothing they see changed."""
    new, old, keys = record.new, record.old, record.keys
    if record.eventName == "REMOVE" or new is None or not isinstance(owner := new.get("user_id"), str):
        return None
    at = str(new.get("updated_at") or _record_time(record))
    if keys == {"image_id"} and _changed(old, new, "state"):
        reason = new.get("reason")
        message = LiveMessage(
            type="image.updated", image_id=new["image_id"], state=new["state"], reason=reason, at=at
        )
    elif keys == {"job_id"} and _changed(old, new, "state", "progress"):
        error = new["error"] if isinstance(new.get("error"), dict) else {}
        message = LiveMessage(
            type="job.updated",
            job_id=new["job_id"],
            state=new["state"],
            progress=_int(new.get("progress")) or 0,
            reason=error.get("code"),
            at=at,
        )
    elif keys == {"user_id", "sk"} and new.get("sk") == "BALANCE" and _changed(old, new, "balance"):
        message = LiveMessage(type="credits.updated", balance=_int(new.get("balance")), at=at)
    elif keys == {"order_id"} and "state" in new and _changed(old, new, "state"):
        message = LiveMessage(type="order.updated", order_id=new["order_id"], state=new["state"], at=at)
    else:
        return None
    return owner, message


def _record_time(record: TableChangeRecord) -> str:
    when = record.dynamodb.ApproximateCreationDateTime or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LiveUpdates:
    """The notify function: posts each visible change to every open connection of its owner and forgets
    the connections API Gateway says are gone. Any other failure fails the record, so the stream retries it
    (a connection that already got the message may get it twice: messages are idempotent)."""

    connections: ConnectionsRepository
    api: ConnectionsApi
    clock: Callable[[], float] = time.time

    def notify(self, record: TableChangeRecord) -> int:
        """Returns how many connections the message reached."""
        if (addressed := change_message(record)) is None:
            return 0
        owner, message = addressed
        payload, delivered, gone = message.wire(), 0, 0
        for connection_id in self.connections.for_user(owner, now=self.clock()):
            if self.api.post(connection_id, payload):
                delivered += 1
            else:
                self.connections.delete(connection_id)
                gone += 1
        extra = {"type": message.type, "delivered": delivered, "gone": gone}
        logger.info("live update sent", extra=extra | {"sequence_number": record.dynamodb.SequenceNumber})
        metrics.add_metric(name="LiveMessagesDelivered", unit=MetricUnit.Count, value=delivered)
        return delivered
