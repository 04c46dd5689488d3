"""What the API hands a client to talk to S3 itself - the upload form, photo links, a result's download - is
signed with SigV4 (moto accepts SigV2 too, so the signature is read, not just used)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack
from tests.integration.enhance_support import fleet, make_worker, processed_image, register_user


def _algorithm(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query).get("X-Amz-Algorithm", [])


def test_upload_form_and_photo_links_are_sigv4(api: ApiClient, stack: Stack) -> None:
    token, user_id = register_user(api, "ada")
    status, upload = api.call(
        "POST",
        "/api/v1/uploads",
        token=token,
        body={"filename": "a.jpg", "content_type": "image/jpeg", "size": 1000},
    )
    assert status == 201
    assert upload["upload"]["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert "AWSAccessKeyId" not in upload["upload"]["fields"]

    image_id, _ = processed_image(stack, user_id)
    table = stack.dynamodb.Table(stack.images_table)
    table.update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET thumbnail_key = :t, preview_key = :p",
        ExpressionAttributeValues={
            ":t": f"derived/{user_id}/{image_id}/thumb.webp",
            ":p": f"derived/{user_id}/{image_id}/preview.jpg",
        },
    )
    status, image = api.call("GET", f"/api/v1/images/{image_id}", token=token)
    assert status == 200
    assert {name: _algorithm(url) for name, url in image["urls"].items()} == {
        "original": ["AWS4-HMAC-SHA256"],
        "thumbnail": ["AWS4-HMAC-SHA256"],
        "preview": ["AWS4-HMAC-SHA256"],
    }


def test_enhanced_result_download_is_sigv4(api: ApiClient, stack: Stack) -> None:
    fleet(stack).register("gpu-1", provider="CUDAExecutionProvider", max_batch=8)
    token, user_id = register_user(api, "ada")
    image_id, _ = processed_image(stack, user_id)
    status, job = api.call("POST", "/api/v1/enhance", body={"image_id": image_id}, token=token)
    assert status == 202
    make_worker(stack).poll_once()

    path = f"/api/v1/enhance/{job['job_id']}/download"
    event = load_event("api-health.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    event["headers"]["authorization"] = f"Bearer {token}"
    response = load_handler("api").handler(event, FakeContext("photopipe-api"))

    assert response["statusCode"] == 302
    assert _algorithm(response["headers"]["Location"]) == ["AWS4-HMAC-SHA256"]
