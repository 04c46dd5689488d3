"""The logic behind `photopipe local dlq list | show | redrive`, against the template's queues in moto:
DLQs found from the redrive policies, each letter with what it is about, selective and full redrive."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from photopipe.models import ImageState
from photopipe_cli.dlq import DeadLetters
from tests.integration.conftest import Stack


@pytest.fixture
def tool(stack: Stack) -> DeadLetters:
    urls = stack.sqs.list_queues()["QueueUrls"]
    return DeadLetters(
        sqs=stack.sqs,
        dynamodb=boto3.client("dynamodb"),
        queues={url.rsplit("/", 1)[1]: url for url in urls},
        tables={"IMAGES_TABLE": stack.images_table, "JOBS_TABLE": stack.env["JOBS_TABLE"]},
    )


def _depth(stack: Stack, url: str) -> int:
    attributes = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_dead_letters_are_listed_with_the_reason_on_their_photo_then_redriven(
    stack: Stack, tool: DeadLetters
) -> None:
    # GIVEN a photo whose classification gave up, its message in the classify DLQ, and a message that
    # names nothing known
    user_id = uuid.uuid4().hex
    image_id = stack.seed_image(
        f"originals/{user_id}/{uuid.uuid4().hex}/a.jpg", ImageState.CLASSIFICATION_FAILED
    )
    stack.dynamodb.Table(stack.images_table).update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET reason = :r, reason_message = :m",
        ExpressionAttributeValues={":r": "classification_gave_up", ":m": "the preview is gone"},
    )
    dlqs = {q.source: q for q in tool.dead_letter_queues()}
    # ingest, classify, gpu-jobs and exports rest in their redrive queues (after the dead-letter function
    # marked them failed), order checks in their DLQ
    assert sorted(dlqs) == sorted(
        f"photopipe-local-{q}-queue" for q in ("ingest", "classify", "gpu-jobs", "exports", "order-checks")
    )
    assert all(("redrive" in q.name) == ("order-checks" not in q.source) for q in dlqs.values())
    classify = next(q for name, q in dlqs.items() if "classify" in name.lower())
    stack.sqs.send_message(QueueUrl=classify.url, MessageBody=json.dumps({"image_id": image_id}))
    stack.sqs.send_message(QueueUrl=classify.url, MessageBody="not json at all")

    # WHEN they are listed
    letters = {d.subject.id: d for d in tool.list_letters(classify.name)}

    # THEN each says what it is about and, for the photo, why it failed; nothing moved
    assert set(letters) == {image_id, None}
    photo = letters[image_id].subject
    assert (photo.kind, photo.state, photo.reason, photo.reason_message) == (
        "image",
        "classification_failed",
        "classification_gave_up",
        "the preview is gone",
    )
    assert letters[None].subject.kind == "unknown"
    assert _depth(stack, classify.url) == 2, "listing made them visible again at once"
    assert tool.show(letters[image_id].message_id).body == json.dumps({"image_id": image_id})

    # WHEN one is redriven by id, THEN only it goes back to the classify queue
    moved = tool.redrive(classify.name, message_ids={letters[image_id].message_id})
    assert [m.subject.id for m in moved] == [image_id]
    assert [
        json.loads(m["Body"]) for m in stack.sqs.receive_message(QueueUrl=classify.source_url)["Messages"]
    ] == [{"image_id": image_id}]
    assert _depth(stack, classify.url) == 1

    # a message that is not there is named, and nothing else moves
    with pytest.raises(KeyError, match="no-such-message"):
        tool.redrive(classify.name, message_ids={"no-such-message"})
    assert _depth(stack, classify.url) == 1
    with pytest.raises(KeyError, match="no dead-letter queue"):
        tool.list_letters("NoSuchQueue")

    # redriving the rest empties the DLQ
    assert len(tool.redrive(classify.source)) == 1
    assert _depth(stack, classify.url) == 0
