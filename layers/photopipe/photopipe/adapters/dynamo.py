"""DynamoDB helpers shared by the repositories."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.aws import resource as make_resource
from photopipe.errors import BadRequestError


def dynamodb_resource() -> Any:
    """One DynamoDB resource for the repositories of a process to share (creating one costs a cold start
    a few hundred milliseconds: it loads the service model); from the process's one boto3 session."""
    return make_resource("dynamodb")


def table(name: str, resource: Any | None = None) -> Any:
    """A `Table` resource (Python types in and out; numbers come back as Decimal)."""
    dynamodb = resource or dynamodb_resource()
    return dynamodb.Table(name)


def to_item(value: Any) -> Any:
    """Python values as the DynamoDB resource accepts them (floats become Decimal, recursively)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_item(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_item(v) for v in value]
    return value


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """Decimals to int/float, recursively, so pydantic and JSON see ordinary numbers."""
    return {k: _plain_value(v) for k, v in item.items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return plain(value)
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    return value


@dataclass
class Transition:
    """An `UpdateItem` that sets fields only while the item is in one of some states (extend it with more
    clauses before sending: every SET item goes before the REMOVE part)."""

    set_clauses: list[str]
    remove_clauses: list[str]
    condition: str
    names: dict[str, str]
    values: dict[str, Any]

    @property
    def update(self) -> str:
        text = "SET " + ", ".join(self.set_clauses)
        return text + (" REMOVE " + ", ".join(self.remove_clauses) if self.remove_clauses else "")


def transition(
    key_attr: str,
    *,
    from_states: Iterable[str],
    set_fields: dict[str, Any],
    remove_fields: Iterable[str] = (),
) -> Transition:
    """SET `set_fields`, REMOVE `remove_fields`, on condition that the item exists and its `state` is one
    of `from_states`."""
    names = {f"#f{i}": k for i, k in enumerate(set_fields)}
    values: dict[str, Any] = {f":v{i}": to_item(v) for i, v in enumerate(set_fields.values())}
    removes = [f for f in remove_fields if f not in set_fields]
    names.update({f"#r{i}": k for i, k in enumerate(removes)})
    states = list(from_states)
    names["#state"] = "state"
    values.update({f":s{i}": s for i, s in enumerate(states)})
    return Transition(
        set_clauses=[f"#f{i} = :v{i}" for i in range(len(set_fields))],
        remove_clauses=[f"#r{i}" for i in range(len(removes))],
        condition=f"attribute_exists({key_attr}) AND #state IN ("
        + ", ".join(f":s{i}" for i in range(len(states)))
        + ")",
        names=names,
        values=values,
    )


def conditional_update(
    table: Any,
    key: dict[str, Any],
    *,
    update: str,
    condition: str,
    names: dict[str, str],
    values: dict[str, Any],
    what: str,
) -> dict[str, Any] | None:
    """One conditional `UpdateItem`: the item's new attributes, or None when the condition did not hold
    (another delivery got there first, or the item is gone). Other failures become domain errors."""
    try:
        resp = table.update_item(
            Key=key,
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except ClientError as e:
        if error_code(e) == "ConditionalCheckFailedException":
            return None
        raise translate(e, what) from e
    except BotoCoreError as e:
        raise translate(e, what) from e
    return plain(resp["Attributes"])


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(plain(last_key), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, required_keys: frozenset[str]) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, json.JSONDecodeError) as e:
        raise BadRequestError("the cursor is not one this API returned", code="invalid_cursor") from e
    if (
        not isinstance(key, dict)
        or set(key) != required_keys
        or not all(isinstance(v, str) for v in key.values())
    ):
        raise BadRequestError("the cursor is not one this API returned", code="invalid_cursor")
    return key
