"""Live updates: the WebSocket connections a user has open, the small JSON messages pushed to them, and the
events that carry both - API Gateway's `$connect`/`$disconnect` and authorizer events, and the table-stream
records the notify function reads (Powertools' model, its images already turned into Python values).

A message names what changed and how it stands now, never the whole record:
`{"type": "image.updated", "image_id", "state", "reason"?, "at"}`,
`{"type": "job.updated", "job_id", "state", "progress", "reason"?, "at"}`,
`{"type": "credits.updated", "balance", "at"}`, `{"type": "order.updated", "order_id", "state", "at"}`."""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from pydantic import BaseModel, ConfigDict, Field

MessageType = Literal["image.updated", "job.updated", "credits.updated", "order.updated"]


class ConnectionRecord(BaseModel):
    """What the connections table holds for one open WebSocket connection."""

    model_config = ConfigDict(extra="ignore")

    connection_id: str
    user_id: str
    username: str | None = None
    connected_at: str = Field(description="ISO-8601 UTC, when API Gateway accepted it")
    expires_at: int = Field(description="Epoch seconds: API Gateway closes it by then (the table's TTL)")
    source_ip: str | None = None

    def item(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class LiveMessage(BaseModel):
    """One message on the WebSocket. Fields that do not apply to its type are left out of the JSON."""

    model_config = ConfigDict(frozen=True)

    type: MessageType
    image_id: str | None = None
    job_id: str | None = None
    order_id: str | None = None
    state: str | None = None
    progress: int | None = Field(None, ge=0, le=100)
    balance: int | None = None
    reason: str | None = Field(None, description="Why a photo was rejected or failed, or a job failed")
    at: str = Field(description="When the change was written (ISO-8601 UTC)")

    def wire(self) -> bytes:
        """The frame's payload: compact JSON, absent fields left out."""
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":")).encode()


class TableChangeRecord(DynamoDBStreamRecordModel):
    """One DynamoDB stream record as Lambda delivers it (keys and images deserialized; numbers are Decimal)."""

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.dynamodb.Keys)

    @property
    def new(self) -> dict[str, Any] | None:
        image = self.dynamodb.NewImage
        return image if isinstance(image, dict) else None

    @property
    def old(self) -> dict[str, Any] | None:
        image = self.dynamodb.OldImage
        return image if isinstance(image, dict) else None


class AuthorizerContext(BaseModel):
    """What the WebSocket authorizer returned, as API Gateway passes it to the connection's routes."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    principal_id: str = Field(alias="principalId")
    user_id: str
    username: str | None = None


class _Identity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source_ip: str | None = Field(None, alias="sourceIp")


class _ConnectionRequestContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    route_key: Literal["$connect", "$disconnect"] = Field(alias="routeKey")
    connection_id: str = Field(alias="connectionId", min_length=1)
    connected_at: int = Field(alias="connectedAt", description="Epoch milliseconds")
    identity: _Identity = Field(default_factory=_Identity)
    authorizer: AuthorizerContext | None = None
    disconnect_status_code: int | None = Field(None, alias="disconnectStatusCode")
    disconnect_reason: str | None = Field(None, alias="disconnectReason")


class WebSocketConnectionEvent(BaseModel):
    """API Gateway's `$connect` or `$disconnect` event for the connections function."""

    model_config = ConfigDict(extra="ignore")

    request_context: _ConnectionRequestContext = Field(alias="requestContext")


class WebSocketAuthorizerEvent(BaseModel):
    """API Gateway's REQUEST authorizer event for a WebSocket `$connect` (the JWT is the `token` query
    string parameter; browsers cannot set headers on a WebSocket)."""

    model_config = ConfigDict(extra="ignore")

    method_arn: str = Field(alias="methodArn", pattern=r"^arn:[^:]+:execute-api:")
    query_string_parameters: dict[str, str] | None = Field(None, alias="queryStringParameters")

    @property
    def token(self) -> str:
        return (self.query_string_parameters or {}).get("token", "")
