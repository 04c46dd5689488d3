"""Workers table: the GPU fleet, one item per worker, kept fresh by heartbeats (`photopipe.models.fleet`).

`expires_at` is the table's TTL attribute: DynamoDB
deletes a silent worker's item some time after it (not promptly, and moto never does), so reads drop
expired items themselves. The fleet is a handful of items: listing it is a scan of a tiny table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table, to_item
from photopipe.models.fleet import HEALTHY_WITHIN_S, WorkerRecord

# How long a silent worker stays listed (as unhealthy) before its item expires.
RETAIN_S = 3600


class WorkersRepository:
    def __init__(
        self, table_name: str, resource: Any | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._table = table(table_name, resource)
        self._clock = clock

    def register(
        self,
        worker_id: str,
        *,
        url: str | None = None,
        provider: str | None = None,
        max_batch: int | None = None,
        version: str | None = None,
    ) -> WorkerRecord:
        """Create or refresh a worker's item (registering again is a heartbeat with new details)."""
        now = self._clock()
        item: dict[str, Any] = {
            "worker_id": worker_id,
            "registered_at": now,
            "heartbeat_at": now,
            "expires_at": int(now + RETAIN_S),
        }
        extra = {"url": url, "provider": provider, "max_batch": max_batch, "version": version}
        item.update({k: v for k, v in extra.items() if v is not None})
        try:
            self._table.put_item(Item=to_item(item))
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "registering the worker") from e
        return self._record(item, now)

    def heartbeat(self, worker_id: str) -> bool:
        """Refresh the heartbeat; False when the worker is not registered (it should register again)."""
        now = self._clock()
        try:
            self._table.update_item(
                Key={"worker_id": worker_id},
                UpdateExpression="SET heartbeat_at = :now, expires_at = :exp",
                ConditionExpression="attribute_exists(worker_id)",
                ExpressionAttributeValues={":now": to_item(now), ":exp": int(now + RETAIN_S)},
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "recording the worker's heartbeat") from e
        except BotoCoreError as e:
            raise translate(e, "recording the worker's heartbeat") from e
        return True

    def unregister(self, worker_id: str) -> bool:
        try:
            resp = self._table.delete_item(Key={"worker_id": worker_id}, ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "unregistering the worker") from e
        return bool(resp.get("Attributes"))

    def list(self) -> list[WorkerRecord]:
        """Every worker not yet expired, healthy ones first, each with `healthy` computed now."""
        now = self._clock()
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            try:
                resp = self._table.scan(**kwargs)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, "listing the workers") from e
            items.extend(resp.get("Items", []))
            if not resp.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        records = [self._record(plain(i), now) for i in items if float(i.get("expires_at", 0)) > now]
        return sorted(records, key=lambda r: (not r.healthy, r.worker_id))

    @staticmethod
    def _record(item: dict[str, Any], now: float) -> WorkerRecord:
        record = WorkerRecord.model_validate(item)
        return record.model_copy(update={"healthy": now - record.heartbeat_at <= HEALTHY_WITHIN_S})
