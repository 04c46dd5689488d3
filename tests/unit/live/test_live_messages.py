"""Which table-stream records become which WebSocket messages: a change a user sees produces one small
message for its owner; a write that changes nothing visible (a lease renewal, a new etag) produces none."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from photopipe.models import TableChangeRecord
from photopipe.usecases.live import change_message
from tests.conftest import load_event

_SERIALIZER = TypeSerializer()
OWNER = "u-alice"


def _record(
    keys: dict[str, Any], old: dict[str, Any] | None, new: dict[str, Any] | None
) -> TableChangeRecord:
    """A stream record as Lambda delivers it, from the items before and after the write."""
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1795314600,
        "SequenceNumber": "11",
        "SizeBytes": 9,
    }
    dynamodb |= {"StreamViewType": "NEW_AND_OLD_IMAGES", "Keys": _image(keys)}
    dynamodb |= {"NewImage": _image(new)} if new is not None else {}
    dynamodb |= {"OldImage": _image(old)} if old is not None else {}
    source = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-23T02:00:00.000"
    record = {"eventID": "1", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb"}
    return TableChangeRecord.model_validate(
        record | {"awsRegion": "us-east-1", "eventSourceARN": source, "dynamodb": dynamodb}
    )


def _image(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _SERIALIZER.serialize(Decimal(str(v)) if isinstance(v, int | float) else v)
        for k, v in item.items()
    }


def _photo(state: str, **more: Any) -> dict[str, Any]:
    return {"image_id": "img-1", "user_id": OWNER, "state": state, "updated_at": f"t-{state}"} | more


def _job(state: str, progress: int, **more: Any) -> dict[str, Any]:
    return (
        {"job_id": "job-1", "image_id": "img-1", "user_id": OWNER, "state": state, "progress": progress}
        | {"updated_at": f"t-{state}-{progress}"}
        | more
    )


PHOTO, JOB = {"image_id": "img-1"}, {"job_id": "job-1"}
BALANCE, ORDER = {"user_id": OWNER, "sk": "BALANCE"}, {"order_id": "ord-1"}

CASES = [
    # photos: every state change, with the reason when there is one
    (
        "new upload",
        PHOTO,
        None,
        _photo("pending_upload"),
        {"type": "image.updated", "image_id": "img-1", "state": "pending_upload", "at": "t-pending_upload"},
    ),
    (
        "processed",
        PHOTO,
        _photo("processing"),
        _photo("processed", width=1600),
        {"type": "image.updated", "image_id": "img-1", "state": "processed", "at": "t-processed"},
    ),
    (
        "rejected",
        PHOTO,
        _photo("processing"),
        _photo("rejected", reason="too_small", reason_message="..."),
        {
            "type": "image.updated",
            "image_id": "img-1",
            "state": "rejected",
            "reason": "too_small",
            "at": "t-rejected",
        },
    ),
    ("same state, new etag", PHOTO, _photo("processed"), _photo("processed", etag="e2"), None),
    ("deleted", PHOTO, _photo("processed"), None, None),
    # jobs: state or progress
    (
        "queued",
        JOB,
        None,
        _job("queued", 0),
        {"type": "job.updated", "job_id": "job-1", "state": "queued", "progress": 0, "at": "t-queued-0"},
    ),
    (
        "progress",
        JOB,
        _job("running", 40),
        _job("running", 70),
        {"type": "job.updated", "job_id": "job-1", "state": "running", "progress": 70, "at": "t-running-70"},
    ),
    (
        "lease renewed",
        JOB,
        _job("running", 40, lease_expires_at=10.5),
        _job("running", 40, lease_expires_at=40.5),
        None,
    ),
    (
        "failed",
        JOB,
        _job("running", 70),
        _job("failed", 70, error={"code": "no_faces", "message": "..."}),
        {
            "type": "job.updated",
            "job_id": "job-1",
            "state": "failed",
            "progress": 70,
            "reason": "no_faces",
            "at": "t-failed-70",
        },
    ),
    # credits: the balance item only
    (
        "balance",
        BALANCE,
        {**BALANCE, "balance": 10, "updated_at": "a"},
        {**BALANCE, "balance": 9, "updated_at": "b"},
        {"type": "credits.updated", "balance": 9, "at": "b"},
    ),
    (
        "ledger entry",
        {"user_id": OWNER, "sk": "ENTRY#reserve:job-1"},
        None,
        {"user_id": OWNER, "sk": "ENTRY#reserve:job-1", "amount": -1},
        None,
    ),
    # orders: real orders only (the DAY# counters have no owner)
    (
        "order paid",
        ORDER,
        {**ORDER, "user_id": OWNER, "state": "pending", "updated_at": "a"},
        {**ORDER, "user_id": OWNER, "state": "paid", "updated_at": "b"},
        {"type": "order.updated", "order_id": "ord-1", "state": "paid", "at": "b"},
    ),
    (
        "day counters",
        {"order_id": "DAY#2026-11-23"},
        {"order_id": "DAY#2026-11-23", "orders": 1},
        {"order_id": "DAY#2026-11-23", "orders": 2},
        None,
    ),
]


@pytest.mark.parametrize(
    ("keys", "old", "new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_record_produces_the_message_its_owner_sees(
    keys: dict[str, Any],
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    expected: dict[str, Any] | None,
) -> None:
    addressed = change_message(_record(keys, old, new))

    if expected is None:
        assert addressed is None
    else:
        assert addressed is not None
        owner, message = addressed
        assert owner == OWNER
        assert json.loads(message.wire()) == expected


def test_the_sample_batch_says_only_what_changed() -> None:
    # GIVEN the sample stream batch: a lease renewal, progress 40 -> 70, a failure, an etag update, a rejection
    records = [TableChangeRecord.model_validate(r) for r in load_event("notify-stream-batch.json")["Records"]]

    messages = [json.loads(a[1].wire()) if (a := change_message(r)) else None for r in records]

    assert messages == [
        None,
        {
            "type": "job.updated",
            "job_id": "7c2d9e4f1a3b4c5d8e6f0a1b2c3d4e5f",
            "state": "running",
            "progress": 70,
            "at": "2026-11-23T02:31:33.000000Z",
        },
        {
            "type": "job.updated",
            "job_id": "7c2d9e4f1a3b4c5d8e6f0a1b2c3d4e5f",
            "state": "failed",
            "progress": 70,
            "reason": "no_faces",
            "at": "2026-11-23T02:31:34.000000Z",
        },
        None,
        {
            "type": "image.updated",
            "image_id": "9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b",
            "state": "rejected",
            "reason": "unsupported_format",
            "at": "2026-11-23T02:32:00.300000Z",
        },
    ]


def test_a_message_is_small() -> None:
    (record,) = [
        TableChangeRecord.model_validate(r) for r in load_event("notify-image-processed.json")["Records"]
    ]

    addressed = change_message(record)

    assert addressed is not None
    assert set(json.loads(addressed[1].wire())) == {"type", "image_id", "state", "at"}
    assert len(addressed[1].wire()) < 200, "the whole record (keys, hashes, sizes) is not sent"
