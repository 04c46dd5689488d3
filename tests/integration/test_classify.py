"""The classify function against moto and a fake DashScope speaking the real wire format, through the real
`dashscope` SDK: exact and near-duplicate cache hits, single flight, failures never cached, statistics."""

from __future__ import annotations

import base64
import copy
import io
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from skimage import data as samples

from photopipe import wiring
from tests.conftest import FakeContext, load_event
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes

API_KEY = "sk-test-0123456789abcdef"
PETS = '{"category": "pets", "confidence": 0.93, "reason": "a cat looking at the camera"}'
PERSON = '{"category": "single_person", "confidence": 0.88, "reason": "one person in a spacesuit"}'


@pytest.fixture
def dashscope(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=API_KEY) as fake:
        fake.responder = lambda _image: PERSON
        monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
        wiring.reset()
        yield fake


@pytest.fixture
def classify_handler(stack: Stack) -> Any:
    from tests.conftest import load_handler

    return load_handler("classify").handler


def ingest(stack: Stack, ingest_handler: Any, data: bytes, user_id: str | None = None) -> str:
    """Upload `data` as a new photo and run ingest on it, as the pipeline would."""
    user_id = user_id or uuid.uuid4().hex
    key = f"originals/{user_id}/{uuid.uuid4().hex}/photo.jpg"
    image_id = stack.seed_image(key)
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)["ETag"].strip('"')
    event = load_event("ingest-upload.json")
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=len(data))
    event["Records"][0]["body"] = json.dumps(body)
    assert ingest_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id)["state"] == "processed"
    return image_id


def classify_event(*image_ids: str, receive_count: int = 1) -> dict[str, Any]:
    template = load_event("classify-image.json")["Records"][0]
    records = []
    for n, image_id in enumerate(image_ids):
        record = json.loads(json.dumps(template))
        record["messageId"] = f"msg-{n}-{image_id[:8]}"
        record["body"] = json.dumps({"image_id": image_id})
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        records.append(record)
    return {"Records": records}


def llm_calls(fake: FakeDashScope) -> int:
    return len(fake.requests)


def test_sample_event_classifies_a_processed_photo_with_the_model(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    # GIVEN the photo the sample event names, processed by ingest
    event = load_event("classify-image.json")
    image_id = json.loads(event["Records"][0]["body"])["image_id"]
    key = f"originals/0f8c1b3e2a4d4c5f9e6a7b8c9d0e1f2a/{image_id}/photo.jpg"
    stack.seed_image(key)
    data = jpeg_bytes((1600, 1200))
    etag = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)["ETag"].strip('"')
    ingest_event = load_event("ingest-upload.json")
    body = json.loads(ingest_event["Records"][0]["body"])
    body["Records"][0]["s3"]["object"].update(key=key, eTag=etag, size=len(data))
    ingest_event["Records"][0]["body"] = json.dumps(body)
    assert ingest_handler(ingest_event, FakeContext()) == {"batchItemFailures": []}

    # WHEN the classify function gets the sample event
    assert classify_handler(event, FakeContext()) == {"batchItemFailures": []}

    # THEN the image carries the model's category with both labels
    record = stack.image(image_id)
    assert record["state"] == "classified"
    c = record["classification"]
    assert (c["category"], c["label_en"], c["label_zh"], c["source"]) == (
        "single_person",
        "Single person",
        "单人照片",
        "llm",
    )
    assert c["model"] == "qwen-vl-plus"
    assert float(c["confidence"]) == pytest.approx(0.88)
    assert llm_calls(dashscope) == 1
    # and the model saw the 1440 px preview, not the original
    sent = Image.open(io.BytesIO(dashscope.images[0]))
    assert max(sent.size) == 1440


