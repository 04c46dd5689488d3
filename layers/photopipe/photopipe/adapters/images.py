"""Images table: records keyed by image_id, listed per owner through the `by-owner` GSI. Every state change
is a conditional write, so duplicate deliveries cannot move an image backwards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import translate
from photopipe.adapters.dynamo import (
    conditional_update,
    decode_cursor,
    encode_cursor,
    plain,
    table,
    transition,
)
from photopipe.models import ImageRecord, ImageState, utcnow_iso

OWNER_INDEX = "by-owner"
_CURSOR_KEYS = frozenset({"image_id", "user_id", "created_at"})


class ImagesRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)

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

    def transition(
        self,
        image_id: str,
        *,
        from_states: Iterable[ImageState],
        to_state: ImageState,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
    ) -> ImageRecord | None:
        """Move an image to `to_state` only if it is in one of `from_states`; returns the new record, or
        None when the condition did not hold (another delivery got there first, or it was deleted)."""
        fields = {**(set_fields or {}), "state": to_state.value, "updated_at": utcnow_iso()}
        t = transition(
            "image_id",
            from_states=[s.value for s in from_states],
            set_fields=fields,
            remove_fields=remove_fields,
        )
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

    def delete(self, image_id: str) -> None:
        try:
            self._table.delete_item(Key={"image_id": image_id})
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "deleting the image record") from e
