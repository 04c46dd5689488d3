"""The classification cache table.

- `pk = EXACT#<model>#<prompt version>#<sha256>`, `sk = RESULT`: one classification, or while an LLM call
  is in flight a lock (`status = pending`, an owner and a lease), so two concurrent misses on one photo
  make one call. Only successful classifications are ever stored as `status = ok`.
- `pk = BAND#<model>#<prompt version>#<band>`, `sk = <sha256>`: one item per perceptual-hash band of each
  cached photo, so a near duplicate is found with a few key lookups, never a scan.

The model and the prompt version are part of every key: changing either starts a fresh cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import plain, table, to_item
from photopipe.models import CachedResult, utcnow_iso

RESULT = "RESULT"
_OK = "ok"
_PENDING = "pending"


class Lock(StrEnum):
    ACQUIRED = "acquired"  # this caller may call the LLM
    HELD = "held"  # another caller is classifying the same photo right now
    DONE = "done"  # a result exists already


class ClassificationCache:
    def __init__(
        self, table_name: str, *, model: str, prompt_version: str, resource: Any | None = None
    ) -> None:
        self._table = table(table_name, resource)
        self.model = model
        self.prompt_version = prompt_version
        self._scope = f"{model}#{prompt_version}"

    # ------------------------------------------------------------------ lookups
    def get_exact(self, sha256: str) -> CachedResult | None:
        item = self._get(self._exact_pk(sha256))
        return self._result(item) if item and item.get("status") == _OK else None

    def near_candidates(self, band_keys: list[str]) -> dict[str, str]:
        """Cached photos sharing at least one perceptual-hash band with a photo: {sha256: phash}.
        (The caller computes the bands and picks the closest candidate: `photopipe.classification.neardup`.)"""
        candidates: dict[str, str] = {}
        for band in band_keys:
            try:
                resp = self._table.query(KeyConditionExpression=Key("pk").eq(self._band_pk(band)))
            except (ClientError, BotoCoreError) as e:
                raise translate(e, "looking up near duplicates") from e
            for item in resp.get("Items", []):
                candidates[str(item["sk"])] = str(item["phash"])
        return candidates

    # ------------------------------------------------------------------ single flight
    def try_lock(self, sha256: str, *, owner: str, lease_seconds: float) -> Lock:
        now = time.time()
        try:
            self._table.put_item(
                Item={
                    "pk": self._exact_pk(sha256),
                    "sk": RESULT,
                    "status": _PENDING,
                    "owner": owner,
                    "lease_until": int(now + lease_seconds),
                },
                ConditionExpression="attribute_not_exists(pk) OR (#s = :pending AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": _PENDING, ":now": int(now)},
            )
        except ClientError as e:
            if error_code(e) != "ConditionalCheckFailedException":
                raise translate(e, "locking the classification") from e
            item = self._get(self._exact_pk(sha256))
            return Lock.DONE if item and item.get("status") == _OK else Lock.HELD
        except BotoCoreError as e:
            raise translate(e, "locking the classification") from e
        return Lock.ACQUIRED

    def wait_for(
        self, sha256: str, *, timeout: float, poll: float = 0.5, sleep: Callable[[float], None] = time.sleep
    ) -> CachedResult | None:
        """Wait (up to `timeout` s) for the caller holding the lock to store its result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.get_exact(sha256)
            if result is not None or time.monotonic() + poll > deadline:
                return result
            sleep(poll)

    def release(self, sha256: str, *, owner: str) -> None:
        """Drop our lock after a failed call (a failure is never cached)."""
        try:
            self._table.delete_item(
                Key={"pk": self._exact_pk(sha256), "sk": RESULT},
                ConditionExpression="#s = :pending AND #o = :owner",
                ExpressionAttributeNames={"#s": "status", "#o": "owner"},
                ExpressionAttributeValues={":pending": _PENDING, ":owner": owner},
            )
        except ClientError as e:
            if error_code(e) != "ConditionalCheckFailedException":
                raise translate(e, "releasing the classification lock") from e
        except BotoCoreError as e:
            raise translate(e, "releasing the classification lock") from e

    # ------------------------------------------------------------------ writes
    def store(
        self,
        *,
        sha256: str,
        phash: str | None,
        band_keys: list[str],
        category: str,
        confidence: float,
        reason: str,
        cost: float,
    ) -> CachedResult:
        result = CachedResult(
            sha256=sha256,
            phash=phash,
            category=category,
            confidence=confidence,
            reason=reason,
            model=self.model,
            prompt_version=self.prompt_version,
            cost=cost,
            created_at=utcnow_iso(),
        )
        item = {"pk": self._exact_pk(sha256), "sk": RESULT, "status": _OK, "hit_count": 0, **vars(result)}
        try:
            with self._table.batch_writer() as batch:
                batch.put_item(Item=to_item({k: v for k, v in item.items() if v is not None}))
                for band in band_keys if phash else []:
                    batch.put_item(Item={"pk": self._band_pk(band), "sk": sha256, "phash": phash})
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "storing the classification") from e
        return result

    def count_hit(self, sha256: str) -> None:
        try:
            self._table.update_item(
                Key={"pk": self._exact_pk(sha256), "sk": RESULT},
                UpdateExpression="ADD hit_count :one SET last_hit_at = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":one": 1, ":now": utcnow_iso()},
            )
        except ClientError as e:
            if error_code(e) != "ConditionalCheckFailedException":
                raise translate(e, "counting a cache hit") from e
        except BotoCoreError as e:
            raise translate(e, "counting a cache hit") from e

    # ------------------------------------------------------------------ helpers
    def _exact_pk(self, sha256: str) -> str:
        return f"EXACT#{self._scope}#{sha256.lower()}"

    def _band_pk(self, band: str) -> str:
        return f"BAND#{self._scope}#{band}"

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            resp = self._table.get_item(Key={"pk": pk, "sk": RESULT}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the classification cache") from e
        item = resp.get("Item")
        return plain(item) if item else None

    @staticmethod
    def _result(item: dict[str, Any]) -> CachedResult:
        return CachedResult(
            sha256=str(item["sha256"]),
            phash=item.get("phash"),
            category=str(item["category"]),
            confidence=float(item["confidence"]),
            reason=str(item["reason"]),
            model=str(item["model"]),
            prompt_version=str(item["prompt_version"]),
            cost=float(item.get("cost", 0.0)),
            created_at=str(item["created_at"]),
        )