def test_the_same_bytes_again_are_an_exact_hit_without_a_call(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    data = jpeg_bytes((800, 600))
    first = ingest(stack, ingest_handler, data)
    second = ingest(stack, ingest_handler, data)  # another user, same photo
    assert classify_handler(classify_event(first), FakeContext()) == {"batchItemFailures": []}
    assert classify_handler(classify_event(second), FakeContext()) == {"batchItemFailures": []}

    assert llm_calls(dashscope) == 1
    assert stack.image(second)["classification"]["source"] == "exact_cache"
    assert (
        stack.image(second)["classification"]["category"] == stack.image(first)["classification"]["category"]
    )


def test_a_recompressed_smaller_copy_is_a_near_duplicate_hit(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    original = ingest(stack, ingest_handler, jpeg_bytes((1600, 1200), quality=92))
    copy = ingest(stack, ingest_handler, jpeg_bytes((800, 600), quality=45))  # what a chat app sends on
    classify_handler(classify_event(original), FakeContext())
    classify_handler(classify_event(copy), FakeContext())

    assert llm_calls(dashscope) == 1
    c = stack.image(copy)["classification"]
    assert c["source"] == "near_duplicate"
    assert 0 <= int(c["distance"]) <= 10


def test_a_different_photo_is_a_miss(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    person = ingest(stack, ingest_handler, jpeg_bytes((800, 600)))
    classify_handler(classify_event(person), FakeContext())
    dashscope.responder = lambda _image: PETS
    cat = ingest(stack, ingest_handler, _photo_of(samples.chelsea()))
    classify_handler(classify_event(cat), FakeContext())

    assert llm_calls(dashscope) == 2
    assert stack.image(cat)["classification"]["category"] == "pets"


def test_a_duplicate_delivery_makes_no_second_call(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    image_id = ingest(stack, ingest_handler, jpeg_bytes((640, 480)))
    event = classify_event(image_id)
    assert classify_handler(event, FakeContext()) == {"batchItemFailures": []}
    first = stack.image(image_id)
    assert classify_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert llm_calls(dashscope) == 1
    assert stack.image(image_id) == first


def test_two_concurrent_misses_on_one_photo_make_one_call(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    data = jpeg_bytes((700, 500))
    a, b = ingest(stack, ingest_handler, data), ingest(stack, ingest_handler, data)
    dashscope.delay = 1.0  # the first call is slow, so the second delivery arrives while it is in flight
    results: dict[str, Any] = {}

    def run(image_id: str) -> None:
        results[image_id] = classify_handler(classify_event(image_id), FakeContext())

    threads = [threading.Thread(target=run, args=(i,)) for i in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert llm_calls(dashscope) == 1
    assert results == {a: {"batchItemFailures": []}, b: {"batchItemFailures": []}}
    sources = sorted(stack.image(i)["classification"]["source"] for i in (a, b))
    assert sources == ["exact_cache", "llm"]


def test_a_failure_is_never_cached_and_a_retry_classifies(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope, api: ApiClient
) -> None:
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    dashscope.fail_next(10, status=500, code="InternalError", message="An internal error has occured.")
    event = classify_event(image_id)

    result = classify_handler(event, FakeContext(timeout_ms=25_000))

    # the message fails (SQS retries it, then the DLQ keeps it) and the image says why
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    record = stack.image(image_id)
    assert record["state"] == "classification_failed"
    assert "internal error" in record["reason_message"].lower()
    # nothing was cached
    sha = record["sha256"]
    token = _token(api)
    assert (
        api.call("POST", "/api/v1/classify/check-cache", token=token, body={"sha256": sha})[1]["hit"] is False
    )

    # the redelivery, with the provider healthy again, classifies it
    dashscope.clear_script()
    assert classify_handler(event, FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id)["state"] == "classified"


def test_an_answer_outside_the_schema_twice_is_a_failure_not_a_guess(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    dashscope.responder = lambda _image: '{"category": "landscape", "confidence": 2, "reason": "?"}'
    result = classify_handler(classify_event(image_id), FakeContext())
    # final: the message is consumed (not redelivered to burn more calls on the same answers)
    assert result == {"batchItemFailures": []}
    assert llm_calls(dashscope) == 2  # the answer, and one stricter retry
    record = stack.image(image_id)
    assert record["state"] == "classification_failed"
    assert "not a valid classification" in record["reason_message"]
    assert "classification" not in record


def test_an_invalid_api_key_is_a_clear_error_naming_the_setting(
    stack: Stack,
    ingest_handler: Any,
    classify_handler: Any,
    dashscope: FakeDashScope,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong")
    wiring.reset()
    result = classify_handler(classify_event(image_id), FakeContext())
    assert len(result["batchItemFailures"]) == 1
    record = stack.image(image_id)
    assert record["state"] == "classification_failed"
    assert "DASHSCOPE_API_KEY" in record["reason_message"]
    assert llm_calls(dashscope) == 1, "an invalid key is not retried"


def test_without_a_provider_the_image_says_classification_skipped(
    stack: Stack, ingest_handler: Any, classify_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("PHOTOPIPE_CLASSIFIER", raising=False)
    wiring.reset()
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))
    assert classify_handler(classify_event(image_id), FakeContext()) == {"batchItemFailures": []}
    record = stack.image(image_id)
    assert record["state"] == "classification_skipped"
    assert "DASHSCOPE_API_KEY" in record["reason_message"]
    assert "classification" not in record


def _token(api: ApiClient, *, admin: bool = False) -> str:
    name = f"u{uuid.uuid4().hex[:10]}"
    status, body = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": name, "email": f"{name}@example.com", "password": "p" * 12},
    )
    assert status == 201
    if admin:  # what `photopipe admin grant NAME` does
        wiring.set_admin(name)
    return str(body["token"])


def test_check_cache_answers_without_an_upload(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope, api: ApiClient
) -> None:
    token = _token(api)
    image_id = ingest(stack, ingest_handler, jpeg_bytes((900, 700)))
    record = stack.image(image_id)
    ask = {"sha256": record["sha256"]}
    status, body = api.call("POST", "/api/v1/classify/check-cache", token=token, body=ask)
    assert (status, body["hit"], body["classification"]) == (200, False, None)

    classify_handler(classify_event(image_id), FakeContext())

    status, body = api.call("POST", "/api/v1/classify/check-cache", token=token, body=ask)
    assert status == 200
    assert body["hit"] is True
    assert body["source"] == "exact_cache"
    assert body["classification"]["category"] == "single_person"
    # a different file with a close perceptual hash is a near-duplicate hit
    close = f"{int(record['phash'], 16) ^ 0b101:016x}"
    status, body = api.call(
        "POST", "/api/v1/classify/check-cache", token=token, body={"sha256": "0" * 64, "phash": close}
    )
    assert (body["hit"], body["source"], body["distance"]) == (True, "near_duplicate", 2)
    # malformed hashes are a 422 naming the field
    status, body = api.call("POST", "/api/v1/classify/check-cache", token=token, body={"sha256": "abc"})
    assert status == 422
    assert "sha256" in body["error"]["message"]


def _photo_of(pixels: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_statistics_add_up(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope, api: ApiClient
) -> None:
    token = _token(api, admin=True)  # global statistics are for admins
    data = jpeg_bytes((1000, 750))
    miss = ingest(stack, ingest_handler, data, user_id="user-a")
    exact = ingest(stack, ingest_handler, data, user_id="user-b")
    near = ingest(stack, ingest_handler, jpeg_bytes((500, 375), quality=50), user_id="user-b")
    failed = ingest(stack, ingest_handler, _photo_of(samples.coffee()), user_id="user-c")
    for image_id in (miss, exact, near):
        assert classify_handler(classify_event(image_id), FakeContext()) == {"batchItemFailures": []}
    dashscope.fail_next(10, status=429, code="Throttling.RateQuota", message="Requests rate limit exceeded")
    classify_handler(classify_event(failed), FakeContext(timeout_ms=15_000))

    status, today = api.call("GET", "/api/v1/stats/today", token=token)
    assert status == 200
    assert (
        today["requests"],
        today["misses"],
        today["exact_hits"],
        today["near_hits"],
        today["failures"],
    ) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert today["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert today["distinct_users"] == 3
    assert today["llm_calls"] == 1 + dashscope.failed_requests
    usage = dashscope.usage_sent
    cost = usage.input_tokens / 1000 * 0.0015 + usage.output_tokens / 1000 * 0.0045
    assert today["input_tokens"] == usage.input_tokens
    assert today["estimated_cost"] == pytest.approx(cost, abs=2e-6)
    assert today["cost_saved"] == pytest.approx(2 * cost, abs=2e-6), "each hit saved the call it reused"
    assert today["currency"] == "CNY"

    status, cache = api.call("GET", "/api/v1/stats/cache", token=token, query={"days": "3"})
    assert [d["day"] for d in cache["days"]][-1] == today["day"]
    assert len(cache["days"]) == 3
    assert cache["totals"]["cache_hits"] == 2

    status, categories = api.call("GET", "/api/v1/stats/categories", token=token, query={"days": "1"})
    counts = {c["category"]: c["count"] for c in categories["categories"]}
    assert counts["single_person"] == 3
    assert categories["total"] == 3
    assert len(categories["categories"]) == 8


def test_get_image_shows_the_classification(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope, api: ApiClient
) -> None:
    token = _token(api)
    user_id = api.call("GET", "/api/v1/profile", token=token)[1]["user"]["user_id"]
    image_id = ingest(stack, ingest_handler, jpeg_bytes((640, 480)), user_id=user_id)
    classify_handler(classify_event(image_id), FakeContext())

    status, image = api.call("GET", f"/api/v1/images/{image_id}", token=token)
    assert status == 200
    assert image["state"] == "classified"
    assert image["classification"]["label_en"] == "Single person"
    status, only = api.call("GET", f"/api/v1/images/{image_id}/classification", token=token)
    assert only["classification"] == image["classification"]


def test_classify_test_function_answers_its_sample_event_then_from_the_cache(
    stack: Stack, api: ApiClient, dashscope: FakeDashScope, ingest_handler: Any, classify_handler: Any
) -> None:
    from tests.conftest import load_handler

    handler = load_handler("classify_api").handler
    status, session = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": "now", "email": "now@example.com", "password": "pw-12345678"},
    )
    assert status == 201
    event = load_event("api-classify.json")
    event["headers"]["authorization"] = f"Bearer {session['token']}"

    # WHEN the classify-test function gets its sample event (a JPEG in the body), twice
    first = handler(event, FakeContext("photopipe-classify-api"))
    second = handler(copy.deepcopy(event), FakeContext("photopipe-classify-api"))

    # THEN the model answers the first, the exact cache the second, and both are counted
    assert first["statusCode"] == 200, first["body"]
    assert json.loads(first["body"])["source"] == "llm"
    assert json.loads(second["body"])["source"] == "exact_cache"
    assert llm_calls(dashscope) == 1
    wiring.set_admin("now")  # the global statistics are for admins (`photopipe admin grant now`)
    status, today = api.call("GET", "/api/v1/stats/today", token=session["token"])
    assert status == 200, today
    assert (today["requests"], today["misses"], today["exact_hits"]) == (2, 1, 1)

    # AND an uploaded photo with the same bytes is classified from that cache entry, no model call
    photo = base64.b64decode(event["body"])
    image_id = ingest(stack, ingest_handler, photo)
    assert classify_handler(classify_event(image_id), FakeContext()) == {"batchItemFailures": []}
    assert stack.image(image_id)["classification"]["source"] == "exact_cache"
    assert llm_calls(dashscope) == 1
