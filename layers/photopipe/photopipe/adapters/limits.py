"""Limits table: the counters behind the per-user quotas and the login-attempt limits
(`photopipe.models.quotas`). Every admission is one conditional update (or one transaction of them), so
concurrent requests can never pass a limit together; nothing is read first and written after.

    UPLOADS#<user>#<day>     n             uploads created that UTC day (expires the day after)
    USAGE#<user>             stored_bytes  bytes counted against the storage quota
    JOBSLOTS#<user>          job_ids, version   the jobs holding enhancement slots
    LOGIN#<scope>#<key>#<window start>   n   login attempts in a window (expires after it)

`expires_at` is the table's TTL attribute (epoch seconds)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table
from photopipe.models import JobSlots, Limit

_UNDER = "attribute_not_exists(#n) OR #n < :limit"


def _uploads_pk(user_id: str, day: str) -> str:
    return f"UPLOADS#{user_id}#{day}"


def _usage_pk(user_id: str) -> str:
    return f"USAGE#{user_id}"


def _slots_pk(user_id: str) -> str:
    return f"JOBSLOTS#{user_id}"


def _attempts_pk(scope: str, key: str, window_start: int) -> str:
    return f"LOGIN#{scope}#{key}#{window_start}"


class LimitsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self._name = table_name

    # ------------------------------------------------------------------ uploads and stored bytes
    def admit_upload(
        self, user_id: str, *, day: str, size: int, per_day: int, max_bytes: int, expires_at: int
    ) -> Limit | None:
        """Count one upload for `day` and reserve `size` bytes, both or neither: None when admitted,
        else the limit that refused it."""
        if size > max_bytes:
            return Limit.STORED_BYTES
        try:
            self._table.meta.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._name,
                            "Key": {"pk": _uploads_pk(user_id, day)},
                            "UpdateExpression": "ADD #n :one SET expires_at = :exp",
                            "ConditionExpression": _UNDER,
                            "ExpressionAttributeNames": {"#n": "n"},
                            "ExpressionAttributeValues": {":one": 1, ":limit": per_day, ":exp": expires_at},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._name,
                            "Key": {"pk": _usage_pk(user_id)},
                            "UpdateExpression": "ADD #n :size",
                            "ConditionExpression": "attribute_not_exists(#n) OR #n <= :room",
                            "ExpressionAttributeNames": {"#n": "stored_bytes"},
                            "ExpressionAttributeValues": {":size": size, ":room": max_bytes - size},
                        }
                    },
                ]
            )
        except ClientError as e:
            if error_code(e) == "TransactionCanceledException":
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    return Limit.UPLOADS_PER_DAY
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    return Limit.STORED_BYTES
            raise translate(e, "counting the upload against your quota") from e
        except BotoCoreError as e:
            raise translate(e, "counting the upload against your quota") from e
        return None

    def release_upload(self, user_id: str, *, day: str, size: int) -> None:
        """Undo `admit_upload` (the upload could not be created after all)."""
        self._add(_uploads_pk(user_id, day), "n", -1, "releasing the upload's quota")
        self.add_stored_bytes(user_id, -size)

    def add_stored_bytes(self, user_id: str, delta: int) -> None:
        """Charge (or, negative, give back) stored bytes; unconditional: the bytes exist or are gone."""
        if delta:
            self._add(_usage_pk(user_id), "stored_bytes", delta, "updating your storage usage")

    def usage(self, user_id: str, *, day: str) -> tuple[int, int]:
        """(uploads on `day`, stored bytes)."""
        uploads = self._get(_uploads_pk(user_id, day)) or {}
        usage = self._get(_usage_pk(user_id)) or {}
        return int(uploads.get("n", 0)), int(usage.get("stored_bytes", 0))

    # ------------------------------------------------------------------ enhancement job slots
    def job_slots(self, user_id: str) -> JobSlots:
        item = self._get(_slots_pk(user_id)) or {}
        return JobSlots(job_ids=tuple(item.get("job_ids", ())), version=int(item.get("version", 0)))

    def claim_job_slots(self, user_id: str, *, version: int, job_ids: list[str]) -> bool:
        """Replace the slot holders with `job_ids`, only if nobody changed them since `version` was read."""
        try:
            self._table.update_item(
                Key={"pk": _slots_pk(user_id)},
                UpdateExpression="SET job_ids = :ids, #v = :next",
                ConditionExpression="attribute_not_exists(#v) OR #v = :seen",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":ids": job_ids, ":next": version + 1, ":seen": version},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "claiming enhancement slots") from e
        except BotoCoreError as e:
            raise translate(e, "claiming enhancement slots") from e
        return True

    # ------------------------------------------------------------------ login attempts
    def count_attempt(self, scope: str, key: str, *, window_start: int, limit: int, expires_at: int) -> bool:
        """Count one attempt in the window; False (nothing counted) when `limit` attempts were made."""
        try:
            self._table.update_item(
                Key={"pk": _attempts_pk(scope, key, window_start)},
                UpdateExpression="ADD #n :one SET expires_at = :exp",
                ConditionExpression=_UNDER,
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":one": 1, ":limit": limit, ":exp": expires_at},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "counting the login attempt") from e
        except BotoCoreError as e:
            raise translate(e, "counting the login attempt") from e
        return True

    def refund_attempt(self, scope: str, key: str, *, window_start: int) -> None:
        self._add(_attempts_pk(scope, key, window_start), "n", -1, "counting the login attempt")

    # ------------------------------------------------------------------ helpers
    def _add(self, pk: str, attribute: str, delta: int, what: str) -> None:
        try:
            self._table.update_item(
                Key={"pk": pk},
                UpdateExpression="ADD #n :d",
                ExpressionAttributeNames={"#n": attribute},
                ExpressionAttributeValues={":d": delta},
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, what) from e

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            resp = self._table.get_item(Key={"pk": pk}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading your usage") from e
        item = resp.get("Item")
        return plain(item) if item else None
