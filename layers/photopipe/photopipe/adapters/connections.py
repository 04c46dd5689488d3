"""Connections table: one item per open WebSocket connection, keyed by connection id, found per user through
the `by-user` GSI. TTL removes what a lost `$disconnect` left behind, but late (and never in moto), so reads
skip expired items themselves."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import translate
from photopipe.adapters.dynamo import table
from photopipe.models import ConnectionRecord

USER_INDEX = "by-user"


class ConnectionsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)

    def put(self, connection: ConnectionRecord) -> None:
        try:
            self._table.put_item(Item=connection.item())
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "recording the WebSocket connection") from e

    def delete(self, connection_id: str) -> None:
        """Forget a connection (deleting one that is already gone is not an error)."""
        try:
            self._table.delete_item(Key={"connection_id": connection_id})
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "forgetting the WebSocket connection") from e

    def for_user(self, user_id: str, *, now: float) -> list[str]:
        """The ids of the user's connections that have not expired at `now` (epoch seconds)."""
        ids: list[str] = []
        query: dict[str, Any] = {
            "IndexName": USER_INDEX,
            "KeyConditionExpression": Key("user_id").eq(user_id),
            "FilterExpression": Attr("expires_at").gt(int(now)),
        }
        try:
            while True:
                page = self._table.query(**query)
                ids.extend(str(item["connection_id"]) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return ids
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "finding the user's WebSocket connections") from e
