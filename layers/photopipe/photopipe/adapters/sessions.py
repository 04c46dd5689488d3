"""Sessions table: refresh-token families (`pk = SESSION#<id>`) and one item per issued refresh token
(`pk = TOKEN#<sha256>`) naming its family (`photopipe.models.sessions`). Only hashes are stored.

`expires_at` is the table's TTL attribute; DynamoDB deletes expired items late (moto never does), so the
use case checks it on read. A family's `expires_at` is always its newest token's, so a family outlives
every token it issued and a replayed old token always finds it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table
from photopipe.models import IssuedToken, SessionEnd, SessionRecord


def _session_pk(session_id: str) -> str:
    return f"SESSION#{session_id}"


def _token_pk(token_hash: str) -> str:
    return f"TOKEN#{token_hash}"


def _token_item(token: IssuedToken) -> dict[str, Any]:
    return {"pk": _token_pk(token.token_hash), "kind": "refresh_token", **token.model_dump()}


class SessionsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self._name = table_name

    def start(self, session: SessionRecord, token: IssuedToken) -> None:
        """A new family with its first token (one transaction)."""
        absent = "attribute_not_exists(pk)"
        family = {
            "pk": _session_pk(session.session_id),
            "kind": "session",
            **session.model_dump(mode="json", exclude_none=True),
        }
        self._transact(
            [
                {"Put": {"TableName": self._name, "Item": family, "ConditionExpression": absent}},
                {"Put": {"TableName": self._name, "Item": _token_item(token), "ConditionExpression": absent}},
            ],
            "starting the session",
        )

    def token(self, token_hash: str) -> IssuedToken | None:
        item = self._get(_token_pk(token_hash))
        return IssuedToken.model_validate(plain(item)) if item else None

    def session(self, session_id: str) -> SessionRecord | None:
        item = self._get(_session_pk(session_id))
        return SessionRecord.model_validate(plain(item)) if item else None

    def rotate(self, session_id: str, *, spent: str, new: IssuedToken) -> bool:
        """Make `new` the family's current token, only while `spent` is still current and the family is
        not revoked. False when that condition failed (the token was spent already, or revoked)."""
        try:
            self._table.meta.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._name,
                            "Key": {"pk": _session_pk(session_id)},
                            "UpdateExpression": "SET #current = :new, expires_at = :exp",
                            "ConditionExpression": "#current = :spent AND attribute_not_exists(revoked)",
                            "ExpressionAttributeNames": {"#current": "current"},
                            "ExpressionAttributeValues": {
                                ":new": new.token_hash,
                                ":spent": spent,
                                ":exp": new.expires_at,
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._name,
                            "Item": _token_item(new),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as e:
            if error_code(e) == "TransactionCanceledException":
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    return False
            raise translate(e, "refreshing the session") from e
        except BotoCoreError as e:
            raise translate(e, "refreshing the session") from e
        return True

    def revoke(self, session_id: str, reason: SessionEnd) -> bool:
        """Revoke a family (its tokens can no longer be spent). False if it was revoked already or is gone."""
        try:
            self._table.update_item(
                Key={"pk": _session_pk(session_id)},
                UpdateExpression="SET revoked = :reason",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked)",
                ExpressionAttributeValues={":reason": reason.value},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "revoking the session") from e
        except BotoCoreError as e:
            raise translate(e, "revoking the session") from e
        return True

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            resp = self._table.get_item(Key={"pk": pk}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the sessions table") from e
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def _transact(self, items: list[dict[str, Any]], what: str) -> None:
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, what) from e
