"""Batch delete fits the API function's 15 s: a handful of AWS calls for 100 photos (counted through
botocore's event hooks on the clients the API itself uses), and what S3 refuses is reported per photo."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from photopipe import wiring
from photopipe.adapters.s3 import MediaStore
from photopipe.models import ImageState
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import register_user


def _photos(stack: Stack, user_id: str, count: int) -> list[str]:
    """`count` processed photos, each with its original, thumbnail and preview in the bucket."""
    ids = []
    for n in range(count):
        image_id = f"img{n:03d}"
        key = f"originals/{user_id}/{image_id}/p.jpg"
        stack.seed_image(key, ImageState.PROCESSED)
        for k in (
            key,
            f"derived/{user_id}/{image_id}/thumb.webp",
            f"derived/{user_id}/{image_id}/preview.jpg",
        ):
            stack.s3.put_object(Bucket=stack.bucket, Key=k, Body=b"x")
        ids.append(image_id)
    return ids


@pytest.fixture
def calls() -> Counter[str]:
    """Every AWS call the API function's S3 client and images table make from now on, by operation."""
    counted: Counter[str] = Counter()
    services = wiring.api_services()

    def count(event_name: str, **_: Any) -> None:
        counted[event_name.removeprefix("before-call.")] += 1

    services.media.client.meta.events.register("before-call.*.*", count)
    services.images.client.meta.events.register("before-call.*.*", count)
    return counted


def test_deleting_100_photos_takes_a_handful_of_calls(
    api: ApiClient, stack: Stack, calls: Counter[str]
) -> None:
    # GIVEN 100 photos with their three objects each (the most one request may name)
    token, user_id = register_user(api, "ada")
    ids = _photos(stack, user_id, 100)
    calls.clear()  # registration's own calls are not the delete's

    # WHEN they are deleted in one request
    status, body = api.call("POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": ids})

    # THEN every photo, object and record is gone, in six calls
    assert status == 200, body
    assert body == {"deleted": ids, "not_found": [], "failed": []}
    assert stack.keys(f"originals/{user_id}/") == []
    assert stack.keys(f"derived/{user_id}/") == []
    assert stack.owner_images(user_id) == []
    assert dict(calls) == {"dynamodb.BatchGetItem": 1, "s3.DeleteObjects": 1, "dynamodb.BatchWriteItem": 4}


def test_unknown_and_other_users_photos_cost_one_read(
    api: ApiClient, stack: Stack, calls: Counter[str]
) -> None:
    token, _ = register_user(api, "ada")
    _, other = register_user(api, "bob")
    stack.seed_image(f"originals/{other}/theirs/p.jpg", ImageState.PROCESSED)
    calls.clear()

    status, body = api.call(
        "POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": ["nope", "theirs"]}
    )

    assert (status, body) == (200, {"deleted": [], "not_found": ["nope", "theirs"], "failed": []})
    assert stack.image("theirs")["state"] == "processed"
    assert dict(calls) == {"dynamodb.BatchGetItem": 1}


def test_a_key_s3_refuses_keeps_its_photo_and_says_why(api: ApiClient, stack: Stack) -> None:
    # GIVEN two photos, and S3 refusing to delete the first one's preview (as a bucket policy or an
    # object lock would; moto enforces neither, so S3's per-key answer is written into its response)
    token, user_id = register_user(api, "ada")
    kept, gone = _photos(stack, user_id, 2)
    refused = f"derived/{user_id}/{kept}/preview.jpg"

    def refuse(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Errors"] = [{"Key": refused, "Code": "AccessDenied", "Message": "Access Denied"}]

    wiring.api_services().media.client.meta.events.register("after-call.s3.DeleteObjects", refuse)

    # WHEN both are deleted
    status, body = api.call(
        "POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": [kept, gone]}
    )

    # THEN the refused one is reported with S3's reason and is still there to delete again
    assert status == 200
    assert body["deleted"] == [gone]
    assert body["failed"] == [
        {"image_id": kept, "code": "delete_failed", "message": f"{refused}: AccessDenied: Access Denied"}
    ]
    assert api.call("GET", f"/api/v1/images/{kept}", token=token)[0] == 200
    assert api.call("GET", f"/api/v1/images/{gone}", token=token)[0] == 404


def test_records_dynamodb_would_not_delete_are_reported_not_a_500(api: ApiClient, stack: Stack) -> None:
    token, user_id = register_user(api, "ada")
    (image_id,) = _photos(stack, user_id, 1)

    def refuse(**_: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "BatchWriteItem"
        )

    wiring.api_services().images.client.meta.events.register("before-call.dynamodb.BatchWriteItem", refuse)

    status, body = api.call(
        "POST", "/api/v1/images/batch-delete", token=token, body={"image_ids": [image_id]}
    )

    assert status == 200
    assert body["deleted"] == []
    assert [f["image_id"] for f in body["failed"]] == [image_id]
    assert "AccessDeniedException" in body["failed"][0]["message"]
    assert api.call("GET", f"/api/v1/images/{image_id}", token=token)[0] == 200


def test_delete_objects_goes_1000_keys_a_call(stack: Stack) -> None:
    store = MediaStore(stack.bucket)
    counted: Counter[str] = Counter()
    store.client.meta.events.register("before-call.s3.DeleteObjects", lambda **_: counted.update(["call"]))
    keys = [f"derived/u/{n}/thumb.webp" for n in range(2500)]
    stack.s3.put_object(Bucket=stack.bucket, Key=keys[-1], Body=b"x")

    failed = store.delete_keys([*keys, keys[0]])  # a repeated key is sent once

    assert failed == {}
    assert counted["call"] == 3
    assert stack.keys("derived/u/") == []
