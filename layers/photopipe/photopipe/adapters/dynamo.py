"""DynamoDB helpers shared by the repositories."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import boto3

from photopipe.adapters.aws import BOTO_CONFIG
from photopipe.errors import BadRequestError


def table(name: str, resource: Any | None = None) -> Any:
    """A `Table` resource (Python types in and out; numbers come back as Decimal)."""
    dynamodb = resource or boto3.session.Session().resource("dynamodb", config=BOTO_CONFIG)
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
    """Decimals to int/float so pydantic and JSON see ordinary numbers."""
    out: dict[str, Any] = {}
    for k, v in item.items():
        if isinstance(v, Decimal):
            out[k] = int(v) if v == v.to_integral_value() else float(v)
        else:
            out[k] = v
    return out


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
