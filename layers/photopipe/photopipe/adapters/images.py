"""Images table: records keyed by image_id, listed per owner through the `by-owner` GSI. Every state change
is a conditional write, so duplicate deliveries cannot move an image backwards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import (
    conditional_update,
    decode_cursor,
    encode_cursor,
    plain,
    table,
    to_item,
    transition,
)
from photopipe.models import ImageRecord, ImageState, utcnow_iso

OWNER_INDEX = "by-owner"
_CURSOR_KEYS = frozenset({"image_id", "user_id", "created_at"})
_BATCH_GET_MAX = 100  # BatchGetItem's limit per call


class ImagesRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)

    @property
    def client(self) -> Any:
        """The table's boto3 client (to register botocore event hooks, e.g. counting calls in tests)."""
        return self._table.meta.client

    def create(self, record: ImageRecord) -> None:
        try:
            self._table.put_item(
                Item=record.model_dump(mode="json", exclude_none=True),
                ConditionExpression="attribute_not_exists(image_id)",
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "creating the image record") from e

    def get(self, image_id: str, *, consistent: bool = True) -> ImageRecord | None:
        try:
            resp = self._table.get_item(Key={"image_id": image_id}, ConsistentRead=consistent)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the image record") from e
        item = resp.get("Item")
        return ImageRecord.model_validate(plain(item)) if item else None

    def get_many(self, image_ids: Iterable[str]) -> dict[str, ImageRecord]:
        """The records that exist among `image_ids`, by id (BatchGetItem: one call per 100 ids, plus a call
        for any keys DynamoDB left unprocessed)."""
        name = self._table.name
        client = self._table.meta.client  # the resource's client: Python types in and out
        ids = list(dict.fromkeys(image_ids))
        found: dict[str, ImageRecord] = {}
        for start in range(0, len(ids), _BATCH_GET_MAX):
            keys = [{"image_id": i} for i in ids[start : start + _BATCH_GET_MAX]]
            request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                try:
                    resp = client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, "reading the image records") from e
                for item in resp.get("Responses", {}).get(name, []):
                    record = ImageRecord.model_validate(plain(item))
                    found[record.image_id] = record
                request = resp.get("UnprocessedKeys") or {}
        return found

    def transition(
        self,
        image_id: str,
        *,
        from_states: Iterable[ImageState],
        to_state: ImageState,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
        expect: Mapping[str, Any] | None = None,
    ) -> ImageRecord | None:
        """Move an image to `to_state` only if it is in one of `from_states` (and, with `expect`, its fields
        still hold those values; None: absent); returns the new record, or None when the condition did not
        hold (another delivery got there first, or it was deleted)."""
        fields = {**(set_fields or {}), "state": to_state.value, "updated_at": utcnow_iso()}
        t = transition(
            "image_id",
            from_states=[s.value for s in from_states],
            set_fields=fields,
            remove_fields=remove_fields,
        )
        for n, (name, value) in enumerate((expect or {}).items()):
            t.names[f"#e{n}"] = name
            if value is None:
                t.condition += f" AND attribute_not_exists(#e{n})"
            else:
                t.values[f":e{n}"] = to_item(value)
                t.condition += f" AND #e{n} = :e{n}"
        item = conditional_update(
            self._table,
            {"image_id": image_id},
            update=t.update,
            condition=t.condition,
            names=t.names,
            values=t.values,
            what="updating the image record",
        )
        return ImageRecord.model_validate(item) if item else None

    def list_by_owner(
        self,
        user_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        state: ImageState | None = None,
        category: str | None = None,
    ) -> tuple[list[ImageRecord], str | None]:
        """Newest first. With a state or category filter, keeps reading pages until `limit` matches or the
        end."""
        start = decode_cursor(cursor, _CURSOR_KEYS)
        if start is not None and start["user_id"] != user_id:
            start = None  # a cursor from another user's listing is simply ignored
        records: list[ImageRecord] = []
        kwargs: dict[str, Any] = {
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": Key("user_id").eq(user_id),
            "ScanIndexForward": False,
        }
        filters = []
        if state is not None:
            filters.append(Attr("state").eq(state.value))
        if category is not None:
            filters.append(Attr("classification.category").eq(category))
        if filters:
            kwargs["FilterExpression"] = filters[0] if len(filters) == 1 else filters[0] & filters[1]
        last: dict[str, Any] | None = start
        while True:
            page_kwargs = {**kwargs, "Limit": limit - len(records)}
            if last:
                page_kwargs["ExclusiveStartKey"] = last
            try:
                resp = self._table.query(**page_kwargs)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, "listing images") from e
            records.extend(ImageRecord.model_validate(plain(i)) for i in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last or len(records) >= limit:
                break
        if last and len(records) >= limit:
            # Point the cursor at the last record returned (LastEvaluatedKey may lie past filtered items).
            tail = records[-1]
            last = {"image_id": tail.image_id, "user_id": tail.user_id, "created_at": tail.created_at}
        return records, encode_cursor(last)

    def charge(self, image_id: str, *, counted: int | None, size: int) -> bool:
        """Record that `size` bytes (not `counted`) are charged to the owner's storage quota for this image,
        only if `counted` is still what the record says: True exactly once per change."""
        condition = "attribute_exists(image_id) AND " + (
            "charged_bytes = :counted" if counted is not None else "attribute_not_exists(charged_bytes)"
        )
        values: dict[str, Any] = {":size": size} | ({":counted": counted} if counted is not None else {})
        try:
            self._table.update_item(
                Key={"image_id": image_id},
                UpdateExpression="SET charged_bytes = :size",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "updating the image record") from e
        except BotoCoreError as e:
            raise translate(e, "updating the image record") from e
        return True

    def delete(self, image_id: str) -> ImageRecord | None:
        """Delete the record; the record as it was, or None when there was none (deleted already)."""
        try:
            resp = self._table.delete_item(Key={"image_id": image_id}, ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "deleting the image record") from e
        item = resp.get("Attributes")
        return ImageRecord.model_validate(plain(item)) if item else None

    def delete_many(self, image_ids: Iterable[str]) -> None:
        """Delete records in BatchWriteItem calls of 25 (boto3's batch writer resends unprocessed items)."""
        try:
            with self._table.batch_writer() as batch:
                for image_id in dict.fromkeys(image_ids):
                    batch.delete_item(Key={"image_id": image_id})
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "deleting the image records") from e
