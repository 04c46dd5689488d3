"""Daily classification counters: atomic `ADD` updates as events happen, read by key - never scanned.

`pk = DAY#<yyyy-mm-dd>` holds the counters; `pk = SEEN#<day>#<user>` marks a user seen that day (a
conditional put, so `distinct_users` is counted once per user and day; expires after 40 days)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table

_SEEN_TTL_SECONDS = 40 * 24 * 3600


def day_key(day: str) -> str:
    return f"DAY#{day}"


class StatsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self._name = table_name

    def add(self, day: str, counters: Mapping[str, int], *, user_id: str | None = None) -> None:
        """Add `counters` (names are plain identifiers) to the day's totals, atomically."""
        increments = {k: v for k, v in counters.items() if v}
        if user_id and self._first_visit(day, user_id):
            increments["distinct_users"] = increments.get("distinct_users", 0) + 1
        if not increments:
            return
        names = {f"#c{i}": k for i, k in enumerate(increments)}
        values = {f":c{i}": v for i, v in enumerate(increments.values())}
        try:
            self._table.update_item(
                Key={"pk": day_key(day)},
                UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(increments))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "updating the statistics") from e

    def days(self, days: Iterable[str]) -> dict[str, dict[str, int]]:
        """The counters of each day asked for (missing days are empty)."""
        wanted = list(dict.fromkeys(days))
        found: dict[str, dict[str, int]] = {d: {} for d in wanted}
        resource = self._table.meta.client
        for start in range(0, len(wanted), 100):
            keys = [{"pk": day_key(d)} for d in wanted[start : start + 100]]
            request: dict[str, Any] = {self._name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                try:
                    resp = resource.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, "reading the statistics") from e
                for item in resp.get("Responses", {}).get(self._name, []):
                    values = plain(item)
                    day = str(values.pop("pk")).removeprefix("DAY#")
                    found[day] = {k: int(v) for k, v in values.items()}
                request = resp.get("UnprocessedKeys") or {}
        return found

    def _first_visit(self, day: str, user_id: str) -> bool:
        try:
            self._table.put_item(
                Item={"pk": f"SEEN#{day}#{user_id}", "expires_at": int(time.time()) + _SEEN_TTL_SECONDS},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise translate(e, "updating the statistics") from e
        except BotoCoreError as e:
            raise translate(e, "updating the statistics") from e
        return True
