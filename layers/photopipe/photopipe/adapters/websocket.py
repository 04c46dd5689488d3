"""API Gateway's `@connections` management API for one WebSocket stage: post a message to a connection.

Its endpoint is the stage's own URL over HTTPS (`wss://{api}.execute-api.{region}.amazonaws.com/{stage}` ->
`https://.../{stage}`), passed to boto3 explicitly: `AWS_ENDPOINT_URL` names the other services' endpoint."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import BOTO_CONFIG, translate

_HTTP_SCHEMES = {"wss": "https", "ws": "http"}


def management_endpoint(websocket_url: str) -> str:
    """The `@connections` API of the stage whose clients connect to `websocket_url`."""
    scheme, _, rest = websocket_url.partition("://")
    if scheme not in _HTTP_SCHEMES or not rest:
        raise ValueError(f"not a WebSocket URL: {websocket_url!r}")
    return f"{_HTTP_SCHEMES[scheme]}://{rest.rstrip('/')}"


class ConnectionsApi:
    def __init__(self, websocket_url: str, client: Any | None = None) -> None:
        self.endpoint = management_endpoint(websocket_url)
        session = boto3.session.Session()
        self._client = client or session.client(
            "apigatewaymanagementapi", endpoint_url=self.endpoint, config=BOTO_CONFIG
        )

    def post(self, connection_id: str, data: bytes) -> bool:
        """Send `data` to the connection; False when API Gateway says it is gone (410)."""
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._client.exceptions.GoneException:  # a ClientError subclass: caught first
            return False
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "posting to a WebSocket connection") from e
        return True
